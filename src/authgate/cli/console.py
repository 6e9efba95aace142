"""What every command uses: output, settings, running services, friendly errors."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError

from authgate.container import Services, build_services, prepare_data_dir
from authgate.exceptions import AuthgateError, ConfigurationError, ValidationFailed
from authgate.runtime import BackgroundWork, ensure_schema
from authgate.services.metrics import prepare_multiprocess_directory
from authgate.settings import (
    CONFIG_FILE_VARIABLE,
    DATA_DIR_VARIABLE,
    PROMETHEUS_MULTIPROCESS_VARIABLE,
    Settings,
    explain_invalid_settings,
    prometheus_multiprocess_dir,
    unknown_environment_variables,
)
from authgate.settings_messages import ENV_PREFIX, describe_settings_error
from authgate.storage.database_url import describe_connection_failure

T = TypeVar("T")

out = Console()
# Messages are not wrapped: they may go to a log, where a wrapped line is two lines.
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file (else AUTHGATE_CONFIG_FILE)."),
]


@contextmanager
def friendly_errors(*, invalid_input_exit: int = 1) -> Iterator[None]:
    """Known failures become one red line and an exit code; never a traceback.
    ``invalid_input_exit``: the exit code of refused input (``ValidationFailed``)."""
    try:
        yield
    except ConfigurationError as error:
        err.print(f"[red]configuration error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None
    except ValidationFailed as error:
        err.print(f"[red]error:[/red] {error.message}")
        raise typer.Exit(invalid_input_exit) from None
    except AuthgateError as error:
        err.print(f"[red]error:[/red] {error.message}")
        raise typer.Exit(1) from None
    except ValidationError as error:
        err.print(f"[red]invalid settings:[/red] {error}")
        raise typer.Exit(2) from None
    except OSError as error:
        if error.filename is None:  # not a file's: a bug or the network's, traced
            raise
        # A data dir or key file this user cannot create, read or write (a root-owned
        # volume, a read-only mount): the file and why, not a traceback.
        reason = error.strerror or type(error).__name__
        err.print(f"[red]configuration error:[/red] {escape(f'{error.filename}: {reason}')}")
        raise typer.Exit(2) from None


@dataclass
class CommandLineOptions:
    """The options given before the command (``authgate --data-dir DIR --init users ...``)."""

    data_dir: Path | None = None
    init: bool = False


# Set by the root command's callback at every invocation, read by `load_settings`.
options = CommandLineOptions()


def load_settings(
    config: Path | None, *, creates_data_dir: bool = False, **overrides: Any
) -> Settings:
    """The settings, or a ``ConfigurationError`` naming the variables at fault; warns
    about ``AUTHGATE_*`` variables that no setting reads.

    Unless ``creates_data_dir`` (``serve``: a first start) or ``--init``, a data dir
    that does not exist is refused: run from the wrong directory, a command would
    otherwise create a second installation (database, pepper, keys) and act on it.
    """
    if config is not None:
        # Worker processes build their own settings from the environment.
        os.environ[CONFIG_FILE_VARIABLE] = str(config)
    if options.data_dir is not None:
        overrides["data_dir"] = options.data_dir.expanduser().absolute()
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        settings = Settings(**given)
    except ValidationError as error:
        raise ConfigurationError(explain_invalid_settings(error, given)) from None
    except SettingsError as error:
        raise ConfigurationError(describe_settings_error(error)) from None
    # Worker processes build their own settings from the environment: what the command
    # line gave (--data-dir; serve's --host, --port, --workers) goes there too, else the
    # links they send (password resets) would name the configured port, not the served one.
    for name, value in given.items():
        os.environ[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    for warning in unknown_environment_variables():
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    if not creates_data_dir:
        refuse_a_new_data_dir(settings)
    return settings


def refuse_a_new_data_dir(settings: Settings) -> None:
    """Unless ``--init``: a data dir to be created is refused (see ``load_settings``)."""
    if options.init or settings.data_dir.exists() or not settings.uses_data_dir:
        return
    raise ConfigurationError(
        f"no data directory at {settings.data_dir.absolute()}: point {DATA_DIR_VARIABLE} "
        "(or `authgate --data-dir DIR ...`) at the server's, or pass `authgate --init ...` "
        "to create a new installation there"
    )


def with_services(
    settings: Settings, use: Callable[[Services], Awaitable[T]], *, serving: bool = False
) -> T:
    """Run ``use`` with the services, started as a command (``serving``: as ``serve``
    before its workers start; see ``BackgroundWork.start``)."""
    prepare_data_dir(settings)

    async def run() -> T:
        services = build_services(settings)
        work = BackgroundWork(services)
        try:
            await ensure_schema(services)
            await work.start(background=False, serving=serving)
            return await use(services)
        finally:
            await work.close()

    with database_problems(settings):
        return asyncio.run(run())


@contextmanager
def database_problems(settings: Settings) -> Iterator[None]:
    """A database that cannot be reached (or refuses us) is a configuration error
    told in one sentence, not a traceback; other errors pass."""
    try:
        yield
    except BrokenPipeError:  # our own output's reader went away (``| head``): not the database
        raise
    except (OSError, DBAPIError) as error:
        message = describe_connection_failure(error, settings.effective_database_url)
        if message is None:
            raise
        raise ConfigurationError(message) from None


def read_password(from_stdin: bool, *, confirm: bool = True) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            err.print("[red]error:[/red] no password on standard input")
            raise typer.Exit(1)
        return password
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Far beyond what any duration may set (a key lives at most 3650 days, a grace 7 days),
# so the service's own refusal still answers every plausible value; the bound keeps
# ``now + duration`` inside the year 9999, where it would be an OverflowError (a traceback).
_LONGEST_DURATION_DAYS = 36500


def parse_duration(text: str) -> timedelta:
    """``90d`` → 90 days; units s, m, h, d, w; at most 36500 days."""
    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in _DURATION_UNITS or not value.isdigit() or int(value) <= 0:
        raise ValueError(f"invalid duration {text!r}: use a positive number with s, m, h, d or w")
    seconds = int(value) * _DURATION_UNITS[unit]
    if seconds > _LONGEST_DURATION_DAYS * _DURATION_UNITS["d"]:
        raise ValueError(f"invalid duration {text!r}: at most {_LONGEST_DURATION_DAYS}d")
    return timedelta(seconds=seconds)


def duration_option(text: str, *, option: str, zero_ok: bool = False) -> timedelta:
    """``option``'s value as a duration (``0`` too when ``zero_ok``); one that is not a
    duration is a bad option (exit code 2, as typer refuses one), not a refused
    operation."""
    if zero_ok and text.strip() in ("0", "0s"):
        return timedelta(0)
    try:
        return parse_duration(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=f"'{option}'") from None


@contextmanager
def metrics_shared_by_workers(workers: int) -> Iterator[None]:
    """With several workers, a metrics directory for this run, empty at the start (the
    operator's ``PROMETHEUS_MULTIPROC_DIR``, emptied, or a new private directory removed
    at the end), named to the workers through the environment they inherit. Set only
    now: this process's own prometheus_client stays single-process."""
    given = prometheus_multiprocess_dir()
    if workers <= 1 and not given:
        yield
        return
    if given:
        prepare_multiprocess_directory(given)
        yield
        return
    directory = tempfile.mkdtemp(prefix="authgate-metrics-")
    os.environ[PROMETHEUS_MULTIPROCESS_VARIABLE] = directory
    try:
        yield
    finally:
        with suppress(KeyError):
            del os.environ[PROMETHEUS_MULTIPROCESS_VARIABLE]
        shutil.rmtree(directory, ignore_errors=True)
