"""Settings: defaults < shipyard.yaml < SHIPYARD_* environment variables < explicit overrides.

One ``Settings`` object is built by ``load_settings`` and handed to every subsystem; nothing here
reads files or the environment at import time.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

from shipyard.errors import ConfigError

CONFIG_FILE = "shipyard.yaml"
ENV_PREFIX = "SHIPYARD_"
#: the API token a workspace or a client acts with when none is passed (not a setting: never in shipyard.yaml)
TOKEN_ENV = "SHIPYARD_TOKEN"


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    # Metadata store; default sqlite:///<project>/.shipyard/shipyard.db
    metadata_url: str = ""
    # Artifact root: a local path or s3://bucket/prefix; default <project>/.shipyard/artifacts
    artifact_root: str = ""
    # Extra fsspec options for the artifact store (e.g. {"endpoint_url": ...} for S3-compatible stores)
    artifact_options: dict[str, Any] = field(default_factory=dict)
    # Online feature store: "sqlite" (embedded, default) or redis://host:port/db
    online_store: str = ""
    # Offline engine for point-in-time joins: duckdb (default) or spark
    offline_engine: str = "duckdb"
    server_host: str = "127.0.0.1"
    server_port: int = 8000
    server_workers: int = 1
    # Name recorded for changes made without a token (a notebook or script on an embedded project).
    # The server never uses it: there the actor is always the token's identity; and it never
    # approves a model version (approval needs a reviewer's token).
    user: str = ""
    # The project (namespace) this workspace acts in; "default" is the server's own.
    project: str = "default"
    # PostgreSQL schema holding this project's tables (set for hosted projects other than default)
    metadata_schema: str = ""
    # Server folders an admin allows `POST /api/v1/models/{name}/versions {"source": ...}` to read
    register_source_roots: list[str] = field(default_factory=list)
    # Browser origins allowed to call the API cross-site (CORS); none by default
    cors_origins: list[str] = field(default_factory=list)
    # Serve /metrics without a token (for a Prometheus that cannot send one)
    metrics_public: bool = False
    # Lifetime of a browser session after a password, OIDC or login-link sign-in
    session_hours: float = 12.0
    # Optional single sign-on (OIDC): {issuer, client_id, client_secret_env, redirect_base, role_map, scopes,
    # username_claim, groups_claim, label, password_login, timeout_s}; checked by shipyard.auth.oidc
    oidc: dict[str, Any] = field(default_factory=dict)
    # Validation run on registration: number of single-row timing calls, tolerance
    validation_timing_calls: int = 200
    validation_tolerance: float = 1e-6
    # Set to false to run validation in-process (tests, notebooks without subprocesses)
    validation_subprocess: bool = True
    # Set to false to refuse model packages that unpickle something when loaded (pickle/cloudpickle)
    allow_pickle_models: bool = True
    # Where the kernel cannot confine the validation process (no Landlock), packages that run code
    # when loaded fail validation unless this is true (their code could then read .shipyard/)
    allow_unconfined_validation: bool = False
    prediction_log_sample_rate: float = 1.0
    # Crash-safe prediction log: the local folder of the spool a served record is fsync'd to before
    # the response is sent (default <project>/.shipyard/spool/prediction-log; "off": memory only,
    # records of the last flush interval are lost if the process dies)
    prediction_log_spool: str = ""
    # /readyz waits this long for the scenes and models this server serves to load and warm up;
    # past it the server reports ready with the failures named (so one broken scene cannot keep a
    # whole fleet out of rotation forever); 0 means readiness does not wait for warm-up
    readiness_timeout_s: float = 300.0
    max_request_bytes: int = 10 * 1024 * 1024
    # Serve one model as NAME@ALIAS on /invocations and /ping (`shipyard server --model`)
    serve_model: str = ""
    # How often a server checks whether an alias or a scene it serves moved (0: never; hot swap)
    serving_follow_interval_s: float = 5.0
    # Streamed file uploads (run artifacts as multipart) go to disk, not memory: a larger limit
    max_upload_bytes: int = 10 * 1024**3
    # Bring the metadata schema to this Shipyard's revision when a process opens it. A fleet on
    # PostgreSQL sets it false and runs `shipyard db upgrade` once per release instead; then a schema
    # that is behind is refused, naming the command (an empty database is always created).
    auto_migrate: bool = True
    # Models served from their own Python environment by a worker process (besides versions tagged
    # serve_env: own); see docs/deployment.md. A call to such a worker gives up after the timeout.
    own_env_models: list[str] = field(default_factory=list)
    model_env_timeout_s: float = 30.0
    # Build a missing model environment when the model is first loaded (else refuse, naming the command)
    model_env_build_on_load: bool = True
    # Crash recovery: a process working on a record (validation, materialization) refreshes its lease
    # every lease_ttl_s / 4 seconds; one silent for lease_ttl_s is taken over. The server looks for
    # records left by dead processes at start and every recovery_interval_s seconds.
    lease_ttl_s: float = 30.0
    recovery_interval_s: float = 30.0
    # Global scene limits (limits.scope: global) live in this Redis (redis://host:6379/0?prefix=...);
    # empty: the online store's Redis when it is one. fleet_servers: the number of servers behind the
    # balancer, used to split a global limit while Redis is down (0: the count last seen in Redis).
    limits_store: str = ""
    fleet_servers: int = 0
    # How often each server writes its per-minute operational series (the current minute included);
    # fleet-wide scene status and rollout step checks lag the traffic by at most this.
    series_flush_s: float = 5.0

    @property
    def state_dir(self) -> Path:
        return self.project_dir / ".shipyard"

    @property
    def prediction_spool_dir(self) -> Path | None:
        """The prediction log's spool folder, or None when it is off."""
        value = self.prediction_log_spool.strip()
        if value.lower() in ("off", "false", "none", "0"):
            return None
        return Path(value) if value else self.state_dir / "spool" / "prediction-log"

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Every setting; passwords in URLs and artifact options replaced by *** unless ``redact=False``."""
        out = dataclasses.asdict(self)
        out["project_dir"] = str(self.project_dir)
        if not redact:
            return out
        out["metadata_url"] = redact_url(self.metadata_url)
        out["online_store"] = redact_url(self.online_store)
        out["limits_store"] = redact_url(self.limits_store)
        out["artifact_options"] = {k: ("***" if _secret_key(k) else v) for k, v in self.artifact_options.items()}
        # a secret wrongly written into oidc (the server refuses it) is not echoed either
        out["oidc"] = {k: ("***" if _secret_key(k) and k != "client_secret_env" else v) for k, v in self.oidc.items()}
        return out

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"Settings({shown})"


_FIELD_TYPES = {f.name: f.type for f in fields(Settings)}


def _secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in ("secret", "password", "token", "key", "credential"))

# Allowed ranges: (low, high, inclusive low, inclusive high). A value outside is refused with the range.
_BOUNDS: dict[str, tuple[float, float, bool, bool]] = {
    "server_port": (1, 65535, True, True),
    "server_workers": (1, 64, True, True),
    "fleet_servers": (0, 10_000, True, True),
    "series_flush_s": (0, 3600, False, True),
    "validation_timing_calls": (1, 1_000_000, True, True),
    "validation_tolerance": (0, 1, True, True),
    "prediction_log_sample_rate": (0, 1, True, True),
    "readiness_timeout_s": (0, 86_400, True, True),
    "max_request_bytes": (1, 2**40, True, True),
    "serving_follow_interval_s": (0, 86_400, True, True),
    "max_upload_bytes": (1, 2**50, True, True),
    "session_hours": (0, 24 * 90, False, True),
    "model_env_timeout_s": (0, 3600, False, True),
}
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")


def _invalid(name: str, value: Any, source: str, expected: str) -> ConfigError:
    return ConfigError(
        f"setting {name!r} from {source} has value {value!r}, which is not {expected}",
        {"field": name, "source": source, "value": repr(value)[:200], "expected": expected},
    )


def _range_text(bounds: tuple[float, float, bool, bool]) -> str:
    low, high, inc_low, inc_high = bounds
    return f"a number in {'[' if inc_low else '('}{low:g}, {high:g}{']' if inc_high else ')'}"


def _coerce(name: str, value: Any, source: str) -> Any:
    """``value`` converted to the setting's type; a ConfigError naming key, value and the allowed form."""
    kind = _FIELD_TYPES[name]
    from_text = isinstance(value, str)
    if kind == "int":
        if isinstance(value, bool) or not (isinstance(value, int) or (from_text and _INTEGER_TEXT.match(value.strip()))):
            raise _invalid(name, value, source, "a whole number")
        out: Any = int(value)
    elif kind == "float":
        if isinstance(value, bool):
            raise _invalid(name, value, source, "a number")
        try:
            out = float(value) if isinstance(value, (int, float, str)) else None
        except ValueError:
            out = None
        if out is None or math.isnan(out) or math.isinf(out):
            raise _invalid(name, value, source, "a number")
    elif kind == "bool":
        if isinstance(value, bool):
            out = value
        else:
            text = str(value).strip().lower() if isinstance(value, (str, int)) else ""
            if text in ("1", "true", "yes", "on"):
                out = True
            elif text in ("0", "false", "no", "off"):
                out = False
            else:
                raise _invalid(name, value, source, "true or false")
    elif kind.startswith("dict"):
        if from_text:
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise _invalid(name, value, source, "a mapping") from None
        if not isinstance(value, dict):
            raise _invalid(name, value, source, "a mapping")
        out = value
    elif kind.startswith("list"):
        if from_text:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _invalid(name, value, source, "a list of strings (or a comma-separated string)")
        out = value
    elif kind == "Path":
        if not isinstance(value, (str, Path)):
            raise _invalid(name, value, source, "a path")
        out = Path(value)
    else:
        if not isinstance(value, str):
            raise _invalid(name, value, source, "a string")
        out = value
    bounds = _BOUNDS.get(name)
    if bounds is not None:
        low, high, inc_low, inc_high = bounds
        if out < low or out > high or (out == low and not inc_low) or (out == high and not inc_high):
            raise _invalid(name, value, source, _range_text(bounds))
    return out


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding shipyard.yaml, else ``start`` itself."""
    env = os.environ.get(ENV_PREFIX + "PROJECT_DIR")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return here


def load_settings(project_dir: str | Path | None = None, **overrides: Any) -> Settings:
    root = Path(project_dir).resolve() if project_dir else find_project_dir()
    values: dict[str, Any] = {}

    config_path = root / CONFIG_FILE
    if config_path.is_file():
        try:
            loaded = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path} is not valid YAML: {exc}; fix the file or run 'shipyard init'") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_path} must hold a mapping of setting: value")
        for key, value in loaded.items():
            if key not in _FIELD_TYPES or key == "project_dir":
                known = ", ".join(sorted(k for k in _FIELD_TYPES if k != "project_dir"))
                raise ConfigError(
                    f"unknown setting {key!r} in {config_path}; known settings: {known}",
                    {"field": key, "source": str(config_path)},
                )
            if value is not None:
                values[key] = _coerce(key, value, str(config_path))

    for name in _FIELD_TYPES:
        env_value = os.environ.get(ENV_PREFIX + name.upper())
        if env_value is not None and name != "project_dir":
            values[name] = _coerce(name, env_value, ENV_PREFIX + name.upper())

    for key, value in overrides.items():
        if key not in _FIELD_TYPES:
            raise ConfigError(f"unknown setting {key!r}", {"field": key})
        if value is not None:
            values[key] = _coerce(key, value, "arguments")

    state = root / ".shipyard"
    values.setdefault("metadata_url", "")
    values.setdefault("artifact_root", "")
    if not values["metadata_url"]:
        values["metadata_url"] = f"sqlite:///{state / 'shipyard.db'}"
    if not values["artifact_root"]:
        values["artifact_root"] = str(state / "artifacts")
    if not values.get("online_store"):
        values["online_store"] = "sqlite"
    if not values.get("user"):
        values["user"] = os.environ.get("USER") or "local"
    project = values.pop("project", DEFAULT_PROJECT)
    values.pop("metadata_schema", None)
    settings = Settings(project_dir=root, **values)
    return settings if project == DEFAULT_PROJECT else project_settings(settings, project)


def in_hosted_projects(settings: Settings, key: str) -> bool:
    """Whether artifact key ``key`` of the default project lies under the hosted projects' prefix."""
    parts = [p for p in key.split("/") if p not in ("", ".")]
    return settings.project == DEFAULT_PROJECT and parts[:1] == [HOSTED_PROJECTS_DIR]


DEFAULT_PROJECT = "default"
# Hosted projects live in this folder of the default project and under this prefix of its artifact
# root, so the default project must never resolve a path or artifact key inside it.
HOSTED_PROJECTS_DIR = "projects"
PROJECT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def project_settings(root: Settings, name: str) -> Settings:
    """The settings of hosted project ``name`` next to the server's own (``root``).

    Its definitions and embedded state live in ``<root project>/projects/<name>/``; its metadata
    in its own SQLite file there or, on PostgreSQL, its own schema ``project_<name>`` of the same
    database; its artifacts under ``<artifact_root>/projects/<name>``; its Redis online rows under
    the key prefix ``<prefix>@<name>:`` (``hosted_prefix``). Nothing of one project is reachable
    through another's keys.
    """
    if name == DEFAULT_PROJECT:
        return root
    if not PROJECT_NAME.match(name):
        raise ConfigError(f"project name {name!r} is not valid; use 1-48 lowercase letters, digits and '_', "
                          "starting with a letter", {"field": "project"})
    folder = root.project_dir / HOSTED_PROJECTS_DIR / name
    metadata_url, schema = root.metadata_url, ""
    if metadata_url.startswith("sqlite"):
        metadata_url = f"sqlite:///{folder / '.shipyard' / 'shipyard.db'}"
    else:
        schema = f"project_{name}"
    online = root.online_store
    if online.startswith(("redis://", "rediss://")):
        online = _with_prefix(online, name)
    return dataclasses.replace(root, project_dir=folder, metadata_url=metadata_url, metadata_schema=schema,
                               artifact_root=root.artifact_root.rstrip("/") + f"/{HOSTED_PROJECTS_DIR}/{name}",
                               online_store=online, project=name)


def hosted_prefix(prefix: str, name: str) -> str:
    """The Redis key prefix of hosted project ``name`` under the server's ``prefix``:
    ``<prefix>@<name>:``. The default project's keys continue the prefix with a kind
    (``row:``, ``meta:``, ``seen:``), never with ``@``, and a project name holds neither ``@`` nor
    ``:``, so no key (or key pattern) of one project is a key of another — a project named ``row``
    included."""
    return f"{prefix}@{name}:"


def _with_prefix(url: str, name: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), "shipyard:")
    rest = [(k, v) for k, v in query if k != "prefix"] + [("prefix", hosted_prefix(prefix, name))]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ***, for messages, logs and repr."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


CONFIG_TEMPLATE = """\
# Shipyard project settings. Every key can be overridden by an environment variable
# SHIPYARD_<KEY> (e.g. SHIPYARD_METADATA_URL) or a command-line flag.

# Metadata store (runs, registry, features, scenes). Default: SQLite inside .shipyard/.
# PostgreSQL: postgresql+psycopg://user@host:5432/dbname
# metadata_url: sqlite:///.shipyard/shipyard.db

# Artifact store (models, datasets, reports). A local folder or s3://bucket/prefix.
# artifact_root: .shipyard/artifacts
# artifact_options: {endpoint_url: http://127.0.0.1:9000}

# Online feature store: sqlite (embedded) or redis://127.0.0.1:6379/0
# online_store: sqlite

# Offline engine for point-in-time training sets: duckdb or spark
# offline_engine: duckdb

# server_host: 127.0.0.1
# server_port: 8000
# server_workers: 1

# Seconds between a server's checks for moved aliases and changed scenes (0: never)
# serving_follow_interval_s: 5.0

# Upgrade the metadata schema when a process opens it; several servers on PostgreSQL set false
# and run `shipyard db upgrade` once per release instead
# auto_migrate: true

# Share of served predictions written to the prediction log (0..1)
# prediction_log_sample_rate: 1.0
# Folder of the prediction log's crash-safe spool (records fsync'd before the answer; "off" to
# keep them in memory only until the next Parquet write); default .shipyard/spool/prediction-log
# prediction_log_spool: ""

# /readyz turns ready once the server's scenes and models are loaded and warm, or after this many
# seconds (naming what failed); 0: ready as soon as the database answers
# readiness_timeout_s: 300

# Accept model packages that unpickle something when loaded (pickle/cloudpickle files); false
# refuses them at registration and at load (see docs/models.md)
# allow_pickle_models: true

# Validation confines the model's code with Landlock (Linux 5.13+) so it cannot read .shipyard/;
# on a system without Landlock, models that run code when loaded fail validation unless this is
# true (docs/security.md)
# allow_unconfined_validation: false
"""


# Commented examples written by `shipyard init`, one per folder: a newcomer sees the format and
# the command that uses it. Commented out, they define nothing until someone edits them
# (tests/core/test_init_examples.py uncomments each and checks that it is valid).
EXAMPLE_FEATURES = """\
# Feature definitions as code: `shipyard features plan` shows what would change, `shipyard features
# apply` stores it, `shipyard features materialize` loads the online store (docs/features.md).
# Every *.py file in this folder is read; uncomment and edit this one to start.
#
# from datetime import timedelta
#
# import pandas as pd
#
# from shipyard.features import (Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64,
#                                RequestSource, on_demand_feature_view)
#
# customer = Entity("customer", join_keys=["customer_id"], value_types="int64")
#
# customer_stats = FeatureView(
#     "customer_stats", entities=[customer],
#     fields=[Field("amount_30d", Float64), Field("n_tx", Int64)],
#     source=FileSource("data/customer_stats.parquet"),   # customer_id, event_timestamp, the fields
#     ttl=timedelta(days=90),
# )
#
# # values that arrive with each request, for on-demand views (a scene passes them with `request:`)
# application = RequestSource("application", schema=[Field("amount", Float64)])
#
#
# @on_demand_feature_view(sources=[customer_stats[["amount_30d"]], application],
#                         fields=[Field("amount_ratio", Float64)])
# def ratios(df: pd.DataFrame) -> pd.DataFrame:
#     return pd.DataFrame({"amount_ratio": df["amount"] / df["amount_30d"]})
#
#
# risk = FeatureService("risk", [customer_stats, ratios])
"""

EXAMPLE_SCENE = """\
# A scene: the decision flow behind POST /v1/scenes/<name>/predict (docs/serving.md).
# Apply it with `shipyard scenes apply scenes/example.yaml` once its model and feature service exist.
#
# name: credit_decision
# description: Score an applicant and decide.
# inputs: {customer_id: long, amount: double}
# outputs: [decision, pd]
# flow:
#   - type: features
#     service: risk                      # a feature service of features/
#     entity: {customer_id: customer_id}
#     request: {amount: amount}          # request fields of its on-demand views
#   - {type: model, model: credit, ref: champion, output: pd}
#   - type: rules
#     rules:
#       - {name: high_risk, when: "pd > 0.4", then: decline}
#       - {name: large, when: "amount > 10000", then: review}
#     default: approve
#     output: decision
# fallback: {decision: review}           # answered when a step fails
"""

EXAMPLE_PIPELINE = """\
# A pipeline: nodes (components) and the edges between them, run with cached results
# (docs/pipelines.md). `shipyard pipelines components` lists the components;
# `shipyard pipelines validate pipelines/example.yaml` checks a file, `shipyard pipelines run` runs it.
#
# version: 1
# name: scorecard
# params: {dataset: applications, target: bad}
# nodes:
#   - {id: data, component: load_dataset, params: {dataset: "${dataset}"}}
#   - {id: split, component: split, inputs: {data: data}, params: {target: "${target}", test_size: 0.3}}
#   - {id: binning, component: bin_woe, inputs: {train: split.train}, params: {target: "${target}"}}
#   - id: scorecard
#     component: train_scorecard
#     inputs: {train: split.train, binner: binning}
#     params: {target: "${target}"}
#   - {id: evaluate, component: evaluate, inputs: {model: scorecard, test: split.test, train: split.train},
#      params: {target: "${target}"}}
"""

EXAMPLES = {"features/example.py": EXAMPLE_FEATURES, "scenes/example.yaml": EXAMPLE_SCENE,
            "pipelines/example.yaml": EXAMPLE_PIPELINE}


def init_project(directory: str | Path) -> Path:
    """Create a project: shipyard.yaml and the features/, scenes/, pipelines/ folders, each with a
    commented example (written only into a folder that does not exist yet)."""
    root = Path(directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    config = root / CONFIG_FILE
    if not config.exists():
        config.write_text(CONFIG_TEMPLATE)
    for relative, text in EXAMPLES.items():
        folder = (root / relative).parent
        if not folder.exists():
            folder.mkdir()
            (root / relative).write_text(text)
    state = root / ".shipyard"
    if not state.exists():
        state.mkdir()
        os.chmod(state, 0o700)  # credentials, secret key, metadata: the owner's only
    gitignore = root / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".shipyard/\n")
    return root
