"""Every failure modelkeep reports on purpose is a ModelkeepError.

Each subclass carries the fields that explain it, and its message names the thing and
the next step, because the CLI prints the message as the one line a user sees.
"""

from __future__ import annotations

from collections.abc import Sequence


class ModelkeepError(Exception):
    """Base class: the CLI turns these into one line on stderr and exit code 1."""


class RepoNotFound(ModelkeepError, FileNotFoundError):
    def __init__(self, start: str) -> None:
        self.start = start
        super().__init__(
            f"no modelkeep repository at or above {start!r}; "
            "run `modelkeep init` there, or pass --repo PATH"
        )


class RepoExists(ModelkeepError, FileExistsError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"a modelkeep repository already exists at {path!r}")


class InvalidName(ModelkeepError, ValueError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(
            f"invalid name {name!r}: {reason}; names use lowercase letters, digits, "
            "'-', '_', '.' and '/' between segments, 1-128 characters"
        )


class InvalidAlias(ModelkeepError, ValueError):
    def __init__(self, alias: str, reason: str) -> None:
        self.alias = alias
        self.reason = reason
        super().__init__(f"invalid alias {alias!r}: {reason}")


class InvalidRef(ModelkeepError, ValueError):
    def __init__(self, ref: str, reason: str) -> None:
        self.ref = ref
        self.reason = reason
        super().__init__(
            f"invalid ref {ref!r}: {reason}; use NAME, NAME:latest, NAME:vN, NAME@STAGE, "
            "NAME@ALIAS or b3:HEX"
        )


class InvalidArgument(ModelkeepError, ValueError):
    """A value given by the user that is not a name or a ref (a metadata pair, a type)."""


class ArtifactNotFound(ModelkeepError, LookupError):
    def __init__(self, name: str, similar: Sequence[str] = (), existing: int = 0) -> None:
        self.name = name
        self.similar = list(similar)
        self.existing = existing
        if similar:
            hint = f"did you mean {', '.join(repr(s) for s in similar)}? see `modelkeep ls`"
        elif existing:
            hint = f"the repository has {existing} other artifact(s); see `modelkeep ls`"
        else:
            hint = "the repository has no artifacts yet; add one with `modelkeep add`"
        super().__init__(f"no artifact named {name!r}; {hint}")


class VersionNotFound(ModelkeepError, LookupError):
    def __init__(self, name: str, number: int, latest: int) -> None:
        self.name = name
        self.number = number
        self.latest = latest
        super().__init__(
            f"artifact {name!r} has no version {number} (latest is v{latest}); "
            f"see `modelkeep versions {name}`"
        )


class DigestNotFound(ModelkeepError, LookupError):
    def __init__(self, prefix: str, matches: Sequence[str] = ()) -> None:
        self.prefix = prefix
        self.matches = list(matches)
        if matches:
            msg = (
                f"content id b3:{prefix} is ambiguous: it matches {', '.join(matches)}; "
                "give more hex digits"
            )
        else:
            msg = f"no version has content id b3:{prefix}; see `modelkeep ls`"
        super().__init__(msg)


class PathNotFound(ModelkeepError, FileNotFoundError):
    def __init__(self, path: str, where: str = "") -> None:
        self.path = path
        self.where = where
        if where:
            msg = f"{where} has no file {path!r}; see `modelkeep show {where}` for its files"
        else:
            msg = f"path {path!r} does not exist; check the path and try again"
        super().__init__(msg)


class UnreadablePath(ModelkeepError, PermissionError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read {path!r}: {reason}; check its permissions")


class UnsupportedFileType(ModelkeepError, ValueError):
    def __init__(self, path: str, kind: str) -> None:
        self.path = path
        self.kind = kind
        super().__init__(
            f"cannot version {path!r}: it is a {kind}; only files, folders and symlinks are stored"
        )


class TypeMismatch(ModelkeepError, ValueError):
    def __init__(self, name: str, existing: str, given: str) -> None:
        self.name = name
        self.existing = existing
        self.given = given
        super().__init__(
            f"artifact {name!r} has type {existing!r}, not {given!r}; "
            f"drop --type or use another name"
        )


class DestinationExists(ModelkeepError, FileExistsError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path!r} already exists; pass --force to replace it")


class UnsafeEntry(ModelkeepError, ValueError):
    """A stored folder listing names a path that would escape the destination."""

    def __init__(self, object_id: str, name: str) -> None:
        self.object_id = object_id
        self.name = name
        super().__init__(
            f"tree b3:{object_id[:16]} holds an unsafe entry name {name!r}; refusing to "
            "restore it (the store may be damaged or crafted; run `modelkeep fsck`)"
        )


class ObjectError(ModelkeepError):
    """A stored object cannot be read; the message names the versions that need it."""

    def __init__(self, object_id: str, problem: str, versions: Sequence[str] = ()) -> None:
        self.object_id = object_id
        self.problem = problem
        self.versions = list(versions)
        super().__init__(self._message())

    def _message(self) -> str:
        held = f"; needed by {', '.join(self.versions)}" if self.versions else ""
        return (
            f"object b3:{self.object_id} {self.problem}{held}; "
            "run `modelkeep fsck` for a full report"
        )

    def with_versions(self, versions: Sequence[str]) -> ObjectError:
        self.versions = list(versions)
        self.args = (self._message(),)
        return self


class CorruptObject(ObjectError):
    """Bytes read back do not hash to their id; the bytes are never returned."""

    def __init__(self, object_id: str, where: str, versions: Sequence[str] = ()) -> None:
        self.where = where
        super().__init__(object_id, f"is damaged ({where})", versions)


class MissingObject(ObjectError, LookupError):
    def __init__(self, object_id: str, versions: Sequence[str] = ()) -> None:
        super().__init__(object_id, "is missing from the store", versions)


class DatabaseError(ModelkeepError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"metadata database {url} failed: {reason}; check MODELKEEP_DATABASE_URL "
            "and that the server is reachable"
        )


class RunNotFound(ModelkeepError, LookupError):
    def __init__(self, ref: str, matches: Sequence[str] = ()) -> None:
        self.ref = ref
        self.matches = list(matches)
        if matches:
            msg = f"run id {ref!r} is ambiguous: it matches {', '.join(matches)}; give more digits"
        else:
            msg = f"no run with id {ref!r}; see `modelkeep runs`"
        super().__init__(msg)


class RunNotActive(ModelkeepError):
    """Something was logged to a run that has ended."""

    def __init__(self, run_id: str, status: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(
            f"run {run_id[:8]} is {status}; nothing more can be logged to it; "
            "start a new run with mk.start_run() or `modelkeep run`"
        )


class ParamConflict(ModelkeepError, ValueError):
    """Parameters are written once: a second, different value would rewrite history."""

    def __init__(self, run_id: str, key: str, old: str, new: str) -> None:
        self.run_id = run_id
        self.key = key
        self.old = old
        self.new = new
        super().__init__(
            f"param {key!r} of run {run_id[:8]} is already {old}, cannot set it to {new}; "
            "params are written once: log the new value under another key or start a new run"
        )


class CommandFailed(ModelkeepError):
    """`modelkeep run` could not start the command; the run is recorded as failed."""

    def __init__(self, run_id: str, command: str, reason: str) -> None:
        self.run_id = run_id
        self.command = command
        self.reason = reason
        super().__init__(
            f"cannot run {command!r}: {reason}; run {run_id[:8]} is recorded as failed"
        )


class LockFileError(ModelkeepError, ValueError):
    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(
            f"{path}, line {line}: {reason}; fix the line, or restore the file with "
            "`git checkout -- modelkeep.lock`"
        )


class UncommittedChanges(ModelkeepError):
    """Checkout would overwrite content that no version holds."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        super().__init__(
            f"{', '.join(repr(p) for p in paths)} changed since it was added and the change "
            "is in no version; add it with `modelkeep add`, or pass --force to discard it"
        )


class NotInStore(ModelkeepError, LookupError):
    """A lock entry names a version this repository does not have."""

    def __init__(self, path: str, ref: str, digest: str) -> None:
        self.path = path
        self.ref = ref
        self.digest = digest
        super().__init__(
            f"{path!r} is locked to {ref} ({digest[:19]}), which is not in this repository; "
            "copy it from the repository that added it, or add the path again with "
            "`modelkeep add`"
        )


class AliasNotFound(ModelkeepError, LookupError):
    def __init__(self, name: str, alias: str, existing: Sequence[str] = ()) -> None:
        self.name = name
        self.alias = alias
        self.existing = list(existing)
        if alias in ("staging", "production"):
            hint = f"no version of {name!r} is in {alias}; see `modelkeep history {name}`"
        elif existing:
            hint = f"its aliases are {', '.join(existing)}"
        else:
            hint = f"it has no aliases; set one with `modelkeep alias set {name}@{alias} {name}:vN`"
        super().__init__(f"{name}@{alias} does not name a version: {hint}")


class VersionDeleted(ModelkeepError, LookupError):
    def __init__(self, ref: str, when: str) -> None:
        self.ref = ref
        self.when = when
        super().__init__(
            f"{ref} was deleted at {when}; see `modelkeep history {ref.split(':')[0]}` for why"
        )


class RegistryRefused(ModelkeepError):
    """A registry change that the rules forbid (not the policy: that is PromotionRefused)."""


class ReasonRequired(RegistryRefused):
    """The policy (`[reasons] require` in modelkeep.toml) wants a reason for this change."""

    def __init__(self, action: str, what: str, policy: str) -> None:
        self.action = action
        self.policy = policy
        super().__init__(
            f"{what} needs a reason ({policy} requires one for {action}); give --reason"
        )


class PromotionRefused(ModelkeepError):
    """The policy's conditions for a stage are not met; every unmet one is listed."""

    def __init__(
        self, ref: str, stage: str, unmet: Sequence[str], overridable: bool = False
    ) -> None:
        self.ref = ref
        self.stage = stage
        self.unmet = list(unmet)
        hint = (
            "; or pass --force --reason '…' to override the gates (the override is recorded)"
            if overridable
            else ""
        )
        super().__init__(f"{ref} cannot move to {stage}: " + "; ".join(self.unmet) + hint)


class PolicyError(ModelkeepError, ValueError):
    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {reason}; fix the policy (no registry change was made)")


class NothingAtTime(ModelkeepError, LookupError):
    def __init__(self, ref: str, when: str, reason: str) -> None:
        self.ref = ref
        self.when = when
        super().__init__(f"{ref} at {when}: {reason}")


class NotAModel(ModelkeepError, ValueError):
    def __init__(self, ref: str, type: str) -> None:
        self.ref = ref
        self.type = type
        super().__init__(
            f"{ref} is a {type} version, not a model logged with log_model; "
            f"restore its files with `modelkeep get {ref}` (Python: repo.get)"
        )


class UnsupportedModel(ModelkeepError, TypeError):
    def __init__(self, what: str, formats: Sequence[str]) -> None:
        self.what = what
        self.formats = tuple(formats)
        super().__init__(
            f"cannot log a {what} as a model: supported formats are {', '.join(formats)}; "
            "or save it to a file or folder yourself and log that path (format 'files')"
        )


class MissingDependency(ModelkeepError, ImportError):
    def __init__(self, package: str, extra: str, needed_for: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{needed_for} needs the {package!r} package, which is not installed; "
            f"pip install 'modelkeep[{extra}]'"
        )


class UntrustedModel(ModelkeepError, PermissionError):
    """Loading would run code the model file names: refused unless the user trusts it."""

    def __init__(self, ref: str, why: str, types: Sequence[str] = ()) -> None:
        self.ref = ref
        self.types = tuple(types)
        how = (
            "pass trust=True to load_model if you trust whoever wrote it"
            + (", or list the types in trusted_types" if types else ", or set trust_pickle")
            + " in .modelkeep/config.toml"
        )
        super().__init__(f"refusing to load {ref}: {why}; {how}")


class LibraryVersionWarning(UserWarning):
    """A model was saved with a library whose major version differs from the one installed."""


# -- remotes -----------------------------------------------------------------------------------


class RemoteNotFound(ModelkeepError, LookupError):
    def __init__(self, name: str | None, existing: Sequence[str] = ()) -> None:
        self.name = name
        self.existing = list(existing)
        if name is None:
            msg = (
                "no default remote is configured; add one with "
                "`modelkeep remote add NAME URL --default`, or pass --remote NAME"
            )
        elif existing:
            msg = (
                f"no remote named {name!r} (remotes: {', '.join(existing)}); "
                "see `modelkeep remote list`"
            )
        else:
            msg = f"no remote named {name!r}; add it with `modelkeep remote add {name} URL`"
        super().__init__(msg)


class RemoteExists(ModelkeepError, FileExistsError):
    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        super().__init__(
            f"a remote named {name!r} already exists ({url}); remove it first with "
            f"`modelkeep remote remove {name}`"
        )


class InvalidRemoteUrl(ModelkeepError, ValueError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"invalid remote URL {url!r}: {reason}; use a folder path, file:///PATH, "
            "s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX"
        )


class UnsupportedScheme(ModelkeepError, ValueError):
    """A URL scheme modelkeep has no backend for, or one whose extra is not installed."""

    def __init__(self, url: str, scheme: str, extra: str | None = None) -> None:
        self.url = url
        self.scheme = scheme
        self.extra = extra
        if extra is None:
            msg = (
                f"remote URL {url!r} has unsupported scheme {scheme!r}; use file://, s3://, "
                "gs:// or az:// (or a plain folder path)"
            )
        else:
            msg = (
                f"{scheme}:// remotes need the {extra!r} extra, which is not installed; "
                f"install it with `pip install 'modelkeep[{extra}]'`"
            )
        super().__init__(msg)


class RemoteError(ModelkeepError):
    """The remote refused or failed a request; nothing half-published is left visible."""

    def __init__(self, url: str, problem: str, hint: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"remote {url}: {problem}; {hint}")


class RemoteMissing(RemoteError, FileNotFoundError):
    """The bucket, container or folder a remote URL names does not exist."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            url, problem, "create it (modelkeep never creates buckets) or fix the remote URL"
        )


class RemoteAccessDenied(RemoteError, PermissionError):
    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            url,
            f"access denied ({problem})",
            "check the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE, or the remote's "
            "profile option) and that they may read and write this location",
        )


class RemoteUnavailable(RemoteError, ConnectionError):
    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            url,
            f"cannot be reached ({problem})",
            "check the network and the endpoint; run the command again to resume "
            "(what was published stays, nothing partial is visible)",
        )


class CorruptRemoteObject(ObjectError):
    """Bytes fetched from a remote do not match their id; none of them entered the store."""

    def __init__(self, object_id: str, url: str, where: str) -> None:
        self.url = url
        self.where = where
        super().__init__(
            object_id,
            f"is damaged on remote {url} ({where}); nothing was stored locally. Push it "
            "again from a machine that has it",
        )


class CorruptRemoteIndex(RemoteError):
    def __init__(self, url: str, pack: str, reason: str) -> None:
        self.pack = pack
        super().__init__(
            url,
            f"pack index {pack}.idx is damaged ({reason})",
            f"delete {pack}.idx and {pack}.pack from the remote; `modelkeep push` then "
            "uploads their objects again from a machine that has them",
        )


class NotPushed(ModelkeepError, LookupError):
    """A version's objects are not here, and nobody pushed them anywhere."""

    def __init__(
        self, ref: str, host: str | None, user: str, remote: str | None, store: str | None = None
    ) -> None:
        self.ref = ref
        self.host = host
        self.user = user
        self.remote = remote
        self.store = store
        where = f"on host {host}" if host else "on another machine"
        if store:
            where = f"in store {store[:12]} {where}"
        looked = f"nor on remote {remote}" if remote else "and no default remote is configured"
        super().__init__(
            f"{ref} was added by {user} {where}, not pushed: its content is not in this "
            f"store {looked}; run `modelkeep push {ref}` there"
        )


class PushedElsewhere(ModelkeepError, LookupError):
    """A version's objects are on a remote this repository does not use by default."""

    def __init__(self, ref: str, urls: Sequence[str]) -> None:
        self.ref = ref
        self.urls = list(urls)
        super().__init__(
            f"{ref} is not in this store; it was pushed to {', '.join(urls)}: add that "
            f"remote with `modelkeep remote add NAME {urls[0]} --default`, then try again"
        )


# -- loading trusts types, not names -----------------------------------------------------------


class ModelSpecInvalid(ModelkeepError, ValueError):
    """A version's `model` record does not have the shape log_model writes.

    The record comes from the database, which an edited row or `add --meta` may have
    written: it is checked field by field before anything is loaded or imported.
    """

    def __init__(self, ref: str, field: str, why: str) -> None:
        self.ref = ref
        self.field = field
        self.why = why
        super().__init__(
            f"the model record of {ref} is malformed: {field} {why}; it was not written "
            "by log_model (an edited metadata row?); log the model again"
        )


class ModelLoadFailed(ModelkeepError):
    """The format's library could not rebuild the object from the stored files."""

    def __init__(self, ref: str, format: str, why: str) -> None:
        self.ref = ref
        self.format = format
        self.why = why
        super().__init__(
            f"cannot load {ref} as a {format} model: {why}; check the stored files with "
            f"`modelkeep show {ref}` and `modelkeep fsck`, or log the model again"
        )


# -- secrets, bad configuration files ----------------------------------------------------------


class SecretRefused(ModelkeepError, ValueError):
    """A credential given where it would be stored or printed (a URL, a remote option)."""

    def __init__(self, what: str, where: str) -> None:
        self.what = what  # already masked: the secret itself is never kept here
        self.where = where
        super().__init__(
            f"{what} would store a credential in the repository, where anyone who can read "
            f"it could use it; {where}"
        )


class BadConfigFile(InvalidArgument):
    """A configuration file (config.toml, remotes.toml) that cannot be read or has a wrong
    type; line is known when the TOML parser gave it."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {reason}; fix or remove it")


class CorruptEvent(ModelkeepError, ValueError):
    """An event of the registry log that does not say what it changed (a tampered row)."""

    def __init__(self, event_id: int, action: str, target: str, reason: str) -> None:
        self.event_id = event_id
        self.action = action
        self.target = target
        self.reason = reason
        super().__init__(
            f"event {event_id} ({action} {target!r}) cannot be replayed: {reason}; "
            "run `modelkeep audit --verify` to see what else was changed"
        )


# -- paths from records are checked like paths from users --------------------------------------


class UnsafeRecord(ModelkeepError, ValueError):
    """A metadata row holds a value no `add` writes: the database was edited or damaged."""

    def __init__(self, ref: str, field: str, value: object, reason: str) -> None:
        self.ref = ref
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(
            f"{ref} has an unsafe {field} {value!r} in the metadata database ({reason}); "
            "nothing was written: the row was edited or damaged, restore the database from "
            "a backup or correct the row"
        )


class ControlPath(InvalidArgument):
    """A path given to `add` is modelkeep's or Git's own folder, or inside one."""

    def __init__(self, path: str, folder: str) -> None:
        self.path = path
        self.folder = folder
        super().__init__(
            f"{path!r} is or leads into {folder}, which holds modelkeep's or Git's own data; "
            "add your files or folders instead"
        )


class CheckoutCopyWarning(UserWarning):
    """A shared copy under `.modelkeep/checkouts/` was changed and is being restored afresh."""


# -- objects bound to their ids, bounded lengths -----------------------------------------------


class TooLarge(ModelkeepError, ValueError):
    """Something to store exceeds a documented maximum of the store's format."""

    def __init__(self, what: str, amount: str, limit: str) -> None:
        self.what = what
        self.amount = amount
        self.limit = limit
        super().__init__(
            f"cannot store a {what} of {amount}: the store's limit is {limit}; "
            "split it into smaller files or folders"
        )


# -- a store knows its database; robust remotes ------------------------------------------------


class ModelkeepWarning(UserWarning):
    """Something was skipped or kept on purpose; the command went on without it."""


class RemoteSkipped(ModelkeepWarning):
    """A remote's pack or index is malformed: its objects are treated as not on the remote."""


class PackKept(ModelkeepWarning):
    """cache prune kept a local pack whose chunks the remote could not prove it holds."""


class IndexRebuilt(ModelkeepWarning):
    """A damaged local index cache was set aside and is rebuilt from the pack indexes."""


class WrongDatabase(ModelkeepError):
    """The metadata database is not the one this store's objects were added with."""

    def __init__(self, store: str, belongs: str, opened: str, step: str) -> None:
        self.store = store
        self.belongs = belongs
        self.opened = opened
        super().__init__(
            f"store {store} {belongs}, but this command opened {opened}; refusing so that "
            f"nothing is lost: {step}"
        )


class BadStoreBinding(ModelkeepError, ValueError):
    """The file naming a store's database is unreadable: never guess, a guess may wipe."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(
            f"cannot read {path} ({reason}): it names the metadata database this store "
            "belongs to; restore it from a backup, or delete it to let modelkeep check the "
            "database against the store's content again"
        )


class IndexUnreadable(ModelkeepError):
    """The store's local index cannot be opened for a reason rebuilding would not fix."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"cannot open the store index {path}: {reason}; check its permissions and free "
            "space (it is a cache: moving it away makes modelkeep rebuild it from the packs)"
        )


# -- migrate: move a store between metadata databases ------------------------------------------


class BadMigrateTarget(InvalidArgument):
    """`migrate --to` names no database modelkeep can move to (its password never shown)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot migrate to {url!r}: {reason}; write --to postgresql://HOST/DB, "
            "--to sqlite (the default file) or --to sqlite:///PATH"
        )


class TargetNotEmpty(ModelkeepError):
    """migrate copies into an empty database only: it never merges two histories."""

    def __init__(self, database: str, holds: str) -> None:
        self.database = database
        self.holds = holds
        super().__init__(
            f"target database {database} is not empty ({holds}); migrate copies into an "
            "empty database only: create a new one, or choose another"
        )


class MigrateRefused(ModelkeepError):
    """migrate cannot start now (a live run, an overriding variable, the same database)."""

    def __init__(self, reason: str, step: str) -> None:
        self.reason = reason
        self.step = step
        super().__init__(f"not migrating: {reason}; {step}")


class MigrateCheckFailed(ModelkeepError):
    """The copy does not match the source: nothing was switched, the source stays in use."""

    def __init__(self, database: str, detail: str) -> None:
        self.database = database
        self.detail = detail
        super().__init__(
            f"the copy in {database} does not match this store's records ({detail}); nothing "
            "was switched and the old database stays in use: report this with the output of "
            "`modelkeep audit --verify`"
        )


# -- version records on remotes, and conflicts between stores ----------------------------------


class MalformedRemoteRecord(RemoteError):
    """A record file on a remote that cannot be read or is not what its format says."""

    def __init__(self, url: str, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            url,
            f"record {path} is unreadable or malformed ({reason}); nothing was stored locally",
            "delete it from the remote and push again from the store that made it",
        )


class VersionConflict(ModelkeepError):
    """Two stores made the same NAME:vN with different content; neither is merged."""

    def __init__(self, ref: str, remote: str, theirs: str, ours: str, step: str) -> None:
        self.ref = ref
        self.remote = remote
        self.theirs = theirs
        self.ours = ours
        super().__init__(
            f"{ref} conflicts: remote {remote} has {ref} = {theirs}, this store has "
            f"{ref} = {ours}; {step}"
        )


# -- the server: accounts, tokens, roles, requests ---------------------------------------------


class Unauthenticated(ModelkeepError, PermissionError):
    """A request without a valid token (or one the server refused): HTTP 401."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"not signed in: {reason}; run `modelkeep login URL` or set MODELKEEP_TOKEN"
        )


class Forbidden(ModelkeepError, PermissionError):
    """An authenticated account without the role an operation needs: HTTP 403."""

    def __init__(self, user: str, role: str, what: str, model: str | None) -> None:
        self.user = user
        self.role = role
        self.model = model
        where = f" on {model!r}" if model else ""
        super().__init__(
            f"{user!r} may not {what}: it needs the {role} role{where}; ask an admin for "
            f"`modelkeep role grant {user} {role}" + (f" --model {model}`" if model else "`")
        )


class AccountExists(ModelkeepError, FileExistsError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"user {name!r} already exists")


class AccountNotFound(ModelkeepError, LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no user {name!r}; see `modelkeep user list`")


class TokenNotFound(ModelkeepError, LookupError):
    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        super().__init__(f"no token {token_id!r}; see `modelkeep token list`")


class MissingObjects(ModelkeepError):
    """A version was committed before every object it needs reached the server: HTTP 409."""

    def __init__(self, digest: str, missing: Sequence[str]) -> None:
        self.digest = digest
        self.missing = tuple(missing)
        super().__init__(
            f"the server lacks {len(self.missing)} object(s) of {digest} (first: "
            f"{self.missing[0] if self.missing else '-'}); upload them, then commit again"
        )


class ServerError(ModelkeepError):
    """A failure the server reported in a form this client does not know, or no answer."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        super().__init__(f"server {url}: {message}")


class InsecureServer(ModelkeepError, ValueError):
    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(
            f"refusing to send a token over plain HTTP to {url}: use https://, or pass "
            "--insecure (MODELKEEP_INSECURE=1) if the network is trusted"
        )


class RequestTooLarge(ModelkeepError, ValueError):
    """A request body past the server's limit: HTTP 413, and nothing of it is read further."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} of {size} bytes is over the server's limit of {limit} bytes; "
            "send less (uploads go in packs of at most the limit)"
        )


# -- webhooks ----------------------------------------------------------------------------------


class InvalidWebhookUrl(ModelkeepError, ValueError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url  # as shown: a query string masked
        self.reason = reason
        super().__init__(f"invalid webhook URL {url!r}: {reason}")


class UnknownEventKind(ModelkeepError, ValueError):
    def __init__(self, kind: str, kinds: Sequence[str]) -> None:
        self.kind = kind
        self.kinds = list(kinds)
        what = f"unknown event kind {kind!r}" if kind else "no event kinds given"
        super().__init__(f"{what}; use one or more of {', '.join(kinds)} (or * for every kind)")


class WebhookNotFound(ModelkeepError, LookupError):
    def __init__(self, webhook_id: int, existing: Sequence[int] = ()) -> None:
        self.webhook_id = webhook_id
        self.existing = [str(i) for i in existing]
        there = f"webhooks: {', '.join(self.existing)}" if existing else "there are none"
        super().__init__(f"no webhook {webhook_id} ({there}); see `modelkeep webhook list`")


# -- nested runs, sweeps and run attachments ---------------------------------------------------


class AttachmentNotFound(ModelkeepError, LookupError):
    def __init__(self, run_id: str, name: str, existing: Sequence[str] = ()) -> None:
        self.run_id = run_id
        self.name = name
        self.existing = list(existing)
        there = f"it has: {', '.join(self.existing)}" if existing else "it has none"
        super().__init__(
            f"run {run_id[:8]} has no attachment {name!r} ({there}); "
            f"see `modelkeep runs show {run_id[:8]}`"
        )


class AttachmentExists(ModelkeepError):
    """An attachment name of a run already holds other content: attachments never change."""

    def __init__(self, run_id: str, name: str) -> None:
        self.run_id = run_id
        self.name = name
        super().__init__(
            f"run {run_id[:8]} already has an attachment {name!r} with other content; "
            "attach it under another name (--name)"
        )


# -- reproduce ---------------------------------------------------------------------------------


class NotReproducible(ModelkeepError):
    """A run whose records cannot make it run again (no code, no script, still running…)."""

    def __init__(self, run_id: str, reason: str) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"cannot reproduce run {run_id[:8]}: {reason}")


class EnvironmentDrift(ModelkeepError):
    """The environment here differs from the one the run recorded."""

    def __init__(self, run_id: str, changes: Sequence[str]) -> None:
        self.run_id = run_id
        self.changes = list(changes)
        shown = "; ".join(self.changes[:5])
        more = f" and {len(self.changes) - 5} more" if len(self.changes) > 5 else ""
        super().__init__(
            f"the environment differs from the one run {run_id[:8]} recorded: {shown}{more}; "
            "install what it had, or pass --allow-env-drift to run anyway"
        )


# -- run housekeeping: tags, notes, rename, delete ----------------------------------------------


class InvalidTag(ModelkeepError, ValueError):
    """A run tag whose key or value cannot be stored."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"tag {key!r} cannot be set: {reason}")


class InvalidRunName(ModelkeepError, ValueError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(
            f"invalid run name {name!r}: {reason}; a run name is 1-255 characters of printable text"
        )


class RunStillRunning(ModelkeepError):
    """A running run cannot be deleted: its owner is still writing to it."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id[:8]} is still running; end it (or wait until `modelkeep runs` "
            "shows it killed) before deleting it"
        )


class RunNotDeleted(ModelkeepError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id[:8]} is not deleted; there is nothing to restore")


class RunDeleted(ModelkeepError):
    """A deleted run was asked for where deleted runs are hidden."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id[:8]} is deleted; pass --deleted to include it, or "
            f"`modelkeep runs restore {run_id[:8]}`"
        )


# -- predicting safely: input examples, schema enforcement, unchanged retrains -----------------


class InputExampleInvalid(ModelkeepError, ValueError):
    """A stored input_example.json is not the shape log_model writes (an edited or crafted
    file): refused before anything is built from it."""

    def __init__(self, ref: str, file: str, why: str) -> None:
        self.ref = ref
        self.file = file
        self.why = why
        super().__init__(
            f"the input example of {ref} ({file}) is not what log_model writes: {why}; "
            "log the model again with input_example="
        )


class InputSchemaError(ModelkeepError, ValueError):
    """The input given to a loaded model's predict does not match the model's signature."""

    bypass = "or call .native.predict to skip the check"


class MissingInputColumn(InputSchemaError):
    def __init__(self, ref: str, names: Sequence[str], what: str = "column") -> None:
        self.ref = ref
        self.names = tuple(names)
        listed = ", ".join(repr(n) for n in names)
        super().__init__(
            f"the input to {ref} has no {what} {listed}, which its signature needs; "
            f"add it, {self.bypass}"
        )


class InputTypeMismatch(InputSchemaError):
    def __init__(self, ref: str, column: str, expected: str, given: str) -> None:
        self.ref = ref
        self.column = column
        self.expected = expected
        self.given = given
        where = "the input" if column == "the input" else f"{column} of the input"
        super().__init__(
            f"{where} to {ref} is {given}, but its signature wants {expected}, "
            f"which {given} cannot safely become; convert it, {self.bypass}"
        )


class InputShapeMismatch(InputSchemaError):
    def __init__(self, ref: str, expected: str, given: str, what: str = "the input") -> None:
        self.ref = ref
        self.expected = expected
        self.given = given
        super().__init__(
            f"{what} to {ref} has shape {given}, but its signature wants {expected}; "
            f"reshape it, {self.bypass}"
        )


class UncheckableInput(InputSchemaError):
    def __init__(self, ref: str, given: str, wanted: str) -> None:
        self.ref = ref
        self.given = given
        super().__init__(
            f"cannot check a {given} against the signature of {ref}; pass {wanted}, {self.bypass}"
        )


class ExtraInputColumns(ModelkeepWarning):
    """The input to predict had columns the signature does not name: they were dropped."""


class ModelUnchanged(ModelkeepWarning):
    """log_model made no new version: the model's stored content equals a version's."""


# -- evaluations: metrics measured on a version after it was made --------------------------------


class EvaluationInvalid(ModelkeepError, ValueError):
    """A metric of an evaluation that cannot be recorded: its name or its value."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"evaluation metric {key!r}: {reason}")


class NothingToEvaluate(ModelkeepError, ValueError):
    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(
            f"no metrics given for {ref}; record at least one, e.g. "
            f"`modelkeep eval {ref} --metric auc=0.93`"
        )


class BadMetricOption(ModelkeepError, ValueError):
    """A `--metric KEY=NUMBER` option of `modelkeep eval` that does not read as one."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(
            f"--metric {text!r}: {reason}; write KEY=NUMBER, e.g. --metric holdout_auc=0.93"
        )


class DatasetNotFound(ModelkeepError, LookupError):
    """The --dataset of an evaluation names no version."""

    def __init__(self, ref: str, reason: str) -> None:
        self.ref = ref
        self.reason = reason
        super().__init__(f"the evaluation's dataset {ref!r} is not a version here: {reason}")


# -- the MLflow tracking API of `modelkeep serve`: experiments -----------------------------------


class ExperimentNotFound(ModelkeepError, LookupError):
    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(
            f"no experiment {ref}; list them with mlflow.search_experiments() "
            "or create it with mlflow.set_experiment(NAME)"
        )


class ExperimentExists(ModelkeepError, FileExistsError):
    def __init__(self, name: str, stage: str) -> None:
        self.name = name
        self.stage = stage
        hint = "; restore it or choose another name" if stage == "deleted" else ""
        super().__init__(f"an experiment named {name!r} exists already ({stage}){hint}")


class InvalidExperiment(ModelkeepError, ValueError):
    """An experiment name, tag or change that cannot be stored."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")


# -- the MLflow artifact proxy and logged models of `modelkeep serve` -----------------------------


class ArtifactPathConflict(ModelkeepError, FileExistsError):
    """An upload whose path is a folder of files already there, or lies under a file."""

    def __init__(self, path: str, existing: str) -> None:
        self.path = path
        self.existing = existing
        super().__init__(
            f"artifact path {path!r} clashes with {existing!r}: a path is a file or a folder, "
            "never both; choose another path"
        )


class ArtifactFileNotFound(ModelkeepError, LookupError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"no artifact at {path!r}; list a folder with mlflow.artifacts.list_artifacts"
        )


class ArtifactPathRefused(ModelkeepError, ValueError):
    """An upload outside any run's or logged model's artifact folder, or into a read-only one."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"artifact path {path!r}: {reason}")


class UploadNotFound(ModelkeepError, LookupError):
    """A multipart upload id the server does not know (completed, aborted or expired)."""

    def __init__(self) -> None:
        super().__init__(
            "no such multipart upload (it was completed, aborted or expired); upload the file again"
        )


class LoggedModelNotFound(ModelkeepError, LookupError):
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__(
            f"no logged model {model_id!r}; list them with mlflow.search_logged_models()"
        )


# -- importing an MLflow store (`modelkeep import mlflow`) ---------------------------------------


class MlflowMissing(ModelkeepError, ImportError):
    def __init__(self, extra: str) -> None:
        self.extra = extra
        super().__init__(f"reading an MLflow store needs the mlflow client; pip install '{extra}'")


class MlflowSourceNotFound(ModelkeepError, FileNotFoundError):
    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(
            f"no MLflow store at {source!r}; give the mlruns folder, sqlite:///PATH of the "
            "database file, or the tracking server's http(s):// URL"
        )


class NotAnMlflowStore(ModelkeepError, ValueError):
    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(
            f"{source!r} is not an MLflow store MLflow can read: {reason}; give the tracking "
            "URI its runs were logged to"
        )


class ImportIncomplete(ModelkeepError):
    """Some of an MLflow store could not be brought; the rest was (the CLI's exit 1)."""

    def __init__(self, skipped: int) -> None:
        self.skipped = skipped
        super().__init__(
            f"{skipped} item(s) of the MLflow store were not brought (listed above, with why); "
            "fix what they need and run the import again: it brings only what is missing"
        )


# -- the MLflow model registry API of `modelkeep serve` ------------------------------------------


class NotRegistered(ModelkeepError, LookupError):
    """An artifact exists under the name, but it is not a registered model."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"{name!r} is not a registered model; create it with "
            f"MlflowClient().create_registered_model({name!r}) or `modelkeep register REF --as "
            f"{name}`"
        )


class RegisteredModelExists(ModelkeepError, FileExistsError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a registered model named {name!r} exists already; choose another name")


class TagNotFound(ModelkeepError, LookupError):
    def __init__(self, what: str, key: str) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} has no tag {key!r}")


class BadModelSource(ModelkeepError, ValueError):
    """The source of an MLflow model version that names no files the server holds."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(
            f"model version source {source[:200]!r}: {reason}; give the artifact URI the "
            "client logged the model to (mlflow-artifacts:/PATH, runs:/RUN_ID/PATH or "
            "models:/m-ID)"
        )


class VersionNotRegistered(ModelkeepError, LookupError):
    """A version of a registered model that is not itself registered: MLflow does not see it."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(
            f"{ref} is not a registered version; register it with `modelkeep register {ref} "
            f"--as {ref.rsplit(':', 1)[0]}`"
        )


# -- web UI (server/ui) --------------------------------------------------------------------


class CsrfRefused(ModelkeepError, PermissionError):
    """A state-changing request from a browser session without its session's CSRF token:
    HTTP 403 (bearer-token clients never send the cookie, so never meet this)."""

    def __init__(self) -> None:
        super().__init__(
            "the request came from a browser session without its CSRF token (X-CSRF-Token); "
            "reload the page and try again"
        )


class LinkUsed(ModelkeepError, PermissionError):
    """`modelkeep ui`'s one-time sign-in link, used a second time, late, or guessed."""

    def __init__(self) -> None:
        super().__init__(
            "this sign-in link is used, expired or wrong; run `modelkeep ui` again for a new one"
        )
