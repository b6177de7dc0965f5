"""The relay under the failures an outside probe found: a store deleted under it, slow and limited next hops,
many held recipients, idle and slow clients, half-closed connections, UTF-8 without SMTPUTF8, bad settings."""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import socket
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from rcptguard.delivery import NextHop, SmtpTimeouts
from rcptguard.gateways.relay import RelaySettings
from rcptguard.gateways.replies import RELAY_REPLIES
from tests.support.sink import Message, RecordingSink
from tests.unit.relays import BODY, Relay, make_relay, send

STUFFED = BODY.replace(b"\r\n.", b"\r\n..")  # as a client sends it after DATA


@contextlib.contextmanager
def raw_session(port: int) -> Iterator[tuple[socket.socket, BinaryIO]]:
    """A plain socket to the relay, past its greeting; and a line reader on it. Both closed at the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, raw.makefile("rb") as lines:
        assert lines.readline().startswith(b"220 ")
        yield raw, lines


def replies(lines: BinaryIO, count: int) -> list[bytes]:
    """The next `count` complete replies (multi-line ones joined)."""
    got: list[bytes] = []
    while len(got) < count:
        reply = b""
        while True:
            line = lines.readline()
            assert line, f"connection closed after {got!r}"
            reply += line
            if line[3:4] != b"-":
                break
        got.append(reply)
    return got


def test_store_deleted_under_a_running_relay_is_451(tmp_path: Path, sink: RecordingSink) -> None:
    """`rm store.db store.db-wal store.db-shm` while the relay has them open: a held message is answered 451
    (its holds would be written to unlinked files and lost), never 250; mail that holds nothing still flows."""
    folder = tmp_path / "store"
    folder.mkdir()
    relay = make_relay(tmp_path, sink, store_url=f"sqlite:///{folder / 'store.db'}")
    try:
        assert send(relay, ["a@army.ml"])[0] == 250  # connections to the store are open now
        for item in folder.iterdir():
            item.unlink()
        code, text, _ = send(relay, ["b@army.ml"], body=BODY + b"second\r\n")
        assert code == 451
        assert b"Quarantine unavailable" in text
        assert send(relay, ["x@army.mil"])[0] == 250
    finally:
        relay.close()


def test_the_reply_to_many_held_recipients_stays_short(relay: Relay, sink: RecordingSink) -> None:
    """300 held recipients: the 250 is one line within RFC 5321's 512 octets, and smtplib reads it whole."""
    rcpts = [f"crew{n}@army.ml" for n in range(300)]
    code, text, refused = send(relay, rcpts)
    assert (code, refused) == (250, {})
    assert len(b"250 " + text + b"\r\n") <= 512
    assert b"held 300" in text
    assert relay.quarantine is not None
    assert len(relay.quarantine.list()) == 300


def test_a_next_hop_recipient_limit_splits_the_message(tmp_path: Path) -> None:
    """The next hop takes 3 recipients per transaction and answers 452 to the rest: the relay sends the rest in
    further transactions (RFC 5321 §4.5.3.1.10) and every recipient gets the message once."""
    with RecordingSink(max_rcpts=3, pipelining=True) as sink:
        relay = make_relay(tmp_path, sink)
        try:
            rcpts = [f"p{n}@army.mil" for n in range(8)]
            code, text, _ = send(relay, rcpts)
            assert code == 250
            assert b"forwarded 8" in text
            got = sink.wait_for(3)
            assert sorted(r for m in got for r in m.rcpt_tos) == sorted(rcpts)
            assert [len(m.rcpt_tos) for m in got] == [3, 3, 2]
        finally:
            relay.close()


def test_a_deferred_part_of_a_split_message_is_all_the_retry_sends(tmp_path: Path) -> None:
    """The first part is accepted, the second deferred (450 for one recipient, in the second transaction only):
    451 to the client. Its retry sends only the recipients not accepted before: each gets the message once."""

    class SecondPartBusy(RecordingSink):
        def _record(self, message: Message) -> None:
            super()._record(message)
            if len(self.messages) == 1:  # the first part is in: the next transaction meets a busy mailbox
                self.reply_rcpt = {"p4@army.mil": "450 4.2.1 mailbox busy"}

    with SecondPartBusy(max_rcpts=3) as sink:
        relay = make_relay(tmp_path, sink)
        try:
            rcpts = [f"p{n}@army.mil" for n in range(7)]
            assert send(relay, rcpts)[0] == 451
            assert sorted(r for m in sink.messages for r in m.rcpt_tos) == rcpts[:3]
            sink.reply_rcpt = None
            assert send(relay, rcpts)[0] == 250
            delivered = [r for m in sink.messages for r in m.rcpt_tos]
            assert sorted(delivered) == rcpts
        finally:
            relay.close()


def test_a_slow_next_hop_does_not_turn_into_a_second_copy(tmp_path: Path) -> None:
    """The next hop answers the final dot after the relay's answer was due: the client gets 451, the relay keeps
    waiting, and the client's retry gets the late 250 without the message being sent again."""
    with RecordingSink(delay_data=3.0) as sink:
        relay = make_relay(tmp_path, sink, reply_within=2.0)
        try:
            code, text, _ = send(relay, ["x@army.mil"])
            assert code == 451
            assert b"slow" in text
            code, text, _ = send(relay, ["x@army.mil"])  # waits for the first attempt, which ends in 250
            assert code == 250
            time.sleep(0.5)
            assert len(sink.messages) == 1
            sink.delay_data = 0
            assert send(relay, ["x@army.mil"])[0] == 250  # a later, new message with the same bytes is sent
            assert len(sink.wait_for(2)) == 2
        finally:
            relay.close()


def test_a_slow_final_dot_is_waited_for_as_the_rfc_says() -> None:
    """Every wait of the next-hop client has its RFC 5321 limit by default; the end of DATA is 10 minutes."""
    limits = NextHop.parse("127.0.0.1:25").limits
    assert (limits.greeting, limits.command, limits.data_init, limits.data_block, limits.data_done) == (
        300.0, 300.0, 120.0, 180.0, 600.0)
    assert NextHop("h", 25, timeout=10).limits.data_done == 10.0
    settings = RelaySettings.from_section({"timeouts": {"data_done": 900, "command": 60}}, "relay")
    assert settings.hop.limits == SmtpTimeouts(command=60.0, data_done=900.0)


def test_the_next_hop_may_answer_the_final_dot_after_its_command_timeout(tmp_path: Path) -> None:
    """Commands time out after 1 s here, but the final dot may take 2 s (data_done 5 s): delivered once."""
    with RecordingSink(delay_data=2.0) as sink:
        relay = make_relay(tmp_path, sink, timeouts={"command": 1, "data_init": 1, "data_done": 5})
        try:
            code, _, _ = send(relay, ["x@army.mil"])
            assert code == 250
            assert len(sink.messages) == 1
        finally:
            relay.close()


def test_utf8_recipient_without_smtputf8_is_refused_at_rcpt(relay: Relay, sink: RecordingSink) -> None:
    """A UTF-8 address in a transaction without SMTPUTF8 is refused at RCPT (553 5.6.7), not after DATA; with
    SMTPUTF8 it is taken."""
    with raw_session(relay.port) as (raw, lines):
        raw.sendall(b"EHLO client\r\n")
        replies(lines, 1)
        raw.sendall("MAIL FROM:<me@example-corp.com>\r\nRCPT TO:<jörg@army.mil>\r\n".encode())
        mail, rcpt = replies(lines, 2)
        assert mail.startswith(b"250")
        assert rcpt.startswith(b"553 5.6.7")
        raw.sendall("RSET\r\nMAIL FROM:<me@example-corp.com> SMTPUTF8\r\nRCPT TO:<jörg@army.mil>\r\n".encode())
        _, mail, rcpt = replies(lines, 3)
        assert (mail[:3], rcpt[:3]) == (b"250", b"250")
        raw.sendall("RSET\r\nMAIL FROM:<jörg@example-corp.com>\r\n".encode())
        assert replies(lines, 2)[1].startswith(b"553 5.6.7")


def test_a_half_closed_client_gets_its_complete_message_delivered(relay: Relay, sink: RecordingSink) -> None:
    """The whole transaction and QUIT, then the client shuts its sending side: the message is processed, the
    250 and the 221 still reach the client."""
    with raw_session(relay.port) as (raw, lines):
        raw.sendall(b"EHLO client\r\nMAIL FROM:<me@example-corp.com>\r\nRCPT TO:<x@army.mil>\r\nDATA\r\n"
                    + STUFFED + b".\r\nQUIT\r\n")
        raw.shutdown(socket.SHUT_WR)
        _, mail, rcpt, data, done, bye = replies(lines, 6)
        assert (mail[:3], rcpt[:3], data[:3], done[:3], bye[:3]) == (b"250", b"250", b"354", b"250", b"221")
    (got,) = sink.wait_for(1)
    assert got.data == BODY


def test_a_half_closed_client_with_an_unfinished_message_delivers_nothing(relay: Relay, sink: RecordingSink) -> None:
    """The client shuts its side in the middle of the message: nothing of it is delivered, the session ends."""
    with raw_session(relay.port) as (raw, lines):
        raw.sendall(b"EHLO client\r\nMAIL FROM:<me@example-corp.com>\r\nRCPT TO:<x@army.mil>\r\nDATA\r\n"
                    + STUFFED)
        raw.shutdown(socket.SHUT_WR)
        replies(lines, 4)
        assert lines.readline() == b""
    time.sleep(0.3)
    assert sink.messages == []


def test_connections_are_capped_per_client_and_logged(tmp_path: Path, sink: RecordingSink,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Past max_connections_per_client, a new connection gets 421 and is closed (logged once); when one
    closes, the next is let in."""
    relay = make_relay(tmp_path, sink, max_connections_per_client=5)
    caplog.set_level(logging.WARNING, logger="rcptguard.relay")
    stack = contextlib.ExitStack()
    try:
        idle = [stack.enter_context(raw_session(relay.port)) for _ in range(5)]
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as extra, \
                    extra.makefile("rb") as lines:
                assert lines.readline().startswith(b"421 4.7.0")
                assert lines.read() == b""
        assert sum("limit hit" in r.getMessage() for r in caplog.records) == 1
        idle.pop()[0].shutdown(socket.SHUT_RDWR)
        time.sleep(0.2)
        assert send(relay, ["x@army.mil"])[0] == 250
    finally:
        stack.close()
        relay.close()


def test_total_connections_are_capped(tmp_path: Path, sink: RecordingSink) -> None:
    """Past max_connections in total, a new connection gets 421."""
    relay = make_relay(tmp_path, sink, max_connections=3)
    try:
        with contextlib.ExitStack() as stack:
            for _ in range(3):
                stack.enter_context(raw_session(relay.port))
            with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as extra, \
                    extra.makefile("rb") as lines:
                assert lines.readline().startswith(b"421 4.7.0 Too many connections")
    finally:
        relay.close()


def test_noop_does_not_keep_an_idle_session_alive(tmp_path: Path, sink: RecordingSink) -> None:
    """NOOP every 0.3 s does not restart the 1.5 s idle timer: the session is closed within about 1.5 s."""
    relay = make_relay(tmp_path, sink, idle_timeout=1.5)
    try:
        with raw_session(relay.port) as (raw, lines):
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 6:
                try:
                    raw.sendall(b"NOOP\r\n")
                    line = lines.readline()
                except OSError:
                    line = b""
                if not line:
                    closed = True
                    break
                time.sleep(0.3)
            assert closed
            assert time.monotonic() - started < 3.5
    finally:
        relay.close()


def test_a_session_busy_past_many_idle_timeouts_stays_open_and_closes_once_idle(tmp_path: Path,
                                                                              sink: RecordingSink) -> None:
    """Commands every 0.3 s for 3 s keep a session with a 1 s idle timeout open (its one timer fires early and is
    set again for the new deadline); after the last one it is closed about 1 s later, not sooner and not never."""
    relay = make_relay(tmp_path, sink, idle_timeout=1.0)
    try:
        with raw_session(relay.port) as (raw, lines):
            started = time.monotonic()
            while time.monotonic() - started < 3.0:
                raw.sendall(b"EHLO c\r\n")
                assert replies(lines, 1)[0].startswith(b"250")
                time.sleep(0.3)
            last = time.monotonic()
            raw.sendall(b"MAIL FROM:<me@example-corp.com>\r\n")
            assert replies(lines, 1)[0].startswith(b"250")
            assert lines.readline() == b""  # closed, without a reply
            assert 0.7 < time.monotonic() - last < 3.5  # about 1 s; a busy machine may be late
    finally:
        relay.close()


def test_too_many_junk_commands_close_the_session(tmp_path: Path, sink: RecordingSink) -> None:
    """Past junk_command_limit NOOP/RSET without a message, 421 and close; a message resets the count."""
    relay = make_relay(tmp_path, sink, junk_command_limit=3)
    try:
        with relay.smtp() as smtp:
            for _ in range(3):
                assert smtp.noop()[0] == 250
            smtp.sendmail("me@example-corp.com", ["x@army.mil"], BODY)
            for _ in range(3):
                assert smtp.rset()[0] == 250
            assert smtp.noop()[0] == 421
            with pytest.raises(smtplib.SMTPServerDisconnected):
                smtp.noop()
    finally:
        relay.close()


def test_a_slow_steady_sender_is_not_idle(tmp_path: Path, sink: RecordingSink) -> None:
    """DATA trickling in over 3 s, with no gap longer than the 1 s idle timeout, is taken; the next hop's 1.5 s
    does not count against the client either."""
    sink.delay_data = 1.5
    relay = make_relay(tmp_path, sink, idle_timeout=1.0)
    try:
        with raw_session(relay.port) as (raw, lines):
            raw.sendall(b"EHLO c\r\nMAIL FROM:<me@example-corp.com>\r\nRCPT TO:<x@army.mil>\r\nDATA\r\n")
            assert replies(lines, 4)[3].startswith(b"354")
            for n in range(12):
                raw.sendall(b"line %d of a slow message\r\n" % n)
                time.sleep(0.25)
            raw.sendall(b".\r\n")
            assert replies(lines, 1)[0].startswith(b"250")
        assert len(sink.wait_for(1)) == 1
    finally:
        relay.close()


def test_data_has_an_overall_time_limit(tmp_path: Path, sink: RecordingSink) -> None:
    """A message that keeps trickling past data_time_limit is cut off with 421; nothing is delivered."""
    relay = make_relay(tmp_path, sink, idle_timeout=5.0, data_time_limit=1.0)
    try:
        with raw_session(relay.port) as (raw, lines):
            raw.sendall(b"EHLO c\r\nMAIL FROM:<me@example-corp.com>\r\nRCPT TO:<x@army.mil>\r\nDATA\r\n")
            replies(lines, 4)
            reply = b""
            for n in range(20):
                try:
                    raw.sendall(b"line %d\r\n" % n)
                except OSError:
                    break
                time.sleep(0.2)
            reply = lines.readline()
            assert reply.startswith(b"421 4.4.2")
        assert sink.messages == []
    finally:
        relay.close()


@pytest.mark.parametrize(("section", "error"), [
    ({"workers": "many"}, "relay.workers: expected a whole number, got 'many'"),
    ({"retry_interval": "soon"}, "relay.retry_interval: expected a number, got 'soon'"),
    ({"retry_interval": -5}, "relay.retry_interval: expected 0 or more, got -5"),
    ({"workers": 0}, "relay.workers: at least 1"),
    ({"allow": ["10.0.0.0/33"]}, "relay.allow: "),
    ({"next_hop": "nowhere"}, "relay.next_hop: expected HOST:PORT"),
    ({"notify": "no"}, "relay.notify: expected true or false"),
    ({"workers": 2.5}, "relay.workers"),
    ({"allow": "127.0.0.1"}, "relay.allow"),
    ({"timeouts": {"data_done": "long"}}, "relay.timeouts.data_done"),
    ({"timeouts": {"final_dot": 600}}, "relay.timeouts.final_dot: unknown key"),
    ({"reply_within": True}, "relay.reply_within"),
    ({"claim_timeout": 1200}, "relay.claim_timeout: 1200 s is not longer than the longest send"),
])
def test_settings_of_the_wrong_type_are_refused(section: dict[str, object], error: str) -> None:
    """A value of the wrong type is an error at start, naming the key (it used to start, then fail later)."""
    with pytest.raises(ValueError, match="^config: " + re.escape(error)):
        RelaySettings.from_section(section, "relay")


def test_the_documented_settings_are_the_defaults() -> None:
    """The `[relay]` block in docs/relay.md parses, and says what the defaults are."""
    text = (Path(__file__).parents[2] / "docs" / "relay.md").read_text("utf-8")
    block = text.split("## Settings (`[relay]`)", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    section = tomllib.loads(block)["relay"]
    documented = RelaySettings.from_section(section, "relay")
    assert documented == RelaySettings.from_section({}, "relay")
    assert set(section["timeouts"]) == set(SmtpTimeouts.__dataclass_fields__)


def test_connection_limits_fit_the_open_files(tmp_path: Path, sink: RecordingSink,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """With 256 open files, the limits come down to what fits (one client at most half), and it is logged;
    with plenty, they stay as configured."""
    relay = make_relay(tmp_path, sink)
    try:
        handler = relay.handler
        handler.fit_connections(1 << 20)
        assert (handler.settings.max_connections, handler.settings.max_connections_per_client) == (400, 200)
        caplog.set_level(logging.WARNING, logger="rcptguard.relay")
        handler.fit_connections(256)
        assert handler.settings.max_connections == 256 - handler.settings.workers - 64
        assert handler.settings.max_connections_per_client == handler.settings.max_connections // 2
        assert any("connection limits lowered" in r.getMessage() for r in caplog.records)
    finally:
        relay.close()


@pytest.mark.parametrize("address", ["bad@@x", "a..b@army.mil", "no-at-sign", "x@-army.mil"])
def test_a_malformed_recipient_gets_the_reason_check_gives(relay: Relay, address: str) -> None:
    """The relay's 553 for a malformed address says what `rcptguard check` says, whoever parses it first."""
    verdict = relay.handler.runtime.guard.check(address)
    assert verdict.signal("MALFORMED_ADDRESS") is not None
    with relay.smtp() as smtp:
        smtp.ehlo()
        smtp.mail("me@example-corp.com")
        code, text = smtp.rcpt(address)
    assert code == 553
    assert text.decode() == f"5.1.3 {verdict.reason}"


def test_every_relay_reply_is_a_well_formed_smtp_line() -> None:
    """The replies table: each reply's code and enhanced status agree (class 2, 4 or 5), and its line is within
    RFC 5321's 512 octets even with the longest detail the relay adds."""
    for kind, reply in RELAY_REPLIES.items():
        assert str(reply.code)[0] == reply.status[0], kind
        assert len(str(reply.saying("x" * 500)).encode("ascii")) + 2 <= 512, kind
