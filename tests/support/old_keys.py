"""History written under the address keys of before 2026-12-04, and what migration 0017 makes of it: shared by the
store's unit test (SQLite) and the PostgreSQL integration test."""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy

from rcptguard.history.model import key_of
from rcptguard.store import Store
from rcptguard.store.history import StoreHistory
from rcptguard.store.schema import co_places, co_recipients, sender_addresses, sender_domains

if TYPE_CHECKING:
    import pytest


def old_keys_history(connection: sqlalchemy.Connection, now: dt.datetime) -> None:
    """History written under the keys of before 2026-12-04, when a non-ASCII local part was kept as written: Ünal,
    ünal and u + U+0308 nal are three mailboxes of one person (and of one sender), beside the Kelvin sign's lookalike
    of kim@ (another mailbox) and plain ASCII ones."""
    early, late = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
    decomposed = "u\u0308nal"
    connection.execute(sqlalchemy.insert(sender_domains), [
        {"sender": "Ünal@firma.de", "domain": "partner.com", "count": 2, "first_seen": early, "last_seen": early,
         "confirmed_at": None},
        {"sender": "ünal@firma.de", "domain": "partner.com", "count": 3, "first_seen": late, "last_seen": late,
         "confirmed_at": late},
        {"sender": "me@org.example", "domain": "firma.de", "count": 4, "first_seen": early, "last_seen": late,
         "confirmed_at": None}])
    connection.execute(sqlalchemy.insert(sender_addresses), [
        {"sender": "me@org.example", "address": "Ünal@firma.de", "domain": "firma.de", "count": 1,
         "first_seen": early, "last_seen": early},
        {"sender": "me@org.example", "address": f"{decomposed}@firma.de", "domain": "firma.de", "count": 2,
         "first_seen": late, "last_seen": late},
        {"sender": "me@org.example", "address": "ünal@firma.de", "domain": "firma.de", "count": 3,
         "first_seen": late, "last_seen": now},
        {"sender": "me@org.example", "address": "\u212aim@firma.de", "domain": "firma.de", "count": 1,
         "first_seen": late, "last_seen": late},
        {"sender": "Ünal@firma.de", "address": "bob@partner.com", "domain": "partner.com", "count": 5,
         "first_seen": early, "last_seen": late}])
    connection.execute(sqlalchemy.insert(co_recipients), [
        {"a": "Ünal@firma.de", "b": "bob@partner.com", "count": 2, "last_seen": early},
        {"a": "bob@partner.com", "b": "ünal@firma.de", "count": 1, "last_seen": late},
        {"a": "Ünal@firma.de", "b": "ünal@firma.de", "count": 1, "last_seen": late}])
    connection.execute(sqlalchemy.insert(co_places), [
        {"rest": "0" * 32, "address": "Ünal@firma.de", "count": 2, "last_seen": early},
        {"rest": "0" * 32, "address": "ünal@firma.de", "count": 1, "last_seen": late}])


def rekey(connection: sqlalchemy.Connection) -> int:
    """Migration 0017's work, as its upgrade does it."""
    moved: int = importlib.import_module("rcptguard.store.migrations.versions.0017_address_keys").rekey(connection)
    return moved


def doors_meanwhile(monkeypatch: pytest.MonkeyPatch, write: Callable[[], str]) -> list[str]:
    """Make 0017 let a door try `write` (which says what became of it) before it reads each table; what became of
    each try, filled in as the migration runs."""
    module = importlib.import_module("rcptguard.store.migrations.versions.0017_address_keys")
    each_table = module._rekey
    tries: list[str] = []

    def door_first(connection: sqlalchemy.Connection, spec: object) -> int:
        tries.append(write())
        moved: int = each_table(connection, spec)
        return moved

    monkeypatch.setattr(module, "_rekey", door_first)
    return tries


def check_doors_kept_out(store: Store, now: dt.datetime, monkeypatch: pytest.MonkeyPatch, door: Callable[[], str],
                         refused: str) -> None:
    """History under an old key (Zoë@firma.de) moved by 0017 while a door tries to add 1000 to it before each table
    is read (`door`, saying what became of its try): every try is `refused`, and the moved row holds what it had."""
    with store.engine.begin() as connection:
        connection.execute(sqlalchemy.insert(sender_domains).values(
            sender="Zoë@firma.de", domain="partner.com", count=1, first_seen=now, last_seen=now))
    tries = doors_meanwhile(monkeypatch, door)
    with store.engine.begin() as migrating:
        assert rekey(migrating) == 1
    assert tries == [refused] * 4
    with store.engine.connect() as connection:
        assert connection.execute(sqlalchemy.select(sender_domains.c.count).where(
            sender_domains.c.sender == "zoë@firma.de")).scalar_one() == 1


def check_rekey(store: Store, now: dt.datetime) -> None:
    """Write `old_keys_history` into `store` (migrated to the newest revision), run 0017's `rekey` and check what
    history then holds (`check_rekeyed`); a second run moves nothing."""
    with store.engine.begin() as connection:
        old_keys_history(connection, now)
        assert rekey(connection) == 7  # 1 sender, 3 of sender_addresses, 2 pairs (one dropped), 1 place
    check_rekeyed(store, now)
    with store.engine.begin() as connection:
        assert rekey(connection) == 0
    assert len(StoreHistory(store).feed(now - dt.timedelta(minutes=1))) == 1  # (none written for nothing)


def check_rekeyed(store: Store, now: dt.datetime) -> None:
    """What history holds once `old_keys_history` was moved to today's keys."""
    with store.engine.connect() as connection:
        senders = {tuple(row[:3]): row[3:] for row in connection.execute(sqlalchemy.select(
            sender_domains.c.sender, sender_domains.c.domain, sender_domains.c.count, sender_domains.c.first_seen,
            sender_domains.c.last_seen, sender_domains.c.confirmed_at))}
        addresses = {tuple(row[:3]): row[3:] for row in connection.execute(sqlalchemy.select(
            sender_addresses.c.sender, sender_addresses.c.address, sender_addresses.c.count,
            sender_addresses.c.first_seen, sender_addresses.c.last_seen))}
        pairs = set(connection.execute(sqlalchemy.select(co_recipients.c.a, co_recipients.c.b, co_recipients.c.count)))
        places = set(connection.execute(sqlalchemy.select(co_places.c.address, co_places.c.count)))
    early, late = now - dt.timedelta(days=30), now - dt.timedelta(days=1)

    def utc(*times: dt.datetime | None) -> tuple[dt.datetime | None, ...]:
        return tuple(t if t is None else t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t for t in times)

    assert {k: utc(*v) for k, v in senders.items()} == {
        ("ünal@firma.de", "partner.com", 5): (early, late, late),
        ("me@org.example", "firma.de", 4): (early, late, None)}
    assert {k: utc(*v) for k, v in addresses.items()} == {
        ("me@org.example", "ünal@firma.de", 6): (early, now),
        ("me@org.example", "\u212aim@firma.de", 1): (late, late),
        ("ünal@firma.de", "bob@partner.com", 5): (early, late)}
    assert pairs == {("bob@partner.com", "ünal@firma.de", 3)}
    assert places == {("ünal@firma.de", 3)}
    history = StoreHistory(store)
    facts = history.facts("ünal@firma.de", ["bob@partner.com"], now)
    assert (facts.by_sender, facts.domains["partner.com"].confirmed) == ({"bob@partner.com": 5}, late)
    typed = key_of("ÜNAL@firma.de")
    assert typed is not None
    assert history.facts("me@org.example", [typed], now).by_sender == {"ünal@firma.de": 6}
    assert [batch for *_, batch in history.feed(now - dt.timedelta(minutes=1))] == [None]
