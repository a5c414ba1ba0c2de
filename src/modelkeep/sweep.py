"""`modelkeep run --sweep KEY=V1,V2 …`: one command over a grid of parameters.

One parent run holds the sweep; each point of the grid is a child run of it, owned by
this process, in which the command runs with the point's values as params of the child
run, as environment variables (MODELKEEP_PARAM_<KEY>, the key upper-cased, every other
character than a letter or digit made `_`), and in place of `{KEY}` in the command's
arguments. Points run one after another, or `jobs` at a time. A failing point fails the
parent run, but every other point still runs; a point stopped by Ctrl-C or SIGTERM stops
the sweep (no further point starts).
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from modelkeep import run as runs
from modelkeep.errors import CommandFailed, InvalidArgument
from modelkeep.meta import RunRecord
from modelkeep.meta.run_reads import FAILED, FINISHED, KILLED, json_number
from modelkeep.repo import Repo

ENV_PREFIX = "MODELKEEP_PARAM_"
# A point's exit status that means the user stopped it: killed by SIGINT or SIGTERM, or a
# shell's 128 + N for them.
_INTERRUPTED = frozenset(
    {-signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM}
)
MAX_POINTS = 10_000


@dataclass(frozen=True, slots=True)
class Axis:
    """One `--sweep KEY=V1,V2`: the values as given (text) and as params (JSON-typed)."""

    key: str
    texts: tuple[str, ...]

    @property
    def values(self) -> tuple[Any, ...]:
        return tuple(_typed(t) for t in self.texts)


def parse_axis(text: str) -> Axis:
    key, sep, values = text.partition("=")
    key = key.strip()
    texts = tuple(v.strip() for v in values.split(","))
    if not sep or not key or not all(texts):
        raise InvalidArgument(
            f"cannot read sweep {text!r}; write KEY=V1,V2,… e.g. --sweep lr=0.01,0.1"
        )
    if len(set(texts)) != len(texts):
        raise InvalidArgument(f"sweep {text!r} names a value twice")
    return Axis(key, texts)


def env_name(key: str) -> str:
    """The environment variable a sweep's value of key is passed in."""
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", key.upper())


def grid(axes: Sequence[Axis]) -> list[tuple[tuple[str, str], ...]]:
    """Every point: ((key, text), …) in the axes' order, the last axis varying fastest."""
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise InvalidArgument(f"sweep key {_first_duplicate(keys)!r} is given twice")
    names = [env_name(k) for k in keys]
    if len(set(names)) != len(names):
        raise InvalidArgument(
            f"sweep keys {', '.join(keys)} pass two values in one environment variable; rename one"
        )
    size = 1
    for a in axes:
        size *= len(a.texts)
    if size > MAX_POINTS:
        raise InvalidArgument(f"the sweep has {size} points, over {MAX_POINTS}; sweep less")
    return [
        tuple(zip(keys, texts, strict=True))
        for texts in itertools.product(*(a.texts for a in axes))
    ]


@dataclass(frozen=True, slots=True)
class SweepResult:
    parent: RunRecord
    children: tuple[RunRecord, ...]  # in the grid's order
    keys: tuple[str, ...]  # the swept params, in the order given
    exit_code: int  # 0 when every child finished, else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.parent.to_json(),
            "sweep": list(self.keys),
            "children": [
                {
                    "id": c.id,
                    "status": c.status,
                    "exit_code": c.exit_code,
                    "params": {k: c.params.get(k) for k in self.keys},
                    "metrics": {k: json_number(v) for k, v in c.metrics.items()},
                }
                for c in self.children
            ],
            "exit_code": self.exit_code,
        }


def run_sweep(
    repo: Repo,
    argv: Sequence[str],
    axes: Sequence[Axis],
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    jobs: int = 1,
    capture_limit: int = runs.CAPTURE_LIMIT,
) -> SweepResult:
    """Run argv once per point of the grid of axes, each in a child run of one parent."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidArgument(f"--jobs must be a whole number of at least 1, not {jobs!r}")
    if not axes:
        raise InvalidArgument("a sweep needs at least one --sweep KEY=V1,V2")
    points = grid(axes)
    fixed = dict(params or {})
    clash = sorted(set(fixed) & {a.key for a in axes})
    if clash:
        raise InvalidArgument(f"param {clash[0]!r} is both fixed (--param) and swept (--sweep)")
    runs.check_capture_limit(capture_limit)
    parent = runs.open_command_run(
        repo,
        argv,
        name=name,
        params=fixed,
        capture_limit=capture_limit,
        sweep=[a.key for a in axes],
    )
    codes: list[int] = []
    lock = threading.Lock()
    stopped = threading.Event()  # a point was interrupted (Ctrl-C, SIGTERM): start no more

    order: dict[str, int] = {}  # child run id -> its point's place in the grid

    def one(index: int, point: tuple[tuple[str, str], ...]) -> None:
        if stopped.is_set():
            return
        label = " ".join(f"{k}={t}" for k, t in point)
        args = [_substitute(a, point) for a in argv]
        env = {env_name(k): t for k, t in point}
        child = runs.open_child_run(
            parent,
            f"{parent.name} {label}",
            {**fixed, **{k: _typed(t) for k, t in point}},
            args,
            env,
        )
        with lock:
            order[child.id] = index
        try:
            code = runs.execute(
                child, args, env=env, capture_limit=capture_limit, forward_signals=False
            )
        except CommandFailed:
            code = 127
        except BaseException as exc:
            child.end(FAILED, f"{type(exc).__name__}: {exc}")
            raise
        if code in _INTERRUPTED:
            stopped.set()
        with lock:
            codes.append(code)

    try:
        with runs.forwarding_signals():
            if jobs == 1:
                for index, point in enumerate(points):
                    one(index, point)
            else:
                with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mk-sweep") as pool:
                    for future in [pool.submit(one, i, p) for i, p in enumerate(points)]:
                        future.result()
    except BaseException as exc:
        parent.end(FAILED, f"the sweep stopped: {type(exc).__name__}: {exc}")
        raise
    failed = sum(code != 0 for code in codes)
    if stopped.is_set():
        parent.end(
            KILLED,
            f"interrupted: {len(points) - len(codes)} of {len(points)} sweep runs not started",
            exit_code=1,
        )
    elif failed:
        parent.end(FAILED, f"{failed} of {len(points)} sweep runs failed", exit_code=1)
    else:
        parent.end(FINISHED, exit_code=0)
    record = repo.run(parent.id)
    children = tuple(repo.run(cid) for cid in sorted(record.children, key=order.__getitem__))
    code = 1 if failed or stopped.is_set() else 0
    return SweepResult(record, children, tuple(a.key for a in axes), code)


def _typed(text: str) -> Any:
    """A value as a param: JSON where it reads as JSON (0.01, 8, true), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _substitute(arg: str, point: tuple[tuple[str, str], ...]) -> str:
    for key, text in point:
        arg = arg.replace("{" + key + "}", text)
    return arg


def _first_duplicate(keys: Sequence[str]) -> str:
    seen: set[str] = set()
    for k in keys:
        if k in seen:
            return k
        seen.add(k)
    return ""
