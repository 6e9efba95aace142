"""Reading UTMStack's users, authorities and API keys, and its global two-factor switch:
from its PostgreSQL database (in a read-only transaction) or from a JSON export of the
same rows.

Both ways produce the same thing, because the database is read with the very query the
documented ``psql`` export runs (:func:`export_query`): each table as a JSON array of its
rows (``json_agg``), so every value is converted by PostgreSQL in one way, and parsing
happens in one place (``services/utmstack_rows.py``). Which columns each table has is
read too, so column variants of older UTMStack versions can be reported.

The rows hold UTMStack's API keys in plaintext: nothing here logs, prints or puts a row
in an exception message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from authgate.exceptions import ConfigurationError
from authgate.storage.database_url import describe_connection_failure, normalise_database_url

TABLES = ("jhi_user", "jhi_user_authority", "api_keys", "utm_configuration_parameter")
# UTMStack's global two-factor switch: the one row of utm_configuration_parameter read.
# Only it is exported: the table's other rows hold UTMStack's settings (SMTP password...).
TFA_SWITCH_PARAMETER = "utmstack.tfa.enable"
CONFIGURATION_TABLE = "utm_configuration_parameter"


@dataclass(slots=True)
class SourceTables:
    """UTMStack's rows by table (a missing table: absent), and each table's columns when
    known (a JSON export without its ``columns`` object only tells them by its rows)."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    columns: dict[str, frozenset[str]] = field(default_factory=dict)

    def __repr__(self) -> str:  # rows hold plaintext keys
        counts = {table: len(rows) for table, rows in self.rows.items()}
        return f"SourceTables(rows={counts})"


def export_query(tables: tuple[str, ...] = TABLES) -> str:
    """The single query whose result (one JSON object) is the export file.

    Built only from the fixed names in ``TABLES`` (never from input), hence the noqa. Of
    ``utm_configuration_parameter`` only the two-factor switch's name and value are read.
    """
    parts = [
        f"'{table}', (SELECT coalesce(json_agg(t), '[]'::json) FROM {_rows_of(table)} t)"  # noqa: S608
        for table in tables
    ]
    parts.append(
        "'columns', (SELECT json_object_agg(table_name, names) FROM (SELECT table_name, "  # noqa: S608
        "json_agg(column_name::text) AS names FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name IN ("
        + ", ".join(f"'{table}'" for table in tables)
        + ") GROUP BY table_name) c)"
    )
    return "SELECT json_build_object(" + ", ".join(parts) + ")"


def _rows_of(table: str) -> str:
    if table == CONFIGURATION_TABLE:
        return (
            f"(SELECT conf_param_short, conf_param_value FROM {table} "  # noqa: S608
            f"WHERE conf_param_short = '{TFA_SWITCH_PARAMETER}')"
        )
    return table


async def read_database(url: str, *, schema: str = "public") -> SourceTables:
    """UTMStack's tables, read in one read-only, repeatable-read transaction.

    libpq's ``sslmode=`` is taken as ``AUTHGATE_DATABASE_URL`` takes it (asyncpg's
    ``ssl=``, same values).

    Raises:
        ConfigurationError: the URL is not a PostgreSQL URL, or the database cannot be
            read (the message names the cause, never a row or a password).
    """
    try:
        parsed = make_url(normalise_database_url(url))
    except ArgumentError:
        raise ConfigurationError("--database-url is not a database URL") from None
    if parsed.get_backend_name() != "postgresql":
        raise ConfigurationError("--database-url must be a postgresql:// URL")
    engine = create_async_engine(parsed.set(drivername="postgresql+asyncpg"), hide_parameters=True)
    try:
        async with engine.connect() as connection, connection.begin():
            # First statement of the transaction: nothing in it can write.
            await connection.execute(
                text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            )
            await connection.execute(
                text("SELECT set_config('search_path', :schema, true)"), {"schema": schema}
            )
            result = await connection.scalars(
                text(
                    "SELECT table_name::text FROM information_schema.tables "
                    "WHERE table_schema = :schema AND table_name IN :tables"
                ).bindparams(bindparam("tables", expanding=True)),
                {"schema": schema, "tables": list(TABLES)},
            )
            present = set(result)
            tables = tuple(table for table in TABLES if table in present)
            if "jhi_user" not in tables:
                raise ConfigurationError(
                    f"no jhi_user table in schema {schema!r}: not a UTMStack database "
                    "(or use --schema)"
                )
            exported = await connection.scalar(text(export_query(tables)))
    except DBAPIError as error:
        # A refused connection is named as serve names it (no such database, the user
        # refused, ...); anything else by the driver's error class
        # (ReadOnlySQLTransactionError, ...): its message may quote values.
        described = describe_connection_failure(error, url, setting="--database-url")
        cause = getattr(error.orig, "__cause__", None) or error.orig
        raise ConfigurationError(
            f"cannot read the UTMStack database: {described or type(cause).__name__}"
        ) from None
    except OSError as error:
        described = describe_connection_failure(error, url, setting="--database-url")
        raise ConfigurationError(
            f"cannot reach the UTMStack database: {described or error.strerror}"
        ) from None
    except ConfigurationError:
        raise
    except Exception as error:  # noqa: BLE001 - one line, never a traceback with the URL
        # A URL parameter the driver refuses (TypeError), an SSL setup failure, ...: the
        # class names it; its message is left out (it may quote the URL's values).
        raise ConfigurationError(
            f"cannot connect to the UTMStack database: {type(error).__name__} "
            "(check --database-url / UTMSTACK_DATABASE_URL and its parameters)"
        ) from None
    finally:
        await engine.dispose()
    document = json.loads(exported) if isinstance(exported, str) else exported
    return tables_from_document(document)


def read_file(path: Path) -> SourceTables:
    """The tables of a JSON export (see :func:`export_query` and the README).

    Raises:
        ConfigurationError: unreadable, not JSON, or not an export.
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"cannot read {path}: {error.strerror}") from None
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigurationError(f"{path} is not valid JSON") from None
    return tables_from_document(document)


def tables_from_document(document: Any) -> SourceTables:
    if not isinstance(document, dict) or not isinstance(document.get("jhi_user"), list):
        raise ConfigurationError("not a UTMStack export: no jhi_user array")
    source = SourceTables()
    for table in TABLES:
        rows = document.get(table)
        if rows is None:
            continue
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ConfigurationError(f"not a UTMStack export: {table} is not an array of rows")
        source.rows[table] = rows
    columns = document.get("columns")
    for table, rows in source.rows.items():
        named = columns.get(table) if isinstance(columns, dict) else None
        if isinstance(named, list):
            source.columns[table] = frozenset(str(name) for name in named)
        elif rows:
            source.columns[table] = frozenset().union(*(row.keys() for row in rows))
    return source
