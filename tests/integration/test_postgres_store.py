"""The store on a real PostgreSQL server (a throwaway cluster on loopback): schema, quarantine, links, relay."""

from __future__ import annotations

import datetime as dt
import functools
import multiprocessing
import os
import signal
import smtplib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Table, func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from rcptguard.delivery import NextHop, normalise_line_endings
from rcptguard.notify import NoticeLinks, Notifier, send_owed
from rcptguard.outbox import Outbox
from rcptguard.store import Store
from rcptguard.store.links import LinkExpired, LinkInvalid, Links, token_hash
from rcptguard.store.migrations import versions
from rcptguard.store.quarantine import AlreadyDecided, DecidedNotRecorded, Hold, NotFound, Quarantine
from rcptguard.store.schema import events, holds, messages
from rcptguard.store.schema import links as links_table
from tests.holds import awkward_message
from tests.holds import gmial_recipient as recipient
from tests.integration.test_relay_postfix import RelayProcess, held
from tests.support.old_keys import check_doors_kept_out, check_rekey
from tests.support.processes import free_port, race
from tests.support.sink import Message, RecordingSink

pytestmark = pytest.mark.integration

THREADS = 8
# the newest schema revision: the highest-numbered migration (each names the one before it, checked elsewhere)
HEAD = max(path.name[:4] for path in Path(versions.__file__).parent.glob("0*.py"))
SENDER = "alice@example.org"
CONTENT = awkward_message("pg1@example.org", binary=True)
SENT = normalise_line_endings(CONTENT)  # as every copy goes out: a bare CR or LF becomes CRLF


@pytest.fixture
def db_url(postgres_url: str) -> str:
    """The store, its quarantine and links (tests/conftest.py) on this test's PostgreSQL database."""
    return postgres_url


@pytest.fixture
def hop(sink: RecordingSink) -> NextHop:
    return sink.hop


def hold_one(quarantine: Quarantine, address: str = "bob@gmial.com", content: bytes = CONTENT) -> Hold:
    return quarantine.hold(mail_from=SENDER, recipients=[recipient(address)], content=content, client="mua")[0]


def count_rows(store: Store, table: Table) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


# -- schema and correspondents ------------------------------------------------------------------------------------


def test_upgrade_from_0004_keeps_links_and_claims(postgres_url: str, sink: RecordingSink) -> None:
    """A PostgreSQL store at schema 0004 with data upgrades to the newest: the links of a message whose sender was
    told still work and owe no second notice, and a delivery an old worker claimed 30 minutes ago is not taken
    over under the default claim timeout."""
    old = Store.open(postgres_url, migrate=False)
    old.migrate("0004")
    now = dt.datetime.now(dt.UTC)
    with old.engine.begin() as connection:  # rows as revision 0004 wrote them
        for number in (1, 2):
            connection.execute(messages.insert().values(
                id=f"{number}" * 32, key=f"{number}" * 64, mail_from=SENDER, content=CONTENT, size=len(CONTENT),
                subject="Quarterly", message_id_header="<pg1@example.org>", received_at=now, client="mua"))
        connection.execute(holds.insert().values(
            id="oldhold001", message_id="1" * 32, recipient="bob@gmial.com", intended="gmail.com",
            suggestion="bob@gmail.com", reason="slip", signals="[]", score=9.0, state="released", created_at=now,
            decided_at=now, decided_by="alice", deliver_to="bob@gmail.com", delivery="sending", delivery_attempts=0,
            claimed_at=now - dt.timedelta(minutes=30)))
        for raw, age in (("a" * 43, 2), ("b" * 43, 1)):
            connection.execute(links_table.insert().values(
                id=token_hash(raw), message_id="1" * 32, created_at=now - dt.timedelta(hours=age),
                expires_at=now + dt.timedelta(days=7)))
    old.close()
    upgraded = Store.open(postgres_url)
    try:
        with upgraded.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
            assert "held_notices" not in inspect(connection).get_table_names()
        links = Links(upgraded)
        assert links.resolve("b" * 43).message_id == "1" * 32
        quarantine = Quarantine(upgraded)
        assert quarantine.owed_notices() == {}
        assert quarantine.require("oldhold001").claim_id is None
        assert Outbox(quarantine).deliver_pending(sink.hop) == 0
        assert Outbox(Quarantine(upgraded, stale_after=dt.timedelta(minutes=20))).deliver_pending(sink.hop) == 1
        assert sink.rcpts() == ["bob@gmail.com"]
    finally:
        upgraded.close()


def test_open_migrates_the_schema(postgres_url: str) -> None:
    """Store.open creates every table at the newest revision, and opening again changes nothing."""
    first = Store.open(postgres_url)
    try:
        with first.engine.connect() as connection:
            assert connection.dialect.name == "postgresql"
            tables = set(inspect(connection).get_table_names())
            assert {"alembic_version", "correspondents", "messages", "holds", "events", "links",
                    "outgoing"} <= tables
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    finally:
        first.close()
    again = Store.open(postgres_url)
    try:
        with again.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    finally:
        again.close()


def test_history_under_old_address_keys_is_moved_on_postgresql(postgres_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 0017 on PostgreSQL (its regular expressions, its times with zones): as on SQLite. It locks the
    history tables before it reads them: a door's write meanwhile waits for the commit (here: gives up)."""
    store = Store.open(postgres_url)
    try:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        check_rekey(store, now)

        def door() -> str:
            with store.engine.connect() as connection:
                try:
                    with connection.begin():
                        connection.execute(text("SET LOCAL lock_timeout = '200ms'"))
                        connection.execute(text("UPDATE sender_domains SET count = count + 1000 "
                                                "WHERE sender = 'Zoë@firma.de'"))
                except OperationalError as exc:
                    return "lock timeout" if "lock timeout" in str(exc) else str(exc)
            return "written"

        check_doors_kept_out(store, now, monkeypatch, door, "lock timeout")
    finally:
        store.close()


def test_learned_counts_add_up_and_survive_reopening(postgres_url: str) -> None:
    """Counts added by 8 threads at once (overlapping domains) sum exactly and are still there after reopening."""
    store = Store.open(postgres_url)
    try:
        store.add_counts({"army.mil": 3})
        store.add_counts({})
        results = race(THREADS, lambda i: store.add_counts({"army.mil": 1, "navy.mil": 2, f"d{i}.example": i + 1}))
        assert results == [None] * THREADS
    finally:
        store.close()
    reopened = Store.open(postgres_url)
    try:
        learned = reopened.learned()
    finally:
        reopened.close()
    expected = {"army.mil": 3 + THREADS, "navy.mil": 2 * THREADS} | {f"d{i}.example": i + 1 for i in range(THREADS)}
    assert learned == expected


# -- holding ------------------------------------------------------------------------------------------------------


def test_same_message_twice_is_held_once(quarantine: Quarantine, store: Store) -> None:
    """The same sender, recipients and bytes handed over twice return the same holds over one stored message."""
    first = quarantine.hold(mail_from=SENDER, recipients=[recipient(), recipient("carol@yaho.com", "carol@yahoo.com")],
                            content=CONTENT)
    again = quarantine.hold(mail_from=SENDER, recipients=[recipient("carol@yaho.com", "carol@yahoo.com"), recipient()],
                            content=CONTENT)
    assert [h.id for h in again] == [first[1].id, first[0].id]
    assert len(quarantine.list()) == 2
    assert count_rows(store, messages) == 1


def test_hold_from_eight_threads_at_once_stores_one_message(quarantine: Quarantine, store: Store) -> None:
    """Eight threads holding the same message at once all get the same holds; one message and two holds exist."""
    recipients = [recipient(), recipient("carol@yaho.com", "carol@yahoo.com")]
    results = race(THREADS, lambda _i: quarantine.hold(mail_from=SENDER, recipients=recipients, content=CONTENT))
    assert all(isinstance(r, list) for r in results), results
    ids = {tuple(h.id for h in r) for r in results if isinstance(r, list)}
    assert len(results) == THREADS
    assert len(ids) == 1
    assert count_rows(store, messages) == 1
    assert count_rows(store, holds) == 2


def test_content_is_byte_identical(quarantine: Quarantine) -> None:
    """The stored bytes come back unchanged: 8-bit, CRLF and bare LF, leading dots, NUL and every byte value."""
    every_byte = CONTENT + bytes(range(256)) + b"\r\n"
    hold = hold_one(quarantine, content=every_byte)
    assert quarantine.content(hold.id) == every_byte
    assert hold.size == len(every_byte)
    assert hold.subject == "Quarterly résumé"
    assert hold.message_id_header == "<pg1@example.org>"
    assert hold.created_at.tzinfo is not None
    assert abs(hold.created_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def test_unknown_hold_is_not_found(quarantine: Quarantine) -> None:
    """Reading or deciding an id that does not exist raises NotFound."""
    assert quarantine.get("nosuchhold") is None
    with pytest.raises(NotFound):
        quarantine.cancel("nosuchhold", "alice")
    with pytest.raises(NotFound):
        quarantine.content("nosuchhold")


# -- deciding -----------------------------------------------------------------------------------------------------


DECIDERS: dict[str, Callable[[Quarantine, str, int], Hold]] = {
    "cancel": lambda q, hold_id, i: q.cancel(hold_id, f"user{i}"),
    "decide": lambda q, hold_id, i: q.decide(hold_id, ("released", "cancelled", "expired")[i % 3], f"user{i}"),
    "correct": lambda q, hold_id, i: q.decide(hold_id, "corrected", f"user{i}", deliver_to=f"bob{i}@gmail.com"),
}


@pytest.mark.parametrize("how", sorted(DECIDERS))
def test_racing_decisions_have_exactly_one_winner(quarantine: Quarantine, how: str) -> None:
    """Eight threads deciding one hold at once: one wins, seven get AlreadyDecided naming it, one event is written."""
    decide = DECIDERS[how]
    for round_ in range(3):
        hold_id = hold_one(quarantine, address=f"bob{round_}@gmial.com").id
        results = race(THREADS, functools.partial(decide, quarantine, hold_id))
        winners = [r for r in results if isinstance(r, Hold)]
        losers = [r for r in results if isinstance(r, AlreadyDecided)]
        assert (len(winners), len(losers)) == (1, THREADS - 1), results
        (winner,) = winners
        assert {(e.state, e.decided_by) for e in losers} == {(winner.state, winner.decided_by)}
        final = quarantine.require(hold_id)
        assert (final.state, final.decided_by, final.deliver_to) == (winner.state, winner.decided_by,
                                                                     winner.deliver_to)
        log = quarantine.events(hold_id)
        assert [(e.actor, e.from_state, e.to_state) for e in log] == [(winner.decided_by, "held", winner.state)]


def test_expire_due_expires_only_old_holds_once(quarantine: Quarantine, store: Store) -> None:
    """expire_due expires holds older than the retention, leaves newer and decided ones alone, and is idempotent."""
    old, decided, new = (hold_one(quarantine, address=a) for a in ("a@gmial.com", "b@gmial.com", "c@gmial.com"))
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    with store.engine.begin() as connection:
        connection.execute(update(holds).where(holds.c.id.in_((old.id, decided.id))).values(created_at=long_ago))
    quarantine.cancel(decided.id, "alice")
    expired = quarantine.expire_due(dt.timedelta(days=7))
    assert [(h.id, h.state, h.decided_by) for h in expired] == [(old.id, "expired", "expiry")]
    assert quarantine.expire_due(dt.timedelta(days=7)) == []
    assert quarantine.require(decided.id).state == "cancelled"
    assert quarantine.require(new.id).state == "held"
    assert [e.detail for e in quarantine.events(old.id)] == ["not released within 7 days"]


def test_expiry_notices_and_give_up_on_postgres(quarantine: Quarantine) -> None:
    """The notice bookkeeping (schema 0004) on PostgreSQL: expired holds owe a notice until marked; a release
    the next hop keeps deferring is given up with the last error kept, and owes its own notice."""
    expiring, released = hold_one(quarantine, address="a@gmial.com"), hold_one(quarantine, address="b@gmial.com")
    down = NextHop("127.0.0.1", free_port(), timeout=5)
    assert Outbox(quarantine).release(released.id, "alice", down).delivery == "pending"
    [expired] = quarantine.expire_due(dt.timedelta(0), notify=True)
    [given] = quarantine.give_up(dt.timedelta(0))
    assert (expired.id, expired.notice, given.id, given.delivery, given.notice) == (
        expiring.id, "pending", released.id, "failed", "pending")
    assert given.last_error is not None
    assert given.last_error.startswith("gave up after 0 seconds; last: next hop")
    owed = quarantine.owed_notices()
    assert sorted(owed) == sorted([expiring.message_id, f"{released.message_id}:undelivered"])
    claims = race(THREADS, lambda _: [quarantine.claim_notice(group) for group in owed.values()])
    taken = [hold.id for claim in claims if isinstance(claim, list) for group in claim for hold in group]
    assert sorted(taken) == sorted([expiring.id, released.id]), claims  # each notice taken by one worker
    assert quarantine.settle_notice([expired, given], "sent") == 2
    assert quarantine.owed_notices() == {}


def test_racing_expiry_expires_each_hold_once(quarantine: Quarantine, store: Store) -> None:
    """Eight expiry workers at once expire every due hold exactly once between them."""
    ids = [hold_one(quarantine, address=f"u{i}@gmial.com").id for i in range(5)]
    with store.engine.begin() as connection:
        connection.execute(update(holds).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
    results = race(THREADS, lambda i: quarantine.expire_due(dt.timedelta(days=1), actor=f"expiry{i}"))
    expired = [h.id for r in results if isinstance(r, list) for h in r]
    assert sorted(expired) == sorted(ids), results
    assert count_rows(store, events) == len(ids)


# -- delivering ---------------------------------------------------------------------------------------------------


def test_release_delivers_the_exact_bytes_once(quarantine: Quarantine, sink: RecordingSink, hop: NextHop) -> None:
    """A release sends the stored bytes unchanged to a real SMTP next hop, once, and records the delivery."""
    hold = hold_one(quarantine)
    released = Outbox(quarantine).release(hold.id, "alice", hop)
    assert (released.state, released.delivery, released.deliver_to, released.delivery_attempts) == \
        ("released", "delivered", "bob@gmial.com", 1)
    assert released.delivered_at is not None
    assert sink.messages == [Message(SENDER, ("bob@gmial.com",), SENT)]
    with pytest.raises(AlreadyDecided):
        Outbox(quarantine).release(hold.id, "mallory", hop)
    assert len(sink.messages) == 1


def release_as_worker(quarantine: Quarantine, hold_id: str, hop: NextHop, worker: int) -> Hold:
    return Outbox(quarantine).release(hold_id, f"worker{worker}", hop)


def test_racing_releases_deliver_exactly_once(quarantine: Quarantine, sink: RecordingSink, hop: NextHop) -> None:
    """Two release calls racing on the same hold (five holds in a row): each is delivered exactly once."""
    addresses = [f"r{i}@gmial.com" for i in range(5)]
    for address in addresses:
        hold_id = hold_one(quarantine, address=address).id
        results = race(2, functools.partial(release_as_worker, quarantine, hold_id, hop))
        assert sorted(type(r).__name__ for r in results) == ["AlreadyDecided", "Hold"], results
        (winner,) = [r for r in results if isinstance(r, Hold)]
        assert winner.delivery == "delivered"
        assert len(quarantine.events(hold_id)) == 1
    assert sorted(sink.rcpts()) == sorted(addresses)
    assert all(m.data == SENT for m in sink.messages)


def test_racing_deliver_pending_sends_once(quarantine: Quarantine, sink: RecordingSink, hop: NextHop) -> None:
    """Deliveries left pending while the next hop was down are sent once by eight racing deliver_pending workers."""
    down = NextHop("127.0.0.1", free_port(), timeout=5)
    ids = [hold_one(quarantine, address=f"p{i}@gmial.com").id for i in range(3)]
    for hold_id in ids:
        assert Outbox(quarantine).release(hold_id, "alice", down).delivery == "pending"
    results = race(THREADS, lambda _i: Outbox(quarantine).deliver_pending(hop))
    assert sum(r for r in results if isinstance(r, int)) == len(ids), results
    assert sorted(sink.rcpts()) == sorted(f"p{i}@gmial.com" for i in range(3))
    assert quarantine.pending_deliveries() == []


def test_store_failing_after_the_send_sends_no_second_copy(store: Store, sink: RecordingSink, hop: NextHop,
                                                           postgres_url: str) -> None:
    """The server refuses to record a delivery the next hop accepted (a trigger raises, as a read-only or full
    database would): the release says the next hop has it, the hold stays claimed by this worker (host, pid,
    claim id), another worker does not send it again, and this one records it once the server accepts writes."""
    quarantine = Quarantine(store, record_retries=(0.01, 0.01))
    hold = hold_one(quarantine)
    with store.engine.begin() as connection:
        connection.execute(text("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                                "$$ BEGIN RAISE EXCEPTION 'could not write: disk full'; END $$"))
        connection.execute(text("CREATE TRIGGER refuse_delivered BEFORE UPDATE ON holds FOR EACH ROW "
                                "WHEN (NEW.delivery = 'delivered') EXECUTE FUNCTION refuse()"))
    with pytest.raises(DecidedNotRecorded, match="disk full") as info:
        Outbox(quarantine).release(hold.id, "alice", hop)
    assert info.value.delivered
    stuck = quarantine.require(hold.id)
    assert stuck.delivery == "sending"
    assert stuck.claim_id
    assert stuck.claimed_by is not None
    assert f"pid {os.getpid()}" in stuck.claimed_by
    other = Quarantine(Store.open(postgres_url))
    try:
        assert Outbox(other).deliver_pending(hop) == 0  # a young claim: not taken over
        assert Outbox(quarantine).deliver_pending(hop) == 0  # still refused: remembered, not sent again
        with store.engine.begin() as connection:
            connection.execute(text("DROP TRIGGER refuse_delivered ON holds"))
        assert Outbox(quarantine).deliver_pending(hop) == 1  # recorded from memory
        assert Outbox(other).deliver_pending(hop) == 0
    finally:
        other.store.close()
    assert quarantine.require(hold.id).delivery == "delivered"
    assert sink.rcpts() == ["bob@gmial.com"]


# -- links --------------------------------------------------------------------------------------------------------


def test_links_issue_resolve_and_refuse_bad_tokens(quarantine: Quarantine, store: Store) -> None:
    """A link resolves to its message; a tampered, malformed or unknown token is invalid, an old one expired."""
    links = Links(store)
    hold = hold_one(quarantine)
    token = links.issue(hold.message_id, dt.timedelta(days=7))
    info = links.resolve(token)
    assert (info.message_id, info.used_at) == (hold.message_id, None)
    assert info.expires_at - info.created_at == dt.timedelta(days=7)
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM links WHERE id = :raw"), {"raw": token}).scalar() == 0
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), "short", "x" * 43, ""):
        with pytest.raises(LinkInvalid):
            links.resolve(bad)
    brief = links.issue(hold.message_id, dt.timedelta(milliseconds=1))
    time.sleep(0.01)
    with pytest.raises(LinkExpired):
        links.resolve(brief)
    with pytest.raises(ValueError, match="no held message"):
        links.issue("0" * 32, dt.timedelta(days=1))


def notice_links(store: Store) -> NoticeLinks:
    return NoticeLinks(Links(store), "https://mailguard.example.org", dt.timedelta(days=7))


def test_racing_relays_send_one_held_notice(store: Store, postgres_url: str, sink: RecordingSink) -> None:
    """Eight relays, each with its own engine, sending the owed notices at once send a message's held notice once,
    with one link (the notice claim is one atomic update); a redelivery of the message owes no second one."""
    quarantine = Quarantine(store)
    hold = quarantine.hold(mail_from=SENDER, recipients=[recipient()], content=CONTENT, notify=True)[0]
    relays = [Quarantine(Store.open(postgres_url)) for _ in range(THREADS)]
    try:
        counts = race(THREADS, lambda i: send_owed(relays[i], Notifier(host="mx.example.org"), sink.hop,
                                                   warn=print, links=notice_links(relays[i].store)))
    finally:
        for own in relays:
            own.store.close()
    assert sum((c for c in counts if isinstance(c, Counter)), Counter()) == Counter(sent=1), counts
    assert [m.rcpt_tos for m in sink.messages] == [(SENDER,)]
    assert count_rows(store, links_table) == 1
    again = quarantine.hold(mail_from=SENDER, recipients=[recipient()], content=CONTENT, notify=True)[0]
    assert (again.id, again.notice) == (hold.id, "sent")


def _notify_in_process(url: str, hop: NextHop, start: float) -> dict[str, int]:
    """One relay process: open the store, wait for the common start, then send what is owed."""
    own = Quarantine(Store.open(url))
    time.sleep(max(0.0, start - time.time()))
    try:
        return dict(send_owed(own, Notifier(host="mx.example.org"), hop, warn=print, links=notice_links(own.store)))
    finally:
        own.store.close()


def test_racing_relay_processes_send_one_held_notice(quarantine: Quarantine, postgres_url: str,
                                                     sink: RecordingSink) -> None:
    """Six relay processes on one PostgreSQL store sending the owed notices at once: one held notice."""
    quarantine.hold(mail_from=SENDER, recipients=[recipient()], content=CONTENT, notify=True)
    start = time.time() + 3.0
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        counts = pool.starmap(_notify_in_process, [(postgres_url, sink.hop, start)] * 6)
    assert sum((Counter(c) for c in counts), Counter()) == Counter(sent=1), counts
    assert len(sink.messages) == 1


def test_stored_mail_is_sent_once_on_postgres(store: Store, postgres_url: str, sink: RecordingSink) -> None:
    """Mail stored for the outbox (warnings, reports) is sent once by eight racing workers on PostgreSQL."""
    for number in range(4):
        Outbox(Quarantine(store)).queue("warning", "", f"u{number}@example.org", b"Subject: hi\r\n\r\nhi\r\n")
    workers = [Outbox(Quarantine(Store.open(postgres_url))) for _ in range(THREADS)]
    try:
        counts = race(THREADS, lambda i: workers[i].send_queued(sink.hop))
    finally:
        for worker in workers:
            worker.quarantine.store.close()
    assert sum((c for c in counts if isinstance(c, Counter)), Counter()) == Counter(sent=4), counts
    assert sorted(sink.rcpts()) == [f"u{number}@example.org" for number in range(4)]


def test_links_mark_used_only_when_every_hold_is_decided(quarantine: Quarantine, store: Store) -> None:
    """mark_used_if_done waits for every hold of its own message (not others'), then sets used_at exactly once."""
    links = Links(store)
    first, second = quarantine.hold(mail_from=SENDER, recipients=[recipient(), recipient("carol@yaho.com")],
                                    content=CONTENT)
    other = hold_one(quarantine, address="dave@gmial.com", content=CONTENT + b"another message\r\n")
    token = links.issue(first.message_id, dt.timedelta(days=7))
    assert links.hold_ids(first.message_id) == sorted([first.id, second.id],
                                                      key=lambda i: quarantine.require(i).recipient)
    quarantine.cancel(first.id, "alice")
    assert links.mark_used_if_done(token) is False
    quarantine.cancel(second.id, "alice")
    assert quarantine.require(other.id).state == "held"  # another message still held must not matter
    results = race(THREADS, lambda _i: links.mark_used_if_done(token))
    assert sorted(results, key=bool) == [False] * (THREADS - 1) + [True]
    assert links.mark_used_if_done(token) is False
    assert links.resolve(token).used_at is not None
    assert links.mark_used_if_done("not a token") is False


# -- the relay end to end -----------------------------------------------------------------------------------------


def test_relay_forwards_and_holds_with_postgres(postgres_url: str, sink: RecordingSink, tmp_path: Path) -> None:
    """`rcptguard relay --db postgresql+psycopg://...` forwards x@army.mil to the next hop and holds y@army.ml."""
    relay = RelayProcess(tmp_path, free_port(), sink.port, postgres_url).start()
    try:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as client:
            refused = client.sendmail("me@example-corp.com", ["x@army.mil", "y@army.ml"],
                                      b"From: me@example-corp.com\r\nTo: x@army.mil, y@army.ml\r\n"
                                      b"Subject: crew list\r\nMessage-ID: <crew@example-corp.com>\r\n\r\nhello\r\n")
        assert refused == {}
        sink.wait_for(1)
        sink.wait_for(2)  # the mail to x, then the notice to the sender with the link to the held message
    finally:
        relay.kill(signal.SIGTERM)
    forwarded = [m for m in sink.messages if "x@army.mil" in m.rcpt_tos]
    assert [m.rcpt_tos for m in forwarded] == [("x@army.mil",)]
    assert "y@army.ml" not in sink.rcpts()
    assert [m.rcpt_tos for m in sink.messages if m not in forwarded] == [("me@example-corp.com",)]
    (entry,) = held(postgres_url)
    assert (entry["recipient"], entry["suggestion"], entry["state"]) == ("y@army.ml", "y@army.mil", "held")
    assert entry["mail_from"] == "me@example-corp.com"


def test_two_relays_on_one_store_tell_each_sender_once(postgres_url: str, sink: RecordingSink,
                                                        tmp_path: Path) -> None:
    """Two relay processes on one PostgreSQL store, each handed the same 40 messages at the same moment (as when
    a sending MTA retries through the other one): every message is held once and every sender gets exactly one
    notice, however the two race."""
    relays = [RelayProcess(tmp_path, free_port(), sink.port, postgres_url).start() for _ in range(2)]
    senders = [f"s{number}@example-corp.com" for number in range(40)]

    def send(job: int) -> dict[str, tuple[int, bytes]]:
        sender, relay = senders[job // 2], relays[job % 2]
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=60) as client:
            return client.sendmail(sender, ["y@army.ml"], f"From: {sender}\r\nTo: y@army.ml\r\nSubject: twice\r\n"
                                   f"Message-ID: <{job // 2}@example-corp.com>\r\n\r\nhello\r\n".encode())

    try:
        results = race(len(senders) * 2, send)
        assert all(result == {} for result in results), results
        sink.wait_for(len(senders))
        time.sleep(1.0)  # a second notice, if one were sent, would be on its way
    finally:
        for relay in relays:
            relay.kill(signal.SIGTERM)
    told = sorted(rcpt for message in sink.messages if message.mail_from == "" for rcpt in message.rcpt_tos)
    assert told == sorted(senders)
    assert len(held(postgres_url)) == len(senders)


def _open_and_count(url: str) -> dict[str, int]:
    store = Store.open(url)
    store.add_counts({"partner.example": 1})
    counts = store.learned()
    store.close()
    return counts


def test_many_processes_migrate_a_new_database_at_once(postgres_url: str) -> None:
    """Six processes opening one new PostgreSQL database at once all succeed (an advisory lock serialises
    the migration), as when the relay, the policy service and the web page start together."""
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        results = pool.map(_open_and_count, [postgres_url] * 6)
    assert all("partner.example" in r for r in results)
    store = Store.open(postgres_url)
    try:
        assert store.learned() == {"partner.example": 6}
    finally:
        store.close()


def test_states_outside_their_enums_are_refused(postgres_url: str) -> None:
    """On PostgreSQL too, a hold's state, delivery and notice keep to their enums (CHECK constraints)."""
    store = Store.open(postgres_url)
    try:
        hold = hold_one(Quarantine(store))
        for column, value in (("state", "maybe"), ("delivery", "lost"), ("notice", "whispered")):
            with pytest.raises(IntegrityError), store.engine.begin() as connection:
                connection.execute(update(holds).where(holds.c.id == hold.id).values({column: value}))
    finally:
        store.close()
