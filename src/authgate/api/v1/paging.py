"""UTMStack v12's page answers: ``{"data": [...], "page_info": {...}}`` with one-based
``page`` (v12's lists: ``/users``, ``/api-keys``)."""

from __future__ import annotations

import math

from pydantic import BaseModel


class PageInfo(BaseModel):
    page: int
    page_size: int
    total_items: int
    total_pages: int
    has_next: bool
    has_prev: bool

    @classmethod
    def of(cls, *, page: int, page_size: int, total_items: int, min_pages: int = 0) -> PageInfo:
        """The page info of one-based ``page`` of ``page_size`` among ``total_items``;
        ``total_pages`` is at least ``min_pages`` (v12's lists differ when empty)."""
        pages = max(math.ceil(total_items / page_size), min_pages)
        return cls(
            page=page,
            page_size=page_size,
            total_items=total_items,
            total_pages=pages,
            has_next=page < pages,
            has_prev=page > 1,
        )
