"""The tables of the store. Changes go through an alembic migration in `migrations/versions/`."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

correspondents = Table(
    "correspondents",
    metadata,
    Column("domain", String(253), primary_key=True),  # A-label form
    Column("count", BigInteger, nullable=False),  # messages let through to it
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("inbound", BigInteger, nullable=False, server_default="0"),  # messages received from it
    # The protected, known or popular domain it is one slip from (the guard held or warned it), if it is: such a
    # domain needs more than one sender's mail to count (rcptguard.history.rules).
    Column("near", String(253)),
    Column("state", String(16)),  # added | forgotten (rcptguard known); NULL: as learned
    CheckConstraint("state IS NULL OR state IN ('added', 'forgotten')", name="ck_correspondents_state"),
)

# History per sender (rcptguard.history): who writes to which domain and address, and which recipients are addressed
# together. A sender's confirmation ("send anyway") is kept on its (sender, domain) row.
sender_domains = Table(
    "sender_domains",
    metadata,
    Column("sender", String(320), primary_key=True),  # lower-case, the domain in A-label form
    Column("domain", String(253), primary_key=True, index=True),
    Column("count", BigInteger, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("confirmed_at", DateTime(timezone=True), index=True),  # the sender said "send anyway" to a hold of it
)

sender_addresses = Table(
    "sender_addresses",
    metadata,
    Column("sender", String(320), primary_key=True),
    Column("address", String(320), primary_key=True, index=True),
    Column("domain", String(253), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Index("ix_sender_addresses_sender_domain", "sender", "domain"),
)

co_recipients = Table(
    "co_recipients",
    metadata,
    Column("a", String(320), primary_key=True),  # a < b: each pair once
    Column("b", String(320), primary_key=True, index=True),
    Column("count", BigInteger, nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)

# Who filled each place in a group of recipients (rcptguard.history.model.places): `rest` names the group's other
# people (the sender and the other recipients) by a digest; a recipient who takes somebody else's place in a group
# written to before is the odd one out (ODD_SUBSTITUTE).
co_places = Table(
    "co_places",
    metadata,
    Column("rest", String(32), primary_key=True),
    Column("address", String(320), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)

# What `rcptguard learn` imported: a source is known by the fingerprint of its first records, whatever its name or
# compression, and how many of its records were counted (a log that grew is read on from there).
imported_sources = Table(
    "imported_sources",
    metadata,
    Column("fingerprint", String(64), primary_key=True),  # sha256 of the source's first records
    Column("format", String(32), nullable=False),
    Column("path", Text, nullable=False),  # where it was last read from
    Column("records", BigInteger, nullable=False),  # records read (and counted, unless bad)
    Column("first_imported", DateTime(timezone=True), nullable=False),
    Column("last_imported", DateTime(timezone=True), nullable=False),
)

# Verdicts a door would have given in observe mode (`mode = "observe"`), for `rcptguard report observe`.
observations = Table(
    "observations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("door", String(16), nullable=False),
    Column("sender", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("intended", Text),
    Column("signals", Text, nullable=False),  # the signals' names, space-separated
    Column("reason", Text, nullable=False),
)

# What changed in the history, for the other instances of the doors to add to the history they hold in memory
# (rcptguard.store.history.MirroredHistory.follow): a batch as JSON, or none when they should read everything again
# (an import, an administrator's `known add|forget`). Kept an hour (FEED_KEEP): a door that looked away longer
# reads everything again.
history_feed = Table(
    "history_feed",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("origin", String(64)),  # the door instance that wrote it (it has it already), or none
    Column("batch", Text),  # Batch.to_json(); none: read everything again
)


class HoldState(StrEnum):
    """A held recipient's state: held until one decision moves it, once (see docs/design.md)."""

    HELD = "held"
    RELEASED = "released"
    CORRECTED = "corrected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Delivery(StrEnum):
    """A released or corrected hold's delivery: pending → sending (claimed by one worker) → delivered | failed,
    or back to pending when the next hop defers it; `none` for holds that are not to be delivered."""

    NONE = "none"
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Notice(StrEnum):
    """A notice owed to the sender: pending → sending (claimed) → sent | refused | skipped, or back to pending
    when the next hop defers it. NULL in the column: none owed."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    REFUSED = "refused"
    SKIPPED = "skipped"


HOLD_STATES = tuple(HoldState)
DELIVERY_STATES = tuple(Delivery)
NOTICE_STATES = tuple(Notice)


def check_in(column: str, values: tuple[str, ...], *, nullable: bool = False) -> str:
    """The SQL condition of a CHECK constraint that keeps `column` to `values` (the members of a state enum)."""
    condition = f"{column} IN ({', '.join(repr(str(v)) for v in values)})"
    return f"{column} IS NULL OR {condition}" if nullable else condition


# The quarantine: one row per held message (its exact bytes, once, until the retention policy purges them), one hold
# per held recipient of it.
messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex
    Column("key", String(64), nullable=False, unique=True),  # sha256: mail_from, held recipients, content
    Column("mail_from", Text, nullable=False),  # "" for the null sender
    Column("content", LargeBinary, nullable=False),  # the exact DATA bytes
    Column("size", Integer, nullable=False),
    Column("subject", Text, nullable=False),  # decoded, for display
    Column("message_id_header", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("client", Text, nullable=False),  # who handed it over
    # When the retention policy deleted the bytes (content is b"" from then on; the rest is kept for the record).
    Column("purged_at", DateTime(timezone=True)),
)

holds = Table(
    "holds",
    metadata,
    Column("id", String(16), primary_key=True),  # short, typable: 10 chars of lower-case base32
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("intended", Text),
    Column("suggestion", Text),
    Column("reason", Text, nullable=False),
    Column("signals", Text, nullable=False),  # JSON list of {name, score, evidence}
    Column("score", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", Text),
    Column("deliver_to", Text),
    Column("delivery", String(16), nullable=False),
    Column("delivery_attempts", Integer, nullable=False),
    Column("claimed_at", DateTime(timezone=True)),  # when a worker set delivery to sending (and began to send)
    Column("claim_id", String(32)),  # that claim's identity (uuid4 hex); outcomes are recorded only under it
    Column("claimed_by", Text),  # the worker that last took the delivery: "host pid N"
    Column("next_attempt_at", DateTime(timezone=True)),  # a deferred delivery is due again then (NULL: now)
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    # A notice owed to the sender (expired; released but undeliverable): pending | sending | sent | refused |
    # skipped; NULL: none owed.
    Column("notice", String(16), index=True),
    Column("notice_claimed_at", DateTime(timezone=True)),  # when a worker set notice to sending
    Column("envelope", Text),  # JSON: what the client's envelope asked for (DSN's RET, ENVID, NOTIFY, ORCPT; XFORWARD)
    UniqueConstraint("message_id", "recipient", name="uq_holds_message_recipient"),
    CheckConstraint(check_in("state", HOLD_STATES), name="ck_holds_state"),
    CheckConstraint(check_in("delivery", DELIVERY_STATES), name="ck_holds_delivery"),
    CheckConstraint(check_in("notice", NOTICE_STATES, nullable=True), name="ck_holds_notice"),
    Index("ix_holds_state_created", "state", "created_at"),
    Index("ix_holds_delivery", "delivery"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hold_id", String(16), ForeignKey("holds.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("detail", Text, nullable=False),
)

# Confirmation links: one per held message, mailed to its sender. Only the sha256 of the raw token is stored, so the
# table alone cannot be turned back into working links.
links = Table(
    "links",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 hex of the raw token
    Column("message_id", String(32), ForeignKey("messages.id"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),  # set once no hold of the message is still held
)

# Mail the guard itself sends that no hold carries: a warning to a sender, a policy service's notice of a message
# Postfix holds, a delivery report for recipients the next hop refused. Written before the door answers, sent by
# the outbox (claimed, sent, settled, retried with backoff like a release), kept a while after for the record.
outgoing = Table(
    "outgoing",
    metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex
    Column("kind", String(32), nullable=False),  # warning | queue-hold | report: what it is, for logs and counts
    Column("mail_from", Text, nullable=False),  # "" for the null sender
    Column("recipient", Text, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),  # Notice: pending | sending | sent | refused
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True)),  # NULL: due now
    Column("claimed_at", DateTime(timezone=True)),
    Column("claim_id", String(32)),
    Column("settled_at", DateTime(timezone=True)),
    Column("last_error", Text),
    CheckConstraint(check_in("state", NOTICE_STATES), name="ck_outgoing_state"),
    Index("ix_outgoing_state_due", "state", "next_attempt_at"),
)

# The typo domains' sink (gateways/sink.py): one row per recipient it refused, and nothing of the message, which it
# never accepts. The sender's local part only when `[sink] keep_sender_local` says so; deleted after `keep_days`.
sink_refusals = Table(
    "sink_refusals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("client_ip", String(45), nullable=False),  # the sending server
    Column("helo", String(255), nullable=False),  # what it called itself ("" when it never said)
    Column("sender_domain", String(253), nullable=False),  # A-label form; "" for the null sender
    Column("sender_local", String(64)),  # NULL unless kept by configuration
    Column("typo_domain", String(253), nullable=False),  # A-label form, as typed
    Column("intended_domain", String(253), nullable=False),  # A-label form, what the sink said was meant
)
