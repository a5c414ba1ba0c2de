"""What the metadata layer returns: frozen values, never live database rows."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelkeep.meta.models import ArtifactRow, VersionRow

ARTIFACT_TYPES = ("model", "dataset", "code", "other")


@dataclass(frozen=True, slots=True)
class Version:
    name: str
    number: int
    type: str
    kind: str  # "file", "dir" or "link"
    digest: str  # "b3:" and 64 hex digits: the BLAKE3 of the file, or the folder's tree id
    size: int
    file_count: int
    mode: int
    source_name: str
    created_at: datetime
    user: str
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # the run that produced it
    registered: bool = False  # a candidate of the model registry
    stage: str = "none"  # none, staging, production or archived
    deleted_at: datetime | None = None  # a tombstone: the version is gone, its record stays
    host: str | None = None  # the machine that added it (unknown for versions before 0.2)

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.number}"

    @property
    def short_digest(self) -> str:
        return self.digest[:11]

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "name": self.name,
            "number": self.number,
            "type": self.type,
            "kind": self.kind,
            "digest": self.digest,
            "size": self.size,
            "file_count": self.file_count,
            "source_name": self.source_name,
            "created_at": self.created_at.isoformat(),
            "user": self.user,
            "message": self.message,
            "metadata": self.metadata,
            "run_id": self.run_id,
            "registered": self.registered,
            "stage": self.stage,
            "deleted_at": self.deleted_at.isoformat() if self.deleted_at else None,
            "host": self.host,
        }


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    type: str
    created_at: datetime
    latest: Version | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "created_at": self.created_at.isoformat(),
            "versions": self.latest.number if self.latest else 0,
            "latest": self.latest.to_json() if self.latest else None,
        }


def version_of(artifact: ArtifactRow, row: VersionRow | Any) -> Version:
    """row: an ORM row, or a plain result row of the versions table's columns."""
    return Version(
        name=artifact.name,
        number=row.number,
        type=artifact.type,
        kind=row.kind,
        digest=f"b3:{row.digest}",
        size=row.size,
        file_count=row.file_count,
        mode=row.mode,
        source_name=os.fsdecode(row.source_name),
        created_at=row.created_at,
        user=row.user,
        message=row.message,
        metadata=json.loads(row.metadata_json) if row.metadata_json != "{}" else {},
        run_id=row.run_id,
        registered=row.registered,
        stage=row.stage,
        deleted_at=row.deleted_at,
        host=row.host,
    )
