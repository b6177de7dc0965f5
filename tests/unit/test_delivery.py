"""The relay's SMTP client (AsyncPool): every recipient accounted for, against real servers on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO, Self

import pytest

from rcptguard.delivery import AsyncPool, DeliveryResult, NextHop, SmtpTimeouts, dot_stuffed
from rcptguard.delivery import deliver as plain_deliver
from tests.support.processes import free_port
from tests.support.sink import RecordingSink

BODY = b"From: a@example.org\r\nSubject: dots\r\n\r\n.one\r\n..two\r\nlast line\r\n"


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])
def sink(request: pytest.FixtureRequest) -> Iterator[RecordingSink]:
    with RecordingSink(pipelining=request.param) as started:
        yield started


def deliver(pool: AsyncPool, *messages: tuple[str, list[str], bytes]) -> list[DeliveryResult]:
    """Deliver `messages` one after another through `pool` on a fresh event loop; close the pool after."""

    async def run() -> list[DeliveryResult]:
        try:
            return [await pool.deliver(sender, rcpts, data, smtputf8=not all(r.isascii() for r in rcpts))
                    for sender, rcpts, data in messages]
        finally:
            await pool.close()

    return asyncio.run(run())


def pool_for(port: int, **kwargs: float) -> AsyncPool:
    return AsyncPool(NextHop("127.0.0.1", port, **kwargs))


@pytest.mark.parametrize(("data", "sent"), [
    (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
    (b".b\r\n", b"..b\r\n.\r\n"),
    (b"no final line end", b"no final line end\r\n.\r\n"),
    (b"bare\nLF\rCR\r\n.\n", b"bare\r\nLF\r\nCR\r\n..\r\n.\r\n"),
    (b"", b".\r\n"),
])
def test_dot_stuffed(data: bytes, sent: bytes) -> None:
    assert dot_stuffed(data) == sent


def test_forwards_byte_for_byte_on_one_connection(sink: RecordingSink) -> None:
    """Messages arrive exactly as given (dots unstuffed by the server again); the connection is reused."""
    results = deliver(pool_for(sink.port), *[("me@example.org", ["x@army.mil", "y@army.mil"], BODY)] * 3)
    assert [r.accepted for r in results] == [("x@army.mil", "y@army.mil")] * 3
    got = sink.wait_for(3)
    assert [m.data for m in got] == [BODY] * 3
    assert got[0].rcpt_tos == ("x@army.mil", "y@army.mil")
    assert sink.connections == 1


def test_null_sender_and_utf8_addresses(sink: RecordingSink) -> None:
    (result,) = deliver(pool_for(sink.port), ("", ["pépé@exämple.org"], BODY))
    assert result.accepted == ("pépé@exämple.org",)
    (got,) = sink.wait_for(1)
    assert (got.mail_from, got.rcpt_tos) == ("", ("pépé@exämple.org",))


def test_one_recipient_refused_for_good(sink: RecordingSink) -> None:
    """A 550 for one recipient: the others get the message, the refused one is reported permanent."""
    sink.reply_rcpt = {"gone@army.mil": "550 5.1.1 no such user"}
    (result,) = deliver(pool_for(sink.port), ("me@example.org", ["x@army.mil", "gone@army.mil"], BODY))
    assert result.accepted == ("x@army.mil",)
    assert result.perm_failed == {"gone@army.mil": (550, "5.1.1 no such user")}
    assert not result.temporary
    assert sink.wait_for(1)[0].rcpt_tos == ("x@army.mil",)


def test_a_deferred_recipient_sends_nothing(sink: RecordingSink) -> None:
    """A 4xx for one recipient: no DATA for anyone (a retry must not deliver twice); the next message on
    the pool goes through, even when a pipelined DATA had already been accepted (that session is closed)."""
    sink.reply_rcpt = {"later@army.mil": "451 4.3.0 try later"}
    first, second = deliver(pool_for(sink.port), ("me@example.org", ["x@army.mil", "later@army.mil"], BODY),
                            ("me@example.org", ["y@army.mil"], BODY))
    assert first.temporary
    assert first.accepted == ()
    assert first.temp_failed == {"later@army.mil": (451, "4.3.0 try later"), "x@army.mil": (451, "not sent: retry")}
    assert second.accepted == ("y@army.mil",)
    assert [m.rcpt_tos for m in sink.wait_for(1)] == [("y@army.mil",)]


def test_every_recipient_refused(sink: RecordingSink) -> None:
    sink.reply_rcpt = {"a@army.mil": "550 5.1.1 no", "b@army.mil": "553 5.1.3 bad"}
    (result,) = deliver(pool_for(sink.port), ("me@example.org", ["a@army.mil", "b@army.mil"], BODY))
    assert result.accepted == ()
    assert set(result.perm_failed) == {"a@army.mil", "b@army.mil"}
    assert not result.temporary
    assert sink.messages == []


@pytest.mark.parametrize(("reply", "temporary"), [("554 5.6.0 content refused", False),
                                                   ("451 4.3.0 queue full", True),
                                                   ("421 4.3.2 shutting down", True)])
def test_refused_after_data(sink: RecordingSink, reply: str, temporary: bool) -> None:
    sink.reply_data = reply
    first, second = deliver(pool_for(sink.port), ("me@example.org", ["x@army.mil"], BODY),
                            ("me@example.org", ["y@army.mil"], BODY))
    assert first.accepted == ()
    assert first.temporary is temporary
    assert second.temporary is temporary  # and the pool still works after it (a new session after 421)


def test_next_hop_down_is_temporary() -> None:
    (result,) = deliver(pool_for(free_port(), timeout=5), ("me@example.org", ["x@army.mil"], BODY))
    assert result.temporary
    assert result.temp_failed == {"x@army.mil": (451, "next hop unavailable")}
    assert result.error is not None
    assert "Connection" in result.error or "connect" in result.error.lower()


def test_stale_idle_connection_is_replaced(sink: RecordingSink) -> None:
    """The next hop closed the idle session (restart, idle timeout): the message goes on a new one."""

    async def run() -> list[DeliveryResult]:
        pool = pool_for(sink.port)
        try:
            first = await pool.deliver("me@example.org", ["x@army.mil"], BODY)
            await asyncio.to_thread(sink.stop)
            await asyncio.to_thread(sink.start)
            second = await pool.deliver("me@example.org", ["y@army.mil"], BODY)
            return [first, second]
        finally:
            await pool.close()

    first, second = asyncio.run(run())
    assert (first.accepted, second.accepted) == (("x@army.mil",), ("y@army.mil",))
    assert [m.rcpt_tos for m in sink.wait_for(2)] == [("x@army.mil",), ("y@army.mil",)]


def test_utf8_address_without_smtputf8_is_refused_for_good() -> None:
    """A next hop without SMTPUTF8 cannot take a UTF-8 address: a permanent failure, not a retry loop."""
    with Scripted([b"220 hi", b"250 old-server"]) as server:
        (result,) = deliver(pool_for(server.port), ("me@example.org", ["pépé@exämple.org"], BODY))
    assert result.perm_failed["pépé@exämple.org"][0] == 553
    assert not result.temporary


@pytest.mark.parametrize("script", [
    [b"554 5.3.2 go away"],                                   # refused greeting
    [b"220 hi", b"500 what", b"502 no HELO either"],           # neither EHLO nor HELO
    [b"220 hi", b"250 ok", b"hello there"],                    # not an SMTP reply to MAIL
    [b"220 hi", b"250 ok", b"250 ok", b"250 ok", b"354 go"],  # then silence: closed before the final reply
    [b"220 hi", b"250 ok", b"250 ok", b"250 ok", b"354 go", b"421 4.4.2 bye"],
])
def test_broken_next_hops_give_temporary_failures(script: list[bytes]) -> None:
    """Whatever the next hop does wrong, the answer is "try again later", never a refusal of the message."""
    with Scripted(script) as server:
        (result,) = deliver(pool_for(server.port, timeout=5), ("me@example.org", ["x@army.mil"], BODY))
    assert result.temporary, result
    assert result.accepted == ()


@pytest.mark.parametrize("reply", [b"252 2.1.5 cannot VRFY, will try", b"334 what", b"199 odd"])
def test_an_odd_recipient_reply_is_temporary_never_lost(reply: bytes) -> None:
    """Neither 250/251 nor 4xx/5xx: the recipient is not accepted, and the message is deferred, not dropped."""
    with Scripted([b"220 hi", b"250 ok", b"250 ok", reply, b"250 reset"]) as server:
        (result,) = deliver(pool_for(server.port, timeout=5), ("me@example.org", ["x@army.mil"], BODY))
    assert result.temporary
    assert set(result.temp_failed) == {"x@army.mil"}
    assert b"DATA\r\n" not in server.received


def test_refused_data_command_resets_before_the_next_message() -> None:
    """DATA refused (no 354): RSET, so the next message on the same session starts a clean transaction."""
    script = [b"220 hi", b"250 ok", b"250 ok", b"250 ok", b"450 4.7.1 DATA rejected: try later", b"250 reset",
              b"250 ok", b"250 ok", b"354 go", b"250 2.0.0 queued"]
    with Scripted(script) as server:
        first, second = deliver(pool_for(server.port, timeout=5), ("me@example.org", ["x@army.mil"], BODY),
                                ("me@example.org", ["y@army.mil"], BODY))
    assert first.temporary
    assert second.accepted == ("y@army.mil",)
    commands = [line for line in server.received if line[:4] in (b"MAIL", b"RCPT", b"DATA", b"RSET")]
    assert commands[3:5] == [b"RSET\r\n", b"MAIL FROM:<me@example.org>\r\n"]


def test_every_idle_connection_stale_still_delivers(sink: RecordingSink) -> None:
    """After a restart of the next hop all pooled sessions are dead: the message goes on a new one at once."""

    async def run() -> list[DeliveryResult]:
        pool = pool_for(sink.port)
        try:
            first = await asyncio.gather(*(pool.deliver("me@example.org", [f"{n}@army.mil"], BODY) for n in range(3)))
            await asyncio.to_thread(sink.stop)
            await asyncio.to_thread(sink.start)
            return [*first, await pool.deliver("me@example.org", ["late@army.mil"], BODY)]
        finally:
            await pool.close()

    results = asyncio.run(run())
    assert [r.accepted for r in results] == [("0@army.mil",), ("1@army.mil",), ("2@army.mil",), ("late@army.mil",)]
    assert sink.connections == 4  # three at once, then one new after the restart


def test_idle_connections_expire(sink: RecordingSink) -> None:
    deliver(AsyncPool(NextHop("127.0.0.1", sink.port), idle_limit=0.0), *[("me@example.org", ["x@army.mil"], BODY)] * 2)
    assert len(sink.wait_for(2)) == 2
    assert sink.connections == 2


@pytest.mark.parametrize(("idle_limit", "closed"), [(0.3, True), (30.0, False)])
def test_an_idle_connection_is_closed_when_its_time_is_up(idle_limit: float, closed: bool) -> None:
    """A pooled session nobody uses again is ended (QUIT) once its idle time is up, without waiting for the pool
    to be used again: an idle session holds a process of the next hop that its other clients are waiting for.
    With a longer limit the session stays open (the witness)."""
    script = [b"220 hi", b"250 ok", b"250 ok", b"250 ok", b"354 go", b"250 queued", b"221 bye"]
    with Scripted(script, hang=True) as server:

        async def run() -> tuple[bool, bool]:
            pool = AsyncPool(NextHop("127.0.0.1", server.port, timeout=5), idle_limit=idle_limit)
            try:
                result = await pool.deliver("me@example.org", ["x@army.mil"], BODY)
                assert result.accepted == ("x@army.mil",)
                await asyncio.sleep(1.5)  # the event loop runs on; the pool is not used again
                return server.client_closed.is_set(), b"QUIT\r\n" in server.received
            finally:
                await pool.close()

        assert asyncio.run(run()) == (closed, closed)  # ended politely, with QUIT


def test_a_reply_line_over_64_kb_is_temporary_and_closes() -> None:
    with Scripted([b"220 hi", b"250 ok", b"550 " + b"x" * 70_000], hang=True) as server:
        (result,) = deliver(pool_for(server.port, timeout=5), ("me@example.org", ["x@army.mil"], BODY))
        assert server.client_closed.wait(5)
    assert result.temporary


def test_cancelled_forward_closes_its_connection() -> None:
    """The sending client went away mid-forward: the next-hop session is closed, not left hanging."""
    with Scripted([b"220 hi", b"250 ok", b"250 ok", b"250 ok", b"354 go"], hang=True) as server:

        async def run() -> None:
            task = asyncio.create_task(pool_for(server.port).deliver("me@example.org", ["x@army.mil"], BODY))
            await asyncio.sleep(0.5)  # the body is sent; the final reply never comes
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(run())
        assert server.client_closed.wait(5)


def test_control_characters_in_an_address_are_never_sent() -> None:
    with Scripted([b"220 hi", b"250 ok"]) as server:
        (result,) = deliver(pool_for(server.port), ("me@example.org", ["x@army.mil\r\nRCPT TO:<y@army.mil>"], BODY))
    assert result.accepted == ()
    assert not result.temporary
    assert not any(line.startswith((b"MAIL", b"RCPT")) for line in server.received)


class Scripted:
    """A TCP server for one connection that answers each command line with the next reply of a script (the
    first reply is the greeting; after a 354 it reads the whole body before answering). When the script runs
    out it reads one more command (or body) and closes, or with `hang` waits until the client closes."""

    def __init__(self, script: list[bytes], *, hang: bool = False) -> None:
        self.script = script
        self.hang = hang
        self.received: list[bytes] = []
        self.client_closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _read(self, lines: BinaryIO, *, body: bool) -> bool:
        while line := lines.readline():
            self.received.append(line)
            if not body or line == b".\r\n":
                return True
        self.client_closed.set()
        return False

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection, connection.makefile("rb") as lines:
            in_data = False
            for number, reply in enumerate(self.script):
                if number and not self._read(lines, body=in_data):
                    return
                connection.sendall(reply + b"\r\n")
                in_data = reply.startswith(b"354")
            if self._read(lines, body=in_data) and self.hang:
                while self._read(lines, body=False):
                    pass

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._listener.close()
        self._thread.join(10)


@pytest.mark.parametrize(("script", "limits"), [
    ([], SmtpTimeouts(greeting=1.0)),                                             # never greets
    ([b"220 hi"], SmtpTimeouts(command=1.0)),                                     # never answers EHLO
    ([b"220 hi", b"250 ok", b"250 ok", b"250 ok", b"354 go"], SmtpTimeouts(data_done=1.0)),  # nor the final dot
])
def test_each_wait_ends_at_its_own_limit(script: list[bytes], limits: SmtpTimeouts) -> None:
    """A next hop that goes silent at any step is given up after that step's limit (here 1 s), however long
    the event loop has been running: the message is deferred, never waited on for ever."""
    with Scripted(script, hang=True) as server:
        started = time.monotonic()
        result = plain_deliver(NextHop("127.0.0.1", server.port, timeouts=limits), "me@example.org", ["x@army.mil"],
                               BODY)
    assert result.temporary
    assert time.monotonic() - started < 5


def test_recipients_put_off_with_452_are_tried_again_after_a_refused_dot() -> None:
    """The next hop takes b1, puts off b2 and b3 with 452, then refuses the message for b1 at the final dot: b2
    and b3 still get a transaction of their own (they are not lost with b1's refusal)."""
    script = [b"220 hi", b"250-hi\r\n250 PIPELINING", b"250 ok", b"250 ok", b"452 too many", b"452 too many",
              b"354 go", b"554 no", b"250 ok", b"250 ok", b"250 ok", b"354 go", b"250 queued"]
    with Scripted(script) as server:
        (result,) = deliver(pool_for(server.port, timeout=5),
                            ("me@example.org", ["b1@army.mil", "b2@army.mil", "b3@army.mil"], BODY))
    assert set(result.perm_failed) == {"b1@army.mil"}
    assert result.accepted == ("b2@army.mil", "b3@army.mil")


def test_a_whole_send_is_cut_off_within_its_limit() -> None:
    """deliver(within=...) gives up a send that lasts longer than its claim would, however far it got: every
    recipient deferred, and the call returns at the limit, not when the next hop finally answers."""
    with RecordingSink(delay_data=5.0) as slow:
        started = time.monotonic()
        result = plain_deliver(slow.hop, "a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nbody\r\n", within=0.5)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert result.accepted == ()
    assert result.temporary
    assert "claim's lifetime" in (result.error or "")
