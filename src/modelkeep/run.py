"""Runs from Python and from the command line: what made each version, recorded unasked.

A run records its code (Git commit, branch, remote and, when the tree is dirty, the
uncommitted changes as a `code` version; outside Git a snapshot of the source files), its
command, its environment (stored once per distinct environment), who ran it and when,
its parameters (written once), every metric value, the versions it used and the ones it
produced. The process that starts a run owns it: it ends it, and it beats a heartbeat so
that a run whose process died is later shown as killed, never "running" forever.
"""

from __future__ import annotations

import atexit
import contextlib
import numbers
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from modelkeep import config, lockfile, meta
from modelkeep.capture import code as code_capture
from modelkeep.capture import git
from modelkeep.capture.environment import canonical_json, environment, environment_id
from modelkeep.capture.output import Tail, Tee
from modelkeep.capture.process import proc_start
from modelkeep.client import open as open_repo
from modelkeep.errors import CommandFailed, InvalidArgument, RunNotActive
from modelkeep.meta import Version
from modelkeep.meta.run_reads import FAILED, FINISHED, KILLED, RUNNING
from modelkeep.refs import validate_name
from modelkeep.repo import Repo

HEARTBEAT = 60.0  # seconds between an owner's signs of life

_lock = threading.Lock()  # guards the active run (kept in modelkeep.config)
# The next default step of each metric key, per run id: shared by every Run object of one
# run in this process, so joining again (after a `with` block) does not restart at 0.
_steps: dict[str, dict[str, int]] = {}
_live: set[subprocess.Popen[bytes]] = set()  # the commands `modelkeep run` is running
_live_lock = threading.RLock()  # re-entrant: the signal handler takes it on the main thread


class Run:
    """One run. Use it as a context manager; the owner's exit ends it."""

    def __init__(
        self,
        repo: Repo,
        run_id: str,
        name: str,
        *,
        owner: bool,
        own_repo: bool,
        parent_id: str | None = None,
    ):
        self.repo = repo
        self.id = run_id
        self.name = name
        self.parent_id = parent_id  # the run this one was started inside, if any
        self.owner = owner  # ends the run; a process that joined a run only logs to it
        self._own_repo = own_repo
        self._steps = _steps.setdefault(run_id, {})
        self._ended = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        if owner:
            self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="mk-beat")
            self._beat.start()

    def __repr__(self) -> str:
        return f"<Run {self.id[:8]} {self.name!r}>"

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self.repo.heartbeat(self.id)
            except Exception:  # a missed beat only makes the run look stale sooner
                continue

    # -- logging ----------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.repo.log_params(self.id, _encode_params(params))

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Every value is kept; without step, each key counts 0, 1, 2 … in this process."""
        items = []
        for key, value in metrics.items():
            _check_key(key, "metric")
            number = _metric_value(key, value)
            if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
                raise InvalidArgument(f"metric {key!r}: step must be an integer, not {step!r}")
            items.append((key, number, step if step is not None else self._steps.get(key, 0)))
        self.repo.log_metrics(self.id, items)
        for key, _number, at in items:  # only once written: a refused call uses no step
            self._steps[key] = at + 1

    def set_tag(self, key: str, value: str | float | bool) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, str | float | bool]) -> None:
        """Set tags on this run (text; a number or boolean is written as its text).
        Unlike params, a tag can be changed later: `modelkeep runs tag RUN KEY=VALUE`."""
        self.repo.tag_run(
            self.id, {k: v if isinstance(v, str) else _tag_text(k, v) for k, v in tags.items()}
        )

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        name: str,
        *,
        type: str | None = None,
        message: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> Version:
        """Add path as the next version of name, produced by this run."""
        return self.repo.add(
            path, name, type=type, message=message, metadata=metadata, run_id=self.id
        ).version

    def attach(
        self, source: str | os.PathLike[str] | bytes, name: str | None = None
    ) -> meta.Attachment:
        """Keep a file (or bytes) with this run: a plot, a report, a log. Stored and
        deduplicated like any content, but no version, lock entry or `.gitignore` line is
        made; `modelkeep runs get RUN NAME` restores it. name defaults to the file's name."""
        return self.repo.attach(self.id, source, name)

    def evaluate(
        self,
        ref: str | Version,
        metrics: Mapping[str, float],
        *,
        dataset: str | Version | None = None,
    ) -> list[meta.Evaluation]:
        """Record metrics measured on a version (on dataset) as this run's evaluations; the
        dataset becomes an input of this run. Gates can name them (see Repo.evaluate)."""
        return self.repo.evaluate(ref, metrics, dataset=dataset, run_id=self.id)

    def log_model(self, obj: Any, name: str, **options: Any) -> Version:
        """Save a trained object as the next version of model name, produced by this run.

        Takes Repo.log_model's options (format, input_example, init_kwargs, message, …).
        """
        return self.repo.log_model(obj, name, run_id=self.id, **options)

    def use(self, ref: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Record ref as an input of this run and return a local path holding it.

        The path is dest if given; else the tracked path of the Git work tree that holds
        exactly this version; else a read-only copy under `.modelkeep/checkouts`, restored
        once per content id and verified before each reuse (see modelkeep.checkouts).
        """
        version = self.repo.show(ref)
        local = self._local_copy(version, dest)
        self.repo.add_input(self.id, version)
        return local

    def _local_copy(self, version: Version, dest: str | os.PathLike[str] | None) -> Path:
        if dest is not None:
            target = Path(dest).absolute()
            if os.path.lexists(target) and self.repo.digest_of(target)[0] == version.digest:
                return target
            return self.repo.get(version.ref, target)
        top = git.work_tree(Path.cwd())
        if top is not None:
            for entry in lockfile.read(top).values():
                tracked = top / entry.path
                if (
                    entry.digest == version.digest
                    and os.path.lexists(tracked)
                    and self.repo.digest_of(tracked)[0] == version.digest
                ):
                    return tracked
        return self.repo.local_copy(version.ref, run_id=self.id)

    # -- ending -----------------------------------------------------------------

    def info(self) -> meta.RunRecord:
        """The run as recorded now: status, params, latest metrics, inputs and outputs."""
        return self.repo.run(self.id)

    def end(self, status: str = FINISHED, error: str = "", exit_code: int | None = None) -> None:
        """End an owned run (finished, failed or killed); a joined run is left to its owner."""
        if self._ended:
            return
        for inner in _active_inside(self):  # nested runs still open end with their parent
            inner.end(status, error)
        self._ended = True
        self._stop.set()
        try:
            if self.owner:
                self.repo.end_run(self.id, status, exit_code=exit_code, error=error)
            elif error:
                self.repo.set_run_error(self.id, error)
        finally:
            with _lock:
                now = config.active()
                if now is not None and now.handle is self:
                    config.set_active_run(now.parent)  # the parent run is active again
            if self._own_repo:
                self.repo.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.end(FINISHED)
        elif isinstance(exc, KeyboardInterrupt):
            self.end(KILLED, "interrupted (KeyboardInterrupt)")
        else:
            assert kind is not None
            self.end(FAILED, f"{kind.__name__}: {exc}".rstrip(": "))


# -- starting ---------------------------------------------------------------------


def start_run(
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    repo: Repo | str | os.PathLike[str] | None = None,
    capture_code: bool = True,
    code_globs: Sequence[str] | None = None,
    nested: bool | None = None,
) -> Run:
    """Start a run; inside a run, start a nested (child) run of it, or join it.

    Inside an active run (one this process started, or the one `modelkeep run` started
    it in), a start_run with a name or nested=True starts a child run: its own name,
    params and metrics, linked to its parent, and active until it ends. Without a name
    (or with nested=False) it joins the run `modelkeep run` started, logging params to
    it; inside a run of this process, that is refused, as MLflow refuses a second
    start_run without nested=True. repo is a Repo or a path; by default the repository
    is found from the working directory upward.
    """
    outer = current_run()
    nest = nested if nested is not None else name is not None
    if outer is not None and not nest:
        if outer.owner:
            raise InvalidArgument(
                f"run {outer.id[:8]} ({outer.name}) is still active in this process; "
                "end it (leave its `with` block) before starting another, or start a "
                "nested run inside it with a name or nested=True"
            )
        if params:
            outer.log_params(params)
        return outer
    if outer is not None:
        return _start_child(outer, name, params, capture_code=capture_code)
    the_repo, own = _repo(repo)
    try:
        encoded = _encode_params(params or {})
        command = code_capture.command()
        run_name = (name or _default_name(command.script, command.argv))[:255]
        run_id = _create(
            the_repo,
            run_name,
            encoded,
            command.to_json(),
            capture_code=capture_code,
            code_globs=code_globs,
        )
    except BaseException:
        if own:
            the_repo.close()
        raise
    run = Run(the_repo, run_id, run_name, owner=True, own_repo=own)
    with _lock:
        config.set_active_run(config.ActiveRun(run_id, the_repo.root, run))
    return run


def _start_child(
    parent: Run, name: str | None, params: Mapping[str, Any] | None, *, capture_code: bool
) -> Run:
    """A nested run of parent, in parent's repository. Its code is the parent's (one
    process, one work tree), so it records the parent's code state rather than
    snapshotting the same files again; capture_code=False records none."""
    encoded = _encode_params(params or {})
    command = code_capture.command()
    run_name = (name or f"{parent.name}/child")[:255]
    code = _inherited_code(parent) if capture_code else {}
    # entry "nested": started inside its parent's process, which `reproduce` runs again.
    doc = {**command.to_json(), "entry": "nested"}
    new = _new_run(parent.repo, run_name, doc, code, parent_id=parent.id)
    parent.repo.create_run(new, encoded)
    run = Run(parent.repo, new.id, run_name, owner=True, own_repo=False, parent_id=parent.id)
    with _lock:
        config.set_active_run(
            config.ActiveRun(new.id, parent.repo.root, run, parent=config.active())
        )
    return run


def _inherited_code(parent: Run) -> dict[str, Any]:
    try:
        code = parent.repo.run(parent.id).code
    except Exception:  # the code record is a courtesy; the child starts without it
        return {}
    return dict(code)


def _active_inside(run: Run) -> list[Run]:
    """The runs active in this process that were started inside run, innermost first."""
    with _lock:
        chain: list[Run] = []
        now = config.active()
        while now is not None and now.handle is not run:
            chain.append(cast(Run, now.handle))
            now = now.parent
        return chain if now is not None else []


def current_run() -> Run | None:
    """The run active in this process, or the one `modelkeep run` started it in; else None."""
    with _lock:
        now = config.active()
        if now is not None:
            return cast(Run, now.handle)
    found = config.run_from_env()
    if found is None:
        return None
    run_id, root = found
    repo = open_repo(root or ".")
    try:
        record = repo.run(run_id)
        if record.status != RUNNING:
            raise RunNotActive(record.id, record.status)
    except BaseException:
        repo.close()
        raise
    run = Run(repo, record.id, record.name, owner=False, own_repo=True)
    with _lock:
        config.set_active_run(config.ActiveRun(record.id, repo.root, run))
    return run


@atexit.register
def _end_at_exit() -> None:
    """A run left open when the process exits ends as finished, as MLflow does.

    Unless the process is exiting because of an uncaught exception (the interpreter keeps
    it in sys.last_value): then the run failed, with that error, or was interrupted.
    """
    now = config.active()
    if now is None:
        return
    while now is not None:  # innermost first: a nested run, then the run it is inside
        run = cast(Run, now.handle)
        exc = getattr(sys, "last_value", None)
        with contextlib.suppress(Exception):
            if exc is None:
                run.end()
            else:
                run.__exit__(type(exc), exc, None)
        after = config.active()
        if after is now:  # could not end it: do not loop forever
            config.set_active_run(now.parent)
            after = now.parent
        now = after


def _repo(repo: Repo | str | os.PathLike[str] | None) -> tuple[Repo, bool]:
    if isinstance(repo, Repo):
        return repo, False
    return open_repo(repo if repo is not None else "."), True


def _default_name(script: str | None, argv: Sequence[str]) -> str:
    base = Path(script).stem if script else (Path(argv[0]).name if argv else "")
    return base or "run"


def _encode_params(params: Mapping[str, Any]) -> dict[str, str]:
    import json

    out = {}
    for key, value in params.items():
        _check_key(key, "param")
        try:
            out[key] = json.dumps(value, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"param {key!r} = {value!r} cannot be stored: {exc}; use numbers, text, "
                "booleans, lists or dicts of them"
            ) from exc
    return out


def _tag_text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Real):
        return str(value)
    raise InvalidArgument(
        f"tag {key!r} = {value!r}: a tag value is text (or a number or boolean, written "
        "as text); log structured values as params"
    )


def _check_key(key: Any, what: str) -> None:
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise InvalidArgument(
            f"{what} key {key!r} must be non-empty text of at most 255 characters"
        )


def _metric_value(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(
            f"metric {key!r} must be a number, not {type(value).__name__} {value!r}; "
            "log text as a param instead"
        )
    try:
        return float(value)
    except OverflowError as exc:  # an int beyond any float, e.g. 10**400
        raise InvalidArgument(
            f"metric {key!r} is too large to store as a float; log it scaled or as a param"
        ) from exc


def _code_name(top: Path) -> str:
    base = re.sub(r"[^a-z0-9._-]+", "-", top.name.lower()).strip("-.") or "project"
    return validate_name(f"code/{base[:100]}")


def _capture_code(
    repo: Repo, globs: Sequence[str], script: str | None, command_cwd: str | None = None
) -> tuple[dict[str, Any], Version | None]:
    """The code state, and a `code` version holding what Git alone cannot restore.

    The code is the Git work tree of the entry-point script, else of the working
    directory, else of the repository.
    """
    # A console-script wrapper inside the environment (`pytest`, an installed `train`) is
    # not the user's code: then the working directory says where the code is.
    installed = script and any(
        Path(script).is_relative_to(p) for p in {sys.prefix, sys.base_prefix}
    )
    places = [Path(script).parent] if script and not installed else []
    here = Path(command_cwd) if command_cwd else Path.cwd()
    top = next((t for t in (git.work_tree(p) for p in [*places, here, repo.root]) if t), None)
    with tempfile.TemporaryDirectory(prefix="modelkeep-code-") as tmp:
        folder = Path(tmp) / "code"
        folder.mkdir()
        if top is not None:
            state = git.state(top)
            doc: dict[str, Any] = {"git": state.to_json()}
            if not state.dirty:
                return doc, None
            count = git.write_patch(top, folder, globs)
            message = f"uncommitted changes on {(state.commit or 'no commit')[:12]}"
        else:
            top = repo.root
            count = code_capture.snapshot(top, folder, globs)
            doc = {"git": None, "root": str(top)}
            message = f"source snapshot of {top}"
        if not count:
            return doc, None
        version = repo.add(folder, _code_name(top), type="code", message=message, track=False)
    key = "patch" if doc["git"] else "snapshot"
    doc[key] = version.version.ref
    return doc, version.version


def _create(
    repo: Repo,
    name: str,
    params: Mapping[str, str],
    command: dict[str, Any],
    *,
    capture_code: bool,
    code_globs: Sequence[str] | None,
) -> str:
    globs = tuple(code_globs) if code_globs is not None else repo.settings.code_globs
    script = command.get("script")
    cwd = command.get("cwd")
    code, code_version = _capture_code(repo, globs, script, cwd) if capture_code else ({}, None)
    new = _new_run(repo, name, command, code)
    repo.create_run(new, params)
    if code_version is not None:
        repo.add_input(new.id, code_version)
    return new.id


def _new_run(
    repo: Repo,
    name: str,
    command: dict[str, Any],
    code: dict[str, Any],
    *,
    parent_id: str | None = None,
) -> meta.NewRun:
    env = environment()
    pid = os.getpid()
    started = proc_start(pid)
    return meta.NewRun(
        id=uuid.uuid4().hex,
        name=name,
        user=repo.user,
        host=socket.gethostname(),
        pid=pid,
        pid_started=started[0] if started else None,
        command=command,
        code=code,
        env_id=environment_id(env),
        env_json=canonical_json(env).decode(),
        parent_id=parent_id,
    )


# -- `modelkeep run` ------------------------------------------------------------------


CAPTURE_LIMIT = 10 * 1024 * 1024  # bytes of each stream `modelkeep run` attaches (the tail)
OUTPUTS = ("stdout.txt", "stderr.txt")  # the attachment names of the captured streams


def run_command(
    repo: Repo,
    argv: Sequence[str],
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    capture_limit: int = CAPTURE_LIMIT,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[meta.RunRecord, int]:
    """Run argv as a run; returns the finished run and the command's exit status.

    The command sees MODELKEEP_RUN_ID (and MODELKEEP_REPO), so `mk.current_run()` and
    `mk.start_run()` inside it join this run (a named start_run nests inside it). Exit 0
    finishes the run; another status fails it; a signal marks it killed. Its standard
    output and error pass through live and their last capture_limit bytes each are
    attached to the run (0: not captured). It runs in cwd (default: here), with env added
    to its environment.
    """
    run = open_command_run(
        repo, argv, name=name, params=params, capture_limit=capture_limit, cwd=cwd
    )
    code = execute(run, argv, env=env, capture_limit=capture_limit, cwd=cwd)
    return repo.run(run.id), code


def open_command_run(
    repo: Repo,
    argv: Sequence[str],
    *,
    name: str | None,
    params: Mapping[str, Any] | None,
    capture_limit: int,
    cwd: Path | None = None,
    sweep: Sequence[str] = (),
) -> Run:
    """The run `modelkeep run` opens for argv (its code captured), before argv starts;
    argv runs in cwd (default: here). sweep: the keys, when it is a sweep's parent."""
    if not argv:
        raise InvalidArgument("no command given; write `modelkeep run -- python train.py`")
    check_capture_limit(capture_limit)
    script = _script(argv, cwd)
    command: dict[str, Any] = {"argv": list(argv), "script": script, "cwd": str(cwd or Path.cwd())}
    command |= {"entry": "command", **({"sweep": list(sweep)} if sweep else {})}
    if params:  # as given (`-p`), so `reproduce` gives the same again, and no more
        command["params"] = dict(params)
    run_name = (name or _default_name(script, argv))[:255]
    run_id = _create(
        repo,
        run_name,
        _encode_params(params or {}),
        command,
        capture_code=True,
        code_globs=None,
    )
    return Run(repo, run_id, run_name, owner=True, own_repo=False)


def open_child_run(
    parent: Run,
    name: str,
    params: Mapping[str, Any],
    argv: Sequence[str],
    env: Mapping[str, str],
) -> Run:
    """A run inside parent that this process owns and runs argv in, with env added to its
    environment (a sweep's child)."""
    command = {
        "argv": list(argv),
        "script": _script(argv),
        "cwd": str(Path.cwd()),
        "entry": "command",
        "env": dict(env),
        "params": dict(params),
    }
    code = _inherited_code(parent)
    new = _new_run(parent.repo, name[:255], command, code, parent_id=parent.id)
    parent.repo.create_run(new, _encode_params(params))
    return Run(parent.repo, new.id, new.name, owner=True, own_repo=False, parent_id=parent.id)


def check_capture_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgument(
            f"capture limit must be a size of at least 0 bytes (0: do not capture), not {limit!r}"
        )


def execute(
    run: Run,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    capture_limit: int = CAPTURE_LIMIT,
    forward_signals: bool = True,
    cwd: Path | None = None,
) -> int:
    """Run argv in cwd inside run (which it ends by the exit status); returns the status."""
    repo = run.repo
    where = repo.parts.origin or str(repo.root)  # a server's client: the server's URL
    child_env = {**os.environ, **(env or {}), config.RUN_ID_ENV: run.id, config.REPO_ENV: where}
    pipe = subprocess.PIPE if capture_limit else None
    if capture_limit:  # through a pipe, Python would buffer what the user should see live
        child_env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        child = subprocess.Popen(list(argv), env=child_env, stdout=pipe, stderr=pipe, cwd=cwd)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            reason = "no such command"
        run.end(FAILED, f"cannot start {argv[0]!r}: {reason}")
        raise CommandFailed(run.id, argv[0], reason) from exc
    tees = []
    if capture_limit:
        assert child.stdout is not None and child.stderr is not None
        tees = [
            Tee(child.stdout, _sink(sys.stdout), capture_limit),
            Tee(child.stderr, _sink(sys.stderr), capture_limit),
        ]
    with _live_lock:
        _live.add(child)
    try:
        with forwarding_signals() if forward_signals else contextlib.nullcontext():
            code = child.wait()
    finally:
        with _live_lock:
            _live.discard(child)
    for name, tee in zip(OUTPUTS, tees, strict=False):
        _attach_output(run, name, tee.join())
    if code == 0:
        run.end(FINISHED, exit_code=code)
    elif code < 0:
        run.end(KILLED, f"killed by {signal.Signals(-code).name}", exit_code=code)
    else:
        run.end(FAILED, f"exited with status {code}", exit_code=code)
    return code


def _sink(stream: Any) -> Callable[[bytes], None]:
    """Where a captured stream's bytes go on: our own stream, as bytes where it takes them."""
    binary = getattr(stream, "buffer", None)
    if binary is not None:

        def write(data: bytes) -> None:
            binary.write(data)
            binary.flush()

        return write

    def write_text(data: bytes) -> None:
        stream.write(data.decode(errors="replace"))
        stream.flush()

    return write_text


def _attach_output(run: Run, name: str, tail: Tail) -> None:
    """Attach what a stream printed (nothing if it printed nothing); a failure to attach
    is said, never fatal: the run's outcome matters more than its log."""
    if not tail.total:
        return
    data = tail.value()
    if tail.truncated:
        dropped = tail.total - len(data)
        note = f"[modelkeep: the first {dropped} bytes were dropped; the last {len(data)} follow]\n"
        data = note.encode() + data
    try:
        run.attach(data, name)
    except Exception as exc:
        print(
            f"modelkeep: warning: could not attach {name} to run {run.id[:8]}: {exc}",
            file=sys.stderr,
        )


_INTERPRETERS = frozenset({"sh", "bash", "zsh", "Rscript", "julia", "node", "perl", "ruby"})


def _script(argv: Sequence[str], cwd: Path | None = None) -> str | None:
    """The entry-point script: `python train.py` → train.py; `./train.sh` → itself."""
    first = Path(argv[0]).name
    interpreter = first.startswith("python") or first in _INTERPRETERS
    candidates = argv[1:2] if interpreter else argv[:1]
    base = cwd or Path.cwd()
    for c in candidates:
        if (base / c).is_file():
            return str((base / c).absolute())
    return None


@contextlib.contextmanager
def forwarding_signals() -> Iterator[None]:
    """While inside: SIGTERM and SIGHUP are passed on to every command this process runs
    (a sweep runs several); Ctrl-C reaches them from the terminal, and is ignored here so
    that their runs still end as they exit. Only the main thread can set handlers."""
    previous = _forward_signals()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _forward_signals() -> dict[int, Any]:
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous

    def forward(sig: int, _frame: Any) -> None:
        with _live_lock:
            children = list(_live)
        for child in children:
            with contextlib.suppress(OSError):
                child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, forward)
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    return previous
