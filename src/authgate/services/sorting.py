"""Which fields a page may be sorted by.

A ``?sort=`` naming a field the repository cannot order by is refused with a field
error, never ignored: a caller who asked for an order and got another would page
through the results wrongly without knowing it.
"""

from __future__ import annotations

from collections.abc import Collection

from authgate.exceptions import FieldError, ValidationFailed
from authgate.storage.paging import PageRequest


def require_sortable(request: PageRequest, fields: Collection[str]) -> None:
    """Raise :class:`ValidationFailed` (``sort``, in the query) when ``request`` sorts
    by a field not in ``fields`` (a repository's ``SORT_COLUMNS``), naming those."""
    if any(order.field not in fields for order in request.sort):
        message = "Unknown sort field; use one of " + ", ".join(fields)
        raise ValidationFailed(message, field_errors=[FieldError("sort", message, "query")])
