"""Retention: a message's bytes are purged, and later every record of it deleted, only once nothing needs them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, update

from rcptguard.cli.quarantine import quarantine as quarantine_group
from rcptguard.config import load_config
from rcptguard.errors import ConfigError
from rcptguard.guard import Guard
from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Hold, Purged, Quarantine
from rcptguard.store.schema import events, holds, messages
from rcptguard.store.schema import links as links_table
from tests.holds import gmial_recipient
from tests.support.admin import signed_in
from tests.support.sink import RecordingSink
from tests.unit.test_web import LOCAL, build_app

SENDER = "alice@example.org"
BODIES = dt.timedelta(days=30)
RECORDS = dt.timedelta(days=365)


def content(marker: str, padding: int = 0) -> bytes:
    """A message whose body carries `marker` (a passport number, say), padded to overflow a database page."""
    return (f"From: Alice <{SENDER}>\r\nTo: bob@gmial.com\r\nSubject: crew list {marker}\r\n"
            f"Message-ID: <{marker}@example.org>\r\n\r\nPassport {marker}\r\n").encode() + b"x" * padding + b"\r\n"


def hold_one(quarantine: Quarantine, marker: str, *addresses: str, padding: int = 0) -> list[Hold]:
    recipients = [gmial_recipient(address) for address in addresses or ("bob@gmial.com",)]
    return quarantine.hold(mail_from=SENDER, recipients=recipients, content=content(marker, padding), client="mua")


def age(quarantine: Quarantine, hold: Hold, days: float) -> None:
    """Move the times of the hold's message `days` into the past, as if it had been held, decided and delivered
    then (a time not set yet stays unset)."""
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    own = holds.c.message_id == hold.message_id
    with quarantine.engine.begin() as connection:
        connection.execute(update(holds).where(own).values(created_at=then - dt.timedelta(hours=1)))
        connection.execute(update(holds).where(own, holds.c.decided_at.is_not(None)).values(decided_at=then))
        connection.execute(update(holds).where(own, holds.c.delivered_at.is_not(None)).values(delivered_at=then))
        connection.execute(update(messages).where(messages.c.id == hold.message_id)
                           .values(received_at=then - dt.timedelta(hours=1)))


def released_and_delivered(quarantine: Quarantine, marker: str) -> Hold:
    [hold] = hold_one(quarantine, marker)
    quarantine.decide(hold.id, "released", "alice")
    assert quarantine.claim_delivery(hold.id) is not None
    return quarantine.mark_delivered(hold.id)


def expired(quarantine: Quarantine, marker: str) -> Hold:
    [hold] = hold_one(quarantine, marker)
    return quarantine.decide(hold.id, "expired", "expiry")


def stored(quarantine: Quarantine, hold: Hold) -> bytes:
    with quarantine.engine.connect() as connection:
        return bytes(connection.execute(select(messages.c.content).where(messages.c.id == hold.message_id))
                     .scalar_one())


def count(quarantine: Quarantine, table: object) -> int:
    with quarantine.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


# -- bodies ----------------------------------------------------------------------------------------------------


def test_an_expired_and_a_delivered_body_go_a_held_one_stays(quarantine: Quarantine) -> None:
    """After the period the bytes of an expired and of a released-and-delivered message are gone (content() says
    when, the store keeps b""), a still-held one's stay; all three are still listed with sender and subject."""
    gone, done = expired(quarantine, "P1001"), released_and_delivered(quarantine, "P1002")
    [held] = hold_one(quarantine, "P1003")
    for hold in (gone, done, held):
        age(quarantine, hold, 31)

    purged = quarantine.purge_bodies(BODIES)

    assert sorted(message.message_id for message in purged) == sorted([gone.message_id, done.message_id])
    for hold in (gone, done):
        with pytest.raises(Purged, match=r"was deleted on .* under the retention policy"):
            quarantine.content(hold.id)
        assert stored(quarantine, hold) == b""
        assert quarantine.require(hold.id).purged_at is not None
    assert b"Passport P1003" in quarantine.content(held.id)
    listed = {hold.id: hold for hold in quarantine.list(None)}
    assert set(listed) == {gone.id, done.id, held.id}
    assert listed[gone.id].subject == "crew list P1001"
    assert listed[done.id].delivery == "delivered"
    assert listed[done.id].size == len(content("P1002"))
    assert [event.to_state for event in quarantine.events(done.id)] == ["released"]
    assert quarantine.purge_bodies(BODIES) == []  # once


def test_a_recent_decision_keeps_its_body(quarantine: Quarantine) -> None:
    """A message decided less than the period ago keeps its bytes; the period counts from the last decision or
    delivery, not from when it was held."""
    gone, done = expired(quarantine, "P2001"), released_and_delivered(quarantine, "P2002")
    age(quarantine, gone, 29)
    with quarantine.engine.begin() as connection:  # held 40 days ago, delivered 29 days ago
        connection.execute(update(holds).where(holds.c.id == done.id).values(
            created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40),
            decided_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=39),
            delivered_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=29)))
    assert quarantine.purge_bodies(BODIES) == []
    assert [message.message_id for message in quarantine.purge_bodies(dt.timedelta(days=28))] == \
        [gone.message_id, done.message_id]


@pytest.mark.parametrize("delivery", ["pending", "sending"])
def test_a_release_not_delivered_yet_keeps_its_body(quarantine: Quarantine, delivery: str) -> None:
    """A release decided long ago whose delivery is still pending (deferred) or being sent keeps its bytes, and is
    counted as waiting; once it is delivered, the bytes go."""
    [hold] = hold_one(quarantine, "P3001")
    quarantine.decide(hold.id, "released", "alice")
    if delivery == "sending":
        assert quarantine.claim_delivery(hold.id) is not None
    age(quarantine, quarantine.require(hold.id), 60)

    assert quarantine.purge_bodies(BODIES) == []
    assert quarantine.purge_waiting(BODIES) == 1
    assert b"Passport P3001" in quarantine.content(hold.id)

    quarantine.mark_delivered(hold.id)
    age(quarantine, quarantine.require(hold.id), 31)
    assert [message.message_id for message in quarantine.purge_bodies(BODIES)] == [hold.message_id]
    assert quarantine.purge_waiting(BODIES) == 0


def test_an_owed_notice_keeps_its_body(quarantine: Quarantine) -> None:
    """An expired message whose sender is still owed the notice (which quotes it) keeps its bytes until the notice
    is settled."""
    [hold] = hold_one(quarantine, "P4001")
    quarantine.decide(hold.id, "expired", "expiry", notice="pending")
    age(quarantine, quarantine.require(hold.id), 31)
    assert quarantine.purge_bodies(BODIES) == []
    claimed = quarantine.claim_notice([quarantine.require(hold.id)])
    assert quarantine.purge_bodies(BODIES) == []  # being sent
    quarantine.settle_notice(claimed, "sent")
    assert [message.message_id for message in quarantine.purge_bodies(BODIES)] == [hold.message_id]


def test_one_recipient_still_held_keeps_the_message(quarantine: Quarantine) -> None:
    """A message one of whose recipients was cancelled long ago but another is still held keeps its bytes."""
    cancelled, held = hold_one(quarantine, "P5001", "bob@gmial.com", "carol@gmial.com")
    quarantine.cancel(cancelled.id, "alice")
    age(quarantine, quarantine.require(cancelled.id), 31)
    assert quarantine.purge_bodies(BODIES) == []
    assert quarantine.delete_settled(dt.timedelta(0)) == []
    quarantine.cancel(held.id, "alice")
    age(quarantine, quarantine.require(held.id), 31)
    [purged] = quarantine.purge_bodies(BODIES)
    assert purged.hold_ids == tuple(sorted((cancelled.id, held.id)))


def test_a_dry_run_changes_nothing(quarantine: Quarantine) -> None:
    """With dry_run the messages that would go are listed and nothing is purged or deleted."""
    gone = expired(quarantine, "P6001")
    age(quarantine, gone, 400)
    assert [m.message_id for m in quarantine.purge_bodies(BODIES, dry_run=True)] == [gone.message_id]
    assert [m.message_id for m in quarantine.delete_settled(RECORDS, dry_run=True)] == [gone.message_id]
    assert b"Passport P6001" in quarantine.content(gone.id)
    assert quarantine.require(gone.id).purged_at is None


def test_purged_bytes_do_not_stay_in_the_sqlite_file(quarantine: Quarantine, store: Store) -> None:
    """The purged bytes are overwritten in the SQLite file and its write-ahead log, not merely marked free: a
    small message kept in its page and a large one in overflow pages alike."""
    small, large = expired(quarantine, "SECRETSMALL7"), expired(quarantine, "SECRETLARGE8")
    with quarantine.engine.begin() as connection:  # the large one spills into overflow pages
        connection.execute(update(messages).where(messages.c.id == large.message_id)
                           .values(content=content("SECRETLARGE8", padding=20000)))
    age(quarantine, small, 31)
    age(quarantine, large, 31)
    with quarantine.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(str(store.engine.url.database))
    assert b"Passport SECRETLARGE8" in path.read_bytes()

    assert len(quarantine.purge_bodies(BODIES)) == 2

    files = b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*") if p.is_file())
    assert b"Passport SECRETSMALL7" not in files  # the body; the subject is a record, kept
    assert b"Passport SECRETLARGE8" not in files


# -- records ---------------------------------------------------------------------------------------------------


def test_records_are_deleted_after_their_period(quarantine: Quarantine, links: Links) -> None:
    """After metadata_days a settled message's holds, audit events, links and row are deleted; one decided more
    recently keeps its records (only its bytes are gone), and a held one is untouched."""
    old, recent = released_and_delivered(quarantine, "P7001"), expired(quarantine, "P7002")
    links.issue(old.message_id, dt.timedelta(days=7))
    [held] = hold_one(quarantine, "P7003")
    age(quarantine, old, 400)
    age(quarantine, recent, 100)
    age(quarantine, held, 400)
    assert count(quarantine, events) == 2

    deleted = quarantine.delete_settled(RECORDS)
    purged = quarantine.purge_bodies(BODIES)

    assert [message.message_id for message in deleted] == [old.message_id]
    assert [message.message_id for message in purged] == [recent.message_id]
    assert quarantine.get(old.id) is None
    assert quarantine.events(old.id) == []
    assert count(quarantine, events) == 1
    assert count(quarantine, links_table) == 0
    assert count(quarantine, messages) == 2
    assert {hold.id for hold in quarantine.list(None)} == {recent.id, held.id}


def test_a_store_from_before_retention_keeps_its_messages(tmp_path: Path) -> None:
    """Migrating a store of revision 0010 adds `purged_at` empty: every message stored before keeps its bytes."""
    store = Store.open(f"sqlite:///{tmp_path / 'old.db'}", migrate=False)
    try:
        store.migrate("0010")
        row = {"id": "m" * 32, "key": "k" * 64, "mail_from": SENDER, "content": b"old bytes", "size": 9,
               "subject": "s", "message_id_header": "", "received_at": dt.datetime.now(dt.UTC), "client": ""}
        with store.engine.begin() as connection:
            connection.execute(insert(messages).values(row))
        store.migrate()
        with store.engine.connect() as connection:
            found = connection.execute(select(messages.c.content, messages.c.purged_at)).one()
        assert (bytes(found.content), found.purged_at) == (b"old bytes", None)
    finally:
        store.close()


# -- config, commands and pages ---------------------------------------------------------------------------------


def test_records_cannot_be_kept_shorter_than_bodies(tmp_path: Path) -> None:
    """[retention] metadata_days shorter than bodies_days is refused, naming the file, line and key."""
    path = tmp_path / "rcptguard.toml"
    path.write_text("[retention]\nbodies_days = 30\nmetadata_days = 7\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="metadata_days: must be at least bodies_days") as error:
        load_config(path)
    assert error.value.key == "retention.metadata_days"
    defaults = load_config(None).retention
    assert (defaults.bodies_days, defaults.metadata_days) == (30.0, 365.0)


def run(*args: str) -> Result:
    return CliRunner().invoke(quarantine_group, list(args))


def test_the_purge_command_follows_the_config_and_says_what_it_purged(quarantine: Quarantine, db_url: str,
                                                                      tmp_path: Path) -> None:
    """`quarantine purge` takes bodies_days from the config; --dry-run changes nothing; it names each message
    purged; `show` and `list` then say that the message itself was deleted, and when."""
    gone = expired(quarantine, "P8001")
    [held] = hold_one(quarantine, "P8002")
    age(quarantine, gone, 11)
    config = tmp_path / "rcptguard.toml"
    config.write_text(f'[db]\nurl = "{db_url}"\n\n[retention]\nbodies_days = 10\n', encoding="utf-8")

    dry = run("purge", "--config", str(config), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"{gone.message_id}: message would be deleted" in dry.stdout
    assert "would purge 1 message" in dry.stdout
    assert quarantine.require(gone.id).purged_at is None

    result = run("purge", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert f"{gone.message_id}: message deleted, {len(content('P8001'))} bytes (from {SENDER}, holds {gone.id}" \
        in result.stdout
    summary = f"purged 1 message ({len(content('P8001'))} bytes) older than 10 days, 0 with every record older than"
    assert f"{summary} 365 days" in result.stdout
    assert held.message_id not in result.stdout

    day = f"{dt.datetime.now(dt.UTC):%Y-%m-%d}"
    shown = run("show", gone.id, "--config", str(config))
    assert shown.exit_code == 0, shown.output
    assert f"the message itself was deleted on {day} under the retention policy" in shown.stdout
    assert "crew list P8001" in shown.stdout  # the summary stays
    listed = run("list", "--state", "all", "--config", str(config))
    assert f"[message deleted {day}]" in next(line for line in listed.stdout.splitlines() if gone.id in line)
    assert "deleted" not in next(line for line in listed.stdout.splitlines() if held.id in line)
    assert run("show", held.id, "--config", str(config)).stdout.count("Passport") == 0  # headers only, as before


def test_the_purge_command_refuses_records_shorter_than_bodies(quarantine: Quarantine, db_url: str) -> None:
    """--metadata-after shorter than the bodies' period is a usage error, and nothing is deleted."""
    gone = expired(quarantine, "P8101")
    age(quarantine, gone, 400)
    result = run("purge", "--db", db_url, "--metadata-after", "1d", "--bodies-after", "2d")
    assert result.exit_code == 2
    assert quarantine.get(gone.id) is not None


def test_the_pages_say_the_message_was_deleted(quarantine: Quarantine, links: Links, guard: Guard,
                                               sink: RecordingSink) -> None:
    """The admin list and the sender's page show a purged message's outcome and say that the message itself was
    deleted under the retention policy, and on which day."""
    done = released_and_delivered(quarantine, "P9001")
    token = links.issue(done.message_id, dt.timedelta(days=7))
    age(quarantine, done, 31)
    quarantine.purge_bodies(BODIES)
    client = TestClient(build_app(quarantine, links, guard, sink.port), follow_redirects=False, client=LOCAL)
    day = f"{dt.datetime.now(dt.UTC):%d %B %Y}"

    signed_in(client)
    admin = client.get("/admin?state=all")
    assert admin.status_code == 200
    assert f"The message itself was deleted on {day} under the retention policy." in admin.text
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 200, page.text
    assert f"The message itself was deleted on {day} under the retention policy" in page.text
    assert "Sent to bob@gmial.com" in page.text
