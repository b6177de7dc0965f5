"""Mail no hold carries (warnings, reports, the policy service's notices): stored, claimed, sent once, retried."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import update

from rcptguard.outbox import Backoff, Outbox
from rcptguard.store import Store
from rcptguard.store.outgoing import Outgoing
from rcptguard.store.quarantine import Quarantine
from rcptguard.store.schema import outgoing
from tests.support.processes import race
from tests.support.sink import RecordingSink

NOTICE = b"From: MAILER-DAEMON@mx.example.org\r\nTo: alice@example.org\r\nSubject: Check the address\r\n\r\nhi\r\n"


def test_stored_mail_is_sent_once_by_racing_workers(db_url: str, store: Store, sink: RecordingSink) -> None:
    """Eight workers (each its own engine) sending what is stored at once send each message exactly once."""
    ids = [Outbox(Quarantine(store)).queue("warning", "", f"u{n}@example.org", NOTICE) for n in range(5)]
    workers = [Outbox(Quarantine(Store.open(db_url))) for _ in range(8)]
    try:
        totals = race(len(workers), lambda i: workers[i].send_queued(sink.hop))
    finally:
        for worker in workers:
            worker.quarantine.store.close()
    assert sum((t for t in totals if isinstance(t, Counter)), Counter()) == Counter(sent=5), totals
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == [f"u{n}@example.org" for n in range(5)]
    assert Outgoing(store).counts() == {"sent": 5}
    assert Outgoing(store).due(ids=ids) == []


def test_a_deferral_waits_for_its_backoff_and_a_refusal_is_final(store: Store, sink: RecordingSink) -> None:
    """A deferred message is pending again, not due before its backoff; a refused one is never tried again."""
    outbox = Outbox(Quarantine(store), backoff=Backoff(first=3600))
    later = outbox.queue("report", "", "busy@example.org", NOTICE)
    never = outbox.queue("report", "", "gone@example.org", NOTICE)
    sink.reply_rcpt = {"busy@example.org": "451 4.2.0 busy", "gone@example.org": "550 5.1.1 no such user"}
    assert outbox.send_queued(sink.hop) == Counter(later=1, refused=1)
    assert outbox.outgoing.due() == []  # the deferred one waits an hour
    with store.engine.begin() as connection:
        connection.execute(update(outgoing).where(outgoing.c.id == later).values(next_attempt_at=None))
    sink.reply_rcpt = None
    assert outbox.send_queued(sink.hop) == Counter(sent=1)
    assert [m.rcpt_tos for m in sink.messages] == [("busy@example.org",)]
    assert Outgoing(store).counts() == {"sent": 1, "refused": 1}
    assert never not in [item.id for item in outbox.outgoing.due()]


def test_a_message_deferred_past_its_lifetime_is_given_up(store: Store, sink: RecordingSink) -> None:
    """A notice the next hop has deferred for longer than NOTICE_LIFETIME is refused on its next deferral."""
    outbox = Outbox(Quarantine(store))
    row = outbox.queue("queue-hold", "", "busy@example.org", NOTICE)
    with store.engine.begin() as connection:
        connection.execute(update(outgoing).where(outgoing.c.id == row).values(
            created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=6)))
    sink.reply_rcpt = {"busy@example.org": "451 4.2.0 busy"}
    assert outbox.send_queued(sink.hop) == Counter(refused=1)
    assert sink.messages == []


def test_a_dead_workers_claim_is_taken_over(store: Store, sink: RecordingSink) -> None:
    """A message claimed by a worker that died (older than the claim timeout) is sent by the next one."""
    outgoing_mail = Outgoing(store)
    row = outgoing_mail.add("warning", "", "alice@example.org", NOTICE)
    assert outgoing_mail.claim(row) is not None  # and the worker dies
    assert Outgoing(store).claim(row) is None
    assert Outbox(Quarantine(store)).send_queued(sink.hop) == Counter()
    with store.engine.begin() as connection:
        connection.execute(update(outgoing).where(outgoing.c.id == row).values(
            claimed_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)))
    assert Outbox(Quarantine(store)).send_queued(sink.hop) == Counter(sent=1)


def test_settled_mail_is_purged_after_a_while(store: Store, sink: RecordingSink) -> None:
    """Sent and refused rows go after `older_than`; pending ones stay whatever their age."""
    outbox = Outbox(Quarantine(store))
    outbox.queue("warning", "", "alice@example.org", NOTICE)
    outbox.send_queued(sink.hop)
    waiting = outbox.queue("warning", "", "bob@example.org", NOTICE)
    assert outbox.outgoing.purge(dt.timedelta(days=7)) == 0
    assert outbox.outgoing.purge(dt.timedelta(0)) == 1
    assert [item.id for item in outbox.outgoing.due()] == [waiting]


def test_only_known_kinds_are_stored(store: Store) -> None:
    """A kind of outgoing mail the outbox does not know is a programming error, refused before anything is stored."""
    with pytest.raises(ValueError, match="one of warning, queue-hold, report"):
        Outgoing(store).add("newsletter", "", "alice@example.org", NOTICE)
