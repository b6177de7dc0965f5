"""Mail the guard sends that no hold carries (warnings, the policy service's notices, delivery reports): rows and
their atomic transitions, like the quarantine's. The outbox (rcptguard.outbox) does the sending.

    outgoing = Outgoing(store)
    outgoing.add("warning", "", "alice@example.org", notice_bytes)   # before the door answers
    for item in outgoing.due():                                      # the outbox, in a round
        claim = outgoing.claim(item.id)                              # None: another worker has it
        ...send...
        outgoing.settle(item.id, claim, "sent")                      # or "later" (with a wait), "refused"

    state   pending ──claim──▶ sending ──▶ sent | refused
              ▲                   │
              └──── later ────────┘ ; a claim older than the claim timeout (a dead worker's) is taken over

Settled rows are kept for `purge(older_than)` to remove (the relay's rounds keep a week).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from rcptguard.store import Store, StoreError
from rcptguard.store import error_line as _one_line
from rcptguard.store.schema import Notice, outgoing

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

__all__ = ["KINDS", "Outgoing", "OutgoingMail"]

KINDS = ("warning", "queue-hold", "report")


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """One message to send: from whom (the null sender for notices), to whom, the bytes, and how it went so far."""

    id: str
    kind: str
    mail_from: str
    recipient: str
    content: bytes
    created_at: dt.datetime
    state: str
    attempts: int
    last_error: str | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


class Outgoing:
    """The table of mail waiting to leave. Safe from several threads and processes: each send is claimed first."""

    def __init__(self, store: Store, *, stale_after: dt.timedelta = dt.timedelta(hours=1)) -> None:
        self.store = store
        self.engine = store.engine
        self.stale_after = stale_after

    def add(self, kind: str, mail_from: str, recipient: str, content: bytes) -> str:
        """Store a message to send (durably: the door answers only after this returns); its id."""
        if kind not in KINDS:
            raise ValueError(f"outgoing mail is one of {', '.join(KINDS)}, not {kind!r}")
        row_id = uuid.uuid4().hex
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(outgoing).values(
                    id=row_id, kind=kind, mail_from=mail_from, recipient=recipient, content=content,
                    created_at=_now(), state=Notice.PENDING, attempts=0))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store the {kind} to {recipient}: {_one_line(exc)}") from exc
        return row_id

    def due(self, *, ids: list[str] | None = None, limit: int = 500) -> list[OutgoingMail]:
        """Mail waiting to be sent now (pending and due, or claimed by a worker that died), oldest first."""
        now = _now()
        query = select(outgoing).where(self._takeable(now), or_(outgoing.c.next_attempt_at.is_(None),
                                                               outgoing.c.next_attempt_at <= now))
        if ids is not None:
            query = query.where(outgoing.c.id.in_(ids))
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(query.order_by(outgoing.c.created_at).limit(limit)).mappings().all()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the outgoing mail: {_one_line(exc)}") from exc
        return [OutgoingMail(id=r["id"], kind=r["kind"], mail_from=r["mail_from"], recipient=r["recipient"],
                             content=bytes(r["content"]), created_at=_utc(r["created_at"]), state=r["state"],
                             attempts=int(r["attempts"]), last_error=r["last_error"]) for r in rows]

    def claim(self, row_id: str) -> str | None:
        """Take one for sending, in one atomic update: its claim id, or None if another worker has it."""
        claim = uuid.uuid4().hex
        now = _now()
        try:
            with self.engine.begin() as connection:
                result = connection.execute(update(outgoing).where(outgoing.c.id == row_id, self._takeable(now))
                                            .values(state=Notice.SENDING, claimed_at=now, claim_id=claim))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot take outgoing mail {row_id}: {_one_line(exc)}") from exc
        return claim if result.rowcount == 1 else None

    def settle(self, row_id: str, claim: str, outcome: str, *, error: str | None = None,
               retry_after: dt.timedelta | None = None) -> bool:
        """Record how a send under `claim` went: sent, refused (for good), or later (pending again, due after
        `retry_after`). False when the claim was taken over meanwhile (the other worker records it)."""
        if outcome not in ("sent", "refused", "later"):
            raise ValueError(f"outgoing mail is sent, refused or later, not {outcome!r}")
        now = _now()
        values: dict[str, object] = {"attempts": outgoing.c.attempts + 1, "last_error": error, "claimed_at": None,
                                     "claim_id": None}
        if outcome == "later":
            values |= {"state": Notice.PENDING, "next_attempt_at": now + retry_after if retry_after else None}
        else:
            values |= {"state": outcome, "settled_at": now}
        try:
            with self.engine.begin() as connection:
                result = connection.execute(update(outgoing).where(
                    outgoing.c.id == row_id, outgoing.c.state == Notice.SENDING, outgoing.c.claim_id == claim,
                ).values(**values))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record outgoing mail {row_id} ({outcome}): {_one_line(exc)}") from exc
        return result.rowcount == 1

    def counts(self) -> dict[str, int]:
        """How many rows are in each state."""
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(select(outgoing.c.state, func.count()).group_by(outgoing.c.state)).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the outgoing mail: {_one_line(exc)}") from exc
        return {str(state): int(count) for state, count in rows}

    def purge(self, older_than: dt.timedelta) -> int:
        """Forget mail settled (sent or refused) longer ago than `older_than`; how many rows went."""
        try:
            with self.engine.begin() as connection:
                result = connection.execute(delete(outgoing).where(
                    outgoing.c.state.in_((Notice.SENT, Notice.REFUSED)), outgoing.c.settled_at < _now() - older_than))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot purge the outgoing mail: {_one_line(exc)}") from exc
        return int(result.rowcount)

    def _takeable(self, now: dt.datetime) -> ColumnElement[bool]:
        return or_(outgoing.c.state == Notice.PENDING,
                   and_(outgoing.c.state == Notice.SENDING, outgoing.c.claimed_at <= now - self.stale_after))

