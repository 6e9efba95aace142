"""A page request in SQL: its sort orders as ``ORDER BY`` clauses, and the page's rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select

from authgate.storage.paging import PageRequest, SortOrder

Query = TypeVar("Query", bound=Select[Any])

# The default of the lists read newest first (fired alerts, checkpoints, the audit trail).
NEWEST_FIRST = (SortOrder("id", descending=True),)


def order_by(
    sort: Sequence[SortOrder], columns: Mapping[str, Any], tie_breaker: Any
) -> list[ColumnElement[Any]]:
    clauses = []
    for order in sort:
        column = columns[order.field]  # callers validate names against the mapping
        clause = column.desc() if order.descending else column.asc()
        if getattr(column.expression, "nullable", False):
            # NULLs where PostgreSQL (and so UTMStack) puts them, on SQLite too: last
            # ascending, first descending. Only on nullable columns: SQLite would sort
            # rather than walk an index.
            clause = clause.nulls_first() if order.descending else clause.nulls_last()
        clauses.append(clause)
    clauses.append(tie_breaker.asc())  # stable pages
    return clauses


def paged(
    query: Query,
    request: PageRequest,
    columns: Mapping[str, Any],
    tie_breaker: Any,
    *,
    default: Sequence[SortOrder] = (),
) -> Query:
    """``query`` sorted as ``request`` asks (``default`` when it does not; then by
    ``tie_breaker``), cut to the requested page."""
    sort = request.sort or default
    return (
        query.order_by(*order_by(sort, columns, tie_breaker))
        .offset(request.offset)
        .limit(request.size)
    )
