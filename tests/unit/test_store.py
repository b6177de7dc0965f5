"""The store: migrations and learned counts on SQLite (PostgreSQL: tests/integration/test_postgres_store.py)."""

from __future__ import annotations

import datetime as dt
import importlib
import multiprocessing
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st

from rcptguard.store import Store, _sqlite_pragmas, utc_now
from rcptguard.store.history import StoreHistory, _sqlite_time
from rcptguard.store.quarantine import Quarantine
from rcptguard.store.schema import DELIVERY_STATES, HOLD_STATES, check_in, correspondents, holds, metadata
from tests.holds import gmial_recipient
from tests.support.old_keys import check_doors_kept_out, check_rekey, check_rekeyed, old_keys_history


def _open_and_read(url: str) -> dict[str, int]:
    store = Store.open(url)
    store.add_counts({"partner.example": 1})
    return store.learned()


def test_many_processes_opening_a_new_database_at_once(tmp_path: Path) -> None:
    """Six processes opening (and so migrating) one new database at once all succeed: migrations are serialised."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        results = pool.map(_open_and_read, [url] * 6)
    assert all("partner.example" in r for r in results)
    assert Store.open(url).learned() == {"partner.example": 6}


def test_counts_add_up_and_survive_reopening(tmp_path: Path) -> None:
    """Counts of one domain add up across calls and are there after reopening."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    Store.open(url).add_counts({"a.example": 2, "b.example": 1})
    Store.open(url).add_counts({"a.example": 3})
    assert Store.open(url).learned() == {"a.example": 5, "b.example": 1}


def test_sqlite_maps_only_its_wal_index(tmp_path: Path) -> None:
    """The database file is read without memory mapping (mmap_size 0, so a disk error is an exception, never a
    SIGBUS), while the WAL index (-shm) is mapped whatever the setting: the one SIGBUS source left."""
    store = Store.open(f"sqlite:///{tmp_path / 'mapped.db'}")
    try:
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA mmap_size").scalar_one() == 0
            store.add_counts({"partner.example": 1})
            maps = Path("/proc/self/maps").read_text(encoding="utf-8")
            assert f"{tmp_path / 'mapped.db'}-shm" in maps
            assert f"{tmp_path / 'mapped.db'}\n" not in maps
    finally:
        store.close()
    raw = sqlite3.connect(tmp_path / "raw.db")  # as on a build whose default maps the file
    raw.execute("PRAGMA mmap_size=1048576")
    _sqlite_pragmas(raw, None)
    assert raw.execute("PRAGMA mmap_size").fetchone() == (0,)
    raw.close()


def test_states_are_the_enums_and_the_database_holds_to_them(tmp_path: Path) -> None:
    """The CHECK constraints of 0002 say what HoldState and Delivery say, and a store migrated to the newest
    revision refuses a state, a delivery or a notice that is not a member of its enum."""
    first = importlib.import_module("rcptguard.store.migrations.versions.0002_quarantine")
    assert check_in("state", HOLD_STATES) == first._STATES
    assert check_in("delivery", DELIVERY_STATES) == first._DELIVERY
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    (hold,) = Quarantine(store).hold(mail_from="a@example.org", recipients=[gmial_recipient()],
                                     content=b"Subject: x\r\n\r\nx\r\n")
    for column, value in (("state", "maybe"), ("delivery", "lost"), ("notice", "whispered")):
        with pytest.raises(sqlalchemy.exc.IntegrityError), store.engine.begin() as connection:
            connection.execute(sqlalchemy.update(holds).where(holds.c.id == hold.id).values({column: value}))
    with store.engine.begin() as connection:
        connection.execute(sqlalchemy.update(holds).where(holds.c.id == hold.id).values(notice="pending"))


def test_the_migrations_build_the_schema_module(tmp_path: Path) -> None:
    """A store migrated to the newest revision has exactly the tables, columns and indexes of store/schema.py:
    the two cannot drift apart unnoticed (alembic's own comparison of a database with the metadata)."""
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with store.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        store.close()
    assert differences == []


def test_a_near_miss_naming_its_own_domain_is_lifted(tmp_path: Path) -> None:
    """Migration 0016: a correspondent marked as a slip of itself (in either form) is one no longer, a real near
    miss stays, and running doors are told to read history again."""
    repair = importlib.import_module("rcptguard.store.migrations.versions.0016_near_itself").repair
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    now = utc_now()
    rows = [("partner.com", "partner.com"), ("xn--mnchen-3ya.de", "münchen.de"), ("partnr.com", "partner.com"),
            ("quiet.com", None), ("held.example", "held")]
    with store.engine.begin() as connection:
        connection.execute(sqlalchemy.insert(correspondents), [
            {"domain": d, "near": n, "count": 3, "first_seen": now, "last_seen": now} for d, n in rows])
        assert repair(connection) == 2
    history = StoreHistory(store)
    assert {c.domain: c.facts.near for c in history.correspondents()} == {
        "partner.com": None, "xn--mnchen-3ya.de": None, "partnr.com": "partner.com", "quiet.com": None,
        "held.example": "held"}
    assert [batch for *_, batch in history.feed(now - dt.timedelta(minutes=1))] == [None]
    with store.engine.begin() as connection:
        assert repair(connection) == 0


def test_history_under_the_old_keys_of_non_ascii_addresses_is_moved_to_the_new(tmp_path: Path) -> None:
    """Migration 0017: rows kept under a non-ASCII local part as written (Ünal, u + U+0308 nal) move to the key
    Address.key gives today (ünal), added to what is there: counts summed, first and last seen and a confirmation
    kept; a pair that became one address twice is dropped; the Kelvin sign's kim@ stays another mailbox; running
    doors are told to read history again, and a second run moves nothing."""
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        check_rekey(store, utc_now().replace(microsecond=0))
    finally:
        store.close()


def test_migration_0017_runs_from_0016_and_keeps_writers_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a store at revision 0016 that holds history under the old keys moves it (Alembic runs 0017); and
    0017 takes SQLite's write lock before it reads anything, so that no door adds to a row between the migration's
    read and its move: a door that tries meanwhile waits (here: gives up after its busy timeout)."""
    path = tmp_path / "store.db"
    store = Store.open(f"sqlite:///{path}")
    now = utc_now().replace(microsecond=0)
    with store.engine.begin() as connection:
        old_keys_history(connection, now)
        connection.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = '0016'"))
    store.close()
    store = Store.open(f"sqlite:///{path}")
    try:
        check_rekeyed(store, now)

        def door() -> str:
            connection = sqlite3.connect(path, timeout=0.2)
            try:
                connection.execute("UPDATE sender_domains SET count = count + 1000 WHERE sender = 'Zoë@firma.de'")
                connection.commit()
            except sqlite3.OperationalError as exc:
                return str(exc)
            finally:
                connection.close()
            return "written"

        check_doors_kept_out(store, now, monkeypatch, door, "database is locked")
    finally:
        store.close()


_ZONES = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=8))])


@given(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1),  # noqa: DTZ001 - naive
                    timezones=_ZONES))  # bounds, as hypothesis wants them; the values get a zone
def test_history_times_are_written_in_bulk_as_sqlalchemy_writes_them(when: dt.datetime) -> None:
    """The bulk writes of history (`_upsert`) format times themselves: as SQLAlchemy's SQLite DATETIME would the
    same instant in UTC, or the store's comparisons of first and last seen (text, on SQLite) would go wrong."""
    written_by_sqlalchemy = sqlalchemy.dialects.sqlite.DATETIME().bind_processor(sqlalchemy.dialects.sqlite.dialect())
    assert _sqlite_time(when) == written_by_sqlalchemy(when.astimezone(dt.UTC))
