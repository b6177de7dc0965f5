"""The sink's limits, each on its own with small numbers: recipients per session and per client, new connections per
client, sessions at once, errors, junk commands, idle and whole-session time, a command line too long, a full
metadata queue."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import time
from collections.abc import Iterator

import pytest

from rcptguard.store import Store
from tests.support.typosink import TypoSink, make_typo_sink
from tests.unit.test_sink import SlowRefusals, talk


@contextlib.contextmanager
def sink_with(store: Store, **settings: object) -> Iterator[TypoSink]:
    running = make_typo_sink(store, **settings)
    try:
        yield running
    finally:
        running.close()


def greeting(port: int) -> bytes:
    """What the server says first on a new connection (the connection stays open until the test ends)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    _OPEN.append(conn)
    return conn.recv(1024)


_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def test_recipients_over_the_session_cap_get_452(store: Store) -> None:
    with sink_with(store, max_recipients=5) as running, running.smtp() as smtp:
        smtp.ehlo()
        smtp.mail("a@partner.example")
        codes = [smtp.rcpt(f"u{i}@army.ml")[0] for i in range(7)]
        assert codes == [550] * 5 + [452] * 2
        assert smtp.rcpt("x@army.ml") == (452, b"4.5.3 Too many recipients in this session; send the rest later")
    assert len(list(running.refusals.since())) == 5


def test_recipients_over_the_client_rate_get_450_in_every_session(store: Store) -> None:
    with sink_with(store, recipient_rate=3) as running:
        with running.smtp() as smtp:
            smtp.ehlo()
            smtp.mail("a@partner.example")
            assert [smtp.rcpt(f"u{i}@army.ml")[0] for i in range(4)] == [550, 550, 550, 450]
        with running.smtp() as smtp:
            smtp.ehlo()
            smtp.mail("a@partner.example")
            assert smtp.rcpt("u@army.ml") == (450, b"4.7.1 Too many recipients from this client; try again later")


def test_the_rate_window_starts_again(store: Store) -> None:
    with sink_with(store, recipient_rate=1, rate_window=0.5) as running, running.smtp() as smtp:
        smtp.ehlo()
        smtp.mail("a@partner.example")
        assert [smtp.rcpt("u@army.ml")[0], smtp.rcpt("u@army.ml")[0]] == [550, 450]
        time.sleep(0.6)
        assert smtp.rcpt("u@army.ml")[0] == 550


def test_new_connections_over_the_client_rate_are_refused_before_the_greeting(store: Store) -> None:
    with sink_with(store, connection_rate=2) as running:
        assert greeting(running.port).startswith(b"220 ")
        assert greeting(running.port).startswith(b"220 ")
        assert greeting(running.port) == b"421 4.7.0 Too many new connections from this client; try again later\r\n"


def test_sessions_at_once_are_capped_per_client_and_in_total(store: Store) -> None:
    with sink_with(store, max_connections_per_client=2) as running:
        assert greeting(running.port).startswith(b"220 ")
        assert greeting(running.port).startswith(b"220 ")
        assert greeting(running.port) == b"421 4.7.0 Too many connections from this client; try again later\r\n"
    while _OPEN:
        _OPEN.pop().close()
    with sink_with(store, max_connections=1) as running:
        assert greeting(running.port).startswith(b"220 ")
        assert greeting(running.port) == b"421 4.7.0 Too many connections; try again later\r\n"
        _OPEN.pop(0).close()
        time.sleep(0.2)
        assert greeting(running.port).startswith(b"220 ")  # a closed session frees its place


def test_a_session_of_errors_is_closed(store: Store) -> None:
    """Bad commands, bad syntax and DATA count; past error_limit the session ends with 421."""
    with sink_with(store, error_limit=3) as running:
        said = talk(running.port, b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nDATA\r\nMAIL FROM:<>\r\nRCPT TO:<bad\r\n"
                                  b"RCPT TO:\r\nDATA\r\nNOOP\r\n")
    assert said.endswith(b"421 4.7.0 Too many errors; closing\r\n"), said
    assert b"250 OK\r\n" not in said.split(b"421")[-1]  # the NOOP after it is never answered


def test_junk_commands_close_the_session(store: Store) -> None:
    with sink_with(store, junk_command_limit=3) as running:
        said = talk(running.port, b"EHLO x\r\n" + b"NOOP\r\n" * 5)
    assert said.endswith(b"421 4.7.0 Too many commands without a message; closing\r\n"), said


def test_an_idle_session_is_closed(store: Store) -> None:
    with sink_with(store, idle_timeout=0.5) as running:
        started = time.monotonic()
        said = talk(running.port, b"EHLO x\r\n", wait=5)
    assert time.monotonic() - started < 3
    assert said.startswith(b"220 ")


def test_a_busy_session_ends_after_the_session_time_limit(store: Store) -> None:
    """A client that keeps the session alive with real commands (RCPT resets the idle timer) is still closed."""
    with sink_with(store, session_time_limit=1.0, max_recipients=1000) as running, running.smtp() as smtp:
        smtp.ehlo()
        smtp.mail("a@partner.example")
        started = time.monotonic()
        answers = []
        while time.monotonic() - started < 5:
            try:
                answers.append(smtp.rcpt("x@gmail.com"))
            except smtplib.SMTPServerDisconnected:
                break
            time.sleep(0.1)
        assert time.monotonic() - started < 2.5
        assert answers[-1] == (421, b"4.4.2 Session too long; closing")


def test_a_huge_command_line_is_refused_and_the_session_goes_on(store: Store) -> None:
    with sink_with(store) as running:
        said = talk(running.port, b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<" + b"a" * 1_000_000 +
                    b"@army.ml>\r\nRCPT TO:<j.doe@army.ml>\r\nQUIT\r\n")
    assert b"500 Command line too long" in said
    assert b"550 5.1.2 army.ml is not army.mil" in said
    assert said.endswith(b"221 Bye\r\n")


def test_a_full_metadata_queue_gets_a_tempfail_at_once(store: Store) -> None:
    """With the writer busy and the queue full, a refusal is not said (it could not be recorded): 451 at once."""
    slow = SlowRefusals(store, delay=2.0)
    running = make_typo_sink(store, refusals=slow, queue_size=1, write_timeout=5.0)  # type: ignore[arg-type]
    try:
        first, second = running.smtp(), running.smtp()
        for smtp in (first, second):
            smtp.ehlo()
            smtp.mail("a@partner.example")
        # the first row goes to the writer (busy for 2 s), the second waits in the queue, the third finds it full
        first.send(b"RCPT TO:<a@army.ml>\r\n")
        time.sleep(0.2)
        second.send(b"RCPT TO:<b@army.ml>\r\n")
        time.sleep(0.2)
        third = running.smtp()
        third.ehlo()
        third.mail("a@partner.example")
        started = time.monotonic()
        assert third.rcpt("c@army.ml") == (451, b"4.3.0 Temporary failure; try again later")
        assert time.monotonic() - started < 1.0
        assert first.getreply()[0] == 550
        assert second.getreply()[0] == 550
        for smtp in (first, second, third):
            smtp.close()
    finally:
        running.close()
