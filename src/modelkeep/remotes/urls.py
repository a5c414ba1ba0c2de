"""Remote URLs and the scheme table: which fsspec backend serves a scheme, and its extra.

Plug-ins by table, as fsspec's own registry: a scheme maps to the module that implements
it (imported only when a remote is used, so `modelkeep --help` never loads s3fs), the
extra that installs it, and the options a user may set on it.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from modelkeep.errors import InvalidArgument, InvalidRemoteUrl, SecretRefused, UnsupportedScheme
from modelkeep.redact import WHERE, WHERE_ANY, has_credentials, is_secret_key, mask_url


@dataclass(frozen=True, slots=True)
class Scheme:
    name: str  # as written in URLs
    protocol: str  # fsspec's name for it
    module: str  # the package that implements it, imported lazily
    extra: str | None  # `pip install 'modelkeep[EXTRA]'`; None: always installed
    options: tuple[str, ...] = ()  # what `--option key=value` may set
    # An upload is invisible until complete (object stores): no temporary key is needed.
    atomic_put: bool = True
    bucket: re.Pattern[str] | None = None  # what a bucket or container name looks like


_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_GS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_AZ_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")

SCHEMES: dict[str, Scheme] = {
    "file": Scheme("file", "file", "fsspec", None, atomic_put=False),
    "s3": Scheme("s3", "s3", "s3fs", "s3", ("endpoint_url", "region", "profile"), True, _S3_BUCKET),
    "gs": Scheme("gs", "gcs", "gcsfs", "gcs", ("project", "endpoint_url"), True, _GS_BUCKET),
    "az": Scheme("az", "abfs", "adlfs", "azure", ("account_name",), True, _AZ_CONTAINER),
}
ALIASES = {"gcs": "gs", "abfs": "az"}


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    """A parsed remote URL: its canonical spelling and the fsspec path of its root."""

    url: str  # canonical: file:///ABS/PATH or SCHEME://BUCKET[/PREFIX], no trailing slash
    scheme: Scheme
    root: str  # the fsspec path: /ABS/PATH or BUCKET[/PREFIX]
    bucket: str = ""
    options: Mapping[str, str] = field(default_factory=dict)


_HAS_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def _segments(url: str, path: str) -> list[str]:
    parts = path.split("/")
    inner = parts[1:-1] if len(parts) > 2 else []
    if any(p in (".", "..") for p in parts) or any(p == "" for p in inner):
        raise InvalidRemoteUrl(url, "the path has an empty, '.' or '..' segment")
    return [p for p in parts if p]


def parse_url(url: str, options: Mapping[str, str] | None = None) -> RemoteSpec:
    """Check a remote URL (and its options) and give its canonical form; no network.

    Every message shows the URL masked: a refused URL is still one the user typed, and
    may hold a token they did not mean to print.
    """
    text = url.strip()
    shown = mask_url(url)
    if has_credentials(text):
        raise SecretRefused(f"remote URL {shown!r}", WHERE_ANY)
    if not text:
        raise InvalidRemoteUrl(shown, "it is empty")
    match = _HAS_SCHEME.match(text)
    if match is None:  # a plain folder path, relative to the working directory
        path = os.path.normpath(os.path.abspath(os.path.expanduser(text)))
        return _checked(RemoteSpec(f"file://{path}", SCHEMES["file"], path), url, options)
    name = ALIASES.get(match.group(1).lower(), match.group(1).lower())
    if not text[match.end() :].startswith("//"):
        raise InvalidRemoteUrl(shown, f"expected '{match.group(1)}://' before the location")
    if name not in SCHEMES:
        raise UnsupportedScheme(shown, match.group(1))
    scheme = SCHEMES[name]
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise InvalidRemoteUrl(shown, "it has a query or fragment ('?' or '#')")
    if scheme.name == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidRemoteUrl(shown, "a file URL needs an absolute path: file:///PATH")
        if not parts.path.startswith("/"):
            raise InvalidRemoteUrl(shown, "a file URL needs an absolute path: file:///PATH")
        path = "/" + "/".join(_segments(shown, parts.path))
        return _checked(RemoteSpec(f"file://{path}", scheme, path), url, options)
    bucket = parts.netloc
    if not bucket:
        raise InvalidRemoteUrl(shown, f"no bucket: write {scheme.name}://BUCKET/PREFIX")
    assert scheme.bucket is not None
    if not scheme.bucket.match(bucket):
        raise InvalidRemoteUrl(shown, f"{bucket!r} is not a valid bucket or container name")
    root = "/".join([bucket, *_segments(shown, parts.path)])
    return _checked(RemoteSpec(f"{scheme.name}://{root}", scheme, root, bucket), url, options)


def _checked(spec: RemoteSpec, url: str, options: Mapping[str, str] | None) -> RemoteSpec:
    given = dict(options or {})
    where = WHERE.get(spec.scheme.name, WHERE_ANY)
    for key, value in given.items():
        if is_secret_key(key):
            raise SecretRefused(f"remote option {key!r}", where)
        if has_credentials(value):
            raise SecretRefused(f"remote option {key}={mask_url(value)!r}", where)
    unknown = sorted(set(given) - set(spec.scheme.options))
    if unknown:
        allowed = ", ".join(spec.scheme.options) or "none"
        raise InvalidArgument(
            f"{spec.scheme.name}:// remotes take no option {unknown[0]!r} (options: {allowed})"
        )
    if "endpoint_url" in given and not re.match(r"^https?://[^/\s]+", given["endpoint_url"]):
        raise InvalidRemoteUrl(
            mask_url(given["endpoint_url"]), "endpoint_url must be http(s)://HOST[:PORT]"
        )
    return RemoteSpec(spec.url, spec.scheme, spec.root, spec.bucket, given)


def require_backend(spec: RemoteSpec) -> None:
    """Refuse a scheme whose package is not installed, naming the extra; imports nothing."""
    scheme = spec.scheme
    if importlib.util.find_spec(scheme.module) is None:
        raise UnsupportedScheme(spec.url, scheme.name, scheme.extra or scheme.module)
