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
from modelkeep.meta.records import ARTIFACT_TYPES, Artifact, Version

__all__ = [
    "ARTIFACT_TYPES",
    "Added",
    "Artifact",
    "Database",
    "NewVersion",
    "Version",
    "add_version",
    "all_versions",
    "artifact_type",
    "artifacts",
    "check_type",
    "resolve",
    "versions",
]
