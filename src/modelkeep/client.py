"""The Python API and the CLI as clients of `modelkeep serve`.

`ServerRepo` is a `Repo` whose records live on the server: every metadata method sends
the request the operation table (`modelkeep.api`) gives it and decodes the answer into the
same dataclasses a local store returns, so commands print the same text. Content stays on
the client's side of the wire: `add` chunks and hashes into a local cache store, asks the
server which objects it lacks, uploads those in packs and commits the version; reading
(`get`, `open`, `load_model`, …) runs the local code on the cache, whose fetcher brings
missing objects from the server by ranged reads and verifies each against its id. An
upload cut off half-way resumes: the next one asks again what is missing.

Where the server is and who is asking: `mk.open("https://…", token=…)`; for the CLI,
`MODELKEEP_SERVER` or `server = "URL"` in the committed `modelkeep.toml`, and the token from
`MODELKEEP_TOKEN` or what `modelkeep login` saved (0600) in the user's config folder.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
import os
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from modelkeep import api, config
from modelkeep.errors import (
    InsecureServer,
    InvalidArgument,
    MissingObject,
    ModelkeepError,
    ServerError,
)
from modelkeep.meta.records import Version
from modelkeep.progress import NULL_PROGRESS, Progress
from modelkeep.repo import Repo
from modelkeep.results import AddResult

if TYPE_CHECKING:
    from modelkeep import content, store
    from modelkeep.meta import Attachment
    from modelkeep.store import ObjectStore
else:
    from modelkeep.lazy import LazyModule

    content = LazyModule("modelkeep.content")
    store = LazyModule("modelkeep.store")

CREDENTIALS = "credentials.toml"
TIMEOUT = 300.0
KEYS_PER_REQUEST = 20_000


# -- where the server is, and the token --------------------------------------------------------


def is_url(text: object) -> bool:
    return isinstance(text, str) and text.startswith(("http://", "https://"))


def normalize(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"{url!r} is not a server URL; write e.g. https://models.example.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidArgument(f"a server URL has no query, fragment or credentials: {url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: str, insecure: bool) -> None:
    """A token goes over plain HTTP to this machine only, unless the user says otherwise."""
    if url.startswith("http://") and not loopback(url) and not insecure:
        raise InsecureServer(url)


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "modelkeep" / CREDENTIALS


def saved_token(url: str) -> str | None:
    found = config.read_toml(credentials_path())
    doc = found[1] if found else {}
    entry = doc.get("servers", {}).get(url) if isinstance(doc.get("servers"), dict) else None
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) else None


def save_token(url: str, token: str | None) -> Path:
    """Record (None: forget) url's token in the user's credentials file, mode 0600."""
    import tomlkit

    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = tomlkit.parse(path.read_text("utf-8")) if path.is_file() else tomlkit.document()
    servers = doc.setdefault("servers", tomlkit.table())
    if token is None:
        servers.pop(url, None)
    else:
        entry = tomlkit.table()
        entry["token"] = token
        servers[url] = entry
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(tomlkit.dumps(doc))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def configured_server(start: Path) -> str | None:
    """MODELKEEP_SERVER, else `server = "URL"` in the project's modelkeep.toml: the nearest
    one from start upward, not past the top of a Git work tree or a repository."""
    env = os.environ.get("MODELKEEP_SERVER")
    if env:
        return normalize(env)
    start = start.absolute()
    for folder in (start, *start.parents):
        path = folder / config.PROJECT_FILE
        found = config.read_toml(path)
        if found is not None:
            value = found[1].get("server")
            if value is not None and not isinstance(value, str):
                raise InvalidArgument(f"{path}: server must be a URL in quotes")
            return normalize(value) if value else None
        if (folder / ".git").exists() or (folder / config.REPO_DIR).is_dir():
            return None
    return None


def cache_root(url: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(base) / "modelkeep" / "servers" / key


# -- talking HTTP ---------------------------------------------------------------------------


class Connection:
    """One server, one token; errors come back as the modelkeep error the server raised."""

    def __init__(self, url: str, token: str | None, *, insecure: bool = False) -> None:
        import httpx

        self.url = normalize(url)
        if token:
            check_transport(self.url, insecure)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        import httpx

        try:
            response = self.http.request(
                method,
                api.PREFIX + path,
                json=json,
                params=params,
                content=content,
                headers=dict(headers or {}),
            )
        except httpx.HTTPError as exc:
            raise ServerError(self.url, f"no answer ({type(exc).__name__}: {exc})") from None
        if response.status_code >= 400:
            raise self._error(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def _error(self, response: Any) -> ModelkeepError:
        """The server's error as the same class (its message, not its fields), so callers
        catch `ArtifactNotFound` from a server as from a local store."""
        from modelkeep import errors

        try:
            doc = response.json()
            message, kind = str(doc["message"]), str(doc.get("type", ""))
        except (ValueError, KeyError, TypeError):
            return ServerError(self.url, f"HTTP {response.status_code}")
        cls = getattr(errors, kind, None)
        if isinstance(cls, type) and issubclass(cls, ModelkeepError):
            exc = cls.__new__(cls)
            Exception.__init__(exc, message)
            return exc
        return ServerError(self.url, message)


class ServerFetcher:
    """The cache store's fetcher: objects located on the server, read by ranges, each
    verified against its id before it is kept."""

    active = True

    def __init__(self, conn: Connection, cache: ObjectStore) -> None:
        self.conn = conn
        self.store = cache

    def fetch(self, keys: list[bytes]) -> None:
        from modelkeep import sync
        from modelkeep.store.index import Located
        from modelkeep.store.packs import PackEntry

        for start in range(0, len(keys), KEYS_PER_REQUEST):
            batch = keys[start : start + KEYS_PER_REQUEST]
            doc = self.conn.request(
                "POST", "/objects/locate", json={"keys": [k.hex() for k in batch]}
            )
            if doc["missing"]:
                raise MissingObject(doc["missing"][0])
            located = [
                Located(
                    str(o["pack"]),
                    PackEntry(
                        bytes.fromhex(o["key"]),
                        int(o["kind"]),
                        int(o["codec"]),
                        int(o["offset"]),
                        int(o["length"]),
                        int(o["raw_length"]),
                    ),
                )
                for o in doc["objects"]
            ]
            for loc in located:  # bounds first: a lying answer allocates nothing
                self.store.check_lengths(loc.entry)
            for ranges in sync.fetch_rounds(sync.group_ranges(located)):
                datas = [self._read(r.pack, r.start, r.end) for r in ranges]
                sync.store_ranges(self.store, ranges, datas, self.conn.url)

    def _read(self, pack: str, start: int, end: int) -> bytes:
        data = self.conn.request(
            "GET", f"/packs/{quote(pack)}", headers={"Range": f"bytes={start}-{end - 1}"}
        )
        return data if isinstance(data, bytes) else b""


# -- the repository ----------------------------------------------------------------------------


class ServerRepo(Repo):
    """A repository served by `modelkeep serve`; see the module's docstring."""

    def __init__(self, url: str, token: str | None = None, *, insecure: bool = False) -> None:
        self.conn = Connection(url, token, insecure=insecure)
        self.url = self.conn.url
        cache = _open_cache(cache_root(self.url)).parts
        self.parts = dataclasses.replace(cache, origin=self.url, opened_store=cache.store)
        self.store.fetcher = ServerFetcher(self.conn, self.store)

    def close(self) -> None:
        self.conn.close()
        self.store.close()
        self.db.close()

    def __repr__(self) -> str:
        return f"<ServerRepo {self.url}>"

    @functools.cached_property
    def account(self) -> dict[str, Any]:
        doc = self.conn.request("GET", "/account")
        assert isinstance(doc, dict)
        return doc

    @property
    def user(self) -> str:
        return str(self.account["name"])

    def call(self, op_name: str, /, *args: Any, **kwargs: Any) -> Any:
        op = api.BY_NAME[op_name]
        sent = api.encode_args(op, args, kwargs)
        path = op.path
        for key in op.path_params:
            value = str(sent.pop(key))
            path = path.replace(f"{{{key}:path}}", quote(value, safe="/:@")).replace(
                f"{{{key}}}", quote(value, safe=":@")
            )
        if op.in_body:
            doc = self.conn.request(op.method, path, json=sent)
        else:
            # a query string has no null: an argument left out is its default
            doc = self.conn.request(
                op.method, path, params={k: v for k, v in sent.items() if v is not None}
            )
        return api.decode_result(op, doc)

    # -- content: chunked and hashed here, only what the server lacks goes up ---------------

    def add_content(
        self,
        source: Path,
        name: str,
        *,
        type: str | None,
        message: str,
        metadata: Mapping[str, Any] | None,
        run_id: str | None,
        model_spec: Mapping[str, Any] | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> AddResult:
        """Chunk and hash source into the cache, upload what the server lacks, commit."""
        with self.store.writing():
            put = store.put(self.store, source, progress, exclude=self.settings.control_dir)
        new, sent = self.upload(list(dict.fromkeys(self.store.closure(put.root))), progress)
        doc = self.conn.request(
            "POST",
            "/versions",
            json={
                "name": name,
                "digest": put.root.id.hex(),
                "kind": content.KIND_NAMES[put.root.kind],
                "source_name": source.name or "root",
                "type": type,
                "message": message,
                "metadata": dict(metadata or {}),
                "run_id": run_id,
                "model_spec": dict(model_spec) if model_spec is not None else None,
            },
        )
        result: AddResult = api.adapter(AddResult).validate_python(doc)
        return AddResult(
            result.version,
            result.created,
            new_bytes=new,
            reused_bytes=max(put.size - new, 0),
            stored_bytes=sent,
            same_as=result.same_as,
        )

    def evaluate(
        self,
        ref: Version | str,
        metrics: Mapping[str, float],
        *,
        dataset: Version | str | None = None,
        run_id: str | None = None,
    ) -> list[Any]:
        """As Repo's; the run active here (or the `modelkeep run` around this process) is
        named to the server, which cannot see it."""
        return list(
            self.call(
                "evaluate", ref, metrics, dataset=dataset, run_id=self.parts.active_run(run_id)
            )
        )

    def _attach_file(self, run_id: str, path: Path, name: str) -> Attachment:
        """As Repo's: hashed and chunked here, only what the server lacks goes up, then the
        server records it (reading the file back against its id)."""
        with self.store.writing():
            digest, _size = content.put_file(self.parts, path)
        self.upload(
            list(
                dict.fromkeys(
                    self.store.closure(store.Root(store.Kind.FILE, bytes.fromhex(digest)))
                )
            )
        )
        attached: Attachment = self.add_attachment(run_id, name, digest)
        return attached

    def upload(self, keys: list[bytes], progress: Progress = NULL_PROGRESS) -> tuple[int, int]:
        """Send the server the objects among keys it lacks, in packs: (the raw bytes of the
        file chunks sent, the bytes of the packs sent)."""
        missing: list[bytes] = []
        for start in range(0, len(keys), KEYS_PER_REQUEST):
            batch = [k.hex() for k in keys[start : start + KEYS_PER_REQUEST]]
            doc = self.conn.request("POST", "/objects/missing", json={"keys": batch})
            missing.extend(bytes.fromhex(k) for k in doc["missing"])
        if not missing:
            return 0, 0
        from modelkeep.store.export import Exporter
        from modelkeep.store.packs import KIND_CHUNK

        new = sent = 0
        exporter = Exporter(self.store)
        try:
            for pack in exporter.packs(missing):
                body = len(pack.index).to_bytes(8, "big") + pack.index + pack.path.read_bytes()
                self.conn.request(
                    "POST",
                    "/objects",
                    content=body,
                    headers={"Content-Type": "application/octet-stream"},
                )
                sent += pack.size
                new += sum(e.raw_length for e in pack.entries if e.kind == KIND_CHUNK)
                progress.advance(pack.size)
                exporter.discard(pack)
        finally:
            exporter.close()
        return new, sent


_CACHE_LOCK = threading.Lock()


def _open_cache(folder: Path) -> Repo:
    """The local cache repository for one server, made on first use; one thread and one
    process at a time makes or upgrades it (a lock file beside it)."""
    import fcntl

    from modelkeep.repo import init

    folder.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder.with_name(folder.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with _CACHE_LOCK:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not (folder / config.REPO_DIR).is_dir():
                return init(folder)
            local = Repo(config.load(folder))
            local.db.migrate()
            return local
    finally:
        os.close(fd)  # closing releases the lock


def _remote(name: str) -> Callable[..., Any]:
    def method(self: ServerRepo, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("progress", None)
        return self.call(name, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = getattr(Repo, name).__doc__
    return method


def _local_only(name: str, why: str) -> Callable[..., Any]:
    def method(self: ServerRepo, *args: Any, **kwargs: Any) -> Any:
        raise InvalidArgument(f"`{name.replace('_', ' ')}` {why} (this is {self.url})")

    method.__name__ = name
    return method


for _op in api.OPS:
    if _op.name not in vars(ServerRepo):  # one it defines itself sends the request itself
        setattr(ServerRepo, _op.name, _remote(_op.name))
for _name, _why in api.LOCAL_ONLY.items():
    setattr(ServerRepo, _name, _local_only(_name, _why))


def open_server(url: str, token: str | None = None, *, insecure: bool | None = None) -> ServerRepo:
    """A ServerRepo for url, with token, else MODELKEEP_TOKEN, else what `login` saved."""
    url = normalize(url)
    token = token or os.environ.get("MODELKEEP_TOKEN") or saved_token(url)
    if insecure is None:
        insecure = os.environ.get("MODELKEEP_INSECURE", "") not in ("", "0")
    return ServerRepo(url, token, insecure=insecure)


def load_model(
    ref: Version | str,
    *,
    repo: Repo | str | os.PathLike[str] | None = None,
    trust: bool | Sequence[str] = False,
    checked: bool = True,
) -> Any:
    """`mk.load_model("fraud@production")`: the model a ref names, from repo (a path, a
    server's URL or an open Repo; default: the `modelkeep run` around this process, else
    the working directory and its parents). checked: see `Repo.load_model`."""
    if isinstance(repo, Repo):
        return repo.load_model(ref, trust=trust, checked=checked)
    if repo is None:
        found = config.run_from_env()
        repo = found[1] if found is not None and found[1] is not None else Path.cwd()
    with open(repo) as opened:
        return opened.load_model(ref, trust=trust, checked=checked)


def open(
    path: str | os.PathLike[str] = ".",
    *,
    token: str | None = None,
    insecure: bool | None = None,
) -> Repo:
    """`mk.open(path)`: the repository at path or the nearest folder above it, as Git finds
    one; `mk.open("https://…", token=…)`: the repository a `modelkeep serve` serves."""
    if is_url(path):
        return open_server(str(path), token, insecure=insecure)
    from modelkeep.repo import open as open_local

    return open_local(path)
