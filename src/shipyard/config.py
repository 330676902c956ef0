"""Settings: defaults < shipyard.yaml < SHIPYARD_* environment variables < explicit overrides.

One ``Settings`` object is built by ``load_settings`` and handed to every subsystem; nothing here
reads files or the environment at import time.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from shipyard.errors import ConfigError

CONFIG_FILE = "shipyard.yaml"
ENV_PREFIX = "SHIPYARD_"


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
    # Who is acting when no token is given (CLI and notebooks)
    user: str = ""
    # Validation run on registration: number of single-row timing calls, tolerance
    validation_timing_calls: int = 200
    validation_tolerance: float = 1e-6
    # Set to false to run validation in-process (tests, notebooks without subprocesses)
    validation_subprocess: bool = True
    prediction_log_sample_rate: float = 1.0
    max_request_bytes: int = 10 * 1024 * 1024
    # Crash recovery: a process working on a record (validation, materialization) refreshes its lease
    # every lease_ttl_s / 4 seconds; one silent for lease_ttl_s is taken over. The server looks for
    # records left by dead processes at start and every recovery_interval_s seconds.
    lease_ttl_s: float = 30.0
    recovery_interval_s: float = 30.0

    @property
    def state_dir(self) -> Path:
        return self.project_dir / ".shipyard"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["project_dir"] = str(self.project_dir)
        return out


_FIELD_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _FIELD_TYPES[name]
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind.startswith("dict"):
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError(value)
            return value
        if kind == "Path":
            return Path(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {name!r} from {source} has value {value!r}, which is not a valid {kind}",
            {"field": name, "source": source},
        ) from None


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
    return Settings(project_dir=root, **values)


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

# Share of served predictions written to the prediction log (0..1)
# prediction_log_sample_rate: 1.0
"""


def init_project(directory: str | Path) -> Path:
    """Create a project: shipyard.yaml and the features/, scenes/, pipelines/ folders."""
    root = Path(directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    config = root / CONFIG_FILE
    if not config.exists():
        config.write_text(CONFIG_TEMPLATE)
    for sub in ("features", "scenes", "pipelines"):
        (root / sub).mkdir(exist_ok=True)
    (root / ".shipyard").mkdir(exist_ok=True)
    gitignore = root / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".shipyard/\n")
    return root
