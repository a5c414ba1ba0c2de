"""What must never be stored or printed: credentials in URLs and secret-valued options.

Run records, remotes.toml and error messages are shared (pushed databases, CI logs,
bug reports), so a token that reaches one of them has leaked. Credentials belong where
the backends' own tools look for them: environment variables, profiles, key files. This
module is a leaf: it parses with urllib and imports nothing of modelkeep's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# Option keys that name a secret, compared after lowercasing and '-' -> '_'. Anything
# containing one of the words below counts too, so `aws_secret_access_key` or
# `client_secret` are caught without listing every backend's spelling.
SECRET_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "access_key",
        "secret_access_key",
        "account_key",
        "sas_token",
        "connection_string",
        "credentials",
    }
)
_SECRET_WORDS = re.compile(
    r"secret|token|passw|credential|connection_string|sas|(^|_)key(_|$)|signature|sig$"
)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

# Where each scheme's credentials belong, for the message that refuses them.
WHERE = {
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in the "
    "environment, or name an AWS profile with `-o profile=NAME`",
    "gs": "point GOOGLE_APPLICATION_CREDENTIALS at a key file, or run "
    "`gcloud auth application-default login`",
    "az": "set AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or "
    "AZURE_STORAGE_CONNECTION_STRING in the environment",
}
WHERE_ANY = (
    "keep credentials in the environment (AWS_SECRET_ACCESS_KEY or an AWS profile, "
    "GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_* variables), never in the URL"
)


def is_secret_key(key: str) -> bool:
    """Whether an option called key would hold a secret (a password, token, key)."""
    norm = key.strip().lower().replace("-", "_")
    return norm in SECRET_KEYS or bool(_SECRET_WORDS.search(norm))


def _userinfo_end(text: str) -> int:
    """For a URL with a scheme, the index just past `userinfo@` in its authority; else -1."""
    start = text.find("://") + 3
    end = len(text)
    for stop in "/?#":
        found = text.find(stop, start)
        if found != -1:
            end = min(end, found)
    at = text.rfind("@", start, end)
    return -1 if at == -1 else at + 1


def _scp_userinfo_end(text: str) -> int:
    """For an scp-like `user:secret@host:path`, the index past the '@'; else -1.

    A bare `user@host:path` (Git over ssh) carries no password and is left alone.
    """
    slash = text.find("/")
    head = text if slash == -1 else text[:slash]
    at = head.find("@")
    return at + 1 if at != -1 and ":" in head[:at] else -1


def has_credentials(url: str) -> bool:
    """Whether url carries a user or password before its host (any scheme)."""
    text = url.strip()
    if _URL.match(text):
        return _userinfo_end(text) != -1
    return _scp_userinfo_end(text) != -1


def mask_url(url: str) -> str:
    """url fit to print: `user:password@` becomes `***@`, a query string `?***`."""
    text = url.strip()
    if _URL.match(text):
        end = _userinfo_end(text)
        if end != -1:
            start = text.find("://") + 3
            text = text[:start] + MASK + "@" + text[end:]
        query = text.find("?")
        if query != -1:
            fragment = text.find("#", query)
            text = text[: query + 1] + MASK + ("" if fragment == -1 else text[fragment:])
        return text
    end = _scp_userinfo_end(text)
    return text if end == -1 else MASK + "@" + text[end:]


def strip_credentials(url: str) -> str:
    """url fit to record: no userinfo, query or fragment; scheme, host, port and path kept.

    A username alone is dropped too from URLs with a scheme, because some hosts take a
    token as the username (`https://TOKEN@github.com/…`). An scp-like `git@host:path` keeps
    its user: that syntax has no place for a password.
    """
    text = url.strip()
    if _URL.match(text):
        try:
            parts = urlsplit(text)
        except ValueError:  # a malformed authority: keep nothing that could be a secret
            return text[: text.find("://") + 3] + MASK
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    end = _scp_userinfo_end(text)
    return text if end == -1 else text[end:]


def mask_value(key: str, value: str) -> str:
    """An option's value fit to print: secrets by key become `***`, URLs lose credentials."""
    if is_secret_key(key):
        return MASK
    return mask_url(value) if _URL.match(value.strip()) or has_credentials(value) else value


def mask_options(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((k, mask_value(k, v)) for k, v in pairs)
