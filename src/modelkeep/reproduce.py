"""`modelkeep reproduce REF`: run a past run again from its records, and compare.

The records of a run say everything needed to make it again: the Git commit and the
patch of uncommitted changes (or a snapshot of the source outside Git), the command and
its working folder, the params, the input versions and the environment. `reproduce`
rebuilds that in a fresh temporary work tree — a clone at the commit with the patch
applied, tracked inputs restored from modelkeep.lock and any input version the lock at
that commit did not pin — refuses when the environment here differs (unless told to go
on), runs the command as a new run of the same store, and compares what the two runs
made: every output version by digest (and the files that differ), every metric exactly
or within a relative tolerance, nested runs matched by name.

The process that made a run is what runs again: for a run nested inside a script (a
`start_run(name=…)` in a loop) that is the whole script, and the nested run of the same
name in the new run is compared. A new run that makes different bytes adds them as new
versions, so the difference is kept and can be diffed; equal bytes add nothing.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelkeep import lockfile
from modelkeep import repo as repos
from modelkeep import run as runs
from modelkeep.capture import git
from modelkeep.capture.environment import diff_environments, environment
from modelkeep.config import REPO_DIR
from modelkeep.errors import EnvironmentDrift, InvalidArgument, NotReproducible
from modelkeep.meta import RunRecord
from modelkeep.meta.run_reads import RUNNING, json_number
from modelkeep.repo import Repo
from modelkeep.results import Diff

# Differences in these parts of an environment stop a reproduction; the rest (CPU model,
# kernel release, GPUs) are reported but do not, as they rarely change what a run makes.
_DRIFTING = ("python.", "os.system", "os.machine", "torch.version", "cuda")


@dataclass(frozen=True, slots=True)
class OutputCheck:
    run: str  # the run's name, as a path from the reproduced run down (nested runs)
    artifact: str
    original: str | None  # NAME:vN the original run made (None: only the new run made it)
    rerun: str | None  # NAME:vN the new run made (None: it made none)
    identical: bool
    files: tuple[str, ...] = ()  # the files that differ, as `diff` lists them

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "artifact": self.artifact,
            "original": self.original,
            "rerun": self.rerun,
            "identical": self.identical,
            "files": list(self.files),
        }


@dataclass(frozen=True, slots=True)
class MetricCheck:
    run: str
    key: str
    original: float
    rerun: float | None
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "key": self.key,
            "original": json_number(self.original),
            "rerun": None if self.rerun is None else json_number(self.rerun),
            "ok": self.ok,
        }


@dataclass(frozen=True, slots=True)
class Reproduction:
    run_id: str  # the run reproduced
    rerun_id: str  # the new run that stands for it (a nested one: the one of its name)
    exit_code: int
    drift: tuple[str, ...]  # environment differences (allowed, or only hardware)
    outputs: tuple[OutputCheck, ...]
    metrics: tuple[MetricCheck, ...]
    missing: tuple[str, ...] = ()  # nested runs the new run did not start again
    rtol: float = 0.0
    workdir: str | None = None  # kept with keep=True
    notes: tuple[str, ...] = field(default=())

    @property
    def reproduced(self) -> bool:
        return (
            self.exit_code == 0
            and not self.missing
            and all(o.identical for o in self.outputs)
            and all(m.ok for m in self.metrics)
        )

    @property
    def verdict(self) -> str:
        if self.exit_code != 0:
            return "failed"
        return "reproduced" if self.reproduced else "differs"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "rerun_id": self.rerun_id,
            "verdict": self.verdict,
            "reproduced": self.reproduced,
            "exit_code": self.exit_code,
            "rtol": self.rtol,
            "environment_drift": list(self.drift),
            "outputs": [o.to_json() for o in self.outputs],
            "metrics": [m.to_json() for m in self.metrics],
            "missing_runs": list(self.missing),
            "notes": list(self.notes),
            "workdir": self.workdir,
        }


def reproduce(
    repo: Repo,
    ref: str,
    *,
    allow_env_drift: bool = False,
    rtol: float = 0.0,
    keep: bool = False,
    capture_limit: int = runs.CAPTURE_LIMIT,
) -> Reproduction:
    """Run the run ref names (a run id, or a version: the run that made it) again in a
    fresh work tree and compare; see the module's docstring."""
    if isinstance(rtol, bool) or not isinstance(rtol, int | float) or not 0 <= rtol < 1:
        raise InvalidArgument(
            f"--rtol must be a number from 0 up to (not including) 1, not {rtol!r}"
        )
    if repo.parts.origin is not None:
        raise InvalidArgument(
            f"reproduce runs against a local store, not the server at {repo.parts.origin}; "
            "run it where the project's .modelkeep/ is"
        )
    target = repo.run_or_producer(ref)
    top, path = _process_root(repo, target)
    argv = _argv(top)
    drift = _check_environment(repo, top, allow_env_drift)
    tmp = Path(tempfile.mkdtemp(prefix="modelkeep-reproduce-"))
    try:
        work, orig_top, notes = _work_tree(repo, top, tmp)
        with _store_in(repo, work, orig_top) as here:
            notes += _restore_inputs(here, work, _subtree(repo, top))
            cwd = _mapped(Path(top.command.get("cwd") or orig_top), orig_top, work).resolve()
            if not cwd.is_relative_to(work.resolve()) or not cwd.is_dir():
                raise NotReproducible(
                    top.id,
                    f"its working folder {top.command.get('cwd')!r} is not inside its code "
                    f"({str(orig_top)!r}), so it would not run in the new work tree",
                )
            argv = [str(_mapped(Path(a), orig_top, work)) if os.path.isabs(a) else a for a in argv]
            params = top.command.get("params") if _entry(top) == "command" else None
            env = {str(k): str(v) for k, v in (top.command.get("env") or {}).items()}
            record, code = runs.run_command(
                here,
                argv,
                name=f"reproduce {target.short_id} {top.name}"[:255],
                params=params,
                capture_limit=capture_limit,
                cwd=cwd,
                env=env,
            )
            here.tag_run(record.id, {"reproduces": target.id})  # `--where tags.reproduces=…`
            counterpart = _follow(repo, record, path)
            outputs, metrics, missing = _compare(repo, target, counterpart, rtol)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return Reproduction(
        target.id,
        (counterpart or record).id,
        code,
        drift,
        tuple(outputs),
        tuple(metrics),
        tuple(missing),
        rtol,
        str(tmp) if keep else None,
        tuple(notes),
    )


# -- what to run ------------------------------------------------------------------------------


def _process_root(repo: Repo, run: RunRecord) -> tuple[RunRecord, list[tuple[str, int]]]:
    """The run whose process made run (itself, or the run a nested run was started inside),
    and the path of (name, index among same-named siblings) from it down to run."""
    path: list[tuple[str, int]] = []
    while run.parent_id is not None and run.command.get("entry", "nested") == "nested":
        parent = repo.run(run.parent_id)
        siblings = [repo.run(c) for c in parent.children]
        same = [s.id for s in siblings if s.name == run.name]
        path.insert(0, (run.name, same.index(run.id)))
        run = parent
    if run.command.get("sweep"):
        raise NotReproducible(
            run.id,
            f"it is a sweep over {', '.join(run.command['sweep'])}; reproduce one of its "
            "runs (`modelkeep runs --tree`)",
        )
    if run.status == RUNNING:
        raise NotReproducible(run.id, "it is still running")
    if not run.code:
        raise NotReproducible(
            run.id, "it recorded no code (it was started with capture_code=False)"
        )
    return run, path


def _argv(run: RunRecord) -> list[str]:
    argv = [str(a) for a in run.command.get("argv") or []]
    if not argv:
        raise NotReproducible(run.id, "it recorded no command")
    if _entry(run) == "python":
        script = run.command.get("script")
        installed = script and any(
            Path(script).is_relative_to(p) for p in {sys.prefix, sys.base_prefix}
        )  # a notebook's kernel launcher, a console script: not the user's code
        if not script or installed:
            raise NotReproducible(
                run.id, "it was started from an interactive session, not a script"
            )
        return [sys.executable, *argv]
    return argv


def _entry(run: RunRecord) -> str:
    """How the run's process was started. Records older than `entry` say it by their argv:
    `python train.py` from Python records the script as argv[0]; `modelkeep run` the command."""
    entry = run.command.get("entry")
    if entry:
        return str(entry)
    argv, script = run.command.get("argv") or [""], run.command.get("script")
    first = os.path.join(run.command.get("cwd") or "", str(argv[0]))
    return "python" if script and os.path.abspath(first) == script else "command"


def _check_environment(repo: Repo, run: RunRecord, allow: bool) -> tuple[str, ...]:
    if run.env_id is None:
        changes = ["no environment was recorded"]
        stopping = changes
    else:
        diff = diff_environments(repo.environment(run.id), environment())
        packages = [
            *(f"{n} {v} was not installed" for n, v in diff.packages_removed),
            *(f"{n} {v} is installed, it was not" for n, v in diff.packages_added),
            *(f"{n} {a} is now {b}" for n, a, b in diff.packages_changed),
        ]
        other = [(k, f"{k} {a!r} is now {b!r}") for k, a, b in diff.other]
        changes = packages + [line for _, line in other]
        stopping = packages + [line for k, line in other if k.startswith(_DRIFTING)]
    if stopping and not allow:
        raise EnvironmentDrift(run.id, stopping)
    return tuple(changes)


# -- where to run it --------------------------------------------------------------------------


def _work_tree(repo: Repo, run: RunRecord, tmp: Path) -> tuple[Path, Path, list[str]]:
    """The code of run, rebuilt at tmp/work; returns it, the folder it stood for, notes."""
    work = tmp / "work"
    code = run.code
    notes: list[str] = []
    if code.get("git"):
        state = code["git"]
        recorded = Path(state["root"])
        commit = state.get("commit")
        sources = [t for t in (git.work_tree(repo.root), recorded) if t is not None]
        source = next((s for s in sources if commit is None or git.has_commit(s, commit)), None)
        if source is None:
            raise NotReproducible(
                run.id,
                f"commit {commit[:12]} is not in the Git repository here; `git fetch` it first",
            )
        git.copy_at(source, commit, work)
        if code.get("patch"):
            patch = tmp / "patch"
            repo.get(code["patch"], patch)
            if (patch / "patch.diff").is_file():
                git.apply_patch(work, patch / "patch.diff")
            if (patch / "untracked").is_dir():
                _copy_inside(patch / "untracked", work)
            notes.append(f"applied the uncommitted changes of {code['patch']}")
        return work, recorded, notes
    if code.get("snapshot"):
        repo.get(code["snapshot"], work)
        return work, Path(code.get("root") or repo.root), notes
    raise NotReproducible(run.id, "its code was not captured (no Git commit and no snapshot)")


def _copy_inside(source: Path, work: Path) -> None:
    """Copy source's files into work, refusing any that a symlink in work (committed, or
    copied before) would send outside it."""
    top = work.resolve()
    for path in sorted(source.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        target = work / path.relative_to(source)
        if not target.parent.resolve().is_relative_to(top) or target.is_symlink():
            raise InvalidArgument(
                f"the recorded untracked file {path.relative_to(source).as_posix()!r} would be "
                "written outside the new work tree; the code version is not one a run wrote"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target, follow_symlinks=False)


def _mapped(path: Path, orig_top: Path, work: Path) -> Path:
    """path under the folder the run's code was in, moved into the new work tree."""
    try:
        return work / path.relative_to(orig_top)
    except ValueError:
        return path


@contextlib.contextmanager
def _store_in(repo: Repo, work: Path, orig_top: Path) -> Iterator[Repo]:
    """The store, opened from inside the new work tree: its folder is linked in, so the
    command (and `mk.Repo()` in it) finds the same store there."""
    top = git.work_tree(repo.root) or orig_top
    try:
        root = work / repo.root.relative_to(top)
    except ValueError:
        root = work
    root.mkdir(parents=True, exist_ok=True)
    (root / REPO_DIR).symlink_to(repo.root / REPO_DIR, target_is_directory=True)
    if (work / ".git").exists():
        git.exclude(work, root.relative_to(work).joinpath(REPO_DIR).as_posix())
    with repos.open(root) as here:
        yield here


def _subtree(repo: Repo, run: RunRecord) -> Iterator[RunRecord]:
    yield run
    for child in run.children:
        yield from _subtree(repo, repo.run(child))


def _restore_inputs(repo: Repo, work: Path, subtree: Iterator[RunRecord]) -> list[str]:
    """Make the new work tree hold the versions the runs read: what modelkeep.lock pins,
    then each input the lock pinned at another version. Inputs the lock does not name were
    read by ref and are read so again."""
    notes: list[str] = []
    entries = lockfile.read(work) if (work / lockfile.NAME).is_file() else {}
    if entries:  # in the new work tree: the work tree is the one the command runs in
        done = subprocess.run(
            [sys.executable, "-m", "modelkeep", "checkout", "--force"],
            cwd=repo.root,  # the store's folder in the new work tree (a subfolder, perhaps)
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            raise InvalidArgument(f"cannot restore the tracked inputs: {lines[-1]}")
    at = {e.ref.rsplit(":", 1)[0]: e for e in entries.values()}
    for record in subtree:
        for ref in record.inputs:
            version = repo.show(ref)  # still there (a deleted version is refused here)
            entry = at.get(version.name)
            if version.type == "code" or entry is None or entry.ref == ref:
                continue
            repo.get(ref, work / entry.path, force=True)
            notes.append(f"restored {ref} at {entry.path} (modelkeep.lock had {entry.ref})")
    return notes


# -- comparing --------------------------------------------------------------------------------


def _follow(repo: Repo, run: RunRecord, path: Sequence[tuple[str, int]]) -> RunRecord | None:
    for name, index in path:
        same = [c for c in (repo.run(i) for i in run.children) if c.name == name]
        if index >= len(same):
            return None
        run = same[index]
    return run


def _compare(
    repo: Repo, original: RunRecord, rerun: RunRecord | None, rtol: float
) -> tuple[list[OutputCheck], list[MetricCheck], list[str]]:
    outputs: list[OutputCheck] = []
    metrics: list[MetricCheck] = []
    missing: list[str] = []

    def pair(a: RunRecord, b: RunRecord | None, label: str) -> None:
        if b is None:
            missing.append(label)
            return
        outputs.extend(_outputs(repo, a, b, label))
        for key, value in a.metrics.items():
            new = b.metrics.get(key)
            metrics.append(MetricCheck(label, key, value, new, _close(value, new, rtol)))
        seen: Counter[str] = Counter()
        b_children = [repo.run(i) for i in b.children]
        for child in (repo.run(i) for i in a.children):
            same = [c for c in b_children if c.name == child.name]
            index = seen[child.name]
            seen[child.name] += 1
            pair(child, same[index] if index < len(same) else None, f"{label}/{child.name}")

    pair(original, rerun, original.name)
    return outputs, metrics, missing


def _outputs(repo: Repo, a: RunRecord, b: RunRecord, label: str) -> Iterator[OutputCheck]:
    def made(run: RunRecord) -> dict[str, list[Any]]:
        by: dict[str, list[Any]] = {}
        for ref in run.outputs:
            v = repo.show(ref)
            if v.type != "code":  # the captured code is compared by running it
                by.setdefault(v.name, []).append(v)
        return by

    old, new = made(a), made(b)
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            for v in old[name]:
                yield OutputCheck(label, name, v.ref, None, False)
            continue
        if name not in old:
            for v in new[name]:
                yield OutputCheck(label, name, None, v.ref, False)
            continue
        for v in old[name]:
            match = next((w for w in new[name] if w.digest == v.digest), new[name][-1])
            if match.digest == v.digest:
                yield OutputCheck(label, name, v.ref, match.ref, True)
            else:
                yield OutputCheck(label, name, v.ref, match.ref, False, _files(repo.diff(v, match)))


def _files(diff: Diff) -> tuple[str, ...]:
    return tuple(f"{c.status} {c.path}" for c in diff.changes)


def _close(a: float, b: float | None, rtol: float) -> bool:
    if b is None:
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)
