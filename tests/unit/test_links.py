"""Confirmation links on SQLite: the one held-notice link per message, issued atomically by racing relays."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from rcptguard.store import Store
from rcptguard.store.links import Links, token_hash
from rcptguard.store.quarantine import Quarantine
from rcptguard.store.schema import holds, links, messages
from tests.holds import gmial_recipient as held

SENDER = "alice@example.org"
CONTENT = b"From: alice@example.org\r\nSubject: crew list\r\nMessage-ID: <l1@example.org>\r\n\r\nbody\r\n"
WEEK = dt.timedelta(days=7)
RACERS = 16


def held_message(store: Store, content: bytes = CONTENT) -> str:
    return Quarantine(store).hold(mail_from=SENDER, recipients=[held()], content=content)[0].message_id


def link_count(store: Store, message_id: str) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(
            select(func.count()).select_from(links).where(links.c.message_id == message_id)).scalar_one())


def test_racing_relays_issue_one_notice_link(db_url: str, store: Store) -> None:
    """Sixteen relays (each its own engine) calling issue_once for one message at the same moment get exactly
    one token between them: the sender is told once."""
    message_id = held_message(store)
    relays = [Links(Store.open(db_url)) for _ in range(RACERS)]
    barrier = threading.Barrier(RACERS)
    tokens: list[str | None] = []

    def relay(own: Links) -> None:
        barrier.wait(10)
        tokens.append(own.issue_once(message_id, WEEK))

    threads = [threading.Thread(target=relay, args=(own,)) for own in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for own in relays:
        own.store.close()
    issued = [token for token in tokens if token is not None]
    assert len(tokens) == RACERS
    assert len(issued) == 1
    assert link_count(store, message_id) == 1
    assert Links(store).resolve(issued[0]).message_id == message_id


def _issue_in_process(url: str, message_id: str, start: float) -> str | None:
    """One relay process: wait for the common start, then issue_once."""
    own = Links(Store.open(url))
    time.sleep(max(0.0, start - time.time()))
    try:
        return own.issue_once(message_id, WEEK)
    finally:
        own.store.close()


def test_racing_relay_processes_issue_one_notice_link(db_url: str, store: Store) -> None:
    """Six relay processes on one SQLite store calling issue_once for one message at once: one token."""
    message_id = held_message(store)
    start = time.time() + 2.0
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        tokens = pool.starmap(_issue_in_process, [(db_url, message_id, start)] * 6)
    assert len([token for token in tokens if token is not None]) == 1
    assert link_count(store, message_id) == 1


def test_revoke_frees_the_notice_slot(store: Store) -> None:
    """A revoked notice link (its notice could not be sent) lets the next delivery of the message issue another;
    the revoked one no longer resolves."""
    own = Links(store)
    message_id = held_message(store)
    first = own.issue_once(message_id, WEEK)
    assert first is not None
    assert own.issue_once(message_id, WEEK) is None
    own.revoke(first)
    second = own.issue_once(message_id, WEEK)
    assert second is not None
    assert second != first
    assert own.issue_once(message_id, WEEK) is None
    assert link_count(store, message_id) == 1
    assert own.resolve(second).message_id == message_id


def test_other_links_do_not_take_the_notice_slot(store: Store) -> None:
    """A link issued with issue() (not a held notice) does not stop issue_once; each message has its own slot."""
    own = Links(store)
    message_id = held_message(store)
    other_id = held_message(store, CONTENT + b"another\r\n")
    extra = own.issue(message_id, WEEK)
    notice = own.issue_once(message_id, WEEK)
    assert notice is not None
    assert own.issue_once(other_id, WEEK) is not None
    own.revoke(extra)  # revoking a link that is not the notice's frees nothing
    assert own.issue_once(message_id, WEEK) is None


def test_issue_once_for_an_unknown_message(store: Store) -> None:
    """issue_once for a message that is not in the quarantine raises ValueError, as issue() does."""
    with pytest.raises(ValueError, match="no held message"):
        Links(store).issue_once("0" * 32, WEEK)


def test_upgrade_to_0005_keeps_links_and_counts_old_notices(tmp_path: Path) -> None:
    """A store at schema 0004 whose message already has its notice link upgrades with the link still working and
    no second notice for that message; a message held without a link can get one."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store.open(url, migrate=False)
    old.migrate("0004")
    now = dt.datetime.now(dt.UTC)
    raw = "t" * 43
    with old.engine.begin() as connection:  # rows as revision 0004 wrote them
        for number in (1, 2):
            connection.execute(insert(messages).values(
                id=f"{number}" * 32, key=f"{number}" * 64, mail_from=SENDER, content=CONTENT, size=len(CONTENT),
                subject="crew list", message_id_header="<l1@example.org>", received_at=now, client="mua"))
            connection.execute(insert(holds).values(
                id=f"oldhold00{number}", message_id=f"{number}" * 32, recipient="bob@gmial.com", intended="gmail.com",
                suggestion="bob@gmail.com", reason="slip", signals="[]", score=9.0, state="held", created_at=now,
                delivery="none", delivery_attempts=0))
        connection.execute(insert(links).values(id=token_hash(raw), message_id="1" * 32, created_at=now,
                                                 expires_at=now + WEEK))
    old.close()
    upgraded = Store.open(url)
    try:
        with upgraded.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM held_notices")).scalar_one() == 1
        own = Links(upgraded)
        assert own.resolve(raw).message_id == "1" * 32
        assert own.issue_once("1" * 32, WEEK) is None  # told before the upgrade
        assert own.issue_once("2" * 32, WEEK) is not None
    finally:
        upgraded.close()
