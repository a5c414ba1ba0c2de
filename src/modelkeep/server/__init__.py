"""`modelkeep serve`: the HTTP server (app), its OpenAPI description and password hashing."""
