"""What the store holds right now, counted: the quarantine, the releases and notices still owed, the domains learned.

    snapshot = store_snapshot(store)      # a handful of aggregate queries in one read; StoreError when unreachable
    snapshot.holds["held"], snapshot.oldest_held_seconds, snapshot.releases["deferred"], snapshot.notices_owed

Read by the metrics of every server (rcptguard.metrics, at each scrape) and by the admin dashboard. Counts only:
no address, subject or byte of a message leaves here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, and_, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from rcptguard.store import Store, StoreError, as_utc, error_line, utc_now
from rcptguard.store.schema import HOLD_STATES, Delivery, HoldState, Notice, correspondents, holds, messages, outgoing

__all__ = ["RELEASE_STATES", "Snapshot", "store_snapshot"]

# A release's delivery as the metrics tell it: `deferred` is a pending one the next hop has put off at least once.
RELEASE_STATES = ("pending", "deferred", "sending", "delivered", "failed")
_OWED = (Notice.PENDING, Notice.SENDING)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counts of the store at one moment."""

    holds: dict[str, int]  # by state, every state present (0 when none)
    stored_bytes: int  # of held messages whose bytes are still kept (not purged)
    oldest_held_seconds: float  # age of the oldest hold still waiting for a decision; 0 when none
    releases: dict[str, int]  # released and corrected holds by delivery (RELEASE_STATES)
    notices_owed: int  # notices to senders not yet sent: those of holds, and the outgoing mail (warnings, reports)
    outgoing_refused: int  # outgoing mail the next hop refused for good, kept for the record
    learned_domains: int  # domains mail was let through to (correspondents)


def store_snapshot(store: Store, now: dt.datetime | None = None) -> Snapshot:
    """The store's counts now. Raises StoreError when it cannot be read."""
    try:
        with store.engine.connect() as connection:
            return _snapshot(connection, now or utc_now())
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the store's counts: {error_line(exc)}") from exc


def _snapshot(connection: Connection, now: dt.datetime) -> Snapshot:
    by_state = {str(state): 0 for state in HOLD_STATES}
    for state, count in connection.execute(select(holds.c.state, func.count()).group_by(holds.c.state)):
        by_state[str(state)] = int(count)
    oldest = connection.execute(select(func.min(holds.c.created_at)).where(holds.c.state == HoldState.HELD)).scalar()
    stored = connection.execute(select(func.coalesce(func.sum(messages.c.size), 0))
                                .where(messages.c.purged_at.is_(None))).scalar_one()
    delivery = case((and_(holds.c.delivery == Delivery.PENDING, holds.c.delivery_attempts > 0), "deferred"),
                    else_=holds.c.delivery)
    releases = dict.fromkeys(RELEASE_STATES, 0)
    released = holds.c.state.in_((HoldState.RELEASED, HoldState.CORRECTED))
    for state, count in connection.execute(select(delivery, func.count()).where(released).group_by(delivery)):
        if state in releases:
            releases[str(state)] = int(count)
    owed_holds = connection.execute(select(func.count()).where(holds.c.notice.in_(_OWED))).scalar_one()
    owed_outgoing = connection.execute(select(func.count()).where(outgoing.c.state.in_(_OWED))).scalar_one()
    refused = connection.execute(select(func.count()).where(outgoing.c.state == Notice.REFUSED)).scalar_one()
    learned = connection.execute(select(func.count()).select_from(correspondents)).scalar_one()
    age = max((now - as_utc(oldest)).total_seconds(), 0.0) if oldest is not None else 0.0
    return Snapshot(holds=by_state, stored_bytes=int(stored), oldest_held_seconds=age, releases=releases,
                    notices_owed=int(owed_holds) + int(owed_outgoing), outgoing_refused=int(refused),
                    learned_domains=int(learned))
