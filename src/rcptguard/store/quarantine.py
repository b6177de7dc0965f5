"""The durable per-recipient quarantine: held messages wait here until a person releases, corrects or cancels them.

    quarantine = Quarantine(Store.open(url))
    holds = quarantine.hold(mail_from="a@example.org", recipients=[HeldRecipient(...)], content=data)
    Outbox(quarantine).release(holds[0].id, "alice", NextHop.parse("127.0.0.1:10026"))   # rcptguard.outbox

The quarantine keeps rows and their atomic transitions; it sends nothing (the outbox does, see outbox.py).

A message is stored once (its exact bytes) with one hold per held recipient. `hold()` is one transaction and is
idempotent: handing the same message over again (same sender, held recipients and bytes) returns the holds
already stored. Every decision is one atomic `UPDATE ... WHERE state = 'held'`, so of two racing decisions
exactly one wins, and only its caller delivers; a delivery is claimed (`delivery = 'sending'`, with the claim's
id, the worker and the time) before it is sent, so two workers never send the same one. Every state change is
written to `events` (who and when).

Delivery is at least once, with a narrow window (docs/relay.md, "Quarantine claims and release retries"): a
claim is taken over only after `stale_after` (CLAIM_TIMEOUT, 1 hour: longer than any send can last), and an
acceptance the store fails to record is retried, then remembered by the worker and logged, never sent again by it.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email import policy as email_policy
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Connection,
    RowMapping,
    Select,
    Text,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from rcptguard import logs
from rcptguard.domains import parse_address
from rcptguard.dsn import EnvelopeParams
from rcptguard.errors import (
    AlreadyDecided,
    DecidedNotRecorded,
    DeliveredNotRecorded,
    NotFound,
    NotPending,
    Purged,
    QuarantineError,
)
from rcptguard.history import Batch, Counted, address_key, sender_key
from rcptguard.history.rules import HELD
from rcptguard.model import Malformed, doubts_person
from rcptguard.store import Store, StoreError
from rcptguard.store import as_utc as _utc
from rcptguard.store import error_line as _one_line
from rcptguard.store import utc_now as _now
from rcptguard.store.history import write_batch
from rcptguard.store.schema import HOLD_STATES, Delivery, HoldState, Notice, events, holds, links, messages

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

    from rcptguard.delivery import DeliveryResult

__all__ = [
    "CLAIM_TIMEOUT",
    "DECISIONS",
    "NOTICE_GRACE",
    "NOTICE_KINDS",
    "STATES",
    "AlreadyDecided",
    "DecidedNotRecorded",
    "DeliveredNotRecorded",
    "Event",
    "HeldRecipient",
    "Hold",
    "NotFound",
    "NotPending",
    "Purged",
    "PurgedMessage",
    "Quarantine",
    "QuarantineError",
    "ReleaseOutcome",
    "notice_kind",
]

T = TypeVar("T")
STATES = HOLD_STATES
DECISIONS = tuple(state for state in HoldState if state is not HoldState.HELD)
_DELIVERING = (HoldState.RELEASED, HoldState.CORRECTED)
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower case: no 0/1/8/9 to confuse
_ID_LENGTH = 10  # 50 bits
# A 'sending' claim older than this is taken to be a dead worker's and taken over. It must exceed the longest
# send: RFC 5321 §4.5.3.2's timeouts add up to ~30 minutes (5 for the greeting, MAIL and RCPT each, 2 for DATA, 3 per
# data block, 10 for the reply to the final dot). Configurable: Quarantine(store, stale_after=...), `[relay]
# claim_timeout` in seconds.
CLAIM_TIMEOUT = dt.timedelta(hours=1)
STALE_CLAIM = CLAIM_TIMEOUT  # the former name
# The notices a sender can be owed, by what happened to the held recipients it tells of: held (choose here, with
# the link); nobody chose in time; released, then refused for good or deferred too long; an administrator decided
# (`notify_sender`).
NOTICE_KINDS = ("held", "expired", "undelivered", "decided")
# A notice of an administrator's decision waits until nobody has decided on the same message for this long, so
# that one who decides several recipients of a message in a row sends its sender one notice, not one per click.
NOTICE_GRACE = dt.timedelta(seconds=30)
# Seconds between attempts to record a delivery the next hop accepted, when the store fails (~30 s in all).
RECORD_RETRIES = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)

log = logging.getLogger("rcptguard.quarantine")


def retries_within(total: dt.timedelta) -> tuple[float, ...]:
    """The pauses of RECORD_RETRIES that fit in `total` (for Quarantine's record_retries): 0 tries once."""
    pauses: list[float] = []
    for pause in RECORD_RETRIES:
        if sum(pauses) + pause > total.total_seconds():
            break
        pauses.append(pause)
    return tuple(pauses)


@dataclass(frozen=True)
class HeldRecipient:
    """One recipient to hold, with the verdict that held it."""

    address: str
    intended: str | None
    suggestion: str | None
    reason: str
    signals: list[dict[str, Any]]
    score: float


@dataclass(frozen=True)
class Hold:
    """One held recipient of a stored message, with the message's envelope and summary (never its content)."""

    id: str
    message_id: str
    recipient: str
    intended: str | None
    suggestion: str | None
    reason: str
    signals: list[dict[str, Any]]
    score: float
    state: str
    created_at: dt.datetime
    decided_at: dt.datetime | None
    decided_by: str | None
    deliver_to: str | None
    delivery: str
    delivery_attempts: int
    delivered_at: dt.datetime | None
    last_error: str | None
    notice: str | None  # a notice owed to the sender: pending, sending, sent, refused, skipped; None: none owed
    mail_from: str
    subject: str
    message_id_header: str
    received_at: dt.datetime
    size: int
    client: str
    claimed_at: dt.datetime | None = None  # while delivery is 'sending': when the claim (and the send) began
    next_attempt_at: dt.datetime | None = None  # a deferred delivery is retried from then on
    claim_id: str | None = None  # that claim's identity, as in the log
    claimed_by: str | None = None  # the worker that last took the delivery: "host pid N"
    envelope: str | None = None  # what the client's envelope asked for (dsn.EnvelopeParams.to_json; "" nothing)
    purged_at: dt.datetime | None = None  # when the retention policy deleted the message's bytes (None: kept)

    @property
    def about_person(self) -> bool:
        """Held only for doubts of the person at a domain the guard passed, not of the domain
        (`rcptguard.model.doubts_person`): what the notices and the page say of it."""
        return _stored_doubt(self.signals)

    @property
    def params(self) -> EnvelopeParams:
        """The envelope's parameters for this recipient: RET, ENVID, BODY, its NOTIFY and ORCPT, XFORWARD."""
        return EnvelopeParams.from_json(self.envelope)

    def to_json(self) -> dict[str, Any]:
        def when(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id, "message_id": self.message_id, "recipient": self.recipient,
            "intended": self.intended, "suggestion": self.suggestion, "reason": self.reason,
            "signals": self.signals, "score": self.score, "state": self.state,
            "created_at": when(self.created_at), "decided_at": when(self.decided_at),
            "decided_by": self.decided_by, "deliver_to": self.deliver_to, "delivery": self.delivery,
            "delivery_attempts": self.delivery_attempts, "delivered_at": when(self.delivered_at),
            "last_error": self.last_error, "notice": self.notice, "mail_from": self.mail_from, "subject": self.subject,
            "message_id_header": self.message_id_header, "received_at": when(self.received_at),
            "size": self.size, "client": self.client, "claimed_at": when(self.claimed_at),
            "next_attempt_at": when(self.next_attempt_at), "claim_id": self.claim_id, "claimed_by": self.claimed_by,
            "envelope": json.loads(self.envelope) if self.envelope else {}, "purged_at": when(self.purged_at),
        }


@dataclass(frozen=True)
class Event:
    """One state change of a hold: who made it and when."""

    id: int
    hold_id: str
    at: dt.datetime
    actor: str
    from_state: str
    to_state: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "hold_id": self.hold_id, "at": self.at.isoformat(), "actor": self.actor,
                "from_state": self.from_state, "to_state": self.to_state, "detail": self.detail}


@dataclass(frozen=True)
class PurgedMessage:
    """A stored message the retention policy purged (its bytes) or deleted (every row of it): what the purge
    reports, never the content. `settled_at`: its last decision or delivery, from which the retention counts."""

    message_id: str
    mail_from: str
    subject: str
    size: int
    received_at: dt.datetime
    settled_at: dt.datetime
    hold_ids: tuple[str, ...]


@dataclass(frozen=True)
class ReleaseOutcome:
    """What one delivery attempt did: the hold afterwards and the next hop's answer (None if not sent here)."""

    hold: Hold
    result: DeliveryResult | None


def notice_kind(hold: Hold) -> str:
    """Which notice a hold owing one gets (NOTICE_KINDS): held (nobody decided yet: the notice with the link),
    expired, undelivered (its delivery failed for good, whoever released it), or decided (an administrator's
    decision, owed with notify_sender)."""
    if hold.state == HoldState.HELD:
        return "held"
    if hold.state == "expired":
        return "expired"
    if hold.delivery == Delivery.FAILED:
        return "undelivered"
    return "decided"


def _in_flight(hold: Hold) -> bool:
    """A released hold not tried yet, or being sent: a notice of its release waits for the first answer."""
    return hold.delivery == Delivery.SENDING or (hold.delivery == Delivery.PENDING and hold.delivery_attempts == 0)


def _opt_utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else _utc(value)


def new_hold_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def message_key(mail_from: str, recipients: Sequence[str], content: bytes) -> str:
    """The idempotency key: sha256 over the sender, the sorted held recipients and the exact bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps([mail_from, sorted(recipients)], ensure_ascii=False).encode("utf-8", "surrogatepass"))
    digest.update(b"\0")
    digest.update(content)
    return digest.hexdigest()


def _clean(text: str, limit: int = 998) -> str:
    """Header text fit for a database and a terminal: valid UTF-8, one line, no control characters."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(" " if ch in "\r\n\t" else ch for ch in text if ch >= " " or ch in "\r\n\t")
    return " ".join(text.split())[:limit]


def summarize(content: bytes) -> tuple[str, str]:
    """The decoded Subject and the Message-ID of a message, "" where missing or unreadable."""
    try:
        parsed = BytesHeaderParser(policy=email_policy.default).parsebytes(content)
        subject, message_id = parsed.get("subject"), parsed.get("message-id")
        return _clean(str(subject or "")), _clean(str(message_id or ""))
    except Exception:  # noqa: BLE001 - a malformed header must never stop a hold; the summary is only for display
        return "", ""


def header_block(content: bytes) -> str:
    """The header section of a message as text (everything before the first empty line), never the body."""
    end = len(content)
    for separator in (b"\r\n\r\n", b"\n\n"):
        found = content.find(separator)
        if found != -1:
            end = min(end, found)
    return content[:end].decode("utf-8", "replace")


def _own_envelope(envelope: EnvelopeParams | None, address: str) -> str | None:
    """The parameters of the envelope that concern one recipient, as stored with its hold (None: none)."""
    if envelope is None:
        return None
    own = EnvelopeParams(envelope.mail, {address: envelope.rcpt(address)}, envelope.xforward).to_json()
    return own or None


def needs_smtputf8(*addresses: str) -> bool:
    return not all(address.isascii() for address in addresses)


_HOLD_COLUMNS = (
    *(c for c in holds.c if c.name != "notice_claimed_at"),
    messages.c.mail_from, messages.c.subject, messages.c.message_id_header, messages.c.received_at,
    messages.c.size, messages.c.client, messages.c.purged_at,
)


def _takeable(state: ColumnElement[Any], claimed_at: ColumnElement[Any],
              stale_before: dt.datetime) -> ColumnElement[bool]:
    """Waiting to be taken ('pending'), or taken ('sending') before `stale_before` by a worker that died: the same
    words in Delivery and Notice, whose claims work alike."""
    return or_(state == Delivery.PENDING, and_(state == Delivery.SENDING, claimed_at <= stale_before))


def _settled_by(cutoff: dt.datetime) -> ColumnElement[bool]:
    """For the message `messages.c.id` (correlated): it has holds, and every one of them is done with its bytes
    at or before `cutoff`: decided (never held), its delivery settled (none, delivered or failed: never pending or
    being sent), no notice owed or being sent (a notice quotes the headers, and RET=FULL the whole message), and
    its last decision or delivery at or before `cutoff`. Each of these is a last state (no transition leaves
    it), so a message that meets the condition once meets it for good."""
    other = holds.alias("other")
    own = other.c.message_id == messages.c.id
    busy = or_(other.c.state == HoldState.HELD, other.c.delivery.in_((Delivery.PENDING, Delivery.SENDING)),
               other.c.notice.in_((Notice.PENDING, Notice.SENDING)),
               func.coalesce(other.c.delivered_at, other.c.decided_at) > cutoff)
    return and_(select(other.c.id).where(own).correlate_except(other).exists(),
                ~select(other.c.id).where(own, busy).correlate_except(other).exists())


def confirmation(row: RowMapping, to_state: str, now: dt.datetime) -> Batch:
    """What a decision teaches history, recorded with it: a release is the sender's confirmation of the held domain
    (the next message from that sender to it passes), and counts as one message there from that sender (a near miss
    still needs another sender before it counts for everyone); a correction counts a message to the address meant."""
    batch = Batch()
    sender = sender_key(row["mail_from"])
    target = parse_address(row["deliver_to"] or row["recipient"]) if to_state in _DELIVERING else None
    if sender is None or target is None or isinstance(target, Malformed):
        return batch
    near = None
    if to_state == HoldState.RELEASED:
        batch.confirmed(sender, target.domain.ascii, now)
        intended = row["intended"]
        if _about_the_person(row["signals"]):
            near = None  # a wrong person (or a colleague's personal address), nothing against the domain
        elif intended:
            near = intended  # (Batch.message keeps none that names the domain itself: rules.near_for)
        else:
            near = HELD
    batch.message(sender, [Counted(address_key(target), target.domain.ascii, near)], now)
    return batch


def _about_the_person(signals: str | None) -> bool:
    """Whether a hold (its signals as stored) was raised only for doubts of the person at a domain the guard passed
    (`rcptguard.model.doubts_person`): its release says nothing of the domain."""
    try:
        return _stored_doubt(json.loads(signals or "[]"))
    except ValueError:
        return False


def _stored_doubt(signals: object) -> bool:
    """`doubts_person` of signals as a hold stores them (a list of `Signal.to_json`); anything else doubts no one."""
    return isinstance(signals, list) and doubts_person(s.get("evidence") for s in signals if isinstance(s, dict))


def _hold_query() -> Select[Any]:
    return select(*_HOLD_COLUMNS).select_from(holds.join(messages, holds.c.message_id == messages.c.id))


def _to_hold(m: RowMapping) -> Hold:
    return Hold(
        id=m["id"], message_id=m["message_id"], recipient=m["recipient"], intended=m["intended"],
        suggestion=m["suggestion"], reason=m["reason"], signals=json.loads(m["signals"]), score=float(m["score"]),
        state=m["state"], created_at=_utc(m["created_at"]), decided_at=_opt_utc(m["decided_at"]),
        decided_by=m["decided_by"], deliver_to=m["deliver_to"], delivery=m["delivery"],
        delivery_attempts=int(m["delivery_attempts"]), delivered_at=_opt_utc(m["delivered_at"]),
        last_error=m["last_error"], notice=m["notice"], mail_from=m["mail_from"], subject=m["subject"],
        message_id_header=m["message_id_header"], received_at=_utc(m["received_at"]), size=int(m["size"]),
        client=m["client"], claimed_at=_opt_utc(m["claimed_at"]), next_attempt_at=_opt_utc(m["next_attempt_at"]),
        claim_id=m["claim_id"], claimed_by=m["claimed_by"], envelope=m["envelope"],
        purged_at=_opt_utc(m["purged_at"]),
    )


def _worker() -> str:
    """Who takes a claim, as the claim records it: this host and process."""
    return f"{socket.gethostname()} pid {os.getpid()}"


class Quarantine:
    """Held messages in the store. Every method is safe to call from several threads and processes at once.

    `stale_after`: a claim older than this (a delivery or a notice being sent) is a dead worker's and is taken over;
    it must exceed the longest send (CLAIM_TIMEOUT). `record_retries`: the pauses, in seconds, between attempts to
    record a delivery the next hop accepted while the store fails. `notice_grace`: how long a notice of an
    administrator's decision waits for further decisions on the same message (NOTICE_GRACE).
    """

    def __init__(self, store: Store, *, stale_after: dt.timedelta = CLAIM_TIMEOUT,
                 record_retries: Sequence[float] = RECORD_RETRIES,
                 notice_grace: dt.timedelta = NOTICE_GRACE) -> None:
        if stale_after <= dt.timedelta(0):
            raise ValueError("the claim timeout must be positive")
        if notice_grace < dt.timedelta(0):
            raise ValueError("the notice grace cannot be negative")
        self.store = store
        self.notice_grace = notice_grace
        self.engine = store.engine
        self.stale_after = stale_after
        self.record_retries = tuple(record_retries)
        # Deliveries this worker sent and the next hop accepted, which the store failed to record: hold id -> claim.
        self._unrecorded: dict[str, str] = {}
        self._unrecorded_lock = threading.Lock()

    @property
    def send_within(self) -> float:
        """How long one claimed send may take, in seconds: a tenth less than a claim lives, so that no other worker
        takes over a send still under way (a body of many blocks could otherwise outlast its claim)."""
        return self.stale_after.total_seconds() * 0.9

    # -- holding ----------------------------------------------------------------------------------------------

    def hold(self, *, mail_from: str, recipients: Sequence[HeldRecipient], content: bytes,
             client: str = "", notify: bool = False, envelope: EnvelopeParams | None = None,
             key: str | None = None) -> builtins.list[Hold]:
        """Store the message and hold each recipient, in one durable transaction; the holds in recipient order.
        With `notify`, the sender is owed the held notice (kind "held", see owed_notices) in the same transaction:
        once the door answers 250, the notice is the outbox's to send, and cannot be lost. `envelope`: what the
        client's envelope asked for (DSN, BODY, XFORWARD), kept with each recipient for its release.

        Idempotent: the same sender, held recipients and bytes again return the holds already stored (and owe no
        second notice). `key` replaces that identity (message_key) when the bytes carry something that changes
        with each attempt at the same message: the milter stores Postfix's Received header, which names a new queue
        id every time, and keys the hold on the rest.
        """
        if not recipients:
            return []
        addresses = [r.address for r in recipients]
        if len(set(addresses)) != len(addresses):
            raise ValueError("a recipient is held at most once per message")
        now = _now()
        key = key or message_key(mail_from, addresses, content)
        subject, message_id_header = summarize(content)
        signals = [json.dumps(r.signals, ensure_ascii=False) for r in recipients]  # TypeError: not JSON
        message_row = {
            "id": uuid.uuid4().hex, "key": key, "mail_from": mail_from, "content": content, "size": len(content),
            "subject": subject, "message_id_header": message_id_header, "received_at": now, "client": client,
        }
        try:
            with self.engine.begin() as connection:
                self._insert_ignoring(connection, messages, [messages.c.key], [message_row])
                message_id = connection.execute(select(messages.c.id).where(messages.c.key == key)).scalar_one()
                hold_rows = [{
                    "id": new_hold_id(), "message_id": message_id, "recipient": r.address, "intended": r.intended,
                    "suggestion": r.suggestion, "reason": r.reason, "signals": signal_json,
                    "score": float(r.score), "state": HoldState.HELD, "created_at": now, "delivery": Delivery.NONE,
                    "delivery_attempts": 0, "notice": Notice.PENDING if notify else None,
                    "envelope": _own_envelope(envelope, r.address),
                } for r, signal_json in zip(recipients, signals, strict=True)]
                self._insert_ignoring(connection, holds, [holds.c.message_id, holds.c.recipient], hold_rows)
                rows = connection.execute(
                    _hold_query().where(holds.c.message_id == message_id, holds.c.recipient.in_(addresses))
                ).mappings().all()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store the held message: {_one_line(exc)}") from exc
        by_address = {row["recipient"]: _to_hold(row) for row in rows}
        return [by_address[address] for address in addresses]

    def _insert_ignoring(self, connection: Connection, table: Any, keys: builtins.list[Any],  # noqa: ANN401
                         rows: builtins.list[dict[str, Any]]) -> None:
        """INSERT ... ON CONFLICT (keys) DO NOTHING; elsewhere, insert what is missing under a savepoint."""
        dialect = connection.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert_ = sqlite_insert if dialect == "sqlite" else pg_insert
            connection.execute(insert_(table).on_conflict_do_nothing(index_elements=keys), rows)
            return
        for row in rows:  # pragma: no cover - only SQLite and PostgreSQL are supported stores
            try:
                with connection.begin_nested():
                    connection.execute(insert(table), [row])
            except IntegrityError:
                continue

    # -- reading ----------------------------------------------------------------------------------------------

    def _read(self, what: str, query: Select[Any]) -> builtins.list[RowMapping]:
        try:
            with self.engine.connect() as connection:
                return builtins.list(connection.execute(query).mappings().all())
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read {what}: {_one_line(exc)}") from exc

    def get(self, hold_id: str) -> Hold | None:
        rows = self._read("the quarantine", _hold_query().where(holds.c.id == hold_id))
        return _to_hold(rows[0]) if rows else None

    def get_many(self, hold_ids: Sequence[str]) -> builtins.list[Hold]:
        """The holds of `hold_ids` that exist, in the order given, read in one query."""
        if not hold_ids:
            return []
        rows = self._read("the quarantine", _hold_query().where(holds.c.id.in_(builtins.list(hold_ids))))
        found = {row["id"]: _to_hold(row) for row in rows}
        return [found[hold_id] for hold_id in hold_ids if hold_id in found]

    def require(self, hold_id: str) -> Hold:
        """The hold, or NotFound."""
        hold = self.get(hold_id)
        if hold is None:
            raise NotFound(hold_id)
        return hold

    def content(self, hold_id: str) -> bytes:
        """The exact bytes of the held message; Purged once the retention policy deleted them (purge_bodies)."""
        query = select(messages.c.content, messages.c.purged_at).select_from(
            holds.join(messages, holds.c.message_id == messages.c.id))
        rows = self._read("the held message", query.where(holds.c.id == hold_id))
        if not rows:
            raise NotFound(hold_id)
        if rows[0]["purged_at"] is not None:
            raise Purged(hold_id, _utc(rows[0]["purged_at"]))
        return bytes(rows[0]["content"])

    def list(self, state: str | None = HoldState.HELD, limit: int | None = None) -> builtins.list[Hold]:
        """Holds in `state` (None: every state), oldest first."""
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r} (expected one of {', '.join(STATES)})")
        query = _hold_query().order_by(holds.c.created_at, holds.c.message_id, holds.c.recipient)
        if state is not None:
            query = query.where(holds.c.state == state)
        if limit is not None:
            query = query.limit(limit)
        return [_to_hold(row) for row in self._read("the quarantine", query)]

    def events(self, hold_id: str) -> builtins.list[Event]:
        """The audit log of one hold, oldest first."""
        query = select(events).where(events.c.hold_id == hold_id).order_by(events.c.id)
        return [Event(id=int(m["id"]), hold_id=m["hold_id"], at=_utc(m["at"]), actor=m["actor"],
                      from_state=m["from_state"], to_state=m["to_state"], detail=m["detail"])
                for m in self._read("the audit log", query)]

    def pending_deliveries(self, *, due_only: bool = False) -> builtins.list[Hold]:
        """Released or corrected holds not delivered yet (waiting for a retry, or being sent now), oldest first;
        with `due_only`, none whose retry is not due yet (see mark_failed's `retry_after`)."""
        query = _hold_query().where(holds.c.delivery.in_((Delivery.PENDING, Delivery.SENDING)))
        if due_only:
            query = query.where(or_(holds.c.next_attempt_at.is_(None), holds.c.next_attempt_at <= _now()))
        return [_to_hold(row) for row in self._read("the quarantine", query.order_by(holds.c.decided_at))]

    # -- deciding ---------------------------------------------------------------------------------------------

    def decide(self, hold_id: str, to_state: str, actor: str, *, deliver_to: str | None = None,
               detail: str = "", notice: str | None = None, notify_sender: bool = False) -> Hold:
        """Move a held recipient to `to_state`, atomically: of two racing calls exactly one wins.

        released and corrected set the delivery to pending (to `deliver_to`, by default the recipient).
        `notify_sender` (an administrator decides, not the sender on the page): the sender is owed a notice of
        the decision (kind "decided", see owed_notices), set in the same update. The decision is logged as one
        line (event "decision") besides its row in the audit log.
        Raises AlreadyDecided if it is no longer held, NotFound if there is no such hold.
        """
        if notify_sender:
            notice = Notice.PENDING
        if to_state not in DECISIONS:
            raise ValueError(f"cannot decide {to_state!r} (expected one of {', '.join(DECISIONS)})")
        if to_state == "corrected" and not deliver_to:
            raise ValueError("a correction needs the address to deliver to")
        if to_state not in _DELIVERING:
            deliver_to = None
        now = _now()
        values: dict[str, Any] = {
            "state": to_state, "decided_at": now, "decided_by": actor,
            "delivery": Delivery.PENDING if to_state in _DELIVERING else Delivery.NONE,
        }
        if to_state in _DELIVERING:
            values["deliver_to"] = deliver_to or holds.c.recipient
        if notice is not None:
            values["notice"] = notice
        try:
            with self.engine.begin() as connection:
                # The UPDATE comes first: on SQLite the transaction starts as a writer, so it waits for a racing
                # writer (busy_timeout) instead of failing on a stale snapshot.
                result = connection.execute(
                    update(holds).where(holds.c.id == hold_id, holds.c.state == HoldState.HELD).values(values)
                )
                if result.rowcount == 1:
                    row = connection.execute(_hold_query().where(holds.c.id == hold_id)).mappings().one()
                    text = detail or (f"deliver to {row['deliver_to']}" if to_state in _DELIVERING else "")
                    connection.execute(insert(events).values(
                        hold_id=hold_id, at=now, actor=actor, from_state=HoldState.HELD, to_state=to_state, detail=text,
                    ))
                    write_batch(connection, confirmation(row, to_state, now))
                    decided: Hold | None = _to_hold(row)
                    current = None
                else:
                    decided = None
                    current = connection.execute(
                        select(holds.c.state, holds.c.decided_by).where(holds.c.id == hold_id)
                    ).mappings().one_or_none()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record the decision on {hold_id}: {_one_line(exc)}") from exc
        if decided is not None:
            logs.event(log, "decision", hold=hold_id, message=decided.message_id, actor=actor, action=to_state,
                       recipient=decided.recipient, deliver_to=decided.deliver_to,
                       notice_owed=decided.notice == Notice.PENDING, detail=detail or None)
            return decided
        if current is None:
            raise NotFound(hold_id)
        raise AlreadyDecided(hold_id, current["state"], current["decided_by"])

    def cancel(self, hold_id: str, actor: str, *, notify_sender: bool = False, detail: str = "") -> Hold:
        """Never send it to this recipient; `notify_sender` (an administrator cancels): tell the sender."""
        return self.decide(hold_id, "cancelled", actor, notify_sender=notify_sender, detail=detail)

    def expire_due(self, retention: dt.timedelta, actor: str = "expiry", *,
                   notify: bool = False) -> builtins.list[Hold]:
        """Expire every hold created at least `retention` ago and still held; the holds this call expired.
        With `notify`, each is marked in the same update as owing its sender a notice (see owed_notices)."""
        cutoff = _now() - retention
        query = select(holds.c.id).where(holds.c.state == HoldState.HELD, holds.c.created_at <= cutoff)
        expired = []
        for row in self._read("the quarantine", query.order_by(holds.c.created_at)):
            hold_id = row["id"]
            try:
                expired.append(self.decide(hold_id, "expired", actor, notice=Notice.PENDING if notify else None,
                                           detail=f"not released within {_duration(retention)}"))
            except AlreadyDecided:  # decided by a person while we were expiring: their decision stands
                continue
        return expired

    def owed_notices(self, *, stale_after: dt.timedelta | None = None,
                     grace: dt.timedelta | None = None) -> dict[str, builtins.list[Hold]]:
        """Holds whose sender is owed a notice (expired; released, then given up or refused for good; decided by
        an administrator), by message and kind (notice_kind; one notice each), oldest first; a notice another
        worker took and never settled (crashed) is owed again after `stale_after` (default: the quarantine's).
        A message's "decided" notice waits while one of its releases is not tried yet or being sent (the notice
        says how the release went), and until `grace` (default: the quarantine's notice_grace) has passed since
        the last of them was decided. Send a group only after claim_notice()."""
        now = _now()
        stale_before = now - (self.stale_after if stale_after is None else stale_after)
        quiet_since = now - (self.notice_grace if grace is None else grace)
        query = _hold_query().where(_takeable(holds.c.notice, holds.c.notice_claimed_at, stale_before))
        owed: dict[str, builtins.list[Hold]] = {}
        for row in self._read("the quarantine", query.order_by(holds.c.decided_at, holds.c.id)):
            hold = _to_hold(row)
            kind = notice_kind(hold)
            owed.setdefault(hold.message_id if kind == "expired" else f"{hold.message_id}:{kind}", []).append(hold)
        for key, group in builtins.list(owed.items()):
            if notice_kind(group[0]) == "decided" and any(
                    _in_flight(hold) or (hold.decided_at or hold.created_at) > quiet_since for hold in group):
                del owed[key]
        return owed

    def claim_notice(self, group: Sequence[Hold], *,
                     stale_after: dt.timedelta | None = None) -> builtins.list[Hold]:
        """Take the notice of these holds, each in one atomic update: the ones this caller got (the others are
        being told by another worker). Settle them with settle_notice(), or give them back with outcome "later"."""
        now = _now()
        stale_before = now - (self.stale_after if stale_after is None else stale_after)
        claimed = []
        try:
            with self.engine.begin() as connection:
                for hold in group:
                    result = connection.execute(update(holds).where(
                        holds.c.id == hold.id, _takeable(holds.c.notice, holds.c.notice_claimed_at, stale_before),
                    ).values(notice=Notice.SENDING, notice_claimed_at=now))
                    if result.rowcount == 1:
                        claimed.append(hold)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot take the notice of {group[0].message_id}: {_one_line(exc)}") from exc
        return claimed

    def settle_notice(self, claimed: Sequence[Hold], outcome: str) -> int:
        """Record how the notice for holds this caller claimed went: sent, refused (for good; not tried again),
        skipped (no notice for this kind of message), or later (owed again, for the next try). Only these holds
        change; returns how many. A store failure is retried (record_retries) before StoreError: an unrecorded
        "sent" means a second notice once the claim is stale."""
        if outcome not in ("sent", "refused", "skipped", "later"):
            raise ValueError(f"a notice is sent, refused, skipped or later, not {outcome!r}")
        ids = [hold.id for hold in claimed]

        def settle() -> int:
            try:
                with self.engine.begin() as connection:
                    result = connection.execute(update(holds).where(holds.c.id.in_(ids),
                                                                    holds.c.notice == Notice.SENDING)
                                                .values(notice=Notice.PENDING if outcome == "later" else outcome,
                                                        notice_claimed_at=None))
                    return int(result.rowcount)
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot record the notice for {', '.join(ids)}: {_one_line(exc)}") from exc

        return self.retrying(f"the notice for {', '.join(ids)} ({outcome})", settle)

    def retrying(self, what: str, write: Callable[[], T]) -> T:
        """write(), tried again after each pause of record_retries while it raises StoreError (then re-raised)."""
        for pause in self.record_retries:
            try:
                return write()
            except StoreError as exc:
                logs.event(log, "store failed; recording again", logging.WARNING, what=what, error=str(exc),
                           retry_in=pause)
            time.sleep(pause)
        return write()

    # -- delivering -------------------------------------------------------------------------------------------

    def claim_delivery(self, hold_id: str, *, stale_after: dt.timedelta | None = None) -> str | None:
        """Take the pending delivery of one hold (or a dead worker's stale claim): the claim's id for exactly one
        caller, None for the others. The claim records this worker and the time: the send starts now."""
        now = _now()
        claim = uuid.uuid4().hex
        stale_before = now - (self.stale_after if stale_after is None else stale_after)
        try:
            with self.engine.begin() as connection:
                result = connection.execute(update(holds).where(
                    holds.c.id == hold_id, _takeable(holds.c.delivery, holds.c.claimed_at, stale_before),
                ).values(delivery=Delivery.SENDING, claimed_at=now, claim_id=claim, claimed_by=_worker()))
                return claim if result.rowcount == 1 else None
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot claim the delivery of {hold_id}: {_one_line(exc)}") from exc

    def _mark(self, hold_id: str, values: dict[str, Any], claim: str | None = None) -> Hold:
        """Record a delivery's outcome: under `claim` only (a worker whose claim was taken over changes nothing),
        or, without one, while it is pending or being sent."""
        condition = holds.c.delivery.in_((Delivery.PENDING, Delivery.SENDING)) if claim is None else \
            and_(holds.c.delivery == Delivery.SENDING, holds.c.claim_id == claim)
        try:
            with self.engine.begin() as connection:
                result = connection.execute(update(holds).where(holds.c.id == hold_id, condition).values(values))
                current = connection.execute(_hold_query().where(holds.c.id == hold_id)).mappings().one_or_none()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record the delivery of {hold_id}: {_one_line(exc)}") from exc
        if current is None:
            raise NotFound(hold_id)
        hold = _to_hold(current)
        if result.rowcount != 1:
            raise NotPending(hold_id, hold.delivery)
        return hold

    def mark_delivered(self, hold_id: str) -> Hold:
        """The next hop accepted the released message (whoever's claim it is under: it is delivered)."""
        return self._mark(hold_id, {"delivery": Delivery.DELIVERED, "delivered_at": _now(), "claimed_at": None,
                                    "claim_id": None, "delivery_attempts": holds.c.delivery_attempts + 1,
                                    "last_error": None})

    def mark_failed(self, hold_id: str, error: str, permanent: bool, *, owe_notice: bool = False,
                    claim: str | None = None, retry_after: dt.timedelta | None = None) -> Hold:
        """A delivery attempt failed: permanent gives up (with `owe_notice`, the sender is owed a notice: nobody
        is there to see the answer), temporary leaves it pending for a retry, due after `retry_after` (None: at
        once). With `claim`, only while that claim holds (NotPending otherwise)."""
        values: dict[str, Any] = {"delivery": Delivery.FAILED if permanent else Delivery.PENDING, "claimed_at": None,
                                  "claim_id": None, "delivery_attempts": holds.c.delivery_attempts + 1,
                                  "last_error": error,
                                  "next_attempt_at": _now() + retry_after if retry_after and not permanent else None}
        if permanent and owe_notice:
            values["notice"] = Notice.PENDING
        return self._mark(hold_id, values, claim)

    def mark_delivered_by_hand(self, hold_id: str, actor: str, note: str = "") -> Hold:
        """An operator says the next hop has the message (a store failure left its delivery unrecorded: the log
        names the hold and the next hop): delivered, never sent again, and the audit log says who said so."""
        hold = self.mark_delivered(hold_id)
        detail = "delivery marked delivered by hand" + (f": {note}" if note else "")
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(events).values(hold_id=hold_id, at=_now(), actor=actor,
                                                         from_state=hold.state, to_state=hold.state, detail=detail))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record who marked {hold_id} delivered: {_one_line(exc)}") from exc
        self._forget_unrecorded(hold_id)
        return hold

    def remember_unrecorded(self, hold_id: str, claim: str | None) -> None:
        """This worker knows the next hop accepted the hold's delivery, but the store would not take it: remember
        it (never send it again; record it with record_unrecorded once the store works)."""
        with self._unrecorded_lock:
            self._unrecorded[hold_id] = claim or ""

    def is_unrecorded(self, hold_id: str) -> bool:
        with self._unrecorded_lock:
            return hold_id in self._unrecorded

    def _forget_unrecorded(self, hold_id: str) -> None:
        with self._unrecorded_lock:
            self._unrecorded.pop(hold_id, None)

    def record_unrecorded(self) -> int:
        """Record the deliveries this worker knows the next hop accepted but the store did not take; how many are
        recorded now. One the store still fails to record stays remembered, for the next call."""
        with self._unrecorded_lock:
            remembered = builtins.list(self._unrecorded)
        recorded = 0
        for hold_id in remembered:
            try:
                self.mark_delivered(hold_id)
                recorded += 1
            except (NotPending, NotFound):  # marked by hand, or gone: nothing left to record
                pass
            except StoreError as exc:
                logs.event(log, "a delivery accepted earlier is still not recorded", logging.ERROR, hold=hold_id,
                           error=str(exc))
                continue
            self._forget_unrecorded(hold_id)
            logs.event(log, "recorded a delivery accepted earlier", logging.WARNING, hold=hold_id)
        return recorded

    def give_up(self, max_age: dt.timedelta) -> builtins.list[Hold]:
        """Released deliveries still pending `max_age` after the decision fail for good, as an MTA bounces
        after its queue lifetime; each owes its sender a notice (see owed_notices). The holds given up."""
        cutoff = _now() - max_age
        query = select(holds.c.id).where(holds.c.delivery == Delivery.PENDING, holds.c.decided_at <= cutoff)
        given_up = []
        for row in self._read("the quarantine", query.order_by(holds.c.decided_at)):
            try:
                with self.engine.begin() as connection:
                    result = connection.execute(update(holds).where(
                        holds.c.id == row["id"], holds.c.delivery == Delivery.PENDING,  # not while a worker sends it
                    ).values(delivery=Delivery.FAILED, notice=Notice.PENDING, last_error=literal(
                        f"gave up after {_duration(max_age)}; last: ", Text) + func.coalesce(holds.c.last_error, "-")))
                    if result.rowcount == 1:
                        given_up.append(_to_hold(connection.execute(
                            _hold_query().where(holds.c.id == row["id"])).mappings().one()))
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot give up the delivery of {row['id']}: {_one_line(exc)}") from exc
        return given_up

    # -- retention --------------------------------------------------------------------------------------------

    def purge_bodies(self, after: dt.timedelta, *, dry_run: bool = False) -> builtins.list[PurgedMessage]:
        """Delete the bytes of every message whose holds are all done with them (see _settled_by) since at least
        `after`: the content becomes b"" and `purged_at` is set, in one guarded UPDATE per message; the holds,
        events and the message's summary stay. The messages purged (with `dry_run`: that would be), oldest
        first. On SQLite the freed pages are overwritten with zeros and the write-ahead log is truncated, so the
        bytes do not linger in the file."""
        now = _now()
        cutoff = now - after
        found = self._settled_messages(and_(messages.c.purged_at.is_(None), _settled_by(cutoff)))
        if dry_run:
            return found
        purged = []
        for chunk in _chunks(found):
            try:
                with self.engine.begin() as connection, _erasing(connection):
                    for message in chunk:
                        result = connection.execute(update(messages).where(
                            messages.c.id == message.message_id, messages.c.purged_at.is_(None), _settled_by(cutoff),
                        ).values(content=b"", purged_at=now))
                        if result.rowcount == 1:
                            purged.append(message)
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot purge stored messages: {_one_line(exc)}") from exc
        self._checkpoint()
        for message in purged:
            logs.event(log, "message purged", message=message.message_id, holds=",".join(message.hold_ids),
                       size=message.size, settled_at=message.settled_at.isoformat())
        return purged

    def delete_settled(self, after: dt.timedelta, *, dry_run: bool = False) -> builtins.list[PurgedMessage]:
        """Delete every row of each message whose holds are all done with it (see _settled_by) since at least
        `after`: its audit events, links, holds and the message itself (its bytes, if they were still there), one
        transaction per message. The messages deleted (with `dry_run`: that would be), oldest first."""
        cutoff = _now() - after
        found = self._settled_messages(_settled_by(cutoff))
        if dry_run:
            return found
        deleted: builtins.list[PurgedMessage] = []
        for chunk in _chunks(found):
            try:
                with self.engine.begin() as connection, _erasing(connection):
                    deleted.extend(message for message in chunk
                                   if self._delete_message(connection, message.message_id, cutoff))
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot delete stored messages: {_one_line(exc)}") from exc
        self._checkpoint()
        for message in deleted:
            logs.event(log, "message deleted", message=message.message_id, holds=",".join(message.hold_ids),
                       settled_at=message.settled_at.isoformat())
        return deleted

    def purge_waiting(self, after: dt.timedelta) -> int:
        """How many messages decided at least `after` ago keep their bytes only because a delivery or a notice of
        theirs is still pending or being sent: a number to watch (nothing sends them?)."""
        cutoff = _now() - after
        other = holds.alias("other")
        own = other.c.message_id == messages.c.id
        owed = or_(other.c.delivery.in_((Delivery.PENDING, Delivery.SENDING)),
                   other.c.notice.in_((Notice.PENDING, Notice.SENDING)))
        undecided = or_(other.c.state == HoldState.HELD, other.c.decided_at > cutoff)
        query = select(func.count().label("waiting")).select_from(messages).where(
            messages.c.purged_at.is_(None),
            select(other.c.id).where(own, owed).correlate_except(other).exists(),
            ~select(other.c.id).where(own, undecided).correlate_except(other).exists())
        return int(self._read("the quarantine", query)[0]["waiting"])

    def _settled_messages(self, condition: ColumnElement[bool]) -> builtins.list[PurgedMessage]:
        query = select(messages.c.id, messages.c.mail_from, messages.c.subject, messages.c.size,
                       messages.c.received_at, holds.c.id.label("hold_id"),
                       func.coalesce(holds.c.delivered_at, holds.c.decided_at).label("settled_at")).select_from(
            messages.join(holds, holds.c.message_id == messages.c.id),
        ).where(condition).order_by(messages.c.received_at, messages.c.id, holds.c.id)
        rows: dict[str, builtins.list[RowMapping]] = {}
        for row in self._read("the quarantine", query):
            rows.setdefault(row["id"], []).append(row)
        return [PurgedMessage(message_id=message_id, mail_from=own[0]["mail_from"], subject=own[0]["subject"],
                              size=int(own[0]["size"]), received_at=_utc(own[0]["received_at"]),
                              settled_at=max(_utc(row["settled_at"]) for row in own),
                              hold_ids=tuple(row["hold_id"] for row in own))
                for message_id, own in rows.items()]

    @staticmethod
    def _delete_message(connection: Connection, message_id: str, cutoff: dt.datetime) -> bool:
        """Delete one message and everything that points at it, if it is still done with (it is: see
        _settled_by); whether it was."""
        still = connection.execute(select(messages.c.id).where(messages.c.id == message_id, _settled_by(cutoff)))
        if still.first() is None:
            return False
        own_holds = select(holds.c.id).where(holds.c.message_id == message_id)
        connection.execute(delete(events).where(events.c.hold_id.in_(own_holds)))
        connection.execute(delete(links).where(links.c.message_id == message_id))
        connection.execute(delete(holds).where(holds.c.message_id == message_id))
        return connection.execute(delete(messages).where(messages.c.id == message_id)).rowcount == 1

    def _checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database and truncate it, so that the pages a purge zeroed
        replace the old ones in the file and no copy of them stays in the log. Best effort: a reader that holds
        the log open (a server's transaction) leaves it for SQLite's next automatic checkpoint."""
        if self.engine.dialect.name != "sqlite":
            return
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except SQLAlchemyError as exc:
            logs.event(log, "the write-ahead log was not truncated after a purge", logging.WARNING,
                       error=_one_line(exc))


@contextlib.contextmanager
def _erasing(connection: Connection) -> Iterator[None]:
    """On SQLite, what this transaction deletes or overwrites is overwritten with zeros in the file (PRAGMA
    secure_delete), not merely marked free; the connection goes back to the pool as it was."""
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql("PRAGMA secure_delete=ON")
    try:
        yield
    finally:
        connection.exec_driver_sql("PRAGMA secure_delete=OFF")


def _chunks(items: Sequence[T], size: int = 200) -> Iterator[Sequence[T]]:
    """`items` in slices of `size`: one transaction each, so a long purge never holds the write lock for long."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _duration(value: dt.timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"
