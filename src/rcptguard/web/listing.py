"""One page of the admin list: holds in a state (or all), oldest or newest first, with the total count.

    page = list_page(quarantine, Listing(state="held", order="newest", page=2, size=50))

A read-only query on the store's tables (offset paging, ordered by creation time and then id, so every hold is
on exactly one page while nothing changes); the holds themselves are read through the quarantine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from rcptguard.store import StoreError, error_line
from rcptguard.store.quarantine import STATES, Hold, Quarantine
from rcptguard.store.schema import holds

__all__ = ["MAX_PAGE_SIZE", "ORDERS", "PAGE_SIZE", "Listing", "ListingPage", "list_page"]

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
ORDERS = ("oldest", "newest")
FILTERS = (*STATES, "all")


@dataclass(frozen=True, slots=True)
class Listing:
    """What the admin asked to see; `parse` turns query parameters into one, or ValueError."""

    state: str = "held"  # one of STATES, or "all"
    order: str = "oldest"
    page: int = 1
    size: int = PAGE_SIZE

    @classmethod
    def parse(cls, state: str | None, order: str | None, page: str | None, size: str | None) -> Listing:
        state = state or "held"
        order = order or "oldest"
        if state not in FILTERS:
            raise ValueError(f"state is one of {', '.join(FILTERS)}")
        if order not in ORDERS:
            raise ValueError(f"order is one of {', '.join(ORDERS)}")
        number = _whole(page, 1, "page")
        count = _whole(size, PAGE_SIZE, "size")
        if not 1 <= count <= MAX_PAGE_SIZE:
            raise ValueError(f"size is from 1 to {MAX_PAGE_SIZE}")
        return cls(state, order, number, count)

    def query(self, **changes: object) -> str:
        """This listing as query parameters (with `changes`), for a link to another page of it."""
        values = {"state": self.state, "order": self.order, "page": self.page, "size": self.size, **changes}
        return "&".join(f"{name}={value}" for name, value in values.items())


@dataclass(frozen=True, slots=True)
class ListingPage:
    listing: Listing
    holds: list[Hold]
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.listing.size))

    @property
    def first(self) -> int:
        """The position (from 1) of this page's first hold in the whole list; 0 when the page is empty."""
        return (self.listing.page - 1) * self.listing.size + 1 if self.holds else 0

    @property
    def last(self) -> int:
        return self.first + len(self.holds) - 1 if self.holds else 0

    @property
    def previous(self) -> int | None:
        return min(self.listing.page - 1, self.pages) if self.listing.page > 1 else None

    @property
    def next(self) -> int | None:
        return self.listing.page + 1 if self.listing.page < self.pages else None


def _whole(value: str | None, default: int, name: str) -> int:
    if value is None or value == "":
        return default
    if not value.isdecimal() or len(value) > 9 or int(value) < 1:
        raise ValueError(f"{name} is a whole number from 1")
    return int(value)


def list_page(quarantine: Quarantine, listing: Listing) -> ListingPage:
    """The holds of one page of `listing` and how many there are in all. Raises StoreError."""
    condition = holds.c.state == listing.state if listing.state != "all" else None
    count = select(func.count()).select_from(holds)
    ids = select(holds.c.id)
    if condition is not None:
        count, ids = count.where(condition), ids.where(condition)
    if listing.order == "newest":
        ids = ids.order_by(holds.c.created_at.desc(), holds.c.id.desc())
    else:
        ids = ids.order_by(holds.c.created_at, holds.c.id)
    ids = ids.limit(listing.size).offset((listing.page - 1) * listing.size)
    try:
        with quarantine.engine.connect() as connection:
            total = int(connection.execute(count).scalar_one())
            found = list(connection.execute(ids).scalars())
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the quarantine: {error_line(exc)}") from exc
    page = [hold for hold in (quarantine.get(hold_id) for hold_id in found) if hold is not None]
    return ListingPage(listing, page, total)
