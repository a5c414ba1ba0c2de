"""The model registry's rules: register, promote through the policy, roll back, delete.

The metadata layer makes each change atomic and appends its event; this module decides
whether a change may happen: the stage order, the gates on the producing run's metrics,
approvals from other users, who may move a stage. A promotion is checked against the
holders its gates compared with (and the version's own stage), and made only if they are
still the same, so two promotions at once cannot both pass a gate against a champion that
one of them replaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelkeep import config, meta, policy
from modelkeep.errors import InvalidArgument, PromotionRefused, ReasonRequired, RegistryRefused
from modelkeep.meta import Version, model_names
from modelkeep.meta.registry import TARGET_STAGES, Approvals, Holders, StaleCheck
from modelkeep.parts import Parts
from modelkeep.refs import AliasRef, Ref, VersionRef, parse_ref, validate_alias, validate_name

_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class Promotion:
    version: Version
    stage: str
    displaced: Version | None  # the version that left production for archived
    overridden: tuple[str, ...]  # unmet gates a --force skipped
    notes: tuple[str, ...]  # gates that passed with a remark

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version.ref,
            "stage": self.stage,
            "displaced": self.displaced.ref if self.displaced else None,
            "overridden": list(self.overridden),
            "notes": list(self.notes),
        }


def policy_root(root: Path) -> Path:
    """Where modelkeep.toml lives (see `config.project_root`)."""
    return config.project_root(root)


def _policy(parts: Parts) -> tuple[Path, policy.Policy]:
    root = policy_root(parts.root)
    return root, policy.load(root)


def _check_reason(rules: policy.Policy, action: str, what: str, reason: str) -> None:
    """Refuse a change the policy wants a reason for, when none is given."""
    if action in rules.reasons and not reason.strip():
        raise ReasonRequired(action, what, str(rules.path))


def register(
    parts: Parts, source: Version | Ref, name: str, reason: str = ""
) -> tuple[Version, bool]:
    """Register source (a version, or a ref resolved in the registering transaction)."""
    validate_name(name)
    what = source.ref if isinstance(source, Version) else str(source)
    _check_reason(_policy(parts)[1], "register", f"registering {what}", reason)
    ref = VersionRef(source.name, source.number) if isinstance(source, Version) else source
    return meta.register(parts.db, ref, name, parts.user, reason)


def _check_stage(stage: str) -> None:
    if stage not in TARGET_STAGES:
        raise InvalidArgument(f"unknown stage {stage!r}; use one of {', '.join(TARGET_STAGES)}")


def promote(
    parts: Parts, version: Version, stage: str, *, reason: str = "", force: bool = False
) -> Promotion:
    _check_stage(stage)
    if force and not reason.strip():
        raise InvalidArgument("--force needs --reason: an override is recorded with its why")
    _check_movable(version, stage)
    root, whole = _policy(parts)
    action = "archive" if stage == "archived" else "promote"
    _check_reason(whole, action, f"moving {version.ref} to {stage}", reason)
    rules = whole.for_stage(version.name, stage)
    actor = parts.user
    _check_mover(rules, actor, version.name, stage)
    watched = {gate.stage for gate in rules.gates if gate.stage is not None}
    if not (rules.gates or rules.require_stage or rules.approvals):  # nothing to check first
        moved, displaced = meta.move(parts.db, version.name, version.number, stage, actor, reason)
        return Promotion(moved, stage, displaced, (), ())
    for _ in range(_ATTEMPTS):
        held, version = meta.holders(parts.db, version.name, version.number)
        _check_movable(version, stage)
        refused, unmet, notes, have = _conditions(parts, root, rules, version, stage, held, actor)
        short = have is not None and len(have.approvers - {actor}) < rules.approvals
        if short and have is not None and have.requester != actor:  # ask, once per asker
            meta.record_event(
                parts.db, version.name, version.number, "request", stage, actor, reason
            )
        if refused or (unmet and not force):
            raise PromotionRefused(version.ref, stage, refused + unmet, overridable=not refused)
        try:
            moved, displaced = meta.move(
                parts.db,
                version.name,
                version.number,
                stage,
                actor,
                reason,
                checked={s: (h.number if (h := held.get(s)) else None) for s in watched},
                from_stage=version.stage,
                overridden=unmet if force else (),
            )
        except StaleCheck:
            continue
        return Promotion(moved, stage, displaced, tuple(unmet) if force else (), tuple(notes))
    raise RegistryRefused(
        f"{version.ref}: the stages kept changing while it was checked; try again"
    )


def _conditions(
    parts: Parts,
    root: Path,
    rules: policy.StagePolicy,
    version: Version,
    stage: str,
    held: Holders,
    actor: str,
) -> tuple[list[str], list[str], list[str], Approvals | None]:
    """What stands between version and stage now: (refused: conditions no --force skips,
    unmet gates, notes of gates that passed with a remark, the approvals so far)."""
    refused: list[str] = []
    if rules.require_stage and version.stage != rules.require_stage:
        refused.append(
            f"{stage} takes versions from {rules.require_stage} only, and {version.ref} "
            f"is in {version.stage}"
        )
    holders: dict[str, Version | None] = {}
    for name in ("staging", "production"):
        holder = held.get(name)
        # no champion but itself
        holders[name] = None if holder is None or holder.ref == version.ref else holder
    measured = dict(
        zip(
            [version.ref, *(h.ref for h in holders.values() if h)],
            measure(parts, [version, *(h for h in holders.values() if h)]),
            strict=True,
        )
    )
    unmet, notes = policy.check_gates(
        root / policy.FILE,
        rules.gates,
        measured[version.ref],
        {name: measured[h.ref] if h else None for name, h in holders.items()},
    )
    have = None
    if rules.approvals:
        have = meta.approvals(parts.db, version.name, version.number, stage)
        others = have.approvers - {actor}
        if len(others) < rules.approvals:
            refused.append(
                f"needs {rules.approvals} approval(s) from users other than {actor!r}, has "
                f"{len(others)}: ask for `modelkeep approve {version.ref} {stage}`"
            )
    return refused, unmet, notes, have


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether a version could move to a stage now, and why not: what `promote` would
    check, read without moving anything or recording a request (the web UI's gate view)."""

    ref: str
    stage: str
    gates: tuple[str, ...]  # the policy's gates for that stage, as written
    refused: tuple[str, ...]  # conditions no --force skips (stage order, approvals)
    unmet: tuple[str, ...]  # unmet gates, each with the measured values
    notes: tuple[str, ...]  # gates that pass with a remark
    ready: bool  # nothing refused, no gate unmet: promote would move it now


def readiness(parts: Parts, version: Version, stage: str) -> Readiness:
    _check_stage(stage)
    root, whole = _policy(parts)
    rules = whole.for_stage(version.name, stage)
    held, version = meta.holders(parts.db, version.name, version.number)
    gates = tuple(g.text for g in rules.gates)
    try:
        _check_movable(version, stage)
        _check_mover(rules, parts.user, version.name, stage)
    except RegistryRefused as exc:
        return Readiness(version.ref, stage, gates, (str(exc),), (), (), False)
    refused, unmet, notes, _ = _conditions(parts, root, rules, version, stage, held, parts.user)
    ready = not refused and not unmet
    return Readiness(version.ref, stage, gates, tuple(refused), tuple(unmet), tuple(notes), ready)


def _check_movable(version: Version, stage: str) -> None:
    """Refuse, before any policy is read or request recorded, a move that cannot happen."""
    if not version.registered:
        raise RegistryRefused(
            f"{version.ref} is not registered; run `modelkeep register {version.ref} "
            f"--as {version.name}` first"
        )
    if version.stage == stage:
        raise RegistryRefused(f"{version.ref} is already in {stage}")


def _check_mover(rules: policy.StagePolicy, actor: str, name: str, stage: str) -> None:
    if rules.movers and actor not in rules.movers:
        raise RegistryRefused(
            f"only {', '.join(rules.movers)} may move versions of {name!r} to {stage} "
            f"(modelkeep.toml); you are {actor!r}"
        )


def measure(parts: Parts, versions: Sequence[Version]) -> list[policy.Measured]:
    """What gates (and `versions --metric`) read of each version: its producing run's last
    metric values and its evaluations."""
    from modelkeep.meta import evaluation_reads

    found = evaluation_reads.of_versions(parts.db, [(v.name, v.number) for v in versions])
    out = []
    for v in versions:
        metrics = meta.last_metrics(parts.db, v.run_id) if v.run_id else None
        evs = tuple((e.key, e.dataset, e.value) for e in found.get(v.ref, []))
        out.append(policy.Measured(v.ref, metrics, evs))
    return out


def metric_columns(
    parts: Parts, versions: Sequence[Version], columns: Sequence[str]
) -> list[dict[str, float | None]]:
    """For each version, the value each column names (`auc`, `eval[holdout].auc`: read as a
    gate reads it), None where there is none."""
    operands = [(c, policy.parse_operand(c)) for c in columns]
    if not operands:
        return [{} for _ in versions]
    return [{c: m.value(o) for c, o in operands} for m in measure(parts, versions)]


def archive(parts: Parts, version: Version, reason: str = "") -> Version:
    """Move a version to archived: a stage move like any other, so the policy's
    `[policy.*.archived]` tables (movers, approvals) apply to it too."""
    return promote(parts, version, "archived", reason=reason).version


def rollback(parts: Parts, name: str, to: str | None, reason: str) -> tuple[Version, Version]:
    """Put back the previous production version (or `to`, like v3); returns it and the old one."""
    validate_name(name)
    if not reason.strip():
        raise InvalidArgument("a rollback needs --reason: it is recorded with its why")
    number = None
    if to is not None:
        parsed = parse_ref(to if ":" in to or "@" in to else f"{name}:{to}")
        if not isinstance(parsed, VersionRef) or parsed.name != name:
            raise InvalidArgument(f"--to takes a version of {name!r}, like v3, not {to!r}")
        number = meta.resolve(parts.db, parsed).number
    # A rollback puts a version into production: only those who may move production may.
    actor = parts.user
    _check_mover(_policy(parts)[1].for_stage(name, "production"), actor, name, "production")
    return meta.rollback(parts.db, name, number, actor, reason)


def approve(parts: Parts, version: Version, stage: str, reason: str = "") -> Approvals:
    _check_stage(stage)
    _check_reason(_policy(parts)[1], "approve", f"approving {version.ref}", reason)
    if not version.registered:
        raise RegistryRefused(
            f"{version.ref} is not registered; run `modelkeep register {version.ref} "
            f"--as {version.name}` first"
        )
    actor = parts.user
    have = meta.approvals(parts.db, version.name, version.number, stage)
    if have.requester == actor:
        raise RegistryRefused(
            f"{actor!r} asked to move {version.ref} to {stage}; an approval must come from "
            "another user"
        )
    if actor in have.approvers:
        raise RegistryRefused(f"{actor!r} has already approved moving {version.ref} to {stage}")
    meta.record_event(parts.db, version.name, version.number, "approve", stage, actor, reason)
    return meta.approvals(parts.db, version.name, version.number, stage)


def _alias_ref(text: str) -> AliasRef:
    parsed = parse_ref(text)
    if not isinstance(parsed, AliasRef):
        raise InvalidArgument(f"{text!r} is not NAME@ALIAS, like fraud-detector@champion")
    validate_alias(parsed.alias, settable=True)
    return parsed


def set_alias(parts: Parts, alias: str, version: Version, reason: str = "") -> Version:
    where = _alias_ref(alias)
    _check_reason(_policy(parts)[1], "alias", f"pointing {alias} at {version.ref}", reason)
    if version.name != where.name:
        raise InvalidArgument(
            f"{alias} must point at a version of {where.name!r}, not {version.ref}"
        )
    return meta.set_alias(parts.db, where.name, where.alias, version.number, parts.user, reason)


def remove_alias(parts: Parts, alias: str, reason: str = "") -> int:
    where = _alias_ref(alias)
    _check_reason(_policy(parts)[1], "alias", f"removing {alias}", reason)
    return meta.remove_alias(parts.db, where.name, where.alias, parts.user, reason)


def delete(parts: Parts, version: Version, reason: str) -> Version:
    if not reason.strip():
        raise InvalidArgument("deleting a version needs --reason: the tombstone keeps it")
    return meta.delete(parts.db, version.name, version.number, parts.user, reason)


# -- a model's own life, for MLflow's registry (server/mlflow_registry.py) -------------------


def create_model(
    parts: Parts, name: str, *, description: str = "", tags: dict[str, str] | None = None
) -> None:
    """A registered model with no version yet."""
    validate_name(name)
    model_names.create(parts.db, name, parts.user, description=description, tags=tags or {})


def rename_model(parts: Parts, name: str, new_name: str) -> None:
    validate_name(name)
    validate_name(new_name)
    model_names.rename(parts.db, name, new_name, parts.user)


def delete_model(parts: Parts, name: str, reason: str) -> list[Version]:
    """Tombstone every registered version of model name, then unregister it, in one
    transaction: never one in staging or production (a refusal writes nothing)."""
    validate_name(name)
    if not reason.strip():
        raise InvalidArgument("deleting a model needs a reason: the tombstones keep it")
    return model_names.delete_model(parts.db, name, parts.user, reason)


def register_files(
    parts: Parts,
    name: str,
    files: Sequence[tuple[str, str, int]],
    *,
    origin: str,
    metadata: dict[str, Any],
    run_id: str | None,
    description: str = "",
    tags: dict[str, str] | None = None,
) -> tuple[Version, bool]:
    """The next version of registered model name: a folder of files already in the store,
    each (relative path, hex content id, size). Only the folders' trees are written; each
    file's size is read from its stored manifest, not taken from the caller."""
    from modelkeep import ownership, store
    from modelkeep.errors import MissingObjects
    from modelkeep.refs import content_id

    validate_name(name)
    if not files:
        raise InvalidArgument(f"a version of {name!r} needs at least one file")
    ownership.require_own(parts.store, parts.db)
    with parts.store.writing():
        ids = [bytes.fromhex(digest) for _, digest, _ in files]
        absent = [i.hex() for i in ids if not parts.store.has(i)]
        if absent:
            raise MissingObjects(f"{name} (from {origin})", absent)
        entries = [
            (path.encode(), blob, parts.store.manifest(blob).size)
            for (path, _, _), blob in zip(files, ids, strict=True)
        ]
        root = store.put_tree(parts.store, entries)
        new = model_names.NewTree(
            digest=root.id.hex(),
            size=root.size,
            file_count=len(entries),
            source_name=origin.rstrip("/").rsplit("/", 1)[-1][:255] or "model",
            message=f"registered from {origin}"[:1000],
            origin=origin,
            metadata=metadata,
            run_id=run_id,
            host=parts.settings.host,
            store_id=parts.store_id,
            description=description,
            tags=tags or {},
        )
        version, created = model_names.register_tree(parts.db, name, new, parts.user)
    assert version.digest == content_id(root.id)
    return version, created
