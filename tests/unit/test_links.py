"""Confirmation links on SQLite, and the held notice that carries one: sent once by racing relays."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, insert, inspect, select

from rcptguard.delivery import NextHop
from rcptguard.notify import NoticeLinks, Notifier, send_owed
from rcptguard.store import Store
from rcptguard.store.links import Links, token_hash
from rcptguard.store.quarantine import Quarantine
from rcptguard.store.schema import holds, links, messages
from tests.holds import gmial_recipient as held
from tests.support.processes import race
from tests.support.sink import RecordingSink

SENDER = "alice@example.org"
CONTENT = b"From: alice@example.org\r\nSubject: crew list\r\nMessage-ID: <l1@example.org>\r\n\r\nbody\r\n"
WEEK = dt.timedelta(days=7)
RACERS = 16


def held_message(store: Store, content: bytes = CONTENT) -> str:
    """A held message whose sender is owed the held notice."""
    return Quarantine(store).hold(mail_from=SENDER, recipients=[held()], content=content, notify=True)[0].message_id


def link_count(store: Store, message_id: str) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(
            select(func.count()).select_from(links).where(links.c.message_id == message_id)).scalar_one())


def held_notice_links(store: Store) -> NoticeLinks:
    return NoticeLinks(Links(store), "https://mailguard.example.org", WEEK)


def test_racing_relays_send_one_held_notice(db_url: str, store: Store, sink: RecordingSink) -> None:
    """Sixteen relays (each its own engine) sending the owed notices at the same moment send the held notice of a
    message once, with one link: the notice claim decides who tells the sender."""
    message_id = held_message(store)
    relays = [Quarantine(Store.open(db_url)) for _ in range(RACERS)]
    try:
        counts = race(RACERS, lambda i: send_owed(relays[i], Notifier(host="mx.example.org"), sink.hop, warn=print,
                                                  links=held_notice_links(relays[i].store)))
    finally:
        for own in relays:
            own.store.close()
    assert sum((c for c in counts if isinstance(c, Counter)), Counter()) == Counter(sent=1), counts
    assert [m.rcpt_tos for m in sink.messages] == [(SENDER,)]
    assert link_count(store, message_id) == 1
    raw = re.search(rb"/confirm/([A-Za-z0-9_-]{20,})", sink.messages[0].data)
    assert raw is not None
    assert Links(store).resolve(raw[1].decode()).message_id == message_id


def _notify_in_process(url: str, hop: NextHop, start: float) -> dict[str, int]:
    """One relay process: wait for the common start, then send what is owed."""
    own = Quarantine(Store.open(url))
    time.sleep(max(0.0, start - time.time()))
    try:
        notifier = Notifier(host="mx.example.org")
        return dict(send_owed(own, notifier, hop, warn=print, links=held_notice_links(own.store)))
    finally:
        own.store.close()


def test_racing_relay_processes_send_one_held_notice(db_url: str, store: Store, sink: RecordingSink) -> None:
    """Six relay processes on one SQLite store sending the owed notices at once: one held notice, one link."""
    message_id = held_message(store)
    start = time.time() + 2.0
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        counts = pool.starmap(_notify_in_process, [(db_url, sink.hop, start)] * 6)
    assert sum((Counter(c) for c in counts), Counter()) == Counter(sent=1)
    assert len(sink.messages) == 1
    assert link_count(store, message_id) == 1


def test_a_deferred_held_notice_revokes_its_link_and_stays_owed(store: Store, sink: RecordingSink) -> None:
    """A held notice the next hop defers leaves no working link behind and is owed again; the next try sends it
    with a new link, and a redelivery of the same message owes no second notice."""
    quarantine = Quarantine(store)
    hold = quarantine.hold(mail_from=SENDER, recipients=[held()], content=CONTENT, notify=True)[0]
    sink.reply_rcpt = {SENDER: "451 4.3.0 try later"}
    assert send_owed(quarantine, Notifier(), sink.hop, warn=print, links=held_notice_links(store)) == \
        Counter(later=1)
    assert link_count(store, hold.message_id) == 0
    assert quarantine.require(hold.id).notice == "pending"
    sink.reply_rcpt = None
    assert send_owed(quarantine, Notifier(), sink.hop, warn=print, links=held_notice_links(store)) == Counter(sent=1)
    assert link_count(store, hold.message_id) == 1
    again = quarantine.hold(mail_from=SENDER, recipients=[held()], content=CONTENT, notify=True)[0]
    assert (again.id, again.notice) == (hold.id, "sent")
    assert send_owed(quarantine, Notifier(), sink.hop, warn=print, links=held_notice_links(store)) == Counter()
    assert len(sink.messages) == 1


def test_without_links_a_held_notice_is_left_to_the_relay(store: Store, sink: RecordingSink) -> None:
    """A caller that cannot make links (the page's release pool) neither claims nor sends a held notice."""
    quarantine = Quarantine(store)
    hold = quarantine.hold(mail_from=SENDER, recipients=[held()], content=CONTENT, notify=True)[0]
    assert send_owed(quarantine, Notifier(), sink.hop, warn=print) == Counter()
    assert quarantine.require(hold.id).notice == "pending"
    assert sink.messages == []


def test_unknown_message_has_no_link(store: Store) -> None:
    """A link for a message that is not in the quarantine is refused with ValueError."""
    with pytest.raises(ValueError, match="no held message"):
        Links(store).issue("0" * 32, WEEK)


def test_upgrade_to_0009_keeps_links(tmp_path: Path) -> None:
    """A store at schema 0008 with a message told by the old relay upgrades with its link still working, the old
    notice slot gone, and no held notice owed for that message (its sender was told then)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store.open(url, migrate=False)
    old.migrate("0008")
    now = dt.datetime.now(dt.UTC)
    raw = "t" * 43
    with old.engine.begin() as connection:  # rows as revision 0008 wrote them
        connection.execute(insert(messages).values(
            id="1" * 32, key="1" * 64, mail_from=SENDER, content=CONTENT, size=len(CONTENT), subject="crew list",
            message_id_header="<l1@example.org>", received_at=now, client="mua"))
        connection.execute(insert(holds).values(
            id="oldhold001", message_id="1" * 32, recipient="bob@gmial.com", intended="gmail.com",
            suggestion="bob@gmail.com", reason="slip", signals="[]", score=9.0, state="held", created_at=now,
            delivery="none", delivery_attempts=0))
        connection.execute(insert(links).values(id=token_hash(raw), message_id="1" * 32, created_at=now,
                                                 expires_at=now + WEEK))
    old.close()
    upgraded = Store.open(url)
    try:
        assert "held_notices" not in inspect(upgraded.engine).get_table_names()
        assert Links(upgraded).resolve(raw).message_id == "1" * 32
        assert Quarantine(upgraded).owed_notices() == {}
    finally:
        upgraded.close()
