"""Spring-style paging: ``?page=0&size=20&sort=field,desc`` in; ``X-Total-Count``, ``Link`` out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, Query, Request, Response
from starlette.datastructures import URL

from authgate.exceptions import FieldError, ValidationFailed
from authgate.storage.paging import Page, PageRequest, SortOrder

MAX_PAGE_SIZE = 1000
Item = TypeVar("Item")
Shown = TypeVar("Shown")
# Characters left as they are when a link is re-encoded (reserved ones and "%").
_URI_CHARACTERS = ":/?#[]@!$&'()*+,;=%~"


SortQuery = Annotated[
    list[str] | None,
    Query(description="`field,asc` or `field,desc`; repeat for several.", max_length=5),
]


def sort_orders(sort: list[str] | None) -> tuple[SortOrder, ...]:
    """``?sort=`` as orders; the service refuses a field it cannot sort by."""
    orders = []
    for item in sort or []:
        field, _, direction = item.partition(",")
        direction = direction.strip().lower() or "asc"
        if not field.strip() or direction not in ("asc", "desc"):
            message = "Invalid sort: use 'field,asc' or 'field,desc'."
            raise ValidationFailed(message, field_errors=[FieldError("sort", message, "query")])
        orders.append(SortOrder(field.strip(), descending=direction == "desc"))
    return tuple(orders)


def page_request(
    page: Annotated[int, Query(ge=0, le=1_000_000, description="Zero-based page number.")] = 0,
    size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page.")] = 20,
    sort: SortQuery = None,
) -> PageRequest:
    return PageRequest(page=page, size=size, sort=sort_orders(sort))


PageRequestDep = Annotated[PageRequest, Depends(page_request)]


def pagination_headers(
    request: Request, page: Page[Any], *, url: URL | None = None
) -> dict[str, str]:
    """``X-Total-Count`` and a JHipster ``Link`` header (next, prev, last, first): the
    request's URL (or ``url``) with other ``page`` and ``size`` parameters."""
    size = page.request.size
    current = page.request.page
    last = max((page.total - 1) // size, 0)
    base = url or request.url

    def link(number: int, rel: str) -> str:
        target = base.include_query_params(page=number, size=size)
        # A path with non-ASCII characters (decoded by the server) is sent encoded again:
        # header values must be Latin-1, and a link must be a URI.
        return f'<{quote(str(target), safe=_URI_CHARACTERS)}>; rel="{rel}"'

    links = []
    if current < last:
        links.append(link(current + 1, "next"))
    if 0 < current <= last + 1:
        links.append(link(current - 1, "prev"))
    links.append(link(last, "last"))
    links.append(link(0, "first"))
    return {"X-Total-Count": str(page.total), "Link": ",".join(links)}


def paged(
    request: Request,
    response: Response,
    page: Page[Item],
    shown: Callable[[Item], Shown],
    *,
    url: URL | None = None,
) -> list[Shown]:
    """A page's items as the endpoint shows them (``shown``), its ``X-Total-Count`` and
    ``Link`` headers (``pagination_headers``) set on ``response``."""
    response.headers.update(pagination_headers(request, page, url=url))
    return [shown(item) for item in page.items]
