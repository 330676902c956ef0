"""The metadata schema: every table in one graph so lineage is a query.

Subsystems read and write their own tables through their own modules; other subsystems use those
modules' public functions, never the tables. Times are integer milliseconds since the epoch (UTC).
Each change here comes with a migration in ``migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# --- tracking -------------------------------------------------------------------------------
experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("artifact_location", Text, nullable=False),
    Column("lifecycle", String(16), nullable=False, default="active"),
    Column("created_at", BigInteger, nullable=False),
    Column("tags", JSON, nullable=False, default=dict),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger),
    Column("parent_run_id", String(32), ForeignKey("runs.id")),
    Column("user", String(255), nullable=False),
    Column("source_name", Text),
    Column("source_git_commit", String(64)),
    Column("artifact_uri", Text, nullable=False),
    Column("lifecycle", String(16), nullable=False, default="active"),
    Index("ix_runs_experiment", "experiment_id", "start_time"),
)

run_params = Table(
    "run_params",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
)

run_metrics = Table(
    "run_metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("key", String(255), nullable=False),
    Column("value", Float, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_run_metrics_run_key", "run_id", "key", "step"),
)

# Last value per (run, key) so searching and comparing runs never scans the full history.
run_latest_metrics = Table(
    "run_latest_metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Float, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
)

# --- artifacts (any owner: run, model version, dataset, report) -----------------------------
artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner_kind", String(32), nullable=False),
    Column("owner_id", String(255), nullable=False),
    Column("path", Text, nullable=False),
    Column("uri", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("owner_kind", "owner_id", "path", name="uq_artifacts_owner_path"),
)

# --- registry -------------------------------------------------------------------------------
registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("requires_approval", Boolean, nullable=False, default=True),
    Column("tags", JSON, nullable=False, default=dict),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(255), ForeignKey("registered_models.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("source_run_id", String(32)),
    Column("artifact_uri", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("flavor", String(64), nullable=False),
    Column("signature", JSON),
    Column("metrics", JSON, nullable=False, default=dict),
    Column("tags", JSON, nullable=False, default=dict),
    # lineage slots: dataset version, feature views/services the model was trained on
    Column("lineage", JSON, nullable=False, default=dict),
    # pending -> validating -> validated | failed | abandoned (validation kept dying; see job_leases)
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=False, default=""),
    Column("validation", JSON, nullable=False, default=dict),
    Column("approved_by", String(255)),
    Column("approved_at", BigInteger),
    Column("created_by", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("lifecycle", String(16), nullable=False, default="active"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(255), ForeignKey("registered_models.name"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

# Every position an alias has held, newest last: rollback walks this backwards.
model_alias_history = Table(
    "model_alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("moved_at", BigInteger, nullable=False),
    Column("moved_by", String(255), nullable=False),
    # "set" pushes a position, "rollback" pops back to the one before it
    Column("action", String(16), nullable=False, default="set"),
    # true when the move skipped the validation/approval checks (force=True)
    Column("forced", Boolean, nullable=False, default=False),
    Index("ix_alias_history_name_alias", "name", "alias", "id"),
)

# --- audit ----------------------------------------------------------------------------------
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", BigInteger, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("subject", String(512), nullable=False),
    Column("details", JSON, nullable=False, default=dict),
    Index("ix_events_subject", "subject", "id"),
)

# --- job leases -----------------------------------------------------------------------------
# Who is working on a record left in progress (a model version being validated, a materialization
# run, later pipeline and scheduled runs): the owner process and its last heartbeat, written in the
# same transaction that puts the record in progress and removed in the one that finishes it. A record
# whose lease went stale (or whose owner process is gone) is resumed or marked abandoned by the
# recovery loop (see store/leases.py).
job_leases = Table(
    "job_leases",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("key", String(512), primary_key=True),
    # host/pid-namespace/pid/process-start of the process holding it
    Column("owner", String(255), nullable=False),
    # the attempt it belongs to (a validation attempt id), so a superseded attempt cannot drop it
    Column("token", String(64), nullable=False, default=""),
    Column("acquired_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("ttl_ms", BigInteger, nullable=False),
    # how many times the record was taken over from a dead owner
    Column("recoveries", Integer, nullable=False, default=0),
    Column("details", JSON, nullable=False, default=dict),
)

# --- serving --------------------------------------------------------------------------------
scenes = Table(
    "scenes",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("latest_version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
)

# Immutable: a change to a scene is a new version; the spec is the validated, normalised document.
scene_versions = Table(
    "scene_versions",
    metadata,
    Column("scene", String(255), ForeignKey("scenes.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
)

# Progressive delivery: one row per rollout of an arm (canary percentage, outcome, checks).
scene_releases = Table(
    "scene_releases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scene", String(255), ForeignKey("scenes.name"), nullable=False),
    Column("arm", String(64), nullable=False),
    Column("percent", Float, nullable=False),
    # running -> promoted | rolled_back | aborted | stopped | abandoned (no heartbeat); manual
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("details", JSON, nullable=False, default=dict),
    Column("started_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("actor", String(255), nullable=False),
    Index("ix_scene_releases_scene", "scene", "id"),
)

# --- features -------------------------------------------------------------------------------
# One row per defined object (entity, feature view, on-demand view, service): its current version.
feature_objects = Table(
    "feature_objects",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

# Immutable: an applied change is a new version; training sets, models and scenes reference these.
feature_object_versions = Table(
    "feature_object_versions",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("source_file", Text, nullable=False, default=""),
    Column("source_line", Integer, nullable=False, default=0),
    Column("apply_id", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
)

# One row per apply: what changed, who applied it, from where.
feature_applies = Table(
    "feature_applies",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("repo_path", Text, nullable=False, default=""),
    Column("summary", JSON, nullable=False, default=dict),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
)

# Materialization runs per feature view (time range, rows written, outcome).
feature_materializations = Table(
    "feature_materializations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("view", String(255), nullable=False),
    Column("view_version", Integer, nullable=False),
    Column("start_ts", BigInteger),
    Column("end_ts", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False, default=0),
    # running -> succeeded | failed | abandoned (its process died; see job_leases)
    Column("status", String(16), nullable=False),
    Column("details", JSON, nullable=False, default=dict),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger),
    Column("actor", String(255), nullable=False),
    Index("ix_feature_materializations_view", "view", "id"),
)

# Training sets built point-in-time: where they were written and which view versions fed them.
feature_training_sets = Table(
    "feature_training_sets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("uri", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("features", JSON, nullable=False, default=list),
    Column("lineage", JSON, nullable=False, default=dict),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Index("ix_feature_training_sets_name", "name", "created_at"),
)
