"""Printing results: JSON for scripts, rich tables for people, durations in and out.
Tables never cut a cell short: a narrow terminal wraps them, and a pipe or a file gets
whole lines, as wide as they need to be."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from authgate.client._cli._session import err, out
from authgate.client._cli._terminal import SafeConsole, json_printable
from authgate.client._endpoints import iso
from authgate.client._models import ApiKey, Page, SessionInfo, UsageRecord, User, V12User

__all__ = [
    "all_pages",
    "first_items",
    "parse_duration",
    "print_json",
    "print_record",
    "print_table",
    "when",
]

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Far beyond what the server accepts (a key lives at most 3650 days, a grace 7 days), so
# its own refusal answers every plausible value; the bound keeps ``now + duration``
# inside the year 9999, where it would be an OverflowError (a traceback).
_LONGEST_DURATION_DAYS = 36500
# Wide enough for any row: a pipe or a file is not a screen to fit.
_UNBOUNDED_WIDTH = 100_000
# The largest page the server's listings answer.
_LARGEST_PAGE = 1000


def parse_duration(text: str) -> timedelta:
    """``90d``, ``24h``, ``30m``, ``45s``, ``2w`` (or ``0``); at most 36500 days."""
    if text.strip() == "0":
        return timedelta(0)
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use a number with s, m, h, d or w: 90d)")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > _LONGEST_DURATION_DAYS * _UNITS["d"]:
        raise ValueError(f"too long a duration: {text!r} (at most {_LONGEST_DURATION_DAYS}d)")
    return timedelta(seconds=seconds)


# The REST API's names where they are not the field's name in camelCase.
_REST_NAMES: dict[tuple[type, str], str] = {
    (ApiKey, "allowed_ips"): "allowedIp",
    (User, "created_at"): "createdDate",
    (User, "updated_at"): "lastModifiedDate",
    (UsageRecord, "method"): "requestMethod",
    (UsageRecord, "status"): "responseCode",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _rest_name(value: object, name: str) -> str:
    if isinstance(value, SessionInfo | V12User):  # v12's JSON is snake_case
        return name
    for (model, field_name), rest_name in _REST_NAMES.items():
        if field_name == name and isinstance(value, model):
            return rest_name
    return _camel(name)


def as_json(value: Any) -> Any:
    """Dataclasses (under the REST API's camelCase names), datetimes, tuples and
    mappings as plain JSON values: ``-o json`` prints what the server's JSON says."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            _rest_name(value, field.name): as_json(getattr(value, field.name))
            for field in dataclasses.fields(value)
        }
    if isinstance(value, datetime):
        return iso(value, timespec="auto")
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): as_json(item) for key, item in value.items()}
    return value


def print_json(value: Any) -> None:
    """``value`` as indented JSON: non-ASCII text as it is, controls escaped."""
    text = json.dumps(as_json(value), indent=2, ensure_ascii=False)
    out.print(json_printable(text), markup=False)


def when(moment: datetime | None, *, never: str = "—") -> str:
    """A time for people, in the REST API's form to the second: ``2026-12-06T10:25:57Z``."""
    return iso(moment, timespec="seconds") if moment is not None else never


def print_table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str | None]]
) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) if cell is not None else "—" for cell in row))
    _print(table)


def print_record(pairs: Sequence[tuple[str, str | None]]) -> None:
    """One object as a two-column table."""
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in pairs:
        table.add_row(name, escape(value) if value is not None else "—")
    _print(table)


def _print(table: Table) -> None:
    """On a terminal, fitted to its width (cells wrap); in a pipe or a file, one whole
    line per row, as wide as it needs to be (as ``authgate``'s own tables)."""
    if out.is_terminal:
        out.print(table)
    else:  # a console of its own: ``out`` never prints wider than its own width
        wide = SafeConsole(file=out.file, width=_UNBOUNDED_WIDTH, highlight=False)
        wide.print(table, crop=False)


def all_pages(
    fetch: Callable[[int, int], Page[T]], *, size: int, limit: int | None, label: str
) -> Iterator[T]:
    """Every item, page after page (at most ``limit``), with a progress bar on a terminal
    once a listing spans several pages."""
    yielded = 0
    first = fetch(0, size)
    pages_shown = first.has_next and err.is_terminal
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=not pages_shown,
    ) as progress:
        wanted = first.total if limit is None else min(limit, first.total or limit)
        task = progress.add_task(label, total=wanted)
        page = first
        while True:
            for item in page:
                if limit is not None and yielded >= limit:
                    return
                yield item
                yielded += 1
                progress.advance(task)
            if not page.has_next or not page.items:
                return
            page = fetch(page.page + 1, size)


def first_items(fetch: Callable[[int, int], Page[T]], *, limit: int, label: str) -> list[T]:
    """The first ``limit`` items of a listing, in pages as large as the server answers."""
    return list(all_pages(fetch, size=min(limit, _LARGEST_PAGE), limit=limit, label=label))
