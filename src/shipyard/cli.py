"""The ``shipyard`` command: assembles each subsystem's ``cli.py`` (a ``register(group)`` function)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from shipyard import __version__
from shipyard.errors import ConfigError, ShipyardError

if TYPE_CHECKING:
    from shipyard.config import Settings

SUBSYSTEM_CLIS = [
    "shipyard.auth.cli",
    "shipyard.tracking.cli",
    "shipyard.models.cli",
    "shipyard.risk.cli",
    "shipyard.risk.report_cli",
    "shipyard.data.cli",
    "shipyard.features.cli",
    "shipyard.serving.cli",
    "shipyard.monitoring.cli",
    "shipyard.demo.cli",
    "shipyard.secrets.cli",
    "shipyard.pipelines.cli",
    "shipyard.pipelines.scheduler_cli",
    "shipyard.store.cli",
    "shipyard.ui.cli",
]


def _module_exists(name: str) -> bool:
    """True when ``name`` can be imported (its parent packages may be missing too)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


class ShipyardGroup(click.Group):
    """Turns ShipyardError into a one-line message and exit code 1 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ShipyardError as exc:
            click.secho(f"error [{exc.code}]: {exc.message}", fg="red", err=True)
            if os.environ.get("SHIPYARD_DEBUG"):
                raise
            sys.exit(1)


@click.group(cls=ShipyardGroup)
@click.version_option(__version__, prog_name="shipyard")
@click.option("--project", "-p", type=click.Path(file_okay=False), default=None, envvar="SHIPYARD_PROJECT_DIR",
              help="Project folder (default: nearest folder with shipyard.yaml).")
@click.option("--verbose", "-v", is_flag=True, help="Log at INFO level.")
@click.pass_context
def main(ctx: click.Context, project: str | None, verbose: bool) -> None:
    """Shipyard: build, launch and keep tabular models seaworthy."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)
    ctx.obj["project"] = project


def workspace_from(ctx: click.Context, **overrides: object):  # noqa: ANN201 - Workspace, imported lazily
    """The workspace for a command, honouring --project."""
    from shipyard.workspace import connect

    root = ctx.find_root()
    project = (root.obj or {}).get("project")
    return connect(project, **overrides)


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def init(directory: str) -> None:
    """Create a project: shipyard.yaml and features/, scenes/, pipelines/ with a commented example each."""
    from shipyard.auth.bootstrap import FIRST_ADMIN, ensure_first_admin
    from shipyard.config import init_project
    from shipyard.workspace import connect

    root = init_project(directory)
    click.echo(f"initialised Shipyard project in {root}")
    for name in ("shipyard.yaml", "features/example.py", "scenes/example.yaml", "pipelines/example.yaml"):
        if (root / name).exists():
            click.echo(f"  {name}")
    ws = connect(root)
    try:
        written = ensure_first_admin(ws.auth, root)
    finally:
        ws.close()
    if written is not None:
        click.echo(f"  .shipyard/credentials  (token of the admin user {FIRST_ADMIN!r}, readable by you only)")


@main.command()
@click.option("--host", default=None, help="Bind address (default from settings: 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
@click.option("--workers", default=None, type=int, help="Worker processes.")
@click.option("--model", "model", default=None, help="Serve one model as NAME@ALIAS on /invocations and /ping.")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Serve HTTPS with this certificate (PEM).")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The certificate's private key (PEM).")
@click.option("--forwarded-allow-ips", default=None,
              help="Proxies whose X-Forwarded-For/-Proto to trust (comma-separated IPs, or '*'; default: "
                   "none, or FORWARDED_ALLOW_IPS).")
@click.pass_context
def server(ctx: click.Context, host: str | None, port: int | None, workers: int | None, model: str | None,
           ssl_certfile: str | None, ssl_keyfile: str | None, forwarded_allow_ips: str | None) -> None:
    """Run the API, prediction endpoints, metrics and UI in one process (or N workers)."""
    import uvicorn

    ws = workspace_from(ctx, server_host=host, server_port=port, server_workers=workers)
    settings = ws.settings
    from shipyard.auth.bootstrap import FIRST_ADMIN, ensure_first_admin

    written = ensure_first_admin(ws.auth, settings.project_dir)
    if written is not None:
        click.echo(f"no users yet: created the admin user {FIRST_ADMIN!r}; its token is in {written} "
                   "(readable by you only)")
    os.environ["SHIPYARD_PROJECT_DIR"] = str(settings.project_dir)
    for key, value in (("METADATA_URL", settings.metadata_url), ("ARTIFACT_ROOT", settings.artifact_root)):
        os.environ["SHIPYARD_" + key] = value
    if model:
        os.environ["SHIPYARD_SERVE_MODEL"] = model
    workers = settings.server_workers
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}", {"field": "server_workers"})
    # every worker enforces 1/N of each scene's limits, so N is passed on through the settings
    os.environ["SHIPYARD_SERVER_WORKERS"] = str(workers)
    metrics_dir = None
    if workers > 1:
        metrics_dir = _metrics_dir(settings)
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together; give both or neither",
                          {"field": "--ssl-keyfile"})
    scheme = "https" if ssl_certfile else "http"
    proxies = forwarded_allow_ips if forwarded_allow_ips is not None else os.environ.get("FORWARDED_ALLOW_IPS", "")
    click.echo(f"Shipyard {__version__} on {scheme}://{settings.server_host}:{settings.server_port} "
               f"({workers} worker(s)), project {settings.project_dir}")
    from shipyard.models.confine import describe, landlock_abi

    confined = settings.validation_subprocess and landlock_abi() > 0
    click.echo(("" if confined else "warning: ") + describe(subprocess=settings.validation_subprocess,
                                                            allow_unconfined=settings.allow_unconfined_validation),
               err=not confined)
    try:
        uvicorn.run(
            "shipyard.server:app_factory",
            factory=True,
            host=settings.server_host,
            port=settings.server_port,
            workers=workers,
            log_level="warning",
            access_log=False,
            # a new worker imports the whole stack before it answers the supervisor's ping; on a busy
            # machine that outlasts uvicorn's 5 s default, and a worker killed mid-import restarts forever
            timeout_worker_healthcheck=60,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            # uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise, so any local client
            # (the default bind) could choose the address the audit log and sign-in limit see
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
            server_header=False,
            log_config=_log_config(),
        )
    finally:
        if metrics_dir is not None:
            from shipyard.serving.metrics import remove_multiprocess_dir

            remove_multiprocess_dir(metrics_dir)
    if workers > 1:
        # the workers have exited and flushed their logs; this supervising process would spend
        # 0.3-0.8 s tearing down the ~1,600 modules the CLI imported, so it leaves at once
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _log_config() -> dict:
    """uvicorn's logging, plus the phases of a shutdown (shipyard.serving.shutdown) on stderr."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["shipyard.serving.shutdown"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _metrics_dir(settings: Settings) -> Path | None:
    """A fresh directory where the workers keep their Prometheus values (summed by /metrics).

    Set in the environment before the workers start: prometheus_client chooses shared files over
    process memory when it is first imported. A directory given in PROMETHEUS_MULTIPROC_DIR is
    used as is (left in place at exit); otherwise one per port under the project's state folder.
    """
    from shipyard.serving.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

    given = os.environ.get(MULTIPROC_ENV)
    folder = prepare_multiprocess_dir(given or settings.state_dir / "run" / f"metrics-{settings.server_port}")
    os.environ[MULTIPROC_ENV] = str(folder)
    return None if given else folder


def _register_subsystems() -> None:
    for name in SUBSYSTEM_CLIS:
        if _module_exists(name):
            importlib.import_module(name).register(main)


_register_subsystems()


if __name__ == "__main__":  # pragma: no cover
    main()
