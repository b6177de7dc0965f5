"""History at the doors, on real sockets: the relay judges a whole envelope with its sender's history, a release
teaches (the CLI's `quarantine release`), a slip let through does not make itself known, observe mode passes
everything and records what it would have done; the policy service judges each recipient with those before it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import json
import smtplib
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from rcptguard.cli import main
from rcptguard.gateways.policyd import PolicyService, PolicySettings
from rcptguard.gateways.relay import RelaySettings, build
from rcptguard.guard import Guard
from rcptguard.history import Batch, Counted, HistorySettings
from rcptguard.model import Action
from rcptguard.policy import load_policy
from rcptguard.store import Store
from rcptguard.store.history import StoreHistory
from tests.support.sink import RecordingSink
from tests.unit.relays import BODY, Relay
from tests.unit.test_policyd import Server, request

POLICY = load_policy().with_domains(("mil", "example-corp.com"), ("gmail.com",))


def start(tmp_path: Path, sink: RecordingSink, *, observe: bool = False, flush_interval: float = 0.05) -> Relay:
    policy = dataclasses.replace(POLICY, mode="observe") if observe else POLICY
    store = Store.open(f"sqlite:///{tmp_path / 'relay.db'}")
    settings = RelaySettings.from_section({"next_hop": f"127.0.0.1:{sink.port}", "flush_interval": flush_interval},
                                          "relay")
    return Relay(build(lambda learned: Guard(policy, learned=learned), store, settings))


def send(relay: Relay, sender: str, rcpts: list[str]) -> bytes:
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail(sender)
        for rcpt in rcpts:
            smtp.rcpt(rcpt)
        code, text = smtp.data(BODY)
    assert code == 250, text
    return text


def wait_for(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_release_teaches_the_next_message_from_that_sender(tmp_path: Path, sink: RecordingSink) -> None:
    """j@gmial.com is held; released with `rcptguard quarantine release`, the sender's next message to gmial.com
    passes (SENDER_CONFIRMED), another sender's is still held. At once: the relay asks the store before it holds,
    so the lesson does not wait for its next look at the confirmations (an hour away here)."""
    relay = start(tmp_path, sink, flush_interval=3600)
    db = f"sqlite:///{tmp_path / 'relay.db'}"
    try:
        assert b"held 1" in send(relay, "me@example-corp.com", ["j@gmial.com"])
        [hold] = relay.quarantine.list()
        released = CliRunner().invoke(main, ["quarantine", "release", hold.id, "--db", db,
                                             "--next-hop", f"127.0.0.1:{sink.port}"])
        assert released.exit_code == 0, released.output
        assert b"forwarded 1" in send(relay, "me@example-corp.com", ["k@gmial.com"])
        assert b"held 1" in send(relay, "you@example-corp.com", ["k@gmial.com"])
    finally:
        relay.close()
    facts = StoreHistory(Store.open(db)).facts("me@example-corp.com", ["k@gmial.com"], hold.created_at)
    assert facts.domains["gmial.com"].confirmed is not None
    assert "gmial.com" not in Store.open(db).learned()  # one sender's word: not yet everyone's


def test_what_other_processes_change_reaches_a_running_relay(tmp_path: Path, sink: RecordingSink) -> None:
    """The relay judges with history in memory: a confirmation another process records counts at once, and
    `rcptguard known forget` (which drops it in the store) reaches the relay through the history feed at its next
    flush, long before the next full reload (an hour away here)."""
    store = Store.open(f"sqlite:///{tmp_path / 'relay.db'}")
    db = f"sqlite:///{tmp_path / 'relay.db'}"
    settings = RelaySettings.from_section({"next_hop": f"127.0.0.1:{sink.port}", "flush_interval": 0.05}, "relay")
    relay = Relay(build(lambda learned: Guard(POLICY, learned=learned), store, settings,
                        history=HistorySettings(reload_seconds=3600)))
    try:
        assert b"held 1" in send(relay, "me@example-corp.com", ["j@gmial.com"])
        batch = Batch()
        batch.confirmed("me@example-corp.com", "gmial.com", dt.datetime.now(dt.UTC))
        StoreHistory(Store.open(db)).record(batch)
        assert b"forwarded 1" in send(relay, "me@example-corp.com", ["j@gmial.com"])
        forgot = CliRunner().invoke(main, ["known", "forget", "gmial.com", "--db", db])
        assert forgot.exit_code == 0, forgot.output
        deadline = time.monotonic() + 10
        while b"held 1" not in send(relay, "me@example-corp.com", ["j@gmial.com"]):
            assert time.monotonic() < deadline, "the forgotten confirmation still counts"
            time.sleep(0.2)
    finally:
        relay.close()


def test_a_domain_learned_elsewhere_extends_the_running_relays_index(tmp_path: Path, sink: RecordingSink) -> None:
    """Mail to partner-corp.com through another instance (four messages from two senders, read from the history
    feed) makes it known to a running relay at its next rebuild, by extending its index rather than building it
    again: a slip of it (partner-corp.co) is then stopped, for that reason. Forgotten by an administrator, it is
    left out of an index built anew."""
    db = f"sqlite:///{tmp_path / 'relay.db'}"
    settings = RelaySettings.from_section({"next_hop": f"127.0.0.1:{sink.port}", "flush_interval": 0.05,
                                           "rebuild_interval": 0.1}, "relay")
    relay = Relay(build(lambda learned: Guard(POLICY, learned=learned), Store.open(db), settings,
                        history=HistorySettings(reload_seconds=3600)))
    runtime = relay.handler.runtime

    def verdict() -> Action:
        return runtime.guard.check("j@partner-corp.co").action

    try:
        built = runtime.guard
        assert verdict() is Action.PASS
        batch = Batch()
        for sender in ("a@example-corp.com", "b@example-corp.com", "a@example-corp.com", "b@example-corp.com"):
            batch.message(sender, [Counted("x@partner-corp.com", "partner-corp.com")], dt.datetime.now(dt.UTC))
        StoreHistory(Store.open(db)).record(batch)  # another writer
        wait_for(lambda: verdict() >= Action.WARN, "partner-corp.com never became known")
        assert runtime.extensions == 1
        assert runtime.guard.index is not built.index
        assert built.check("j@partner-corp.co").action is Action.PASS  # the guard it replaced, unchanged
        assert "partner-corp.com" in (runtime.guard.check("j@partner-corp.co").reason or "")
        forgot = CliRunner().invoke(main, ["known", "forget", "partner-corp.com", "--db", db])
        assert forgot.exit_code == 0, forgot.output
        wait_for(lambda: verdict() is Action.PASS, "partner-corp.com stayed known")
        assert runtime.extensions == 0  # built anew: an index is only ever extended
    finally:
        relay.close()


def test_a_slip_let_through_does_not_make_itself_known(tmp_path: Path, sink: RecordingSink) -> None:
    """ymail.com, warned of (one slip from gmail.com), let through five times by one sender, is not learned as a
    correspondent; a second sender's message makes it one."""
    relay = start(tmp_path, sink)
    try:
        for _ in range(5):
            send(relay, "me@example-corp.com", ["a@ymail.com"])
    finally:
        relay.close()
    store = Store.open(f"sqlite:///{tmp_path / 'relay.db'}")
    assert "ymail.com" not in store.learned()
    [row] = StoreHistory(store).correspondents(["ymail.com"])
    assert (row.facts.org.count, row.facts.near) == (5, "gmail.com")
    relay = start(tmp_path, sink)
    try:
        send(relay, "you@example-corp.com", ["b@ymail.com"])
    finally:
        relay.close()
    assert store.learned()["ymail.com"] == 6


def test_a_wrong_person_let_through_leaves_the_domain_known(tmp_path: Path, sink: RecordingSink) -> None:
    """A recipient warned of as a wrong person at a right domain (jhon.smith for john.smith@partner-corp.com) is no
    doubt of the domain: partner-corp.com, written to by one sender, stays a correspondent once the warned message
    is learned, and a slip of it is still caught."""
    store = Store.open(f"sqlite:///{tmp_path / 'relay.db'}")
    batch = Batch()
    for day in range(10):
        batch.message("me@example-corp.com", [Counted("john.smith@partner-corp.com", "partner-corp.com")],
                      dt.datetime.now(dt.UTC) - dt.timedelta(days=day))
    StoreHistory(store).record(batch)
    relay = start(tmp_path, sink)
    try:
        send(relay, "me@example-corp.com", ["jhon.smith@partner-corp.com"])
        [notice] = [m for m in sink.wait_for(2) if not m.mail_from]
        assert b"john.smith@partner-corp.com" in notice.data
        wait_for(lambda: StoreHistory(store).correspondents(["partner-corp.com"])[0].facts.org.count == 11,
                 "the warned message was never learned")
    finally:
        relay.close()
    [row] = StoreHistory(store).correspondents(["partner-corp.com"])
    assert row.facts.near is None
    assert "partner-corp.com" in store.learned()
    assert Guard(POLICY, learned=store.learned()).check("x@partner-corp.co").action >= Action.WARN


def test_the_odd_recipient_out_at_the_relay(tmp_path: Path, sink: RecordingSink) -> None:
    """Three recipients at newpartner.com and one at newpartnr.com: the odd one is warned (the sender gets a
    notice naming newpartner.com), the message goes to all four."""
    relay = start(tmp_path, sink)
    try:
        send(relay, "me@example-corp.com", ["a@newpartner.com", "b@newpartner.com", "c@newpartner.com",
                                            "d@newpartnr.com"])
        got = sink.wait_for(2)
    finally:
        relay.close()
    [delivered] = [m for m in got if m.mail_from]
    assert len(delivered.rcpt_tos) == 4
    [notice] = [m for m in got if not m.mail_from]
    text = notice.data.decode(errors="replace").replace("=\r\n", "").replace("\r\n", " ")
    assert "newpartnr.com is one slip from newpartner.com" in text


def test_somebody_in_a_colleagues_place_at_the_relay(tmp_path: Path, sink: RecordingSink) -> None:
    """History in the store (pat and joe written to together five times, lee alone five times) read by a relay
    at start: a message to pat and lee is delivered to both and lee is warned of, the notice naming joe."""
    history = StoreHistory(Store.open(f"sqlite:///{tmp_path / 'relay.db'}"))
    batch = Batch()
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for _ in range(5):
        batch.message("me@example-corp.com", [Counted("pat@partner.com", "partner.com"),
                                              Counted("joe@partner.com", "partner.com")], when)
        batch.message("me@example-corp.com", [Counted("lee@partner.com", "partner.com")], when)
    history.record(batch)
    relay = start(tmp_path, sink)
    try:
        send(relay, "me@example-corp.com", ["pat@partner.com", "lee@partner.com"])
        got = sink.wait_for(2)
    finally:
        relay.close()
    [delivered] = [m for m in got if m.mail_from]
    assert sorted(delivered.rcpt_tos) == ["lee@partner.com", "pat@partner.com"]
    [notice] = [m for m in got if not m.mail_from]
    text = notice.data.decode(errors="replace").replace("=\r\n", "").replace("\r\n", " ")
    assert "had joe@partner.com with them where lee@partner.com is now (5 messages)" in text


def test_observe_mode_passes_everything_and_records_it(tmp_path: Path, sink: RecordingSink) -> None:
    """In observe mode gmial.com and a forced-looking slip go through unheld and unwarned; `report observe`
    lists what would have been held; nothing that would have been held is learned."""
    relay = start(tmp_path, sink, observe=True)
    try:
        text = send(relay, "me@example-corp.com", ["j@gmial.com", "x@army.mil"])
        got = sink.wait_for(1)
    finally:
        relay.close()
    assert b"forwarded 2" in text
    assert relay.quarantine.list() == []
    assert [m.rcpt_tos for m in got] == [("j@gmial.com", "x@army.mil")]
    db = f"sqlite:///{tmp_path / 'relay.db'}"
    report = CliRunner().invoke(main, ["report", "observe", "--db", db, "--format", "jsonl"])
    [row] = [json.loads(x) for x in report.output.splitlines()]
    assert (row["recipient"], row["verdict"], row["intended"], row["door"]) == ("j@gmial.com", "hold",
                                                                                  "gmail.com", "relay")
    assert "1 hold" in CliRunner().invoke(main, ["report", "observe", "--db", db]).output
    assert "gmial.com" not in Store.open(db).learned()


def test_the_policy_service_judges_each_recipient_with_those_before_it(tmp_path: Path) -> None:
    """Postfix asks one recipient at a time: the fourth recipient, one slip from the three before it in the same
    transaction, is refused (thresholds lowered so that the slip alone holds); in another transaction it passes;
    a sender's confirmation, recorded by another process, lets it through at once (the next flush is an hour
    away: the service asks the store before it refuses)."""
    policy = dataclasses.replace(POLICY, thresholds={**POLICY.thresholds, Action.HOLD: 6.0})
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    server = Server(PolicyService(lambda learned: Guard(policy, learned=learned), store,
                                  PolicySettings(flush_interval=3600)))

    def rcpt(recipient: str, instance: str, sender: str = "me@example-corp.com") -> dict[str, str]:
        return {"request": "smtpd_access_policy", "protocol_state": "RCPT", "sender": sender,
                "recipient": recipient, "instance": instance}

    try:
        answers = request(server.port, *(rcpt(f"{n}@newpartner.com", "t1") for n in "abc"),
                          rcpt("d@newpartnr.com", "t1"), rcpt("d@newpartnr.com", "t2"), timeout=60)
        assert answers[:3] == ["DUNNO"] * 3
        assert answers[3].startswith("REJECT 5.7.1")
        assert "newpartnr.com is one slip from newpartner.com" in answers[3]
        assert answers[4] == "DUNNO"
        batch = Batch()
        batch.confirmed("me@example-corp.com", "gmial.com", dt.datetime.now(dt.UTC))
        StoreHistory(Store.open(f"sqlite:///{tmp_path / 'p.db'}")).record(batch)
        confirmed = request(server.port, rcpt("j@gmial.com", "t3"), rcpt("j@gmial.com", "t4", "you@example-corp.com"),
                            timeout=60)
        assert confirmed[0] == "DUNNO"
        assert confirmed[1].startswith("REJECT")
    finally:
        server.close()



def test_the_policy_service_in_observe_mode(tmp_path: Path) -> None:
    """Observe mode at the policy service: a slip it would refuse gets DUNNO, and the verdict is recorded for
    `report observe`; a malformed address is still refused (it cannot be delivered anyway)."""
    policy = dataclasses.replace(POLICY, mode="observe")
    store = Store.open(f"sqlite:///{tmp_path / 'o.db'}")
    server = Server(PolicyService(lambda learned: Guard(policy, learned=learned), store,
                                  PolicySettings(flush_interval=0.05)))
    try:
        answers = request(server.port, *({"request": "smtpd_access_policy", "protocol_state": "RCPT",
                                          "sender": "me@example-corp.com", "recipient": r} for r in
                                         ("x@army.ml", "y@army.mil", "a@@b")), timeout=60)
    finally:
        server.close()
    assert answers[:2] == ["DUNNO", "DUNNO"]
    assert answers[2].startswith("REJECT")
    [seen] = StoreHistory(store).observations()
    assert (seen.door, seen.recipient, seen.verdict, seen.intended) == ("policyd", "x@army.ml", "hold", "army.mil")


def test_a_greeting_that_names_somebody_else_at_the_relay(tmp_path: Path, sink: RecordingSink) -> None:
    """The sender writes to nils.martin@, olga.smith@ and ben.berg@partner.com; a message to Olga that opens "Hi
    Nils," (quoted-printable, in a multipart message) is delivered and Olga is warned of, the notice naming Nils's
    address and saying she may not be the one meant; the same message opening "Hi Olga," passes with no notice.
    The same slip to Olga again is not told twice in the day; a second wrong person at partner.com (Ben) is."""
    history = StoreHistory(Store.open(f"sqlite:///{tmp_path / 'relay.db'}"))
    batch = Batch()
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for _ in range(5):
        for person in ("nils.martin", "olga.smith", "ben.berg"):
            batch.message("me@example-corp.com", [Counted(f"{person}@partner.com", "partner.com")], when)
    history.record(batch)

    def message(name: str) -> bytes:
        return (b'From: me@example-corp.com\r\nTo: olga.smith@partner.com\r\nSubject: figures\r\nMIME-Version: 1.0\r\n'
                b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\n'
                b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                b"Hi " + name.encode() + b",\r\n\r\nthe figures you asked for =E2=80=93 attached.\r\n--b1--\r\n")

    relay = start(tmp_path, sink)
    sent = [("olga.smith", "Olga"), ("olga.smith", "Nils"), ("olga.smith", "Nils"), ("ben.berg", "Nils")]
    try:
        for to, name in sent:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as smtp:
                smtp.sendmail("me@example-corp.com", [f"{to}@partner.com"], message(name))
        got = sink.wait_for(6)
    finally:
        relay.close()
    delivered = [m for m in got if m.mail_from]
    assert [list(m.rcpt_tos) for m in delivered] == [[f"{to}@partner.com"] for to, _ in sent]
    notices = [email.message_from_bytes(m.data, policy=email.policy.default) for m in got if not m.mail_from]
    assert [n["Subject"] for n in notices] == ["Check the recipient: olga.smith@partner.com",
                                               "Check the recipient: ben.berg@partner.com"]
    text = " ".join(notices[0].get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    assert "The message greets Nils, and nobody it goes to is Nils. You write to nils.martin@partner.com" in text
    assert "was delivered to a recipient who may not be the one you meant" in text
    assert "You will not be told again about this address for 1 day" in text
