"""A page request in SQL (``storage/page_queries.py``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from authgate.storage.models import FiredAlert
from authgate.storage.page_queries import NEWEST_FIRST, paged
from authgate.storage.paging import PageRequest, SortOrder

COLUMNS = {"id": FiredAlert.id, "rule": FiredAlert.rule_name}


def sql(request: PageRequest) -> str:
    query = paged(select(FiredAlert.id), request, COLUMNS, FiredAlert.id, default=NEWEST_FIRST)
    compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    return " ".join(str(compiled).split())


def test_the_default_order_applies_when_the_request_names_none() -> None:
    """No sort asked: newest first, then the tie breaker; the page's offset and size."""
    assert sql(PageRequest(page=2, size=10)).endswith(
        "ORDER BY fired_alerts.id DESC, fired_alerts.id ASC LIMIT 10 OFFSET 20"
    )


def test_a_requested_order_replaces_the_default() -> None:
    """A sort the caller asks for is used instead of the default, still tie-broken."""
    request = PageRequest(sort=(SortOrder("rule"),))
    assert sql(request).endswith(
        "ORDER BY fired_alerts.rule_name ASC, fired_alerts.id ASC LIMIT 20 OFFSET 0"
    )
