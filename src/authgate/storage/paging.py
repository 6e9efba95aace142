"""Page requests and pages, shared by repositories, services and routers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SortOrder:
    field: str  # a logical field name the repository knows, e.g. "createdDate"
    descending: bool = False


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int = 0  # zero-based, as in Spring Data / JHipster
    size: int = 20
    sort: tuple[SortOrder, ...] = ()

    @property
    def offset(self) -> int:
        return self.page * self.size


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    total: int
    request: PageRequest
