"""One page of the admin list: holds in a state (or all), from a sender, to a domain, held between two dates,
oldest or newest first, with the total count.

    page = list_page(quarantine, Listing(state="held", order="newest", page=2, size=50, domain="gmial.com"))

A read-only query on the store's tables (offset paging, ordered by creation time and then id, so every hold is
on exactly one page while nothing changes; `ix_holds_state_created` serves the state and the order); the holds of
the page are then read in one query through the quarantine.
"""

from __future__ import annotations

import datetime as dt
import math
import urllib.parse
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from rcptguard.store import StoreError, error_line
from rcptguard.store.quarantine import STATES, Hold, Quarantine
from rcptguard.store.schema import holds, messages

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.sql.elements import ColumnElement

__all__ = ["MAX_PAGE_SIZE", "ORDERS", "PAGE_SIZE", "Listing", "ListingPage", "list_page"]

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_FILTER = 320  # characters of a sender or domain filter (an address is at most 254)
ORDERS = ("oldest", "newest")
FILTERS = (*STATES, "all")


@dataclass(frozen=True, slots=True)
class Listing:
    """What the admin asked to see; `parse` turns query parameters into one, or ValueError."""

    state: str = "held"  # one of STATES, or "all"
    order: str = "oldest"
    page: int = 1
    size: int = PAGE_SIZE
    sender: str = ""  # the envelope sender, exactly (case aside); "" for any
    domain: str = ""  # the held recipient's domain, exactly (case aside); "" for any
    since: dt.date | None = None  # held on or after this day (UTC)
    until: dt.date | None = None  # held on or before this day (UTC)

    @classmethod
    def parse(cls, state: str | None, order: str | None, page: str | None, size: str | None,
              params: Mapping[str, str] | None = None) -> Listing:
        """From the list's query parameters; `params` has the filters (sender, domain, since, until)."""
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
        given = params or {}
        sender = given.get("sender", "").strip().strip("<>").lower()[:MAX_FILTER]
        domain = given.get("domain", "").strip().lstrip("@").rstrip(".").lower()[:MAX_FILTER]
        return cls(state, order, number, count, sender, domain, _day(given.get("since"), "since"),
                   _day(given.get("until"), "until"))

    def query(self, **changes: object) -> str:
        """This listing as query parameters (with `changes`), for a link to another page of it; filters that are
        not set are left out."""
        values: dict[str, Any] = {**asdict(self), **changes}
        return urllib.parse.urlencode({name: value for name, value in values.items() if value not in ("", None)})

    def conditions(self) -> list[ColumnElement[bool]]:
        """The WHERE conditions of this listing's filters (on holds joined with messages)."""
        found: list[ColumnElement[bool]] = []
        if self.state != "all":
            found.append(holds.c.state == self.state)
        if self.sender:
            found.append(func.lower(messages.c.mail_from) == self.sender)
        if self.domain:
            found.append(func.lower(holds.c.recipient).like(f"%@{_escaped(self.domain)}", escape="\\"))
        if self.since is not None:
            found.append(holds.c.created_at >= _midnight(self.since))
        if self.until is not None:
            found.append(holds.c.created_at < _midnight(self.until + dt.timedelta(days=1)))
        return found

    @property
    def filtered(self) -> bool:
        return bool(self.sender or self.domain or self.since or self.until)


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


def _day(value: str | None, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise ValueError(f"{name} is a date, YYYY-MM-DD") from None


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def _escaped(text: str) -> str:
    """`text` for a LIKE pattern: its own % and _ (and the escape character) matched as themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_page(quarantine: Quarantine, listing: Listing) -> ListingPage:
    """The holds of one page of `listing` and how many there are in all. Raises StoreError."""
    source = holds.join(messages, holds.c.message_id == messages.c.id) if listing.sender else holds
    conditions = listing.conditions()
    count = select(func.count()).select_from(source).where(*conditions)
    ids = select(holds.c.id).select_from(source).where(*conditions)
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
    return ListingPage(listing, quarantine.get_many(found), total)
