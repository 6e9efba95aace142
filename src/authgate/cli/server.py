"""Running the server and its database: ``authgate serve|migrate|version``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from authgate import __version__
from authgate.cli.console import (
    ConfigOption,
    friendly_errors,
    load_settings,
    out,
    with_services,
)
from authgate.cli.http_protocol import bounded_head_protocol
from authgate.container import Services, build_services, load_signing_keys, prepare_data_dir
from authgate.security.log_lines import SingleLineFormatter
from authgate.services.metrics import MULTIPROCESS_DIR_VARIABLE, prepare_multiprocess_directory
from authgate.storage import migrate as migrations

server_commands = typer.Typer()


@server_commands.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


WORKER_HEALTHCHECK_SECONDS = 60
"""How long a worker may leave its supervisor's ping unanswered before uvicorn kills it."""


@server_commands.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    config: ConfigOption = None,
) -> None:
    """Run the server (migrating SQLite first, and creating 'admin' on first start)."""
    with friendly_errors():
        settings = load_settings(config, host=host, port=port, workers=workers)
        # Create the data dir and signing keys before the workers start, so that they
        # share one key.
        prepare_data_dir(settings)
        load_signing_keys(settings)
        admin_password = with_services(settings, _prepare_to_serve)
    base = settings.base_url
    out.print(f"authgate {__version__}")
    out.print(f"  API:        {base}/api")
    out.print(f"  Swagger UI: {base}/swagger-ui/index.html")
    out.print(f"  Database:   {_display_url(settings.effective_database_url)}")
    if admin_password is not None:
        out.print("  First start: created user [bold]admin[/bold] with password")
        out.print(f"    [bold]{admin_password}[/bold]")
        out.print("  It is shown only this once: store it now, then change it.")
    with _metrics_shared_by_workers(settings.workers):
        _run_uvicorn(settings)


def _run_uvicorn(settings: Any) -> None:
    uvicorn.run(
        "authgate.app:create_app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        proxy_headers=False,  # client addresses are resolved by authgate's own rules
        server_header=False,
        access_log=False,  # authgate logs requests itself, without query strings
        # uvicorn kills a worker that does not answer its supervisor's ping within this
        # time, and stops the whole server when a replacement then fails to start. Its
        # default (5 s) is shorter than a worker's start (it imports the app in a fresh
        # interpreter: ~2 s of CPU, far longer on a busy host) and than a busy event loop
        # may keep the answering thread from the GIL, so healthy workers were killed.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        log_config=_log_config(settings.log_level),
        # httptools with bounds on the request head's size and arrival time (431, 408):
        # uvicorn's own protocols bound neither (see authgate.cli.http_protocol).
        http=bounded_head_protocol(
            max_head_bytes=settings.max_header_bytes,
            head_timeout=settings.header_timeout_seconds,
        ),
    )


@contextlib.contextmanager
def _metrics_shared_by_workers(workers: int) -> Iterator[None]:
    """With several workers, a metrics directory for this run, empty at the start (the
    operator's ``PROMETHEUS_MULTIPROC_DIR``, emptied, or a new private directory removed
    at the end), named to the workers through the environment they inherit. Set only
    now: this process's own prometheus_client stays single-process."""
    given = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if workers <= 1 and not given:
        yield
        return
    if given:
        prepare_multiprocess_directory(Path(given))
        yield
        return
    directory = tempfile.mkdtemp(prefix="authgate-metrics-")
    os.environ[MULTIPROCESS_DIR_VARIABLE] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_DIR_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)


async def _prepare_to_serve(services: Services) -> str | None:
    """Refuse a configuration the running nodes disagree with (before any worker
    starts, with a plain message), then create the first admin if there is none."""
    if services.cluster is not None:
        await services.cluster.preflight()
    given = services.settings.admin_password
    return await services.users.ensure_initial_admin(
        given.get_secret_value() if given is not None else None
    )


@server_commands.command()
def migrate(config: ConfigOption = None) -> None:
    """Apply pending database migrations (safe to run repeatedly)."""
    with friendly_errors():
        settings = load_settings(config)

        async def run() -> str | None:
            services = build_services(settings)
            try:
                await migrations.upgrade(services.db.engine)
                return await migrations.current_revision(services.db.engine)
            finally:
                await services.db.close()

        revision = asyncio.run(run())
    out.print(f"database schema at revision {revision}")


def _display_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _log_config(level: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {
                # One record, one line: control characters in messages are escaped.
                "()": SingleLineFormatter,
                "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s",
            },
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "authgate": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # httpx2 logs full request URLs at INFO; a webhook URL may carry a credential.
            "httpx2": {"level": "WARNING"},
        },
    }
