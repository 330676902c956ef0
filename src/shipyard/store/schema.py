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
    text,
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

# --- secrets --------------------------------------------------------------------------------
# Values are Fernet tokens; the key never touches the database (see shipyard.secrets.keys).
secrets = Table(
    "secrets",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("ciphertext", Text, nullable=False),
    Column("revision", Integer, nullable=False, default=1),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

# --- data sources and versioned datasets ------------------------------------------------------
# A spec names its credentials by secret name only; values stay in ``secrets``.
data_sources = Table(
    "data_sources",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("spec", JSON, nullable=False, default=dict),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("source", String(255), ForeignKey("data_sources.name"), nullable=False),
    # what to read from the source: {"query": ...} | {"table": ...} | {"path": ..., "format": ...}
    Column("spec", JSON, nullable=False, default=dict),
    Column("description", Text, nullable=False, default=""),
    Column("latest_version", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

# Immutable; a row is inserted only after its Parquet file is complete in the artifact store.
dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("dataset", String(255), ForeignKey("datasets.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("schema", JSON, nullable=False, default=list),
    Column("profile", JSON, nullable=False, default=dict),
    Column("profile_path", Text, nullable=False, default=""),
    Column("duration_ms", BigInteger, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
)

# Lineage: who read which dataset version (tracking runs, model versions, feature views, pipeline runs).
dataset_reads = Table(
    "dataset_reads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dataset", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("reader_kind", String(32), nullable=False),
    Column("reader_id", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("actor", String(255), nullable=False),
    Index("ix_dataset_reads_dataset", "dataset", "version"),
    Index("ix_dataset_reads_reader", "reader_kind", "reader_id"),
)

# --- pipelines ------------------------------------------------------------------------------
pipelines = Table(
    "pipelines",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("document", JSON, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pipeline", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    # the validated document as run, so a run can be inspected or repeated after the file changed
    Column("document", JSON, nullable=False),
    Column("params", JSON, nullable=False, default=dict),
    Column("selection", JSON, nullable=False, default=dict),
    # queued -> running -> succeeded | failed | interrupted
    Column("status", String(16), nullable=False),
    Column("tracking_run_id", String(32)),
    # an outside orchestrator's run id (Airflow's run_id); one Shipyard run per outside run
    Column("external_id", String(255)),
    Column("error", Text, nullable=False, default=""),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger),
    Column("heartbeat_at", BigInteger),
    Column("created_by", String(255), nullable=False),
    UniqueConstraint("pipeline", "external_id", name="uq_pipeline_runs_external"),
    Index("ix_pipeline_runs_pipeline", "pipeline", "started_at"),
)

pipeline_run_nodes = Table(
    "pipeline_run_nodes",
    metadata,
    Column("run_id", String(32), ForeignKey("pipeline_runs.id"), primary_key=True),
    Column("node_id", String(255), primary_key=True),
    Column("component", String(512), nullable=False),
    # pending -> running -> succeeded | cached | reused | failed | skipped | not_selected
    Column("status", String(16), nullable=False),
    Column("cache_key", String(64), nullable=False, default=""),
    Column("reused_from", String(32)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("tracking_run_id", String(32)),
    Column("outputs", JSON, nullable=False, default=dict),
    Column("metrics", JSON, nullable=False, default=dict),
    Column("error", Text, nullable=False, default=""),
    Column("log_path", Text, nullable=False, default=""),
    Column("started_at", BigInteger),
    Column("finished_at", BigInteger),
    Column("updated_at", BigInteger, nullable=False),
)

# Content-addressed node results: key = hash(component code, params, input contents).
pipeline_cache = Table(
    "pipeline_cache",
    metadata,
    Column("cache_key", String(64), primary_key=True),
    Column("component", String(512), nullable=False),
    Column("outputs", JSON, nullable=False),
    Column("metrics", JSON, nullable=False, default=dict),
    Column("run_id", String(32), nullable=False),
    Column("node_id", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# --- scheduler ------------------------------------------------------------------------------
schedules = Table(
    "schedules",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("target", Text, nullable=False, default=""),
    Column("args", JSON, nullable=False, default=dict),
    Column("cron", String(255)),
    Column("interval_s", Float),
    Column("timezone", String(64), nullable=False, default="UTC"),
    # catchup | skip | latest
    Column("missed", String(16), nullable=False, default="skip"),
    Column("max_concurrency", Integer, nullable=False, default=1),
    Column("max_catchup", Integer, nullable=False, default=100),
    Column("timeout_s", Float),
    Column("paused", Boolean, nullable=False, default=False),
    # the next slot not yet started (ms); advanced in the same transaction that records a run
    Column("next_slot_at", BigInteger),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

schedule_runs = Table(
    "schedule_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("schedule", String(255), ForeignKey("schedules.name"), nullable=False),
    # "slot:<ms>" for a scheduled slot, "manual:<id>" for a trigger: one row per slot, ever
    Column("slot_key", String(64), nullable=False),
    Column("slot_at", BigInteger, nullable=False),
    Column("trigger", String(16), nullable=False),
    # queued -> running -> succeeded | failed | interrupted | skipped
    Column("status", String(16), nullable=False),
    # fencing token of the lease under which the run was started, and the holder's name
    Column("token", BigInteger),
    Column("holder", String(255)),
    Column("queued_at", BigInteger, nullable=False),
    Column("started_at", BigInteger),
    Column("finished_at", BigInteger),
    Column("log", Text, nullable=False, default=""),
    Column("error", Text, nullable=False, default=""),
    Column("result", JSON, nullable=False, default=dict),
    Column("actor", String(255), nullable=False),
    UniqueConstraint("schedule", "slot_key", name="uq_schedule_runs_slot"),
    Index("ix_schedule_runs_schedule", "schedule", "queued_at"),
    Index("ix_schedule_runs_status", "status"),
)

# One row per lease name; the token grows by one at every change of holder (fencing).
scheduler_lease = Table(
    "scheduler_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("acquired_at", BigInteger, nullable=False),
    Column("renewed_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# --- auth (kept in the server's own database; other projects' databases hold these tables empty)
# People and service accounts. A password hash (argon2) only for people who log in with one.
users = Table(
    "users",
    metadata,
    Column("name", String(255), primary_key=True),
    # person | service | oidc
    Column("kind", String(16), nullable=False),
    Column("password_hash", Text),
    Column("display_name", String(255), nullable=False, default=""),
    Column("email", String(255), nullable=False, default=""),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("last_login_at", BigInteger),
)

# API tokens, sessions and one-time login links; only a sha256 of the secret part is kept.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user", String(255), ForeignKey("users.name"), nullable=False),
    # api | session | login_link
    Column("kind", String(16), nullable=False),
    Column("name", String(255), nullable=False, default=""),
    Column("secret_sha256", String(64), nullable=False),
    Column("scopes", JSON, nullable=False, default=list),
    # a token bound to one project acts only there
    Column("project", String(64)),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("expires_at", BigInteger),
    Column("last_used_at", BigInteger),
    Column("revoked_at", BigInteger),
    Index("ix_api_tokens_user", "user", "created_at"),
)

projects = Table(
    "projects",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
)

# A user's roles per project; project "*" grants the role in every project.
role_bindings = Table(
    "role_bindings",
    metadata,
    Column("user", String(255), ForeignKey("users.name"), primary_key=True),
    Column("project", String(64), primary_key=True),
    Column("role", String(32), primary_key=True),
    Column("granted_at", BigInteger, nullable=False),
    Column("granted_by", String(255), nullable=False),
)

# Single sign-on accounts: the provider's (issuer, subject) pair is the identity, not the user name,
# so a name reused at the provider never signs in to someone else's account.
oidc_identities = Table(
    "oidc_identities",
    metadata,
    Column("issuer", String(512), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("user", String(255), ForeignKey("users.name"), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("last_login_at", BigInteger),
)

# Scenes and models whose prediction endpoints answer without a token.
public_endpoints = Table(
    "public_endpoints",
    metadata,
    Column("project", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("set_at", BigInteger, nullable=False),
    Column("set_by", String(255), nullable=False),
)

# Append-only (triggers refuse UPDATE and DELETE); each row carries the sha256 of the one before,
# so a removed or edited row breaks the chain that `shipyard audit verify` walks.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", BigInteger, nullable=False),
    Column("project", String(64), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("resource", String(32), nullable=False),
    Column("subject", Text, nullable=False),
    Column("route", Text, nullable=False, default=""),
    # ok | denied | failed
    Column("outcome", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("client", String(255), nullable=False, default=""),
    Column("request_id", String(64), nullable=False, default=""),
    Column("details", JSON, nullable=False, default=dict),
    Column("prev_sha256", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Index("ix_audit_log_project_ts", "project", "ts"),
)

# --- monitoring -----------------------------------------------------------------------------
# Per minute and server instance: counts and sparse latency histograms ({bucket: count}, buckets
# in monitoring/series.py). Each instance writes its own rows; queries add them up.
monitoring_series = Table(
    "monitoring_series",
    metadata,
    Column("scene", String(255), primary_key=True),
    Column("version", String(32), primary_key=True),
    Column("arm", String(64), primary_key=True),
    Column("minute", BigInteger, primary_key=True),
    Column("instance", String(64), primary_key=True),
    Column("requests", BigInteger, nullable=False, default=0),
    Column("errors", BigInteger, nullable=False, default=0),
    Column("fallbacks", BigInteger, nullable=False, default=0),
    Column("latency_total", JSON, nullable=False, default=dict),
    Column("latency_features", JSON, nullable=False, default=dict),
    Column("latency_model", JSON, nullable=False, default=dict),
    Index("ix_monitoring_series_scene_minute", "scene", "minute"),
)

# Reference statistics (bins and counts per column, never rows) that drift is measured against.
monitoring_baselines = Table(
    "monitoring_baselines",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("scene", String(255)),
    Column("rows", BigInteger, nullable=False),
    Column("source", JSON, nullable=False, default=dict),
    Column("spec", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
)

# Per scene: baseline, score and decision outputs, approval values, custom-metric plugins.
monitoring_scenes = Table(
    "monitoring_scenes",
    metadata,
    Column("scene", String(255), primary_key=True),
    Column("config", JSON, nullable=False, default=dict),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

# The statistics middle table: one row per scene and day, computed once. ``summary`` is small (the
# trend reads it), ``detail`` holds the per-column counts, ``plugins`` each plugin's day statistics.
monitoring_daily_stats = Table(
    "monitoring_daily_stats",
    metadata,
    Column("scene", String(255), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("baseline", String(255)),
    Column("rows", BigInteger, nullable=False),
    Column("summary", JSON, nullable=False, default=dict),
    Column("detail", JSON, nullable=False, default=dict),
    Column("plugins", JSON, nullable=False, default=dict),
    Column("computed_at", BigInteger, nullable=False),
    Column("computed_by", String(255), nullable=False),
)

# Every generated daily report (HTML and JSON twin in the artifact store), newest last.
monitoring_reports = Table(
    "monitoring_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scene", String(255), nullable=False),
    Column("day", String(10), nullable=False),
    Column("html_path", Text, nullable=False),
    Column("json_path", Text, nullable=False),
    Column("rows", BigInteger, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Index("ix_monitoring_reports_scene_day", "scene", "day", "id"),
)

# Delayed labels joined to served predictions; unmatched labels are kept (matched = false).
monitoring_labels = Table(
    "monitoring_labels",
    metadata,
    Column("scene", String(255), primary_key=True),
    Column("request_id", String(128), primary_key=True),
    Column("row", Integer, primary_key=True),
    Column("label", Float, nullable=False),
    Column("matched", Boolean, nullable=False),
    Column("ts", BigInteger),
    Column("day", String(10)),
    Column("version", Integer),
    Column("arm", String(64)),
    Column("score", Float),
    Column("decision", String(255)),
    Column("source", String(255), nullable=False, default=""),
    Column("ingested_at", BigInteger, nullable=False),
    Index("ix_monitoring_labels_scene_day", "scene", "day"),
)

monitoring_alert_rules = Table(
    "monitoring_alert_rules",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

# Notifier settings; passwords are never stored, only the name of the variable or secret holding one.
monitoring_notifiers = Table(
    "monitoring_notifiers",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(255), nullable=False),
)

# Alert history: one row per firing of a rule on a scope (fingerprint), updated until resolved.
monitoring_alerts = Table(
    "monitoring_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(255), nullable=False),
    Column("fingerprint", String(512), nullable=False),
    Column("scope", JSON, nullable=False, default=dict),
    # firing -> resolved (the condition cleared) or closed (the rule was deleted or disabled)
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("value", Float),
    Column("threshold", Float),
    Column("message", Text, nullable=False, default=""),
    Column("silenced", Boolean, nullable=False, default=False),
    Column("started_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("resolved_at", BigInteger),
    Column("last_notified_at", BigInteger),
    Column("notifications", JSON, nullable=False, default=list),
    Index("ix_monitoring_alerts_fingerprint", "fingerprint", "id"),
    # at most one open alert per fingerprint, whichever server evaluates the rules
    Index("uq_monitoring_alerts_open", "fingerprint", unique=True, sqlite_where=text("status = 'firing'"),
          postgresql_where=text("status = 'firing'")),
)

monitoring_silences = Table(
    "monitoring_silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(255), nullable=False),
    Column("scope", JSON, nullable=False, default=dict),
    Column("starts_at", BigInteger, nullable=False),
    Column("ends_at", BigInteger, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
)
