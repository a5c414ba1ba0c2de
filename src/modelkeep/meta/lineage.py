"""The lineage graph: versions and the runs that produced or used them, walked level by level.

Edges follow the data: a version points at the runs that used it (`input`), a run points
at the versions it produced (`output`). Each step of the walk is one batched query per
direction, so a history of many thousands of runs costs a few queries per level, not one
per node. The queries are `Database.query`'s SQL (see `meta.reads`): `modelkeep lineage`
on the default SQLite file never imports SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelkeep.errors import VersionNotFound
from modelkeep.meta.db import Database, Query
from modelkeep.meta.records import when
from modelkeep.refs import content_id

_BATCH = 500


@dataclass(frozen=True, slots=True)
class VersionNode:
    ref: str
    type: str
    digest: str
    created_at: datetime

    @property
    def key(self) -> str:
        return self.ref

    @property
    def label(self) -> str:
        return f"{self.ref} ({self.type})"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "version",
            "key": self.key,
            "ref": self.ref,
            "type": self.type,
            "digest": self.digest,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class RunNode:
    id: str
    name: str
    status: str
    user: str
    started_at: datetime

    @property
    def key(self) -> str:
        return f"run:{self.id}"

    @property
    def label(self) -> str:
        return f"run {self.id[:8]} {self.name} ({self.status})"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "run",
            "key": self.key,
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "user": self.user,
            "started_at": self.started_at.isoformat(),
        }


Node = VersionNode | RunNode


@dataclass(frozen=True, slots=True)
class Edge:
    source: str  # node keys, in the direction data flows
    target: str
    kind: str  # "input": a version used by a run; "output": a version a run produced

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "target": self.target, "kind": self.kind}


@dataclass(frozen=True, slots=True)
class Lineage:
    root: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: tuple[Edge, ...] = ()
    upstream: bool = True  # the directions walked: an empty one means "none", not "not asked"
    downstream: bool = True

    def upstream_of(self, key: str) -> list[str]:
        return [e.source for e in self.edges if e.target == key]

    def downstream_of(self, key: str) -> list[str]:
        return [e.target for e in self.edges if e.source == key]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "nodes": [n.to_json() for n in self.nodes.values()],
            "edges": [e.to_json() for e in self.edges],
        }

    def to_text(self) -> str:
        # Neighbours are indexed once: asking upstream_of per node would scan every edge
        # for every node, minutes on the lineage of a dataset that thousands of runs used.
        ups: dict[str, list[str]] = {}
        downs: dict[str, list[str]] = {}
        for e in self.edges:
            ups.setdefault(e.target, []).append(e.source)
            downs.setdefault(e.source, []).append(e.target)
        root = self.nodes[self.root]
        lines = [root.label]
        none: list[str] = []
        for title, arrow, step, walked, absent in (
            ("upstream", "<-", ups, self.upstream, "not produced by a run"),
            ("downstream", "->", downs, self.downstream, "used by no run"),
        ):
            if not walked:
                continue
            if not step.get(self.root):
                none.append(absent)
                continue
            lines.append(f"{title}:")
            shown: set[str] = {self.root}
            stack = [(k, 1) for k in sorted(step[self.root], reverse=True)]
            while stack:
                key, depth = stack.pop()
                again = key in shown
                note = " (see above)" if again else ""
                lines.append(f"{'   ' * depth}{arrow} {self.nodes[key].label}{note}")
                if not again:
                    shown.add(key)
                    stack.extend((k, depth + 1) for k in sorted(step.get(key, ()), reverse=True))
        if len(lines) == 1:
            lines.append("no recorded lineage: " + ", and ".join(none))
        return "\n".join(lines)

    def _ids(self) -> dict[str, str]:
        return {key: f"n{i}" for i, key in enumerate(self.nodes)}

    def to_mermaid(self) -> str:
        ids = self._ids()
        lines = ["flowchart LR"]
        for key, node in self.nodes.items():
            label = node.label.replace('"', "'")
            shape = f'(["{label}"])' if isinstance(node, RunNode) else f'["{label}"]'
            lines.append(f"    {ids[key]}{shape}")
        lines += [f"    {ids[e.source]} --> {ids[e.target]}" for e in self.edges]
        lines.append(f"    style {ids[self.root]} stroke-width:3px")
        return "\n".join(lines)

    def to_dot(self) -> str:
        lines = ["digraph lineage {", "    rankdir=LR;"]
        for key, node in self.nodes.items():
            shape = "ellipse" if isinstance(node, RunNode) else "box"
            bold = ", penwidth=3" if key == self.root else ""
            lines.append(f"    {_dot(key)} [label={_dot(node.label)}, shape={shape}{bold}];")
        lines += [f"    {_dot(e.source)} -> {_dot(e.target)};" for e in self.edges]
        lines.append("}")
        return "\n".join(lines)


def _dot(text: str) -> str:
    """A DOT quoted string: JSON's escaping, but the text itself kept (DOT has no \\u escapes)."""
    return json.dumps(text, ensure_ascii=False)


def _batches(ids: Iterable[Any]) -> Iterator[list[Any]]:
    items = sorted(ids)
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]


def _run_key(run_id: str) -> str:
    return f"run:{run_id}"


class _Walk:
    def __init__(self, q: Query) -> None:
        self.q = q
        self.version_keys: dict[int, str] = {}
        self.versions: dict[int, VersionNode] = {}
        self.runs: dict[str, RunNode] = {}
        self.edges: set[Edge] = set()

    def load_versions(self, ids: Iterable[int]) -> None:
        missing = [i for i in ids if i not in self.versions]
        for batch in _batches(missing):
            for vid, name, number, kind, digest, created in self.q.rows(
                "SELECT v.id, a.name, v.number, a.type, v.digest, v.created_at FROM versions v "
                "JOIN artifacts a ON a.id = v.artifact_id WHERE v.id IN :b",
                b=batch,
            ):
                node = VersionNode(f"{name}:v{number}", kind, content_id(digest), when(created))
                self.versions[vid] = node
                self.version_keys[vid] = node.ref

    def load_runs(self, ids: Iterable[str]) -> None:
        missing = [i for i in ids if i not in self.runs]
        for batch in _batches(missing):
            for r in self.q.rows(  # only the columns a node shows: no command, no code
                'SELECT id, name, status, "user", started_at FROM runs WHERE id IN :b', b=batch
            ):
                self.runs[r.id] = RunNode(r.id, r.name, r.status, r.user, when(r.started_at))

    def upstream(self, frontier: set[int]) -> None:
        seen_versions, seen_runs = set(frontier), set[str]()
        while frontier:
            producers: set[str] = set()
            for batch in _batches(frontier):
                for vid, run_id in self.q.rows(
                    "SELECT id, run_id FROM versions WHERE id IN :b AND run_id IS NOT NULL",
                    b=batch,
                ):
                    assert run_id is not None
                    self.edges.add(Edge(_run_key(run_id), self.version_keys[vid], "output"))
                    producers.add(run_id)
            producers -= seen_runs
            seen_runs |= producers
            self.load_runs(producers)
            inputs: list[tuple[str, int]] = []
            for batch in _batches(producers):
                inputs += self.q.rows(
                    "SELECT run_id, version_id FROM run_inputs WHERE run_id IN :b", b=batch
                )
            self.load_versions(vid for _, vid in inputs)
            for run_id, vid in inputs:
                self.edges.add(Edge(self.version_keys[vid], _run_key(run_id), "input"))
            frontier = {vid for _, vid in inputs} - seen_versions
            seen_versions |= frontier

    def downstream(self, frontier: set[int]) -> None:
        seen_versions, seen_runs = set(frontier), set[str]()
        while frontier:
            users: list[tuple[str, int]] = []
            for batch in _batches(frontier):
                users += self.q.rows(
                    "SELECT run_id, version_id FROM run_inputs WHERE version_id IN :b", b=batch
                )
            runs = {run_id for run_id, _ in users}
            self.load_runs(runs)
            for run_id, vid in users:
                self.edges.add(Edge(self.version_keys[vid], _run_key(run_id), "input"))
            runs -= seen_runs
            seen_runs |= runs
            outputs: list[tuple[int, str | None]] = []
            for batch in _batches(runs):
                outputs += self.q.rows(
                    "SELECT id, run_id FROM versions WHERE run_id IN :b", b=batch
                )
            self.load_versions(vid for vid, _ in outputs)
            for vid, producer in outputs:
                self.edges.add(Edge(_run_key(str(producer)), self.version_keys[vid], "output"))
            frontier = {vid for vid, _ in outputs} - seen_versions
            seen_versions |= frontier


def lineage(
    db: Database, name: str, number: int, *, upstream: bool = True, downstream: bool = True
) -> Lineage:
    with db.query() as q:
        root_id = q.scalar(
            "SELECT v.id FROM versions v JOIN artifacts a ON a.id = v.artifact_id "
            "WHERE a.name = :name AND v.number = :number",
            name=name,
            number=number,
        )
        if root_id is None:  # gone since the caller resolved it
            raise VersionNotFound(name, number, 0)
        walk = _Walk(q)
        walk.load_versions([root_id])
        if upstream:
            walk.upstream({root_id})
        if downstream:
            walk.downstream({root_id})
    nodes: dict[str, Node] = {walk.version_keys[root_id]: walk.versions[root_id]}
    for v in sorted(walk.versions.values(), key=lambda n: n.created_at):
        nodes.setdefault(v.key, v)
    for r in sorted(walk.runs.values(), key=lambda n: n.started_at):
        nodes[r.key] = r
    edges = tuple(sorted(walk.edges, key=lambda e: (e.source, e.target)))
    return Lineage(walk.version_keys[root_id], nodes, edges, upstream, downstream)
