"""Names, versions and their history as rows; content ids are plain strings here."""

from modelkeep.meta.catalog import (
    Added,
    NewVersion,
    add_version,
    all_versions,
    artifact_type,
    artifacts,
    check_type,
    resolve,
    versions,
)
from modelkeep.meta.db import Database
from modelkeep.meta.lineage import Edge, Lineage, RunNode, VersionNode, lineage
from modelkeep.meta.records import ARTIFACT_TYPES, Artifact, Version
from modelkeep.meta.runs import (
    STATUSES as RUN_STATUSES,
)
from modelkeep.meta.runs import (
    Metric,
    NewRun,
    RunRecord,
    add_input,
    create_run,
    finish_run,
    heartbeat,
    log_metrics,
    log_params,
    metric_history,
    reap,
    resolve_run,
    runs,
    set_error,
)
from modelkeep.meta.runs import environment as run_environment

__all__ = [
    "ARTIFACT_TYPES",
    "RUN_STATUSES",
    "Added",
    "Artifact",
    "Database",
    "Edge",
    "Lineage",
    "Metric",
    "NewRun",
    "NewVersion",
    "RunNode",
    "RunRecord",
    "Version",
    "VersionNode",
    "add_input",
    "add_version",
    "all_versions",
    "artifact_type",
    "artifacts",
    "check_type",
    "create_run",
    "finish_run",
    "heartbeat",
    "lineage",
    "log_metrics",
    "log_params",
    "metric_history",
    "reap",
    "resolve",
    "resolve_run",
    "run_environment",
    "runs",
    "set_error",
    "versions",
]
