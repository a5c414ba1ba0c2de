"""The one place that reads configuration: `MODELKEEP_*` variables and the repo's config.

Settings are read once into a frozen object, so the rest of the code never looks at the
environment itself.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from modelkeep.errors import InvalidArgument, RepoNotFound

REPO_DIR = ".modelkeep"
CONFIG_FILE = "config.toml"
REMOTES_FILE = "remotes.toml"  # written by `modelkeep remote add/remove`
# Set by `modelkeep run` for the command it starts, so the command joins that run.
RUN_ID_ENV = "MODELKEEP_RUN_ID"
REPO_ENV = "MODELKEEP_REPO"
DEFAULT_CODE_GLOBS = ("**/*.py",)


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    name: str
    url: str  # canonical (see remotes.parse_url)
    options: tuple[tuple[str, str], ...] = ()
    default: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": self.url,
            "options": dict(self.options),
            "default": self.default,
        }


@dataclass(frozen=True, slots=True)
class Settings:
    root: Path  # the folder that holds .modelkeep/
    database_url: str
    user: str | None  # MODELKEEP_USER; else the repository asks Git, then the OS
    code_globs: tuple[str, ...] = DEFAULT_CODE_GLOBS  # source files a run snapshots
    trust_pickle: bool = False  # load_model may unpickle (pickle, joblib, .bin weights)
    trusted_types: frozenset[str] = frozenset()  # types skops may build beyond its own list
    remotes: tuple[RemoteConfig, ...] = ()
    host: str = field(default_factory=socket.gethostname)  # MODELKEEP_HOST, else hostname

    @property
    def default_remote(self) -> RemoteConfig | None:
        return next((r for r in self.remotes if r.default), None)

    def remote(self, name: str | None) -> RemoteConfig | None:
        """The remote called name, or the default one when name is None."""
        if name is None:
            return self.default_remote
        return next((r for r in self.remotes if r.name == name), None)

    @property
    def control_dir(self) -> Path:
        return self.root / REPO_DIR

    @property
    def store_dir(self) -> Path:
        return self.control_dir / "store"


def find_root(start: Path) -> Path:
    """Walk upward from start, as Git does, to the folder holding `.modelkeep/`."""
    start = start.absolute()
    for folder in (start, *start.parents):
        if (folder / REPO_DIR).is_dir():
            return folder
    raise RepoNotFound(str(start))


def explicit_user() -> str | None:
    """MODELKEEP_USER, when set: the actor recorded on versions, runs and events."""
    return os.environ.get("MODELKEEP_USER") or None


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def load(root: Path) -> Settings:
    control = root / REPO_DIR
    file_settings: dict[str, object] = {}
    config_path = control / CONFIG_FILE
    if config_path.exists():
        try:
            file_settings = tomllib.loads(config_path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgument(f"cannot read {config_path}: {exc}; fix or remove it") from exc
    url = os.environ.get("MODELKEEP_DATABASE_URL") or str(file_settings.get("database_url", ""))
    if not url:
        url = f"sqlite:///{control / 'meta.sqlite'}"
    globs = file_settings.get("code_globs", DEFAULT_CODE_GLOBS)
    if not isinstance(globs, list | tuple) or not all(isinstance(g, str) for g in globs):
        raise InvalidArgument(
            f'{config_path}: code_globs must be a list of glob strings, like ["**/*.py"]'
        )
    trust = file_settings.get("trust_pickle", False)
    if not isinstance(trust, bool):
        raise InvalidArgument(f"{config_path}: trust_pickle must be true or false")
    types = file_settings.get("trusted_types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise InvalidArgument(
            f'{config_path}: trusted_types must be a list of type names, like ["mypkg.Scaler"]'
        )
    return Settings(
        root=root,
        database_url=url,
        user=explicit_user(),
        code_globs=tuple(globs),
        trust_pickle=trust,
        trusted_types=frozenset(types),
        remotes=load_remotes(control / REMOTES_FILE),
        host=os.environ.get("MODELKEEP_HOST") or socket.gethostname(),
    )


REMOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def load_remotes(path: Path) -> tuple[RemoteConfig, ...]:
    if not path.exists():
        return ()
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"cannot read {path}: {exc}; fix or remove it") from exc
    out = []
    for name, table in dict(doc.get("remote", {})).items():
        url = table.get("url") if isinstance(table, dict) else None
        options = table.get("options", {}) if isinstance(table, dict) else None
        if not isinstance(url, str) or not isinstance(options, dict):
            raise InvalidArgument(f"{path}: remote {name!r} needs a url; fix or remove it")
        pairs = tuple(sorted((str(k), str(v)) for k, v in options.items()))
        out.append(RemoteConfig(name, url, pairs, bool(table.get("default", False))))
    return tuple(out)


def save_remotes(root: Path, remotes: tuple[RemoteConfig, ...]) -> None:
    """Rewrite remotes.toml (atomically): one table per remote. JSON strings are TOML strings."""
    lines = ["# modelkeep remotes: edit with `modelkeep remote add/remove`"]
    for r in remotes:
        lines += ["", f"[remote.{json.dumps(r.name)}]", f"url = {json.dumps(r.url)}"]
        if r.default:
            lines.append("default = true")
        if r.options:
            pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in r.options)
            lines.append(f"options = {{ {pairs} }}")
    path = root / REPO_DIR / REMOTES_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", "utf-8")
    os.replace(tmp, path)


_active_run: tuple[str, Path] | None = None  # set by mk.start_run in this process


def set_active_run(run_id: str | None, root: Path | None = None) -> None:
    global _active_run
    _active_run = (run_id, root) if run_id is not None and root is not None else None


def active_run(root: Path) -> str | None:
    """The run that versions added or gotten in the repository at root belong to: the one
    active in this process, else the one `modelkeep run` started this process in."""
    if _active_run is not None and _active_run[1] == root:
        return _active_run[0]
    found = run_from_env()
    if found is not None and (found[1] is None or found[1] == root):
        return found[0]
    return None


def run_from_env() -> tuple[str, Path | None] | None:
    """The run (and repository) `modelkeep run` started this process in, if any."""
    run_id = os.environ.get(RUN_ID_ENV)
    if not run_id:
        return None
    repo = os.environ.get(REPO_ENV)
    return run_id, Path(repo) if repo else None
