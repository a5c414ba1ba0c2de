"""The metadata schema as SQLAlchemy typed models. Alembic migrations create it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as UTC; always read back timezone-aware, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The number of the newest version; bumping it under a row lock allocates numbers.
    # Server defaults as the migrations made them, so a database created at HEAD (init)
    # is the one the migration chain builds.
    latest_number: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    registered: Mapped[bool] = mapped_column(  # a registered model
        Boolean, default=False, server_default="0"
    )
    # A registered model's description (0011), which MLflow's API may change.
    description: Mapped[str] = mapped_column(Text, default="", server_default="")


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("artifact_id", "number", name="uq_versions_number"),
        Index("ix_versions_stage", "artifact_id", "stage"),
        # The registry listing at scale (0012): the holders of a stage across every model,
        # and each model's count of registered, live versions from the index alone.
        Index("ix_versions_stage_artifact", "stage", "artifact_id"),
        Index("ix_versions_listing", "artifact_id", "registered", "deleted_at"),
        # At most one production version per model, whatever the code above does.
        Index(
            "uq_versions_production",
            "artifact_id",
            unique=True,
            sqlite_where=text("stage = 'production'"),
            postgresql_where=text("stage = 'production'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))  # file, dir or link
    digest: Mapped[str] = mapped_column(String(64), index=True)  # hex BLAKE3 of the root
    size: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)
    mode: Mapped[int] = mapped_column(Integer)  # of a single file: 0o644 or 0o755
    # Basename of the path that was added, as bytes: file names need not be UTF-8.
    source_name: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    user: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text, default="")
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    # The run that produced this version, if any.
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("runs.id", name="fk_versions_run_id"), index=True, default=None
    )
    # Registry state: the current stage, kept here so `NAME@production` is one lookup;
    # its history is in the events table.
    registered: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    stage: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    stage_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The machine that added it: where its bytes are until it is pushed (NULL before 0004).
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    # The store that added it (its id, store/identity.py; NULL before 0006).
    store_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # A model version's description (0011): unlike the message, MLflow's API may change it.
    description: Mapped[str] = mapped_column(Text, default="", server_default="")


class PushRow(Base):
    """A version whose every object is on a remote (by canonical URL, shared by a team)."""

    __tablename__ = "pushes"

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    remote: Mapped[str] = mapped_column(String(1024), primary_key=True)
    pushed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    host: Mapped[str] = mapped_column(String(255))  # the machine that pushed it


class AliasRow(Base):
    __tablename__ = "aliases"

    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))


class EventRow(Base):
    """An append-only, hash-chained record of one change of registry state."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_model", "model", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(160))  # NAME:vN or NAME@ALIAS
    before_json: Mapped[str] = mapped_column(Text)
    after_json: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ChainHeadRow(Base):
    """The newest event's id and hash: removing events from the end breaks the chain too."""

    __tablename__ = "chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EnvironmentRow(Base):
    """A software and hardware environment, stored once under the hash of its JSON."""

    __tablename__ = "environments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    doc_json: Mapped[str] = mapped_column(Text)


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    name: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # running/finished/failed/killed
    user: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    # The process that owns the run, to tell a live run from one whose process died.
    pid: Mapped[int] = mapped_column(Integer)
    pid_started: Mapped[int | None] = mapped_column(BigInteger, default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str] = mapped_column(Text, default="")
    command_json: Mapped[str] = mapped_column(Text, default="{}")
    code_json: Mapped[str] = mapped_column(Text, default="{}")
    env_id: Mapped[str | None] = mapped_column(ForeignKey("environments.id"), default=None)
    # The run this one was started inside (a nested run, a sweep's child); NULL before 0008.
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("runs.id", name="fk_runs_parent_id"), index=True, default=None
    )
    # A free-text note (`runs note`); a soft delete hides the run from listings (0009).
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The MLflow experiment it belongs to (0010); NULL is MLflow's "Default" (id 0).
    experiment_id: Mapped[int | None] = mapped_column(
        ForeignKey("experiments.id", name="fk_runs_experiment_id"), index=True, default=None
    )


class ExperimentRow(Base):
    """An MLflow experiment: a named group of runs (`modelkeep serve`'s MLflow API)."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    lifecycle_stage: Mapped[str] = mapped_column(String(16))  # active or deleted
    artifact_location: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExperimentTagRow(Base):
    __tablename__ = "experiment_tags"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunTagRow(Base):
    """A key/value label on a run (`runs tag`), searchable with `--where tags.KEY=…`."""

    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ParamRow(Base):
    __tablename__ = "params"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value_json: Mapped[str] = mapped_column(Text)


class MetricRow(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_key", "run_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[float | None] = mapped_column(Float(53))  # NULL is NaN: SQLite has no NaN
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunInputRow(Base):
    """A version a run used: the edges from data (and code) to the runs that read it."""

    __tablename__ = "run_inputs"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True, index=True)


class RunOutputRow(Base):
    """A version a run added again: its content equalled an existing version, so `add`
    returned that one. The run made it as much as the run that first did (versions.run_id),
    and `reproduce` needs to see that it did."""

    __tablename__ = "run_outputs"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)


class AttachmentRow(Base):
    """A file that belongs to a run (a plot, a report, its output): only its content id
    and size; the bytes are in the store like every version's."""

    __tablename__ = "run_attachments"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), index=True)  # hex BLAKE3 of the file
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The store that holds it (store/identity.py), as versions record theirs.
    store_id: Mapped[str | None] = mapped_column(String(32), default=None)


class EvaluationRow(Base):
    """A metric measured on a version after it was made (`modelkeep eval`), with the dataset
    version it was measured on and the run that measured it, if any. Gates may name it."""

    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_version_key", "version_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[float | None] = mapped_column(Float(53))  # NULL is NaN, as in metrics
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"), default=None)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), default=None)
    user: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DatabaseIdentityRow(Base):
    """This database's id (one row): stores record it, to never gc against another one."""

    __tablename__ = "database_identity"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UserRow(Base):
    """An account of `modelkeep serve`: who an authenticated request acts as."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(Text, default=None)  # argon2id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TokenRow(Base):
    """An API token: only its SHA-256 is kept; the token itself is shown once."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # public, shown in lists
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    label: Mapped[str] = mapped_column(String(128), default="")
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class GrantRow(Base):
    """A role of a user, everywhere (`model_glob` '*') or on the models a glob matches."""

    __tablename__ = "grants"

    user_name: Mapped[str] = mapped_column(ForeignKey("users.name"), primary_key=True)
    model_glob: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))


class WebhookRow(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[str] = mapped_column(Text)  # comma-separated event kinds
    model_glob: Mapped[str] = mapped_column(String(128), default="*")
    secret_env: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class DeliveryRow(Base):
    """One webhook delivery in the outbox, written in the transaction of its change."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime())  # due, or leased until
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class MlflowArtifactRow(Base):
    """A file the MLflow client uploaded through `mlflow-artifacts:` (0011): its path under
    the server's artifact root (`1/<run id>/artifacts/model/MLmodel`), and its bytes, in the
    store by content id like every version's. Uploading a path again replaces the row."""

    __tablename__ = "mlflow_artifacts"

    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), index=True)  # hex BLAKE3 of the file
    size: Mapped[int] = mapped_column(BigInteger)
    store_id: Mapped[str | None] = mapped_column(String(32), default=None)
    user: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LoggedModelRow(Base):
    """An MLflow 3 logged model (`mlflow.<flavor>.log_model`), id `m-<32 hex>` (0011). Its
    files are MLflow artifacts under `<experiment>/models/<id>/artifacts/`."""

    __tablename__ = "logged_models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    experiment_id: Mapped[int | None] = mapped_column(
        ForeignKey("experiments.id"), index=True, default=None
    )
    name: Mapped[str] = mapped_column(String(255))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True, default=None)
    status: Mapped[str] = mapped_column(String(16))  # PENDING, READY or FAILED
    status_message: Mapped[str] = mapped_column(Text, default="", server_default="")
    model_type: Mapped[str] = mapped_column(String(255), default="", server_default="")
    source_run_id: Mapped[str | None] = mapped_column(String(32), default=None)
    user: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    params_json: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    tags_json: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")


class ModelTagRow(Base):
    """A key/value tag on a registered model (MLflow's registered-model tags; 0011)."""

    __tablename__ = "model_tags"

    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class VersionTagRow(Base):
    """A key/value tag on a model version (MLflow's model-version tags; 0011)."""

    __tablename__ = "version_tags"

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
