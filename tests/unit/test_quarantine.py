"""The quarantine on SQLite with a real SMTP next hop on loopback: holding, deciding, delivering, expiring, CLI."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, event, func, insert, select, text, update

from rcptguard.cli.quarantine import quarantine as quarantine_group
from rcptguard.delivery import NextHop, normalise_line_endings
from rcptguard.notify import Notifier, send_owed
from rcptguard.outbox import Backoff, Outbox
from rcptguard.store import Store, StoreError
from rcptguard.store.quarantine import (
    CLAIM_TIMEOUT,
    AlreadyDecided,
    DecidedNotRecorded,
    NotFound,
    NotPending,
    Quarantine,
    notice_kind,
)
from rcptguard.store.schema import holds, messages
from tests.holds import awkward_message
from tests.holds import gmial_recipient as held
from tests.support.processes import free_port
from tests.support.sink import Message, RecordingSink

SENDER = "alice@example.org"
CONTENT = awkward_message("q1@example.org")
SENT = normalise_line_endings(CONTENT)  # as every copy goes out: a bare CR or LF becomes CRLF


def hold_one(quarantine: Quarantine, address: str = "bob@gmial.com", content: bytes = CONTENT) -> str:
    return quarantine.hold(mail_from=SENDER, recipients=[held(address)], content=content, client="mua.example")[0].id


# -- holding ----------------------------------------------------------------------------------------------------


def test_same_message_twice_is_held_once(quarantine: Quarantine) -> None:
    """Handing the same sender, recipients and bytes over twice returns the same holds and stores one message."""
    first = quarantine.hold(mail_from=SENDER, recipients=[held(), held("carol@yaho.com", "carol@yahoo.com")],
                            content=CONTENT)
    again = quarantine.hold(mail_from=SENDER, recipients=[held("carol@yaho.com", "carol@yahoo.com"), held()],
                            content=CONTENT)
    assert [h.id for h in again] == [first[1].id, first[0].id]
    assert len(quarantine.list()) == 2
    with quarantine.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(messages)).scalar_one() == 1


def test_hold_records_the_summary(quarantine: Quarantine) -> None:
    """A hold carries the verdict, the decoded subject, the Message-ID and the size, and starts held."""
    hold = quarantine.require(hold_one(quarantine))
    assert (hold.state, hold.delivery, hold.delivery_attempts) == ("held", "none", 0)
    assert hold.subject == "Quarterly résumé"
    assert hold.message_id_header == "<q1@example.org>"
    assert hold.size == len(CONTENT)
    assert hold.suggestion == "bob@gmail.com"
    assert hold.signals[0]["name"] == "TYPO_SWAP"
    assert hold.client == "mua.example"
    assert quarantine.content(hold.id) == CONTENT


def test_failed_hold_writes_nothing(quarantine: Quarantine) -> None:
    """A hold whose second insert fails leaves no message behind and raises StoreError."""
    with quarantine.engine.begin() as connection:
        connection.execute(text("CREATE TRIGGER no_holds BEFORE INSERT ON holds BEGIN SELECT RAISE(ABORT, 'x'); END"))
    with pytest.raises(StoreError, match="cannot store the held message"):
        hold_one(quarantine)
    with quarantine.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(messages)).scalar_one() == 0


def test_unknown_hold_is_not_found(quarantine: Quarantine, sink: RecordingSink) -> None:
    """Deciding or reading an id that does not exist raises NotFound."""
    assert quarantine.get("nosuchhold") is None
    with pytest.raises(NotFound):
        quarantine.cancel("nosuchhold", "alice")
    with pytest.raises(NotFound):
        Outbox(quarantine).release("nosuchhold", "alice", sink.hop)
    with pytest.raises(NotFound):
        quarantine.content("nosuchhold")


# -- releasing --------------------------------------------------------------------------------------------------


def test_release_delivers_the_exact_bytes(quarantine: Quarantine, sink: RecordingSink) -> None:
    """Release hands the next hop the stored bytes (8-bit, leading dots) for the recipient, with every line ending
    CRLF as every copy the guard sends: a bare LF in a stored message goes out as CRLF, never bare."""
    hold_id = hold_one(quarantine)
    hold = Outbox(quarantine).release(hold_id, "alice", sink.hop)
    assert (hold.state, hold.delivery, hold.deliver_to, hold.delivery_attempts) == \
        ("released", "delivered", "bob@gmial.com", 1)
    assert hold.delivered_at is not None
    assert sink.messages == [Message(SENDER, ("bob@gmial.com",), SENT)]


def test_release_to_corrects_the_address(quarantine: Quarantine, sink: RecordingSink) -> None:
    """Release with a different address delivers there, records the hold as corrected, and names the corrected
    address in To (so that Reply-All does not go back to the typo); every other byte is as stored."""
    hold = Outbox(quarantine).release(hold_one(quarantine), "alice", sink.hop, to="bob@gmail.com")
    assert (hold.state, hold.deliver_to, hold.delivery) == ("corrected", "bob@gmail.com", "delivered")
    assert [r.rcpt_tos for r in sink.messages] == [("bob@gmail.com",)]
    assert sink.messages[0].data == SENT.replace(b"To: bob@gmial.com\r\n", b"To: bob@gmail.com\r\n")


def test_a_correction_under_a_dkim_signature_of_to_goes_unchanged(quarantine: Quarantine,
                                                                  sink: RecordingSink) -> None:
    """When a DKIM signature covers To, the corrected copy goes byte for byte as stored (it must still verify)."""
    signed = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; h=from:to:subject; bh=x; b=y\r\n" + CONTENT
    Outbox(quarantine).release(hold_one(quarantine, content=signed), "alice", sink.hop, to="bob@gmail.com")
    assert sink.messages[0].data == normalise_line_endings(signed)


def test_racing_releases_deliver_once(quarantine: Quarantine, sink: RecordingSink) -> None:
    """Two threads releasing one hold at once: one delivery, one AlreadyDecided; a replay changes nothing."""
    hold_id = hold_one(quarantine)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def release() -> None:
        barrier.wait()
        try:
            outcomes.append(Outbox(quarantine).release(hold_id, threading.current_thread().name, sink.hop))
        except AlreadyDecided as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=release, name=f"worker{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(type(o).__name__ for o in outcomes) == ["AlreadyDecided", "Hold"]
    assert len(sink.messages) == 1
    with pytest.raises(AlreadyDecided) as info:
        Outbox(quarantine).release(hold_id, "mallory", sink.hop)
    assert info.value.state == "released"
    assert len(sink.messages) == 1
    assert len(quarantine.events(hold_id)) == 1


def test_cancelled_hold_cannot_be_released(quarantine: Quarantine, sink: RecordingSink) -> None:
    """A cancelled hold refuses a later release and nothing is sent."""
    hold_id = hold_one(quarantine)
    assert quarantine.cancel(hold_id, "alice").state == "cancelled"
    with pytest.raises(AlreadyDecided, match="cancelled by alice"):
        Outbox(quarantine).release(hold_id, "bob", sink.hop)
    assert sink.messages == []


def test_next_hop_down_leaves_delivery_pending(quarantine: Quarantine) -> None:
    """A release while the next hop is down stays pending, and deliver_pending delivers it once when it is up."""
    hop_later = RecordingSink()
    hold_id = hold_one(quarantine)
    hold = Outbox(quarantine).release(hold_id, "alice", hop_later.hop)
    assert (hold.state, hold.delivery, hold.delivery_attempts) == ("released", "pending", 1)
    assert hold.last_error
    assert [h.id for h in quarantine.pending_deliveries()] == [hold_id]
    hop_later.start()
    try:
        assert Outbox(quarantine).deliver_pending(hop_later.hop) == 1
        assert Outbox(quarantine).deliver_pending(hop_later.hop) == 0
    finally:
        hop_later.stop()
    assert [r.data for r in hop_later.messages] == [SENT]
    assert quarantine.require(hold_id).delivery == "delivered"
    assert quarantine.pending_deliveries() == []


def test_permanent_refusal_marks_failed(quarantine: Quarantine) -> None:
    """A 5xx from the next hop for the recipient marks the delivery failed and deliver_pending leaves it alone."""
    refusing = RecordingSink(reply_rcpt={"bob@gmial.com": "550 5.1.1 no such user"}).start()
    try:
        hold = Outbox(quarantine).release(hold_one(quarantine), "alice", refusing.hop)
        assert (hold.delivery, hold.delivery_attempts) == ("failed", 1)
        assert "550" in (hold.last_error or "")
        assert Outbox(quarantine).deliver_pending(refusing.hop) == 0
    finally:
        refusing.stop()
    assert refusing.messages == []


def test_racing_workers_deliver_pending_once(quarantine: Quarantine, sink: RecordingSink) -> None:
    """Four workers running deliver_pending at once send each pending delivery exactly once."""
    down = NextHop("127.0.0.1", free_port(), timeout=5)
    ids = [hold_one(quarantine, f"user{i}@gmial.com") for i in range(3)]
    for hold_id in ids:
        assert Outbox(quarantine).release(hold_id, "alice", down).delivery == "pending"
    barrier = threading.Barrier(4)
    counts: list[int] = []

    def work() -> None:
        barrier.wait()
        counts.append(Outbox(quarantine).deliver_pending(sink.hop))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(counts) == 3
    assert sorted(r.rcpt_tos[0] for r in sink.messages) == [f"user{i}@gmial.com" for i in range(3)]


# -- expiry and the audit log -----------------------------------------------------------------------------------


def test_expire_due_expires_and_records(quarantine: Quarantine) -> None:
    """A zero retention expires every held hold, records the event, and leaves decided holds alone."""
    waiting, decided = hold_one(quarantine), hold_one(quarantine, "carol@yaho.com")
    quarantine.cancel(decided, "alice")
    assert quarantine.expire_due(dt.timedelta(days=1)) == []
    expired = quarantine.expire_due(dt.timedelta(0))
    assert [h.id for h in expired] == [waiting]
    assert quarantine.require(waiting).state == "expired"
    assert quarantine.require(decided).state == "cancelled"
    event = quarantine.events(waiting)[-1]
    assert (event.actor, event.from_state, event.to_state) == ("expiry", "held", "expired")
    assert quarantine.expire_due(dt.timedelta(0)) == []


def test_events_record_who_and_when(quarantine: Quarantine, sink: RecordingSink) -> None:
    """Every state change writes one event with the actor, the time, the states and the delivery address."""
    before = dt.datetime.now(dt.UTC)
    hold_id = hold_one(quarantine)
    assert quarantine.events(hold_id) == []
    Outbox(quarantine).release(hold_id, "alice@example.org", sink.hop, to="bob@gmail.com")
    after = dt.datetime.now(dt.UTC)
    [event] = quarantine.events(hold_id)
    assert (event.actor, event.from_state, event.to_state) == ("alice@example.org", "held", "corrected")
    assert before <= event.at <= after
    assert "bob@gmail.com" in event.detail
    hold = quarantine.require(hold_id)
    assert (hold.decided_by, hold.decided_at) == ("alice@example.org", event.at)


# -- the command line -------------------------------------------------------------------------------------------


def run(*args: str) -> Result:
    return CliRunner().invoke(quarantine_group, list(args))


def test_cli_list_text_and_jsonl(quarantine: Quarantine, db_url: str) -> None:
    """`list` prints a readable row per held recipient, and one JSON object per hold with --format jsonl."""
    hold_id = hold_one(quarantine)
    result = run("list", "--db", db_url)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith(hold_id))
    for part in (SENDER, "bob@gmial.com -> bob@gmail.com", "Quarterly résumé", "slip of gmail.com"):
        assert part in row
    result = run("list", "--db", db_url, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    [item] = [json.loads(line) for line in result.output.splitlines()]
    assert (item["id"], item["state"], item["recipient"]) == (hold_id, "held", "bob@gmial.com")
    assert run("list", "--db", db_url, "--state", "released", "--format", "jsonl").output == ""


def test_cli_show_has_fields_events_and_headers_not_body(quarantine: Quarantine, db_url: str) -> None:
    """`show` prints the fields, the history and the headers, never the body."""
    hold_id = hold_one(quarantine)
    quarantine.cancel(hold_id, "alice")
    result = run("show", "--db", db_url, hold_id)
    assert result.exit_code == 0, result.output
    assert "state:" in result.output
    assert "cancelled" in result.output
    assert "alice: held -> cancelled" in result.output
    assert "Message-ID: <q1@example.org>" in result.output
    assert "TYPO_SWAP" in result.output
    assert "secret body" not in result.output


def test_cli_release_then_replay(quarantine: Quarantine, db_url: str, sink: RecordingSink) -> None:
    """`release` delivers and exits 0; releasing it again exits 1 saying it was already decided."""
    hold_id = hold_one(quarantine)
    result = run("release", "--db", db_url, hold_id, "--next-hop", str(sink.hop), "--actor", "alice",
                 "--to", "bob@gmail.com")
    assert result.exit_code == 0, result.output
    assert "delivered to bob@gmail.com" in result.output
    assert [r.rcpt_tos for r in sink.messages] == [("bob@gmail.com",)]
    result = run("release", "--db", db_url, hold_id, "--next-hop", str(sink.hop))
    assert result.exit_code == 1
    assert "already decided" in result.stderr
    assert "Traceback" not in result.output
    assert len(sink.messages) == 1


def test_cli_release_with_the_hop_down_says_it_will_retry(quarantine: Quarantine, db_url: str) -> None:
    """`release` with the next hop down exits 0, says it will be retried, and `deliver-pending` delivers later."""
    later = RecordingSink()
    hold_id = hold_one(quarantine)
    result = run("release", "--db", db_url, hold_id, "--next-hop", str(later.hop))
    assert result.exit_code == 0, result.output
    assert "retried" in result.output
    later.start()
    try:
        result = run("deliver-pending", "--db", db_url, "--next-hop", str(later.hop))
    finally:
        later.stop()
    assert result.exit_code == 0, result.output
    assert "delivered 1" in result.output
    assert len(later.messages) == 1


def test_cli_release_reads_the_next_hop_from_the_config(quarantine: Quarantine, tmp_path: Path,
                                                        sink: RecordingSink) -> None:
    """`release` without --next-hop uses [relay] next_hop, and [db] url, from the config file."""
    hold_id = hold_one(quarantine)
    config = tmp_path / "rcptguard.toml"
    config.write_text(f'[db]\nurl = "{quarantine.engine.url}"\n[relay]\nnext_hop = "{sink.hop}"\n', "utf-8")
    result = run("release", "--config", str(config), hold_id)
    assert result.exit_code == 0, result.output
    assert len(sink.messages) == 1


def test_cli_cancel(quarantine: Quarantine, db_url: str) -> None:
    """`cancel` records the cancellation with the actor and exits 0; cancelling again exits 1."""
    hold_id = hold_one(quarantine)
    result = run("cancel", "--db", db_url, hold_id, "--actor", "alice")
    assert result.exit_code == 0, result.output
    assert quarantine.require(hold_id).state == "cancelled"
    assert quarantine.events(hold_id)[0].actor == "alice"
    assert run("cancel", "--db", db_url, hold_id).exit_code == 1


def test_cli_expire_notifies_the_sender_without_the_body(quarantine: Quarantine, db_url: str,
                                                         sink: RecordingSink) -> None:
    """`expire` expires what is due and sends the sender an auto-replied notice from <> that omits the body."""
    hold_id = hold_one(quarantine)
    result = run("expire", "--db", db_url, "--retention", "0", "--next-hop", str(sink.hop))
    assert result.exit_code == 0, result.output
    assert quarantine.require(hold_id).state == "expired"
    [notice] = sink.messages
    assert (notice.mail_from, notice.rcpt_tos) == ("", (SENDER,))
    assert b"Auto-Submitted: auto-replied" in notice.data
    assert b"In-Reply-To: <q1@example.org>" in notice.data
    assert b"bob@gmial.com" in notice.data
    assert b"secret body" not in notice.data
    assert b"n\xc3\xa4chste" not in notice.data


def test_expired_notices_are_owed_until_settled(quarantine: Quarantine) -> None:
    """expire_due(notify=True) marks each expired hold as owing a notice, in the same update; owed_notices groups
    them by message; a claim is taken once; settling changes only the claimed holds."""
    first = quarantine.hold(mail_from=SENDER, recipients=[held(), held("carol@yaho.com", "carol@yahoo.com")],
                            content=CONTENT)
    quiet = hold_one(quarantine, content=CONTENT + b"other\r\n")
    quarantine.cancel(quiet, "alice")
    assert {h.notice for h in quarantine.expire_due(dt.timedelta(0), notify=True)} == {"pending"}
    owed = quarantine.owed_notices()
    assert list(owed) == [first[0].message_id]
    group = owed[first[0].message_id]
    assert sorted(h.recipient for h in group) == ["bob@gmial.com", "carol@yaho.com"]
    assert quarantine.claim_notice(group) == group
    assert quarantine.claim_notice(group) == []  # another worker: nothing to send
    assert quarantine.owed_notices() == {}  # taken, not owed
    assert quarantine.settle_notice(group[:1], "later") == 1  # one given back: owed again, alone
    assert [h.id for g in quarantine.owed_notices().values() for h in g] == [group[0].id]
    assert quarantine.settle_notice(group[1:], "sent") == 1
    assert quarantine.require(group[1].id).notice == "sent"
    assert quarantine.require(quiet).notice is None
    with pytest.raises(ValueError, match="sent, refused, skipped or later"):
        quarantine.settle_notice(group, "maybe")


def test_two_workers_send_each_notice_once(quarantine: Quarantine, db_url: str) -> None:
    """Cron's `expire`, cron's `deliver-pending` and the relay's loop may send owed notices at the same time:
    with a slow next hop, two workers on their own connections still send each notice once."""
    for n in range(3):
        hold_one(quarantine, f"u{n}@gmial.com")
    quarantine.expire_due(dt.timedelta(0), notify=True)
    with RecordingSink(delay_data=0.3) as slow:
        hop = slow.hop
        workers = [Quarantine(Store.open(db_url)) for _ in range(2)]
        counts: list[Counter[str]] = []
        threads = [threading.Thread(target=lambda w=w: counts.append(
            send_owed(w, Notifier(host="mx.example-corp.com"), hop, warn=print))) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        time.sleep(0.5)
        received = slow.messages
    assert sum(c["sent"] for c in counts) == 3
    assert len(received) == 3
    assert quarantine.owed_notices() == {}


def test_a_crashed_notice_claim_is_owed_again(quarantine: Quarantine) -> None:
    hold_one(quarantine)
    quarantine.expire_due(dt.timedelta(0), notify=True)
    [group] = quarantine.owed_notices().values()
    assert quarantine.claim_notice(group) == group  # ... and the worker dies before settling
    assert quarantine.owed_notices() == {}
    [again] = quarantine.owed_notices(stale_after=dt.timedelta(0)).values()
    assert quarantine.claim_notice(again, stale_after=dt.timedelta(0)) == again


def test_a_retry_refused_for_good_owes_the_sender_a_notice(quarantine: Quarantine) -> None:
    """Deferred at release, refused (5xx) by a later retry: nobody sees that answer, so the sender is owed a
    notice; a release refused at once (the person releasing sees it) owes none."""
    later = hold_one(quarantine)
    at_once = hold_one(quarantine, "carol@yaho.com")
    refusing = RecordingSink(reply_rcpt={"bob@gmail.com": "550 5.1.1 no such user",
                                         "carol@yaho.com": "550 5.1.1 no"}).start()
    try:
        assert Outbox(quarantine).release(later, "alice", RecordingSink().hop, to="bob@gmail.com").delivery == "pending"
        assert Outbox(quarantine).release(at_once, "alice", refusing.hop).notice is None
        assert Outbox(quarantine).deliver_pending(refusing.hop) == 0
    finally:
        refusing.stop()
    hold = quarantine.require(later)
    assert (hold.delivery, hold.notice, hold.last_error) == ("failed", "pending", "550 5.1.1 no such user")
    assert [h.id for g in quarantine.owed_notices().values() for h in g] == [later]


def test_cli_expire_retries_a_deferred_notice_on_the_next_run(quarantine: Quarantine, db_url: str) -> None:
    """The next hop defers the notice: the hold is expired, the notice stays owed, and the next run sends it
    (once): the sender always learns that the message was not sent."""
    hold_id = hold_one(quarantine)
    deferring = RecordingSink(reply_rcpt={SENDER: "451 4.3.0 try later"}).start()
    try:
        result = run("expire", "--db", db_url, "--retention", "0", "--next-hop", str(deferring.hop))
    finally:
        deferring.stop()
    assert result.exit_code == 0, result.output
    assert "expired 1; notified 0 senders; 1 to try again on the next run" in result.output
    assert "will try again" in result.stderr
    assert quarantine.require(hold_id).notice == "pending"
    working = RecordingSink(port=deferring.port).start()
    try:
        again = run("expire", "--db", db_url, "--retention", "0", "--next-hop", str(working.hop))
        third = run("expire", "--db", db_url, "--retention", "0", "--next-hop", str(working.hop))
    finally:
        working.stop()
    assert "expired 0; notified 1 sender" in again.output
    assert "expired 0; notified 0 senders" in third.output
    assert [r.rcpt_tos for r in working.messages] == [(SENDER,)]
    assert quarantine.require(hold_id).notice == "sent"


def test_cli_expire_refused_or_unwanted_notices_are_not_retried(quarantine: Quarantine, db_url: str) -> None:
    """A notice refused for good is recorded and not tried again; a bounce (null sender) gets none."""
    refused = hold_one(quarantine)
    bounce = quarantine.hold(mail_from="", recipients=[held()], content=CONTENT + b"bounce\r\n")[0].id
    refusing = RecordingSink(reply_rcpt={SENDER: "550 5.1.1 no such user"}).start()
    try:
        first = run("expire", "--db", db_url, "--retention", "0", "--next-hop", str(refusing.hop))
        second = run("expire", "--db", db_url, "--retention", "0", "--next-hop", str(refusing.hop))
    finally:
        refusing.stop()
    assert first.exit_code == second.exit_code == 0
    assert "was refused" in first.stderr
    assert "was refused" not in second.stderr
    assert (quarantine.require(refused).notice, quarantine.require(bounce).notice) == ("refused", "skipped")
    assert refusing.messages == []


def test_cli_expire_without_notices_owes_none(quarantine: Quarantine, db_url: str) -> None:
    hold_id = hold_one(quarantine)
    assert run("expire", "--db", db_url, "--retention", "0", "--no-notify").exit_code == 0
    assert quarantine.require(hold_id).notice is None
    assert quarantine.owed_notices() == {}


def test_upgrade_keeps_held_messages(tmp_path: Path) -> None:
    """A store made by the previous release (schema 0003) with a message held in it upgrades to the newest
    schema with the message intact and no notice owed."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store.open(url, migrate=False)
    old.migrate("0003")
    now = dt.datetime.now(dt.UTC)
    with old.engine.begin() as connection:  # rows as the previous release wrote them: no notice column yet
        connection.execute(insert(messages).values(
            id="m" * 32, key="k" * 64, mail_from=SENDER, content=CONTENT, size=len(CONTENT), subject="Quarterly",
            message_id_header="<q1@example.org>", received_at=now, client="mua.example"))
        connection.execute(insert(holds).values(
            id="oldhold001", message_id="m" * 32, recipient="bob@gmial.com", intended="gmail.com",
            suggestion="bob@gmail.com", reason="slip", signals="[]", score=9.0, state="held", created_at=now,
            delivery="none", delivery_attempts=0))
    old.close()
    hold_id = "oldhold001"
    upgraded = Store.open(url)
    try:
        hold = Quarantine(upgraded).require(hold_id)
        assert (hold.state, hold.notice, hold.recipient) == ("held", None, "bob@gmial.com")
        assert Quarantine(upgraded).content(hold_id) == CONTENT
    finally:
        upgraded.close()


def test_give_up_fails_old_pending_deliveries_and_owes_a_notice(quarantine: Quarantine) -> None:
    """A release still pending after the give-up age fails for good and owes its sender a notice; a newer
    pending one and a delivered one are left alone."""
    down = RecordingSink()  # never started: every attempt is deferred
    old = hold_one(quarantine)
    young = hold_one(quarantine, "carol@yaho.com")
    assert Outbox(quarantine).release(old, "alice", down.hop, to="bob@gmail.com").delivery == "pending"
    assert quarantine.give_up(dt.timedelta(days=1)) == []
    assert Outbox(quarantine).release(young, "alice", down.hop).delivery == "pending"
    with quarantine.engine.begin() as connection:  # the young one was released just now
        connection.execute(holds.update().where(holds.c.id == young).values(decided_at=dt.datetime.now(dt.UTC)
                                                                              + dt.timedelta(hours=1)))
    [given] = quarantine.give_up(dt.timedelta(0))
    assert (given.id, given.state, given.delivery, given.notice) == (old, "corrected", "failed", "pending")
    assert given.last_error is not None
    assert given.last_error.startswith("gave up after 0 seconds; last: next hop 127.0.0.1")
    assert quarantine.require(young).delivery == "pending"
    assert quarantine.give_up(dt.timedelta(0)) == []  # once
    owed = quarantine.owed_notices()
    assert list(owed) == [f"{given.message_id}:undelivered"]
    claimed = quarantine.claim_notice(owed[f"{given.message_id}:undelivered"])
    assert quarantine.settle_notice(claimed, "sent") == 1
    assert quarantine.owed_notices() == {}


def test_cli_deliver_pending_gives_up_and_tells_the_sender(quarantine: Quarantine, db_url: str) -> None:
    """The next hop keeps deferring the released recipient: after the give-up age the delivery fails and the
    sender gets a "could not be delivered" notice (never the body); later runs do nothing more."""
    hold_id = hold_one(quarantine)
    deferring = RecordingSink(reply_rcpt={"bob@gmail.com": "451 4.2.0 mailbox busy"}).start()
    try:
        assert Outbox(quarantine).release(hold_id, "alice", deferring.hop, to="bob@gmail.com").delivery == "pending"
        kept = run("deliver-pending", "--db", db_url, "--next-hop", str(deferring.hop))
        gave = run("deliver-pending", "--db", db_url, "--next-hop", str(deferring.hop), "--give-up-after", "0")
        after = run("deliver-pending", "--db", db_url, "--next-hop", str(deferring.hop), "--give-up-after", "0")
    finally:
        deferring.stop()
    assert "gave up 0; 1 still pending" in kept.output
    assert "gave up 1; 0 still pending; notified 1 sender" in gave.output, gave.output
    assert "gave up 0; 0 still pending; notified 0 senders" in after.output
    [notice] = deferring.messages
    assert (notice.mail_from, notice.rcpt_tos) == ("", (SENDER,))
    assert b"Subject: Not delivered: " in notice.data
    assert b"bob@gmail.com" in notice.data
    assert b"451 4.2.0 mailbox busy" in notice.data
    assert b"secret body" not in notice.data
    hold = quarantine.require(hold_id)
    assert (hold.delivery, hold.notice) == ("failed", "sent")


def test_cli_unknown_id_is_one_clear_line(quarantine: Quarantine, db_url: str) -> None:
    """An unknown id in an existing store exits 1 with one line naming it on stderr, and no traceback."""
    for command in ("show", "cancel"):
        result = run(command, "--db", db_url, "nosuchhold")
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines() == ["Error: no held message with id 'nosuchhold'"]


def test_cli_unwritable_store_is_one_clear_line(tmp_path: Path) -> None:
    """A --db the store cannot be created at exits 1 with one line on stderr, and no traceback."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", "utf-8")
    result = run("list", "--db", f"sqlite:///{blocker / 'q.db'}")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot open the store")
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_release_with_a_bad_next_hop_is_a_usage_error(quarantine: Quarantine, db_url: str) -> None:
    """`release` with a malformed --next-hop exits 2 and decides nothing."""
    hold_id = hold_one(quarantine)
    result = run("release", "--db", db_url, "--next-hop", "nowhere", hold_id)
    assert result.exit_code == 2
    assert "HOST:PORT" in result.stderr
    assert quarantine.require(hold_id).state == "held"


# -- claims, and a store that fails after the send ----------------------------------------------------------------


def _delivered_update(statement: str) -> bool:
    """The UPDATE that records a delivery (only it sets delivered_at)."""
    return statement.lstrip().upper().startswith("UPDATE HOLDS") and "delivered_at" in statement


@contextlib.contextmanager
def failing(target: Store | type[Engine], matches: Callable[[str], bool],
            times: int | None = None) -> Iterator[list[str]]:
    """Make each statement `matches` picks fail as on a read-only or full disk (the first `times` of them; None:
    every one until the block ends), on one store's engine or on every engine; the statements that failed."""
    failed: list[str] = []
    where = target.engine if isinstance(target, Store) else target

    def fail(_conn: object, _cursor: object, statement: str, parameters: object, _context: object,
             _many: bool) -> tuple[str, object]:
        if matches(statement) and (times is None or len(failed) < times):
            failed.append(statement)
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return statement, parameters

    event.listen(where, "before_cursor_execute", fail, retval=True)
    try:
        yield failed
    finally:
        event.remove(where, "before_cursor_execute", fail)


def claim_as_another_worker(quarantine: Quarantine, hold_id: str, age: dt.timedelta) -> None:
    """Release the hold and leave its delivery claimed `age` ago by a worker on another machine (still sending,
    or dead)."""
    quarantine.decide(hold_id, "released", "alice")
    with quarantine.engine.begin() as connection:
        connection.execute(update(holds).where(holds.c.id == hold_id).values(
            delivery="sending", claimed_at=dt.datetime.now(dt.UTC) - age, claim_id="c" * 32,
            claimed_by="mx2.example-corp.com pid 4242"))


def test_a_claim_younger_than_the_claim_timeout_is_not_taken_over(quarantine: Quarantine,
                                                                   sink: RecordingSink) -> None:
    """A delivery another worker claimed 30 minutes ago may still be in its send (RFC 5321's timeouts add up to
    ~30 minutes): under the default claim timeout (1 hour) nobody takes it over; with a 20-minute one, one does."""
    hold_id = hold_one(quarantine)
    claim_as_another_worker(quarantine, hold_id, dt.timedelta(minutes=30))
    assert dt.timedelta(hours=1) <= CLAIM_TIMEOUT
    assert Outbox(quarantine).deliver_pending(sink.hop) == 0
    assert sink.messages == []
    assert quarantine.require(hold_id).claimed_by == "mx2.example-corp.com pid 4242"
    impatient = Quarantine(quarantine.store, stale_after=dt.timedelta(minutes=20))
    assert Outbox(impatient).deliver_pending(sink.hop) == 1
    assert Outbox(impatient).deliver_pending(sink.hop) == 0
    assert len(sink.messages) == 1
    assert quarantine.require(hold_id).delivery == "delivered"


def test_a_worker_whose_claim_was_taken_over_does_not_reset_it(quarantine: Quarantine, sink: RecordingSink) -> None:
    """A worker's late "failed for now" after its claim was taken over leaves the new claim alone, so no third
    worker sends at the same time; a late acceptance is still recorded (the next hop has the message)."""
    hold_id = hold_one(quarantine)
    quarantine.decide(hold_id, "released", "alice")
    first = quarantine.claim_delivery(hold_id)
    assert first
    with quarantine.engine.begin() as connection:
        connection.execute(update(holds).where(holds.c.id == hold_id).values(
            claimed_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)))
    second = quarantine.claim_delivery(hold_id)
    assert second
    assert second != first
    with pytest.raises(NotPending):
        quarantine.mark_failed(hold_id, "451 late", permanent=False, claim=first)
    stuck = quarantine.require(hold_id)
    assert (stuck.delivery, stuck.claim_id) == ("sending", second)
    assert quarantine.mark_delivered(hold_id).delivery == "delivered"


def test_store_failing_after_the_send_is_retried_not_resent(db_url: str, sink: RecordingSink) -> None:
    """The next hop accepted a release and recording it failed twice: the worker keeps the outcome and records it
    on a retry; one copy, delivered."""
    store = Store.open(db_url)
    quarantine = Quarantine(store, record_retries=(0.01, 0.01, 0.01))
    hold_id = hold_one(quarantine)
    with failing(store, _delivered_update, times=2) as failed:
        hold = Outbox(quarantine).release(hold_id, "alice", sink.hop)
    assert len(failed) == 2
    assert (hold.delivery, hold.delivery_attempts, hold.claim_id) == ("delivered", 1, None)
    assert len(sink.messages) == 1
    assert Outbox(quarantine).deliver_pending(sink.hop) == 0
    assert len(sink.messages) == 1
    store.close()


def test_store_down_after_the_send_sends_no_second_copy(db_url: str, sink: RecordingSink,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Recording fails for longer than the retries: the release says the next hop has the message, an ERROR names
    the hold, its claim and the next hop, the hold stays claimed by this worker, and neither another worker nor
    this one sends a second copy; this one records the delivery once the store works again."""
    store = Store.open(db_url)
    quarantine = Quarantine(store, record_retries=(0.01,))
    hold_id = hold_one(quarantine)
    with caplog.at_level(logging.WARNING, "rcptguard.quarantine"), failing(store, _delivered_update) as failed:
        with pytest.raises(DecidedNotRecorded) as info:
            Outbox(quarantine).release(hold_id, "alice", sink.hop)
        assert Outbox(quarantine).deliver_pending(sink.hop) == 0  # store still failing: remembered, not sent again
    assert len(failed) == 3
    assert info.value.delivered
    assert "accepted" in str(info.value)
    assert "mark-delivered" in str(info.value)
    error = next(r for r in caplog.records if r.levelno == logging.ERROR)
    stuck = quarantine.require(hold_id)
    assert error.fields["hold"] == hold_id  # type: ignore[attr-defined]
    assert error.fields["claim"] == stuck.claim_id  # type: ignore[attr-defined]
    assert str(sink.hop) in str(error.fields["next_hop"])  # type: ignore[attr-defined]
    assert error.fields["message_id"] == "<q1@example.org>"  # type: ignore[attr-defined]
    assert stuck.delivery == "sending"
    assert stuck.claimed_by is not None
    assert f"pid {os.getpid()}" in stuck.claimed_by
    other = Quarantine(Store.open(db_url))  # another worker, default claim timeout
    assert Outbox(other).deliver_pending(sink.hop) == 0
    assert Outbox(quarantine).deliver_pending(sink.hop) == 1  # recorded now, from memory: nothing sent
    assert len(sink.messages) == 1
    assert quarantine.require(hold_id).delivery == "delivered"
    assert Outbox(other).deliver_pending(sink.hop) == 0
    assert len(sink.messages) == 1
    other.store.close()
    store.close()


def test_cli_claim_timeout_from_the_flag_and_the_config(quarantine: Quarantine, db_url: str, sink: RecordingSink,
                                                        tmp_path: Path) -> None:
    """deliver-pending leaves a 30-minute-old claim alone by default and takes it over with --claim-timeout 20m
    or `[relay] claim_timeout = 1200` (seconds) in the config (with next-hop timeouts that fit in it)."""
    first, second = hold_one(quarantine), hold_one(quarantine, "carol@yaho.com")
    claim_as_another_worker(quarantine, first, dt.timedelta(minutes=30))
    claim_as_another_worker(quarantine, second, dt.timedelta(minutes=30))
    assert "delivered 0 of 2 pending" in run("deliver-pending", "--db", db_url, "--next-hop", str(sink.hop)).output
    flagged = run("deliver-pending", "--db", db_url, "--next-hop", str(sink.hop), "--claim-timeout", "20m",
                  "--give-up-after", "5d")
    assert flagged.exit_code == 0, flagged.output
    assert "delivered 2 of 2 pending" in flagged.output
    assert len(sink.messages) == 2
    third = hold_one(quarantine, "dave@gmial.com")
    claim_as_another_worker(quarantine, third, dt.timedelta(minutes=30))
    config = tmp_path / "rcptguard.toml"
    config.write_text("[relay]\nclaim_timeout = 1200\n[relay.timeouts]\ngreeting = 60\ncommand = 60\ndata_done = 300\n")
    configured = run("deliver-pending", "--config", str(config), "--db", db_url, "--next-hop", str(sink.hop))
    assert "delivered 1 of 1 pending" in configured.output, configured.output
    config.write_text("[relay]\nclaim_timeout = -5\n")
    assert run("deliver-pending", "--config", str(config), "--db", db_url).exit_code == 2
    assert run("deliver-pending", "--db", db_url, "--claim-timeout", "0").exit_code == 2


def test_cli_release_when_the_store_fails_after_the_send(quarantine: Quarantine, db_url: str,
                                                         sink: RecordingSink) -> None:
    """`quarantine release` whose delivery the next hop accepted but the store could not record says so (exit 1),
    names mark-delivered, and `mark-delivered` then records it by hand: nothing is sent twice."""
    hold_id = hold_one(quarantine)
    with failing(Engine, _delivered_update):
        result = run("release", hold_id, "--db", db_url, "--next-hop", str(sink.hop), "--record-for", "0")
    assert result.exit_code == 1, result.output
    assert "accepted" in result.stderr
    assert f"rcptguard quarantine mark-delivered {hold_id}" in result.stderr
    assert quarantine.require(hold_id).delivery == "sending"
    marked = run("mark-delivered", hold_id, "--db", db_url, "--actor", "postmaster", "--note", "queued as 4XyZ1")
    assert marked.exit_code == 0, marked.output
    hold = quarantine.require(hold_id)
    assert (hold.delivery, hold.claim_id) == ("delivered", None)
    assert "postmaster" in quarantine.events(hold_id)[-1].actor
    assert "queued as 4XyZ1" in quarantine.events(hold_id)[-1].detail
    assert run("mark-delivered", hold_id, "--db", db_url).exit_code == 1  # nothing in progress any more
    assert run("deliver-pending", "--db", db_url, "--next-hop", str(sink.hop)).exit_code == 0
    assert len(sink.messages) == 1


def test_upgrade_to_0006_keeps_a_delivery_in_progress(tmp_path: Path, sink: RecordingSink) -> None:
    """A store at schema 0005 with a delivery claimed by a worker of the previous release upgrades with the claim
    intact (no claim id: an old worker's) and it is taken over only after the claim timeout."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store.open(url, migrate=False)
    old.migrate("0005")
    now = dt.datetime.now(dt.UTC)
    with old.engine.begin() as connection:  # rows as revision 0005 wrote them: no claim id yet
        connection.execute(insert(messages).values(
            id="m" * 32, key="k" * 64, mail_from=SENDER, content=CONTENT, size=len(CONTENT), subject="Quarterly",
            message_id_header="<q1@example.org>", received_at=now, client="mua.example"))
        connection.execute(insert(holds).values(
            id="oldhold001", message_id="m" * 32, recipient="bob@gmial.com", intended="gmail.com",
            suggestion="bob@gmail.com", reason="slip", signals="[]", score=9.0, state="released", created_at=now,
            decided_at=now, decided_by="alice", deliver_to="bob@gmail.com", delivery="sending", delivery_attempts=0,
            claimed_at=now - dt.timedelta(minutes=30)))
    old.close()
    upgraded = Store.open(url)
    try:
        hold = Quarantine(upgraded).require("oldhold001")
        assert (hold.delivery, hold.claim_id, hold.claimed_by) == ("sending", None, None)
        assert Outbox(Quarantine(upgraded)).deliver_pending(sink.hop) == 0
        assert Outbox(Quarantine(upgraded, stale_after=dt.timedelta(minutes=20))).deliver_pending(sink.hop) == 1
        assert [m.rcpt_tos for m in sink.messages] == [("bob@gmail.com",)]
    finally:
        upgraded.close()


# -- an administrator's decisions owe the sender a notice ---------------------------------------------------------


def test_admin_decision_owes_a_notice_in_the_same_update(quarantine: Quarantine) -> None:
    """cancel/decide with notify_sender mark the hold as owing a "decided" notice in the decision's own update;
    without it (the sender's own choice) nothing is owed."""
    told = hold_one(quarantine)
    untold = hold_one(quarantine, "carol@yaho.com", CONTENT + b"other\r\n")
    assert quarantine.cancel(told, "ops", notify_sender=True).notice == "pending"
    assert quarantine.cancel(untold, "sender via web").notice is None
    owed = quarantine.owed_notices(grace=dt.timedelta(0))
    (group,) = owed.values()
    assert [h.id for h in group] == [told]
    assert list(owed) == [f"{group[0].message_id}:decided"]
    assert notice_kind(group[0]) == "decided"


def test_decided_notice_waits_for_the_grace_and_the_first_send(quarantine: Quarantine) -> None:
    """A "decided" notice waits until the message's last admin decision is `grace` old, and while a release of it
    has not been tried yet: then the whole message's group is owed at once."""
    first, second = (h.id for h in quarantine.hold(
        mail_from=SENDER, recipients=[held(), held("carol@yaho.com", "carol@yahoo.com")], content=CONTENT))
    quarantine.cancel(first, "ops", notify_sender=True)
    assert quarantine.owed_notices(grace=dt.timedelta(hours=1)) == {}
    quarantine.decide(second, "released", "ops", notify_sender=True)
    assert quarantine.owed_notices(grace=dt.timedelta(0)) == {}  # the release is not tried yet
    quarantine.mark_delivered(second)
    (group,) = quarantine.owed_notices(grace=dt.timedelta(0)).values()
    assert sorted(h.id for h in group) == sorted([first, second])


def test_cli_style_cancel_and_release_notify_the_sender(quarantine: Quarantine, sink: RecordingSink) -> None:
    """cancel(notify_sender=True) and release(notify_sender=True), then send_owed: one notice for the message,
    naming the cancelled recipient as not sent and the released one as accepted for delivery."""
    hop = NextHop("127.0.0.1", sink.port, timeout=10)
    cancelled, released = (h.id for h in quarantine.hold(
        mail_from=SENDER, recipients=[held(), held("carol@yaho.com", "carol@yahoo.com")], content=CONTENT))
    quarantine.cancel(cancelled, "ops", notify_sender=True)
    released_hold = Outbox(quarantine).release(released, "ops", hop, to="carol@yahoo.com", notify_sender=True)
    assert released_hold.delivery == "delivered"
    counts = send_owed(quarantine, Notifier(host="mx.example.org", name_deciders=True), hop, warn=print,
                       grace=dt.timedelta(0))
    assert counts == Counter({"sent": 1})
    (notice,) = [m for m in sink.messages if m.rcpt_tos == (SENDER,)]
    text = " ".join(notice.data.decode().split())
    assert "bob@gmial.com NOT sent: an administrator (ops) chose not to send it" in text
    assert "Released by an administrator (ops) on " in text
    assert ", to carol@yahoo.com instead." in text
    assert "accepted it for delivery to carol@yahoo.com" in text
    assert send_owed(quarantine, Notifier(), hop, warn=print, grace=dt.timedelta(0)) == Counter()


def test_admin_release_refused_for_good_tells_it_was_not_delivered(quarantine: Quarantine) -> None:
    """An admin's release the next hop refuses for good owes the "undelivered" notice instead of "decided"."""
    hold_id = hold_one(quarantine)
    quarantine.decide(hold_id, "released", "ops", notify_sender=True)
    quarantine.mark_failed(hold_id, "550 5.1.1 no such user", permanent=True)
    (group,) = quarantine.owed_notices(grace=dt.timedelta(0)).values()
    assert notice_kind(group[0]) == "undelivered"


def test_each_decision_logs_one_line(quarantine: Quarantine, caplog: pytest.LogCaptureFixture) -> None:
    """Every decision, expiry included, is one "decision" log line with the hold, actor, action and address."""
    cancelled = hold_one(quarantine)
    expired = hold_one(quarantine, "carol@yaho.com", CONTENT + b"other\r\n")
    logger = logging.getLogger("rcptguard")
    own = not logger.propagate
    if own:
        logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="rcptguard"):
            quarantine.cancel(cancelled, "ops")
            quarantine.expire_due(dt.timedelta(0))
            with pytest.raises(AlreadyDecided):
                quarantine.cancel(cancelled, "ops")
    finally:
        if own:
            logger.removeHandler(caplog.handler)
    lines = [r.fields for r in caplog.records if r.getMessage() == "decision"]  # type: ignore[attr-defined]
    assert [(f["hold"], f["actor"], f["action"], f["recipient"]) for f in lines] == [
        (cancelled, "ops", "cancelled", "bob@gmial.com"), (expired, "expiry", "expired", "carol@yaho.com")]


def test_retries_back_off_in_the_relays_rounds(quarantine: Quarantine) -> None:
    """With a backoff (the relay's rounds), a delivery the next hop deferred is not tried again before its wait
    (1 minute, then 2, 4 ... at most an hour); without one (`deliver-pending`), it is tried whenever asked."""
    down = RecordingSink()  # never started: every attempt is deferred
    outbox = Outbox(quarantine, backoff=Backoff(first=60, longest=3600))
    hold_id = hold_one(quarantine)
    first = outbox.release(hold_id, "alice", down.hop)
    assert (first.delivery, first.delivery_attempts) == ("pending", 1)
    assert first.next_attempt_at is not None
    assert 55 <= (first.next_attempt_at - dt.datetime.now(dt.UTC)).total_seconds() <= 60
    assert outbox.deliver_pending(down.hop) == 0
    assert quarantine.require(hold_id).delivery_attempts == 1  # not due: not tried
    with quarantine.engine.begin() as connection:  # the wait is over
        connection.execute(update(holds).where(holds.c.id == hold_id).values(
            next_attempt_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    outbox.deliver_pending(down.hop)
    second = quarantine.require(hold_id)
    assert second.delivery_attempts == 2
    assert second.next_attempt_at is not None
    assert 115 <= (second.next_attempt_at - dt.datetime.now(dt.UTC)).total_seconds() <= 120
    assert [Backoff().after(n).total_seconds() for n in (1, 2, 3, 7, 8, 20)] == [60, 120, 240, 3600, 3600, 3600]
    assert Backoff(first=0.5, longest=10).after(5000).total_seconds() == 10  # no overflow, however many tries
    Outbox(quarantine).deliver_pending(down.hop)  # an operator's deliver-pending does not wait
    assert quarantine.require(hold_id).delivery_attempts == 3
