"""The relay on real sockets, with a real SMTP next hop: splitting, holding, and never losing a message."""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from rcptguard.gateways.relay import RelaySettings, build, normalise_line_endings
from rcptguard.guard import Guard
from rcptguard.model import Verdict
from rcptguard.outbox import Outbox
from rcptguard.policy import load_policy
from rcptguard.store import Store
from tests.support.sink import Message, RecordingSink
from tests.unit.relays import BODY, Relay, make_relay, send


def test_pass_is_forwarded_byte_for_byte(relay: Relay, sink: RecordingSink) -> None:
    """A passing recipient gets the message exactly as sent (8-bit, a leading dot), nothing added."""
    code, text, refused = send(relay, ["x@army.mil"])
    assert (code, refused) == (250, {})
    assert b"forwarded 1" in text
    (got,) = sink.wait_for(1)
    assert got.rcpt_tos == ("x@army.mil",)
    assert got.data == BODY


def notices(sink: RecordingSink) -> list[Message]:
    """What the relay itself sent (from the null sender): notices to senders."""
    return [m for m in sink.messages if m.mail_from == ""]


def test_a_warning_goes_to_the_sender_never_the_recipient(relay: Relay, sink: RecordingSink) -> None:
    """A warned recipient gets the message exactly as sent (no header of ours); the sender gets a short notice
    saying what looked wrong and what was probably meant."""
    code, _, _ = send(relay, ["a@ymail.com"])
    assert code == 250
    got = sink.wait_for(2)
    (delivered,) = [m for m in got if m.rcpt_tos == ("a@ymail.com",)]
    assert delivered.data == BODY
    (notice,) = notices(sink)
    assert notice.rcpt_tos == ("me@example-corp.com",)
    text = email.message_from_bytes(notice.data, policy=email.policy.default)
    assert text["Auto-Submitted"] == "auto-replied"  # RFC 3834: an answer to the sender's message
    assert text["Subject"] == "Check the address: a@ymail.com"
    assert text["In-Reply-To"] == "<m1@example-corp.com>"
    body = " ".join(text.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    assert "Subject: crew list was delivered" in body
    assert "ymail.com looks like gmail.com" in body
    assert "Did you mean a@gmail.com?" in body


def test_a_sender_is_warned_once_a_day_per_domain(relay: Relay, sink: RecordingSink) -> None:
    """Three messages to the same warned domain give one notice; a second warned domain gives one more. Bcc
    recipients of the message never learn of each other: nothing is added to what they get."""
    for _ in range(3):
        assert send(relay, ["visible@ymail.com", "secret.bcc@ymail.com"])[0] == 250
    assert send(relay, ["x@gmail.de"])[0] == 250
    sink.wait_for(6)
    time.sleep(0.3)
    assert [email.message_from_bytes(n.data)["Subject"] for n in notices(sink)] == [
        "Check the address: visible@ymail.com, secret.bcc@ymail.com", "Check the address: x@gmail.de"]
    assert all(m.data == BODY for m in sink.messages if m.mail_from)


def test_incoming_rcptguard_headers_are_stripped(relay: Relay, sink: RecordingSink) -> None:
    """X-Rcptguard-* header fields a message arrives with (folded ones too) are removed; the same words in the
    body stay."""
    body = (b"X-Rcptguard-Warning: trust me\r\n\tfolded on\r\nx-rcptguard-verdict: pass\r\nSubject: hi\r\n\r\n"
            b"X-Rcptguard-Warning: this line is body\r\n")
    assert send(relay, ["x@army.mil"], body=body)[0] == 250
    (got,) = sink.wait_for(1)
    assert got.data == b"Subject: hi\r\n\r\nX-Rcptguard-Warning: this line is body\r\n"


def test_a_recipient_named_twice_is_held_once(relay: Relay, sink: RecordingSink) -> None:
    """RCPT TO the same held address twice: the message is accepted and held once, not deferred for ever."""
    code, _, _ = send(relay, ["j@gmial.com", "j@gmial.com"])
    assert code == 250
    assert relay.quarantine is not None
    assert [h.recipient for h in relay.quarantine.list()] == ["j@gmial.com"]


def test_held_recipient_is_stored_not_forwarded(relay: Relay, sink: RecordingSink) -> None:
    """A held recipient is in the quarantine, byte-identical, and nothing reaches the next hop for it."""
    code, text, _ = send(relay, ["j.doe@army.ml"])
    assert code == 250
    assert b"held 1" in text
    assert relay.quarantine is not None
    (held,) = relay.quarantine.list()
    assert held.recipient == "j.doe@army.ml"
    assert held.intended == "army.mil"
    assert held.suggestion == "j.doe@army.mil"
    assert held.id.encode() not in text  # counts, not ids: the reply line stays short however many are held
    assert relay.quarantine.content(held.id) == BODY
    (notice,) = sink.wait_for(1)  # the only thing that left: the notice to the sender
    assert (notice.mail_from, notice.rcpt_tos) == ("", ("me@example-corp.com",))


def test_sender_is_notified_once_with_a_link_and_no_body(relay: Relay, sink: RecordingSink) -> None:
    """The notice names the held recipient, the reason and the suggestion, carries one link, never the body,
    and a redelivery of the same message sends no second notice."""
    send(relay, ["j.doe@army.ml"])
    send(relay, ["j.doe@army.ml"])
    (notice,) = sink.wait_for(1)
    time.sleep(0.3)
    assert len(sink.messages) == 1
    parsed = email.message_from_bytes(notice.data, policy=email.policy.default)
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed.get_content_type() == "multipart/alternative"
    text = "".join(str(part.get_content()) for part in parsed.iter_parts())
    assert "j.doe@army.ml" in text
    assert "army.ml looks like army.mil" in text
    assert "j.doe@army.mil" in text
    assert len(set(re.findall(r"http://127\.0\.0\.1:8025/confirm/[A-Za-z0-9_-]+", text))) == 1
    assert "Passport" not in text


def test_closing_a_relay_waits_for_the_notice_it_is_sending(tmp_path: Path) -> None:
    """A relay's held notice goes out in a thread of its loop; closing the relay lets it end. Left running, the
    send went on into the next test, where its connection to the recording sink that was stopping left an
    unclosed transport (an error at that test's setup)."""
    with RecordingSink(delay_data=1.0) as slow:  # records the notice at once, answers it a second later
        relay = make_relay(tmp_path, slow)
        try:
            assert send(relay, ["j.doe@army.ml"])[0] == 250
            slow.wait_for(1)
        finally:
            relay.close()
        (held,) = relay.quarantine.list()
        assert held.notice == "sent"  # not "sending": the send was over when close() returned


def test_no_notice_for_an_automatic_message(relay: Relay, sink: RecordingSink) -> None:
    """A held message that is itself automatic (Auto-Submitted) gets no notice (RFC 3834)."""
    send(relay, ["j.doe@army.ml"], body=b"Auto-Submitted: auto-generated\r\n" + BODY)
    time.sleep(0.5)
    assert sink.messages == []


def test_a_deferred_notice_does_not_defer_the_message(tmp_path: Path, sink: RecordingSink) -> None:
    """The held notice is owed in the store with the hold: when the next hop defers it, the message is still
    answered 250 (nothing to retry: the hold is stored), and the outbox's next round sends the notice, once."""
    relay = make_relay(tmp_path, sink, retry_interval=0.3)
    try:
        assert relay.quarantine is not None
        sink.reply_rcpt = {"me@example-corp.com": "451 4.3.0 mailbox locked"}
        code, _, _ = send(relay, ["j.doe@army.ml"])
        assert code == 250
        (hold,) = relay.quarantine.list()
        time.sleep(0.5)
        assert sink.messages == []
        assert relay.quarantine.require(hold.id).notice == "pending"
        sink.reply_rcpt = None
        (notice,) = sink.wait_for(1)
        assert notice.rcpt_tos == ("me@example-corp.com",)
        assert b"/confirm/" in notice.data
        time.sleep(1.0)  # later rounds send nothing more
        assert len(sink.messages) == 1
        assert relay.quarantine.require(hold.id).notice == "sent"
    finally:
        relay.close()


def test_one_message_mixes_all_four(tmp_path: Path, sink: RecordingSink) -> None:
    """pass, warn and hold in one message, reject at RCPT: each recipient goes its own way."""
    relay = make_relay(tmp_path, sink, force_ml=True)
    try:
        assert relay.quarantine is not None
        code, _, refused = send(relay, ["a@army.mil", "b@ymail.com", "c@gmial.com", "d@army.ml"])
        assert code == 250
        assert set(refused) == {"d@army.ml"}
        assert refused["d@army.ml"][0] == 550
        assert refused["d@army.ml"][1] == (b"5.7.1 army.ml looks like army.mil: .ml is Mali's country domain, "
                                           b"one letter short of .mil. Mali is blocked. Did you mean d@army.mil? "
                                           b"Check the address.")
        got = sink.wait_for(3)  # the message, the hold notice and the warning notice (to the sender)
        assert sorted(r for m in got if m.mail_from for r in m.rcpt_tos) == ["a@army.mil", "b@ymail.com"]
        assert sorted(n.data.count(b"gmial.com") > 0 for n in notices(sink)) == [False, True]
        assert [h.recipient for h in relay.quarantine.list()] == ["c@gmial.com"]
    finally:
        relay.close()


def test_not_an_open_relay(tmp_path: Path, sink: RecordingSink) -> None:
    """A client outside the allowed networks is refused with 554 at connect and closed, before any command."""
    relay = make_relay(tmp_path, sink, allow=["192.0.2.0/24"])
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as raw, raw.makefile("rb") as lines:
            assert lines.readline().startswith(b"554 5.7.1 ")
            assert lines.read() == b""  # closed by the relay
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            relay.smtp()
        assert refused.value.smtp_code == 554
        assert not sink.messages
    finally:
        relay.close()


def test_next_hop_down_is_a_temporary_failure_and_holds_once(tmp_path: Path, sink: RecordingSink) -> None:
    """Next hop down: 451 and nothing lost; the retry after it is back holds the held recipient only once."""
    relay = make_relay(tmp_path, sink)
    try:
        sink.stop()
        code, text, _ = send(relay, ["a@army.mil", "b@army.ml"])
        assert code == 451  # a@army.mil could not be forwarded: the client keeps the message and retries
        code, text, _ = send(relay, ["a@army.mil"])
        assert code == 451
        assert b"4.4.0" in text
        sink.start()
        code, _, _ = send(relay, ["a@army.mil", "b@army.ml"])
        assert code == 250
        got = sink.wait_for(2)
        assert sorted(m.rcpt_tos for m in got) == [("a@army.mil",), ("me@example-corp.com",)]  # mail, one notice
        assert relay.quarantine is not None
        assert len(relay.quarantine.list()) == 1
    finally:
        relay.close()


@pytest.mark.parametrize(("reply_rcpt", "reply_data"), [
    ({"a@army.mil": "450 4.2.0 mailbox busy"}, None),
    (None, "451 4.3.0 try later"),
    (None, "421 4.3.2 shutting down"),
])
def test_next_hop_temporary_replies_give_451(tmp_path: Path, reply_rcpt: dict[str, str] | None,
                                              reply_data: str | None) -> None:
    """A 4xx from the next hop at RCPT or DATA (or a 421) means 451 here: the sender keeps the message."""
    with RecordingSink(reply_rcpt=reply_rcpt, reply_data=reply_data) as sink:
        relay = make_relay(tmp_path, sink)
        try:
            code, _, _ = send(relay, ["a@army.mil", "b@navy.mil"])
        finally:
            relay.close()
        assert 400 <= code < 500
        assert sink.messages == []


def test_permanent_refusal_of_one_recipient_sends_a_dsn(tmp_path: Path) -> None:
    """The next hop refuses one recipient for good: the others are delivered and the sender gets a DSN."""
    with RecordingSink(reply_rcpt={"nobody@army.mil": "550 5.1.1 no such user"}) as sink:
        relay = make_relay(tmp_path, sink)
        try:
            code, _, _ = send(relay, ["a@army.mil", "nobody@army.mil"])
            assert code == 250
            got = sink.wait_for(2)
        finally:
            relay.close()
    assert got[0].rcpt_tos == ("a@army.mil",)
    assert got[1].mail_from == ""
    assert got[1].rcpt_tos == ("me@example-corp.com",)
    assert b"nobody@army.mil: 550 5.1.1 no such user" in got[1].data
    assert b"Passport" not in got[1].data


def test_a_deferred_dsn_does_not_defer_the_message(tmp_path: Path) -> None:
    """The report of a refused recipient is stored before the relay answers; when the next hop defers it, the
    message is still answered 250 (the forwarded copy is not sent again) and a later round delivers the report."""
    with RecordingSink(reply_rcpt={"nobody@army.mil": "550 5.1.1 no such user",
                                   "me@example-corp.com": "451 4.3.0 mailbox locked"}) as sink:
        relay = make_relay(tmp_path, sink, retry_interval=0.3, retry_backoff=0.1)
        try:
            code, _, _ = send(relay, ["a@army.mil", "nobody@army.mil"])
            assert code == 250
            sink.wait_for(1)
            time.sleep(0.5)
            assert [m.rcpt_tos for m in sink.messages] == [("a@army.mil",)]
            sink.reply_rcpt = {"nobody@army.mil": "550 5.1.1 no such user"}
            got = sink.wait_for(2)
            time.sleep(0.8)
        finally:
            relay.close()
    assert [m.rcpt_tos for m in sink.messages] == [("a@army.mil",), ("me@example-corp.com",)]
    assert b"nobody@army.mil: 550 5.1.1 no such user" in got[1].data


def test_permanent_refusal_of_everything_is_a_5xx(tmp_path: Path) -> None:
    """If the next hop refuses every recipient for good and nothing is held, the sender's MTA gets the 5xx."""
    with RecordingSink(reply_rcpt={"nobody@army.mil": "550 5.1.1 no such user"}) as sink:
        relay = make_relay(tmp_path, sink)
        try:
            code, text, _ = send(relay, ["nobody@army.mil"])
        finally:
            relay.close()
    assert code == 550
    assert b"no such user" in text


class ExplodingGuard(Guard):
    def check(self, raw: str) -> Verdict:
        if raw.startswith("boom@"):
            raise RuntimeError("injected fault")
        return super().check(raw)


def test_exception_in_the_handler_is_451(tmp_path: Path, sink: RecordingSink) -> None:
    """An exception inside the relay answers 451 4.3.0, with no traceback in the reply."""
    policy = load_policy().with_domains(("mil",))
    store = Store.open(f"sqlite:///{tmp_path / 'x.db'}")
    relay = Relay(build(lambda learned: ExplodingGuard(policy, learned), store,
                        RelaySettings.from_section({"next_hop": f"127.0.0.1:{sink.port}"}, "relay")))
    try:
        with relay.smtp() as smtp:
            smtp.ehlo()
            smtp.mail("me@example-corp.com")
            code, text = smtp.rcpt("boom@army.mil")
    finally:
        relay.close()
    assert code == 451
    assert text.startswith(b"4.3.0")
    assert b"Traceback" not in text
    assert b"RuntimeError" not in text


def test_database_locked_is_451_and_nothing_half_written(tmp_path: Path, sink: RecordingSink) -> None:
    """With the store locked by another writer, a held message gets 451 and no entry appears."""
    path = tmp_path / "locked.db"
    relay = make_relay(tmp_path, sink, store_url=f"sqlite:///{path}")
    blocker = sqlite3.connect(path, timeout=0)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        code, text, _ = send(relay, ["a@army.ml"])
        assert code == 451
        assert b"Quarantine unavailable" in text
        blocker.rollback()
        assert relay.quarantine is not None
        assert relay.quarantine.list() == []
    finally:
        blocker.close()
        relay.close()


def test_database_gone_is_451(tmp_path: Path, sink: RecordingSink) -> None:
    """With the store's directory removed under it, a held message gets 451."""
    folder = tmp_path / "gone"
    folder.mkdir()
    relay = make_relay(tmp_path, sink, store_url=f"sqlite:///{folder / 'store.db'}")
    try:
        relay.handler.runtime.store.engine.dispose()  # type: ignore[union-attr]
        for item in folder.iterdir():
            item.unlink()
        folder.rmdir()
        code, _, _ = send(relay, ["a@army.ml"])
        assert code == 451
    finally:
        relay.close()


def test_a_deferred_recipient_sends_nothing_until_the_retry(relay: Relay, sink: RecordingSink) -> None:
    """One recipient deferred by the next hop: 451 and nothing sent (so the retry cannot repeat a copy); once the
    next hop takes it, each recipient gets the message once and the sender one warning."""
    sink.reply_rcpt = {"a@ymail.com": "451 4.3.0 try later"}
    assert send(relay, ["x@army.mil", "a@ymail.com"])[0] == 451
    assert send(relay, ["x@army.mil", "a@ymail.com"])[0] == 451
    assert sink.messages == []
    sink.reply_rcpt = None
    code, text, _ = send(relay, ["x@army.mil", "a@ymail.com"])
    assert (code, b"forwarded 2" in text) == (250, True)
    sink.wait_for(2)
    time.sleep(0.2)
    assert sorted(r for m in sink.messages if m.mail_from for r in m.rcpt_tos) == ["a@ymail.com", "x@army.mil"]
    assert len(notices(sink)) == 1
    assert not relay.handler.copies  # nothing to remember once the message went through


def test_same_message_twice_is_held_once(relay: Relay) -> None:
    """A message delivered twice (the MTA retried after a lost 250) gives one quarantine entry."""
    first = send(relay, ["a@army.ml", "b@army.ml"])
    second = send(relay, ["a@army.ml", "b@army.ml"])
    assert first[0] == second[0] == 250
    assert relay.quarantine is not None
    assert sorted(h.recipient for h in relay.quarantine.list()) == ["a@army.ml", "b@army.ml"]
    assert first[1] == second[1]


@pytest.mark.parametrize("smuggled", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"])
def test_smtp_smuggling_gives_one_message(relay: Relay, sink: RecordingSink, smuggled: bytes) -> None:
    """A body with a fake end of DATA and a second transaction inside it is one message downstream."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        script = (b"EHLO client\r\nMAIL FROM:<me@example-corp.com>\r\nRCPT TO:<x@army.mil>\r\nDATA\r\n"
                  b"Subject: one\r\n\r\nfirst" + smuggled + b"MAIL FROM:<evil@example.org>\r\n"
                  b"RCPT TO:<victim@army.mil>\r\nDATA\r\nSubject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
        sock.sendall(script)
        replies = reader.read()
    assert replies.count(b"250 2.0.0 OK: forwarded") == 1
    got = sink.wait_for(1)
    assert len(sink.messages) == 1
    assert got[0].rcpt_tos == ("x@army.mil",)
    assert b"\r\n..\r\n" in got[0].data or b"\r\n.MAIL" not in got[0].data
    assert normalise_line_endings(got[0].data) == got[0].data  # no bare CR or LF left


def test_pipelined_transactions_are_two_messages(relay: Relay, sink: RecordingSink) -> None:
    """Two whole transactions in one write (PIPELINING): both forwarded, each with its own body."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO client\r\nMAIL FROM:<me@example-corp.com>\r\nRCPT TO:<x@army.mil>\r\nDATA\r\n"
                     b"Subject: one\r\n\r\n..first\r\n.\r\nMAIL FROM:<me@example-corp.com>\r\n"
                     b"RCPT TO:<y@army.mil>\r\nDATA\r\nSubject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
        replies = reader.read()
    assert replies.count(b"250 2.0.0 OK: forwarded 1") == 2, replies
    first, second = sink.wait_for(2)
    assert (first.rcpt_tos, first.data) == (("x@army.mil",), b"Subject: one\r\n\r\n.first\r\n")
    assert (second.rcpt_tos, second.data) == (("y@army.mil",), b"Subject: two\r\n\r\nsecond\r\n")


def test_pipelining_replies_in_order(relay: Relay, sink: RecordingSink) -> None:
    """PIPELINING is offered; a group of MAIL, RCPTs (good, malformed, syntax error) and DATA gets one reply
    each, in order, and only the good recipient is forwarded."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO client\r\n")
        ehlo = [reader.readline()]
        while ehlo[-1][3:4] == b"-":
            ehlo.append(reader.readline())
        assert b"250-PIPELINING\r\n" in ehlo
        sock.sendall(b"MAIL FROM:<me@example-corp.com>\r\nRCPT TO:<x@army.mil>\r\nRCPT TO:<a@@b>\r\n"
                     b"RCPT TO:x@army.mil\r\nDATA\r\n")
        replies = [reader.readline()[:3] for _ in range(5)]
        assert replies == [b"250", b"250", b"553", b"501", b"354"]
        sock.sendall(b"Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        assert reader.readline().startswith(b"250 2.0.0 OK: forwarded 1")
        assert reader.readline().startswith(b"221")
    (got,) = sink.wait_for(1)
    assert (got.rcpt_tos, got.data) == (("x@army.mil",), b"Subject: piped\r\n\r\nbody\r\n")


def test_help_lists_the_relays_own_commands(relay: Relay) -> None:
    with relay.smtp() as smtp:
        smtp.ehlo()
        for command, syntax in (("DATA", b"DATA"), ("MAIL", b"MAIL FROM: <address>"), ("RCPT", b"RCPT TO: <address>")):
            assert syntax in smtp.help(command)


def test_too_big_is_refused_and_the_session_goes_on(tmp_path: Path, sink: RecordingSink) -> None:
    """Over the size limit: 552 after the whole message is read, nothing forwarded; the next one passes."""
    relay = make_relay(tmp_path, sink, size_limit=100_000)
    try:
        with relay.smtp() as smtp:
            smtp.ehlo()
            assert smtp.has_extn("size")
            smtp.mail("me@example-corp.com")
            smtp.rcpt("x@army.mil")
            assert smtp.data(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 101)[0] == 552
            smtp.mail("me@example-corp.com")
            smtp.rcpt("x@army.mil")
            assert smtp.data(b"Subject: small\r\n\r\n" + (b"x" * 998 + b"\r\n") * 90)[0] == 250
        (got,) = sink.wait_for(1)
        assert got.data.startswith(b"Subject: small")
        time.sleep(0.2)
        assert len(sink.messages) == 1
    finally:
        relay.close()


@pytest.mark.parametrize("address", [b"a@army.mil\r\nRCPT TO:<b@army.ml>", b"a@arm\ny.mil", b"a\r@army.mil",
                                     b"a@army.mil\nRCPT TO:<b@army.mil", b"a\x00@army.mil"])
def test_cr_lf_inside_addresses_is_refused(relay: Relay, sink: RecordingSink, address: bytes) -> None:
    """CR, LF or NUL inside an address: no recipient is accepted, neither a cut-off one nor an injected one."""
    with socket.create_connection(("127.0.0.1", relay.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO c\r\nMAIL FROM:<me@example-corp.com>\r\nRCPT TO:<" + address + b">\r\nQUIT\r\n")
        replies = reader.read().decode()
    assert "250 2.1.0 OK" in replies
    assert "250 2.1.5" not in replies, replies
    assert "501 5.5.4" in replies or "553 5.1.3" in replies
    assert sink.messages == []


def test_relay_gives_up_on_a_release_deferred_too_long(tmp_path: Path, sink: RecordingSink) -> None:
    """The relay's background loop retries a released delivery the next hop defers, gives up after
    give_up_days, and tells the sender that it could not be delivered."""
    sink.reply_rcpt = {"c@army.mil": "451 4.2.0 try later"}
    relay = make_relay(tmp_path, sink, retry_interval=0.1, give_up_days=0.0)
    try:
        assert send(relay, ["c@army.ml"])[0] == 250
        assert relay.quarantine is not None
        [hold] = relay.quarantine.list()
        released = Outbox(relay.quarantine).release(hold.id, "alice", relay.handler.next_hop, to="c@army.mil")
        assert released.delivery == "pending"
        notices = [m for m in sink.wait_for(2) if b"Subject: Not delivered:" in m.data]
        assert [n.rcpt_tos for n in notices] == [("me@example-corp.com",)]
        assert relay.quarantine.require(hold.id).delivery == "failed"
    finally:
        relay.close()


def test_learns_correspondents_from_forwarded_mail(tmp_path: Path, sink: RecordingSink) -> None:
    """Domains the relay forwards to are counted in the same store as the policy service's, a message at a time (two
    recipients at one domain are one message there); the held recipient counts nothing."""
    relay = make_relay(tmp_path, sink)
    try:
        send(relay, ["a@partner.example", "b@partner.example", "c@army.ml"])
        send(relay, ["a@partner.example"])
    finally:
        relay.close()
    assert Store.open(f"sqlite:///{tmp_path / 'relay.db'}").learned() == {"partner.example": 2}
