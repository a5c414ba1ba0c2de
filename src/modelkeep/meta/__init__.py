"""Names, versions and their history as rows; content ids are plain strings here.

Each name is imported on first use (`lazy.package`): a read command that needs `Version`
and one query does not import SQLAlchemy and every writer's module with it. `events`,
`lineage`, `models`, `resolve` and `runs` stay the functions though submodules share them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelkeep import lazy

if TYPE_CHECKING:
    from modelkeep.meta.attachments import Attachment
    from modelkeep.meta.catalog import add_version, artifact_type, check_type
    from modelkeep.meta.db import Database
    from modelkeep.meta.evaluation_reads import Evaluation
    from modelkeep.meta.events import Event, Verification, events, verify
    from modelkeep.meta.lineage import Edge, Lineage, RunNode, VersionNode, lineage
    from modelkeep.meta.pushes import PushState, mark_pushed, push_state, pushed, pushed_anywhere
    from modelkeep.meta.reads import Model, all_versions, artifacts, models, versions
    from modelkeep.meta.records import ARTIFACT_TYPES, Added, Artifact, NewVersion, Version
    from modelkeep.meta.registry import (
        Approvals,
        Holders,
        approvals,
        delete,
        holders,
        move,
        record_event,
        register,
        remove_alias,
        rollback,
        set_alias,
    )
    from modelkeep.meta.resolve import resolve
    from modelkeep.meta.run_reads import STATUSES as RUN_STATUSES
    from modelkeep.meta.run_reads import (
        Comparison,
        Metric,
        RunRecord,
        compare,
        find_runs,
        last_metrics,
        metric_history,
        parse_condition,
        resolve_run,
        runs,
    )
    from modelkeep.meta.run_reads import environment as run_environment
    from modelkeep.meta.runs import (
        NewRun,
        add_input,
        create_run,
        finish_run,
        heartbeat,
        log_metrics,
        log_params,
        reap,
        set_error,
    )

_WHERE: dict[str, tuple[str, str]] = {  # name -> (module of modelkeep.meta, its attribute)
    "Attachment": ("attachments", "Attachment"),
    "Added": ("records", "Added"),
    "NewVersion": ("records", "NewVersion"),
    "add_version": ("catalog", "add_version"),
    "all_versions": ("reads", "all_versions"),
    "artifact_type": ("catalog", "artifact_type"),
    "artifacts": ("reads", "artifacts"),
    "check_type": ("catalog", "check_type"),
    "versions": ("reads", "versions"),
    "Database": ("db", "Database"),
    "Evaluation": ("evaluation_reads", "Evaluation"),
    "Event": ("events", "Event"),
    "Verification": ("events", "Verification"),
    "events": ("events", "events"),
    "verify": ("events", "verify"),
    "Edge": ("lineage", "Edge"),
    "Lineage": ("lineage", "Lineage"),
    "RunNode": ("lineage", "RunNode"),
    "VersionNode": ("lineage", "VersionNode"),
    "lineage": ("lineage", "lineage"),
    "PushState": ("pushes", "PushState"),
    "mark_pushed": ("pushes", "mark_pushed"),
    "push_state": ("pushes", "push_state"),
    "pushed": ("pushes", "pushed"),
    "pushed_anywhere": ("pushes", "pushed_anywhere"),
    "ARTIFACT_TYPES": ("records", "ARTIFACT_TYPES"),
    "Artifact": ("records", "Artifact"),
    "Version": ("records", "Version"),
    "Approvals": ("registry", "Approvals"),
    "Holders": ("registry", "Holders"),
    "Model": ("reads", "Model"),
    "approvals": ("registry", "approvals"),
    "delete": ("registry", "delete"),
    "holders": ("registry", "holders"),
    "move": ("registry", "move"),
    "record_event": ("registry", "record_event"),
    "register": ("registry", "register"),
    "remove_alias": ("registry", "remove_alias"),
    "rollback": ("registry", "rollback"),
    "set_alias": ("registry", "set_alias"),
    "resolve": ("resolve", "resolve"),
    "Comparison": ("run_reads", "Comparison"),
    "Metric": ("run_reads", "Metric"),
    "NewRun": ("runs", "NewRun"),
    "RUN_STATUSES": ("run_reads", "STATUSES"),
    "RunRecord": ("run_reads", "RunRecord"),
    "add_input": ("runs", "add_input"),
    "compare": ("run_reads", "compare"),
    "create_run": ("runs", "create_run"),
    "find_runs": ("run_reads", "find_runs"),
    "finish_run": ("runs", "finish_run"),
    "heartbeat": ("runs", "heartbeat"),
    "last_metrics": ("run_reads", "last_metrics"),
    "log_metrics": ("runs", "log_metrics"),
    "log_params": ("runs", "log_params"),
    "metric_history": ("run_reads", "metric_history"),
    "parse_condition": ("run_reads", "parse_condition"),
    "reap": ("runs", "reap"),
    "resolve_run": ("run_reads", "resolve_run"),
    "run_environment": ("run_reads", "environment"),
    "set_error": ("runs", "set_error"),
    "runs": ("run_reads", "runs"),
    "models": ("reads", "models"),
}
__all__ = [
    "ARTIFACT_TYPES",
    "RUN_STATUSES",
    "Added",
    "Approvals",
    "Artifact",
    "Attachment",
    "Comparison",
    "Database",
    "Edge",
    "Evaluation",
    "Event",
    "Holders",
    "Lineage",
    "Metric",
    "Model",
    "NewRun",
    "NewVersion",
    "PushState",
    "RunNode",
    "RunRecord",
    "Verification",
    "Version",
    "VersionNode",
    "add_input",
    "add_version",
    "all_versions",
    "approvals",
    "artifact_type",
    "artifacts",
    "check_type",
    "compare",
    "create_run",
    "delete",
    "events",
    "find_runs",
    "finish_run",
    "heartbeat",
    "holders",
    "last_metrics",
    "lineage",
    "log_metrics",
    "log_params",
    "mark_pushed",
    "metric_history",
    "models",
    "move",
    "parse_condition",
    "push_state",
    "pushed",
    "pushed_anywhere",
    "reap",
    "record_event",
    "register",
    "remove_alias",
    "resolve",
    "resolve_run",
    "rollback",
    "run_environment",
    "runs",
    "set_alias",
    "set_error",
    "verify",
    "versions",
]


lazy.package(__name__, _WHERE)
