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
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelkeep.errors import BadConfigFile, ModelkeepError, RepoNotFound
from modelkeep.redact import WHERE_ANY, has_credentials, is_secret_key, mask_options, mask_url

REPO_DIR = ".modelkeep"
CONFIG_FILE = "config.toml"
REMOTES_FILE = "remotes.toml"  # written by `modelkeep remote add/remove`
PROJECT_FILE = "modelkeep.toml"  # committed: the policy, and remotes the team shares
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
    scope: str = "local"  # "local" (.modelkeep/remotes.toml) or "project" (modelkeep.toml)

    def shown(self) -> RemoteConfig:
        """This remote fit to print: credentials in its URL or options masked.

        New remotes never hold any (`parse_url` refuses them), but an old or hand-edited
        remotes.toml may, and listing it must not spread them.
        """
        return RemoteConfig(
            self.name, mask_url(self.url), mask_options(self.options), self.default, self.scope
        )

    def to_json(self) -> dict[str, object]:
        shown = self.shown()
        return {
            "name": shown.name,
            "url": shown.url,
            "options": dict(shown.options),
            "default": shown.default,
            "scope": shown.scope,
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


def project_root(root: Path) -> Path:
    """Where modelkeep.toml lives: the repository root, else the top of its Git work tree.

    The work tree is found by looking for `.git` upward, not by running git: promotions
    are hot paths, and a subprocess costs more than the whole promotion. Only those two
    folders count: a modelkeep.toml in some folder above a repository that is not in a
    work tree (a home folder, /tmp) is not its project's.
    """
    if (root / PROJECT_FILE).exists():
        return root
    for folder in (root, *root.parents):
        if (folder / ".git").exists():
            return folder
    return root


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


ErrorFactory = Callable[[str, int | None, str], ModelkeepError]
_LINE = re.compile(r"line (\d+)")


def read_toml(path: Path, error: ErrorFactory = BadConfigFile) -> tuple[str, dict[str, Any]] | None:
    """(text, document) of the TOML file at path, None if there is none.

    Every way the file can be unreadable (not UTF-8, not TOML, not a file) becomes one
    error naming the file and, where known, the line: hand-edited files are input too.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(str(path), None, f"cannot read it: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            str(path),
            data[: exc.start].count(b"\n") + 1,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8",
        ) from exc
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _LINE.search(str(exc))
        at: int | None = int(found[1]) if found else None
        if at is None and "end of document" in str(exc):
            at = max(text.count("\n") + (not text.endswith("\n")), 1)
        raise error(str(path), at, f"not valid TOML: {exc}") from exc


def key_line(text: str, key: str | None, table: str | None = None) -> int | None:
    """The line that sets key (inside [table] when given; the table's header when key is
    None): where a type error points. A best effort for the message only, None when the
    file spells it another way (dotted keys, inline tables)."""
    lines = list(enumerate(text.splitlines(), 1))
    if table is not None:
        want = _bare(table)
        start = next(
            (
                i
                for i, (_, ln) in enumerate(lines)
                if (m := _HEADER.fullmatch(ln)) and _bare(m[1]) == want
            ),
            None,
        )
        if start is None:
            return None
        if key is None:
            return lines[start][0]
        rest = lines[start + 1 :]
        end = next((j for j, (_, ln) in enumerate(rest) if _HEADER.fullmatch(ln)), len(rest))
        lines = rest[:end]
    if key is None:
        return None
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    return next((n for n, ln in lines if pattern.match(ln)), None)


_HEADER = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?")


def _bare(header: str) -> str:
    return re.sub(r"[\s\"']", "", header)


def load(root: Path) -> Settings:
    control = root / REPO_DIR
    config_path = control / CONFIG_FILE
    read = read_toml(config_path)
    text, file_settings = read if read is not None else ("", {})

    def bad(key: str, reason: str) -> BadConfigFile:
        return BadConfigFile(str(config_path), key_line(text, key), reason)

    url = file_settings.get("database_url", "")
    if not isinstance(url, str):
        raise bad("database_url", 'database_url must be a string, like "postgresql://host/db"')
    url = os.environ.get("MODELKEEP_DATABASE_URL") or url
    if not url:
        url = f"sqlite:///{control / 'meta.sqlite'}"
    globs = file_settings.get("code_globs", DEFAULT_CODE_GLOBS)
    if not isinstance(globs, list | tuple) or not all(isinstance(g, str) for g in globs):
        raise bad("code_globs", 'code_globs must be a list of glob strings, like ["**/*.py"]')
    trust = file_settings.get("trust_pickle", False)
    if not isinstance(trust, bool):
        raise bad("trust_pickle", f"trust_pickle must be true or false, not {trust!r}")
    types = file_settings.get("trusted_types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise bad(
            "trusted_types", 'trusted_types must be a list of type names, like ["mypkg.Scaler"]'
        )
    return Settings(
        root=root,
        database_url=url,
        user=explicit_user(),
        code_globs=tuple(globs),
        trust_pickle=trust,
        trusted_types=frozenset(types),
        remotes=remotes_of(root),
        host=os.environ.get("MODELKEEP_HOST") or socket.gethostname(),
    )


REMOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def load_remotes(path: Path, *, project: bool = False) -> tuple[RemoteConfig, ...]:
    """The remotes in remotes.toml (`[remote.NAME]`) or, with project, in the committed
    modelkeep.toml (`[remotes.NAME]`), every value type-checked: both may be hand-edited.
    A committed file must hold no credential: one there is refused, saying where it goes."""
    read = read_toml(path)
    if read is None:
        return ()
    text, doc = read
    key = "remotes" if project else "remote"
    tables = doc.get(key, {})
    if not isinstance(tables, dict):
        raise BadConfigFile(
            str(path), key_line(text, key), f"{key} must be tables: [{key}.NAME] url = …"
        )
    out = []
    for name, table in tables.items():
        where = f"{key}.{json.dumps(name)}"

        def bad(field: str | None, reason: str, where: str = where) -> BadConfigFile:
            line = key_line(text, field, where) or key_line(text, None, where)
            return BadConfigFile(str(path), line, reason)

        if not REMOTE_NAME.match(name):
            raise bad(None, f"{name!r} is not a remote name: use letters, digits, '-', '_', '.'")
        if not isinstance(table, dict):
            raise bad(None, f"{where} must be a table with a url")
        url, options = table.get("url"), table.get("options", {})
        if not isinstance(url, str) or not url:
            raise bad("url", f"{where} needs a url string")
        if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
            raise bad("options", f'{where}.options must be a table of strings, like {{ a = "b" }}')
        default = table.get("default", False)
        if not isinstance(default, bool):
            raise bad("default", f"{where}.default must be true or false, not {default!r}")
        if project:
            secret = (
                "url"
                if has_credentials(url)
                else next((k for k in options if is_secret_key(k)), None)
            )
            if secret is not None:
                raise bad(
                    secret if secret == "url" else "options",
                    f"{where}: {'the url' if secret == 'url' else repr(secret)} holds a "
                    f"credential, and {PROJECT_FILE} is committed; {WHERE_ANY}",
                )
        pairs = tuple(sorted(options.items()))
        out.append(RemoteConfig(name, url, pairs, default, "project" if project else "local"))
    return tuple(out)


def remotes_of(root: Path) -> tuple[RemoteConfig, ...]:
    """The remotes of the repository at root: its project's, with its own over them."""
    return merge_remotes(
        load_remotes(project_root(root) / PROJECT_FILE, project=True),
        load_remotes(root / REPO_DIR / REMOTES_FILE),
    )


def merge_remotes(
    project: tuple[RemoteConfig, ...], local: tuple[RemoteConfig, ...]
) -> tuple[RemoteConfig, ...]:
    """The project's remotes with the local ones over them: a local remote replaces a
    project one of the same name, and a local default outranks the project's default."""
    mine = {r.name for r in local}
    shared = [r for r in project if r.name not in mine]
    if any(r.default for r in local):
        shared = [replace(r, default=False) for r in shared]
    return (*shared, *local)


def save_project_remote(root: Path, remote: RemoteConfig | None, name: str) -> Path:
    """Write (or, remote None, remove) `[remotes.NAME]` in the committed modelkeep.toml,
    keeping the rest of the file (the policy, comments) as it is. Atomic."""
    import tomlkit

    path = project_root(root) / PROJECT_FILE
    read = read_toml(path)  # refuses a file that is not TOML before it is rewritten
    doc = tomlkit.parse(read[0]) if read is not None else tomlkit.document()
    tables = doc.get("remotes")
    if tables is None:
        tables = tomlkit.table(is_super_table=True)
        doc["remotes"] = tables
    if remote is None:
        tables.pop(name, None)
    else:
        if remote.default:
            for other in tables.values():
                if isinstance(other, dict):
                    other.pop("default", None)
        table = tomlkit.table()
        table["url"] = remote.url
        if remote.default:
            table["default"] = True
        if remote.options:
            table["options"] = dict(remote.options)
        tables[name] = table
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(tomlkit.dumps(doc), "utf-8")
    os.replace(tmp, path)
    return path


def save_remotes(root: Path, remotes: tuple[RemoteConfig, ...]) -> None:
    """Rewrite remotes.toml (atomically): one table per remote. JSON strings are TOML strings."""
    lines = ["# modelkeep remotes: edit with `modelkeep remote add/remove`"]
    for r in (r for r in remotes if r.scope == "local"):
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


DATABASE_URL_ENV = "MODELKEEP_DATABASE_URL"


def database_url_from_env() -> str | None:
    """MODELKEEP_DATABASE_URL when set: it overrides database_url in config.toml."""
    return os.environ.get(DATABASE_URL_ENV) or None


def set_database_url(root: Path, url: str | None, *, dry_run: bool = False) -> None:
    """Point the repository at another metadata database (`modelkeep migrate`).

    Rewrites only the top-level `database_url` line of config.toml (None removes it: the
    default SQLite file), keeping every other line and comment, and checks the result
    parses to the same settings but that one; written through a fsynced temporary
    sibling and a rename, so a crash leaves the old file or the new one, never half.
    dry_run only checks that the file can be rewritten so (migrate asks before copying).
    """
    path = root / REPO_DIR / CONFIG_FILE
    read = read_toml(path)
    text, before = read if read is not None else ("", {})
    lines = text.splitlines()
    top = next((i for i, ln in enumerate(lines) if _HEADER.fullmatch(ln)), len(lines))
    setting = re.compile(r"^\s*[\"']?database_url[\"']?\s*=")
    found = [i for i in range(top) if setting.match(lines[i])]
    at = found[0] if found else top
    while not found and at > 0 and not lines[at - 1].strip():
        at -= 1  # after the settings and comments at the top, before the blank lines
    kept = [ln for i, ln in enumerate(lines) if i not in found]
    new = [f"database_url = {json.dumps(url)}"] if url is not None else []
    out = "\n".join(kept[:at] + new + kept[at:]) + "\n"
    want = {k: v for k, v in before.items() if k != "database_url"}
    if url is not None:
        want["database_url"] = url
    try:
        same = tomllib.loads(out) == want
    except tomllib.TOMLDecodeError:
        same = False
    if not same:
        raise BadConfigFile(
            str(path),
            key_line(text, "database_url"),
            "cannot rewrite database_url here (is it spelled over several lines?); write "
            "database_url on one line and migrate again",
        )
    if not dry_run:
        _replace(path, out)


def _replace(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True, slots=True)
class ActiveRun:
    """The run active in this process: the one record of it (mk.start_run sets it)."""

    id: str
    root: Path
    handle: Any  # the modelkeep.run.Run object, for mk.current_run()
    parent: ActiveRun | None = None  # active again when this (nested) run ends


_active_run: ActiveRun | None = None


def set_active_run(active: ActiveRun | None) -> None:
    global _active_run
    _active_run = active


def active() -> ActiveRun | None:
    return _active_run


def active_run(root: Path, origin: str | None = None) -> str | None:
    """The run that versions added or gotten in the repository at root (a server's client:
    origin, the server's URL) belong to: the one active in this process, else the one
    `modelkeep run` started this process in."""
    if _active_run is not None and _active_run.root == root:
        return _active_run.id
    found = run_from_env()
    if found is not None and (found[1] is None or found[1] in (str(root), origin)):
        return found[0]
    return None


def run_from_env() -> tuple[str, str | None] | None:
    """The run `modelkeep run` started this process in, if any, and its repository: a
    folder, or the URL of a server."""
    run_id = os.environ.get(RUN_ID_ENV)
    if not run_id:
        return None
    return run_id, os.environ.get(REPO_ENV) or None
