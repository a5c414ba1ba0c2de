"""One remote: immutable packs and their indexes under `packs/`, moved through fsspec.

This is the seam where the backends' exceptions (botocore, aiohttp, gcsfs, adlfs, OSError)
become modelkeep errors. It moves bytes only: what a pack or an index means is the
caller's business.

A listing skips, with a warning naming it, an index whose pack is missing: one bad name
on a remote never blocks the others (the caller does the same for malformed indexes).

Publishing a pack uploads the pack, then its index: an index on the remote is the promise
that its pack is complete, and readers list indexes only. Object stores show an upload only
once it is complete, so a pack goes straight to its key; a folder remote gets it under
`tmp/` first, fsynced, then renamed, as the local store does.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from modelkeep.errors import (
    ModelkeepError,
    RemoteAccessDenied,
    RemoteError,
    RemoteMissing,
    RemoteSkipped,
    RemoteUnavailable,
    UnsupportedScheme,
)
from modelkeep.remotes.urls import RemoteSpec, parse_url

PACKS = "packs"
TMP = "tmp"
MAX_RECORD = 64 * 1024 * 1024  # a record file larger than this is refused unread


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _fs_kwargs(spec: RemoteSpec) -> dict[str, Any]:
    """fsspec constructor arguments from the remote's options.

    Listings are never cached: a Remote lives as long as its repository, and another
    machine's packs published meanwhile must show up on the next listing (s3fs, gcsfs and
    adlfs all cache them otherwise, and forget them only after their own writes).
    """
    options = dict(spec.options)
    if spec.scheme.name == "file":
        return {}
    kwargs: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
    if spec.scheme.name == "s3":
        if "endpoint_url" in options:
            kwargs["endpoint_url"] = options["endpoint_url"]
        if "region" in options:
            kwargs["client_kwargs"] = {"region_name": options["region"]}
        if "profile" in options:
            kwargs["profile"] = options["profile"]
        return kwargs
    kwargs.update(options)
    return kwargs


class Remote:
    """A remote's packs and indexes; the filesystem is made on first use."""

    def __init__(self, url: str, options: Mapping[str, str] | None = None) -> None:
        self.spec = parse_url(url, options)
        self.url = self.spec.url
        self._fs: Any = None
        self._lock = threading.Lock()
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def fs(self) -> Any:
        with self._lock:
            if self._fs is None:
                scheme = self.spec.scheme
                try:
                    importlib.import_module(scheme.module)
                    import fsspec
                except ImportError as exc:
                    raise UnsupportedScheme(self.url, scheme.name, scheme.extra or "") from exc
                with self._translated():
                    self._fs = fsspec.filesystem(scheme.protocol, **_fs_kwargs(self.spec))
            return self._fs

    def _path(self, *parts: str) -> str:
        return "/".join([self.spec.root, *parts])

    @contextlib.contextmanager
    def _translated(self, missing: str | None = None) -> Iterator[None]:
        """Turn the backend's exceptions into modelkeep's; `missing` explains a 404."""
        try:
            yield
        except ModelkeepError:
            raise
        except FileNotFoundError as exc:
            if missing is not None:
                raise RemoteError(self.url, missing, "run the command again") from exc
            raise RemoteMissing(self.url, self._missing_what(exc)) from exc
        except PermissionError as exc:
            raise RemoteAccessDenied(self.url, _first_line(exc)) from exc
        except (ConnectionError, TimeoutError) as exc:
            raise RemoteUnavailable(self.url, _first_line(exc)) from exc
        except OSError as exc:
            if self.spec.scheme.name == "file":
                raise RemoteError(self.url, _first_line(exc), "check the folder") from exc
            raise RemoteUnavailable(self.url, _first_line(exc)) from exc
        except Exception as exc:  # botocore, aiohttp, google-auth, azure-core, ...
            name = type(exc).__name__
            if "Credential" in name or "Auth" in name:
                raise RemoteAccessDenied(self.url, f"{name}: {_first_line(exc)}") from exc
            raise RemoteUnavailable(self.url, f"{name}: {_first_line(exc)}") from exc

    def _missing_what(self, exc: BaseException) -> str:
        if self.spec.bucket:
            return f"bucket {self.spec.bucket!r} does not exist ({_first_line(exc)})"
        return f"{_first_line(exc)}"

    # -- reading ----------------------------------------------------------------

    def list_packs(self) -> dict[str, int]:
        """Published packs (an index and its pack both present): name -> pack size."""
        fs = self.fs
        with self._translated():
            try:
                listing = fs.ls(self._path(PACKS), detail=True)
            except FileNotFoundError:
                if self.spec.bucket and not fs.exists(self.spec.bucket):
                    raise
                return {}  # nothing pushed yet
        sizes: dict[str, int] = {}
        indexes: set[str] = set()
        for item in listing:
            base = str(item["name"]).rstrip("/").rsplit("/", 1)[-1]
            stem, _, ext = base.rpartition(".")
            if not stem.startswith("pack-"):
                continue
            if ext == "pack":
                sizes[stem] = int(item.get("size") or 0)
            elif ext == "idx":
                indexes.add(stem)
        for name in sorted(indexes - sizes.keys()):  # a pack deleted or lost by hand
            warnings.warn(
                f"skipped: remote {self.url}: pack index {name}.idx has no pack {name}.pack; "
                f"delete {name}.idx from the remote",
                RemoteSkipped,
                stacklevel=2,
            )
        return {name: size for name, size in sizes.items() if name in indexes}

    def read_index(self, name: str) -> bytes:
        with self._translated(missing=f"pack index {name}.idx disappeared"):
            data: bytes = self.fs.cat_file(self._path(PACKS, f"{name}.idx"))
        self._count(received=len(data))
        return data

    def read_ranges(self, ranges: list[tuple[str, int, int]]) -> list[bytes]:
        """The bytes of each (pack, start, end) range, by range requests (concurrent where
        the backend is asynchronous, as s3fs, gcsfs and adlfs are)."""
        paths = [self._path(PACKS, f"{name}.pack") for name, _, _ in ranges]
        with self._translated(missing="a pack disappeared"):
            out: list[bytes] = self.fs.cat_ranges(
                paths, [s for _, s, _ in ranges], [e for _, _, e in ranges], on_error="raise"
            )
        self._count(received=sum(len(b) for b in out))
        return out

    # -- writing ----------------------------------------------------------------

    def publish(self, name: str, pack: Path, index: bytes) -> None:
        """Upload a pack, then its index: readers see the pack only once both are there."""
        size = pack.stat().st_size
        fs = self.fs
        final = self._path(PACKS, f"{name}.pack")
        final_idx = self._path(PACKS, f"{name}.idx")
        with self._translated():
            if self.spec.scheme.atomic_put:
                fs.put_file(str(pack), final)
                try:
                    fs.pipe_file(final_idx, index)
                except Exception:
                    with contextlib.suppress(Exception):  # an invisible orphan otherwise
                        fs.rm_file(final)
                    raise
            else:
                self._publish_folder(pack, index, final, final_idx)
        self._count(sent=size + len(index))

    def _publish_folder(self, pack: Path, index: bytes, final: str, final_idx: str) -> None:
        fs = self.fs
        tmp = self._path(TMP, f"{uuid.uuid4().hex}")
        fs.makedirs(self._path(PACKS), exist_ok=True)
        fs.makedirs(self._path(TMP), exist_ok=True)
        try:
            fs.put_file(str(pack), f"{tmp}.pack")
            fs.pipe_file(f"{tmp}.idx", index)
            for path in (f"{tmp}.pack", f"{tmp}.idx"):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.rename(f"{tmp}.pack", final)
            os.rename(f"{tmp}.idx", final_idx)  # last: the promise the pack is complete
        finally:
            for path in (f"{tmp}.pack", f"{tmp}.idx"):
                with contextlib.suppress(OSError):
                    os.unlink(path)

    # -- small immutable files (version records) ---------------------------------

    def put_exclusive(self, path: str, data: bytes) -> bool:
        """Create the file at path (relative to the remote's root) with data, only if no
        file is there: True if this call created it, False if one already existed.

        Exclusive where the backend can promise it: a folder links a complete, fsynced
        temporary file to its name (link fails if the name exists); S3, GCS and Azure get
        a conditional write (If-None-Match: *, ifGenerationMatch=0, overwrite=False). An
        S3-compatible server that ignores the condition makes this last-writer-wins.
        """
        fs = self.fs
        final = self._path(path)
        with self._translated():
            if self.spec.scheme.atomic_put:
                try:
                    fs.pipe_file(final, data, mode="create")
                except FileExistsError:
                    return False
            elif not self._link_folder(final, data):
                return False
        self._count(sent=len(data))
        return True

    def _link_folder(self, final: str, data: bytes) -> bool:
        tmp = self._path(TMP, f"{uuid.uuid4().hex}.rec")
        os.makedirs(self._path(TMP), exist_ok=True)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, final)  # atomic, and refuses an existing name
            except FileExistsError:
                return False
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def read_files(self, paths: list[str]) -> dict[str, bytes | None]:
        """The bytes of each file (relative paths), None where it does not exist; one
        concurrent batch where the backend is asynchronous."""
        if not paths:
            return {}
        fs = self.fs
        full = [self._path(p) for p in paths]
        with self._translated():
            got = fs.cat(full, on_error="return") if len(full) > 1 else {}
            if len(full) == 1:
                try:
                    got = {full[0]: fs.cat_file(full[0])}
                except FileNotFoundError:
                    got = {}
        got = {str(k).rstrip("/").removeprefix("file://"): v for k, v in got.items()}
        out: dict[str, bytes | None] = {}
        for rel, path in zip(paths, full, strict=True):
            data = got.get(path)
            if isinstance(data, FileNotFoundError) or data is None:
                out[rel] = None
            elif isinstance(data, BaseException):
                with self._translated():
                    raise data
            else:
                out[rel] = bytes(data)
                self._count(received=len(data))
        return out

    def existing(self, paths: list[str]) -> set[str]:
        """Which of paths (relative) exist: one listing per folder they are in."""
        folders: dict[str, list[str]] = {}
        for path in paths:
            folders.setdefault(path.rpartition("/")[0], []).append(path)
        found: set[str] = set()
        for folder, inside in folders.items():
            listed = self.list_files(folder)
            found.update(p for p in inside if p in listed)
        return found

    def list_files(self, prefix: str, *, recursive: bool = False) -> dict[str, int]:
        """Files under prefix (relative to the root), with their sizes; {} if none."""
        fs = self.fs
        base = self._path(prefix).rstrip("/")
        with self._translated():
            try:
                if recursive:
                    listing = fs.find(base, detail=True)
                    items = list(listing.values())
                else:
                    items = fs.ls(base, detail=True)
            except FileNotFoundError:
                if self.spec.bucket and not fs.exists(self.spec.bucket):
                    raise
                return {}
        root = self._path("")
        found: dict[str, int] = {}
        for item in items:
            if item.get("type") != "file":
                continue
            name = str(item["name"]).rstrip("/")
            rel = name[len(root) :] if name.startswith(root) else name
            found[rel.lstrip("/")] = int(item.get("size") or 0)
        return found

    def _count(self, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            self.bytes_sent += sent
            self.bytes_received += received
