"""What the Settings pages share to read forms and query strings, and to page lists:
bounded text, the paging parameters and links, and the problem a refused form shows."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from starlette.datastructures import FormData, QueryParams

from authgate.storage.paging import Page, PageRequest, SortOrder

T = TypeVar("T")


@dataclass
class FormProblem:
    """Why one form was refused, shown next to that form and in the page's summary."""

    form: str  # which form: "create", "edit", "password", "delete", "enabled"
    form_id: str  # the form's HTML id; its fields are "<form_id>-<field>"
    target: str | None = None  # the login or rule id the form is about
    message: str | None = None  # about the whole form
    fields: dict[str, str] = field(default_factory=dict)  # field name -> message
    values: dict[str, Any] = field(default_factory=dict)  # what was entered
    status: int = 422

    def __post_init__(self) -> None:
        # A validation error without a field is about the whole form.
        if "form" in self.fields:
            self.message = self.message or self.fields.pop("form")


def text(data: FormData | QueryParams, name: str, limit: int) -> str:
    value = data.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def secret(form: FormData, name: str) -> str:
    """A password as typed (never stripped), bounded."""
    value = form.get(name)
    return value[:1024] if isinstance(value, str) else ""


def grace_seconds(form: FormData) -> int:
    """A form's ``grace_seconds`` (a rotation's grace period): a whole number of at most
    nine digits, else -1, which the service refuses with its range as for any value out
    of it (a 20-digit number would overflow ``timedelta``: a 500, before)."""
    raw = form.get("grace_seconds", "0")
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 9:
        return int(raw)
    return -1


def strings(form: FormData, name: str) -> list[str]:
    return [value[:64] for value in form.getlist(name) if isinstance(value, str)][:10]


def paging(params: QueryParams, sizes: Sequence[int], *, default: int) -> tuple[int, int]:
    """(page number from 1, page size) from the query string; nonsense means the default."""
    raw_page = params.get("page", "")
    number = int(raw_page) if raw_page.isdecimal() and 0 < len(raw_page) <= 9 else 1
    raw_size = params.get("size", "")
    size = int(raw_size) if raw_size.isdecimal() and len(raw_size) <= 4 else default
    size = size if size in sizes else default
    return max(number, 1), size


def page_count(total: int, size: int) -> int:
    return max(1, math.ceil(total / size))


async def page_in_range(
    fetch: Callable[[PageRequest], Awaitable[Page[T]]],
    number: int,
    size: int,
    sort: tuple[SortOrder, ...] = (),
) -> tuple[Page[T], int]:
    """The page ``number`` (from 1) read by ``fetch``, or the last page when ``number`` is
    past it (rows removed since the link was made), with the number of the page read."""
    page = await fetch(PageRequest(page=number - 1, size=size, sort=sort))
    last = page_count(page.total, size)
    if number > last:
        number = last
        page = await fetch(PageRequest(page=number - 1, size=size, sort=sort))
    return page, number


def pager(
    path: str, params: QueryParams, total: int, number: int, size: int, sizes: Sequence[int]
) -> dict[str, Any]:
    """Links to the first, previous, next and last pages and to other page sizes,
    keeping the rest of the query string."""
    pages = page_count(total, size)

    def url(**changes: int) -> str:
        kept = [
            (name, value)
            for name, value in params.multi_items()
            if name not in changes and name != "page"
        ]
        query = urlencode([*kept, *((name, str(value)) for name, value in changes.items())])
        return f"{path}?{query}"

    return {
        "page": number,
        "pages": pages,
        "total": total,
        "first": (number - 1) * size + 1 if total else 0,
        "last": min(number * size, total),
        "first_url": url(page=1) if number > 1 else None,
        "prev_url": url(page=number - 1) if number > 1 else None,
        "next_url": url(page=number + 1) if number < pages else None,
        "last_url": url(page=pages) if number < pages else None,
        "sizes": [(choice, url(size=choice, page=1), choice == size) for choice in sizes],
    }
