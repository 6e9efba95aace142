"""How commands print what they list: a table for people, or JSON for scripts.

``-o json`` prints the REST API's own bodies (camelCase DTOs, ISO 8601 times), so a
script written against ``GET /api/api-keys`` reads ``authgate keys list -o json`` too.
Tables never cut a cell short: a narrow terminal wraps them, and a pipe or a file gets
whole lines, as wide as they need to be.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from authgate.cli.console import out
from authgate.clock import format_utc

# Wide enough for any row: a pipe or a file is not a screen to fit.
_UNBOUNDED_WIDTH = 100_000


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        help="table (for people) or json (the REST API's bodies, camelCase, for scripts).",
        case_sensitive=False,
    ),
]


def stamp(moment: datetime | None, *, missing: str = "never") -> str:
    """A time in ISO 8601 UTC to the second: ``2026-12-04T22:12:36Z``."""
    if moment is None:
        return missing
    return format_utc(moment, timespec="seconds")


def table(*columns: str, title: str | None = None) -> Table:
    """A table whose cells wrap (``fold``) instead of ending in an ellipsis."""
    result = Table(title=title)
    for column in columns:
        result.add_column(column, overflow="fold")
    return result


def add_row(rows: Table, *cells: str) -> None:
    """A row of plain text: a key name like ``[red]x`` is shown, never read as markup."""
    rows.add_row(*(escape(cell) for cell in cells))


def print_table(rows: Table) -> None:
    if out.is_terminal:
        out.print(rows)
    else:  # a console of its own: ``out`` never prints wider than its own width
        Console(width=_UNBOUNDED_WIDTH).print(rows, crop=False)


def print_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    """One JSON document on stdout (a list for lists), as the REST API answers it."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, dict):
        data = value
    else:
        data = [item.model_dump(mode="json") for item in value]
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
