"""Starting the server: uvicorn with the app, and the webhook dispatcher beside it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from modelkeep.server.app import Options, create_app

_ENV = "MODELKEEP_SERVE_OPTIONS"


def _options_from_env() -> Options:
    doc = json.loads(os.environ[_ENV])
    doc["root"] = Path(doc["root"])
    doc["proxy_addresses"] = frozenset(doc["proxy_addresses"])
    return Options(**doc)


def app_from_env() -> object:
    """The app for each uvicorn worker process (--workers N), from the parent's options;
    each process logs its requests (one line each, with the account) to standard error."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return create_app(_options_from_env())


def serve(
    root: Path,
    *,
    host: str,
    port: int,
    workers: int,
    trust_proxy_header: str | None,
    proxies: tuple[str, ...],
    rate_limit: int,
    sign_in_limit: int,
    max_upload: int,
    webhooks: bool,
    ui_user: str | None = None,
    ui_link: str | None = None,
) -> None:
    import uvicorn

    options = {
        "root": str(root),
        "trust_proxy_header": trust_proxy_header,
        "proxy_addresses": list(proxies or ("127.0.0.1", "::1")),
        "rate_limit": rate_limit,
        "sign_in_limit": sign_in_limit,
        "max_upload": max_upload,
        "deliver_webhooks": webhooks,
        "ui_user": ui_user,  # `modelkeep ui`: its local user and one-time link's hash
        "ui_link": ui_link,
    }
    os.environ[_ENV] = json.dumps(options)
    uvicorn.run(
        "modelkeep.server.run:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,  # the app logs each request with its account
        proxy_headers=False,  # the peer address is the proxy's: checked against --proxy
        server_header=False,
    )
