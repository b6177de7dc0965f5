"""Handing a message to the next hop over SMTP, with a per-recipient account of what happened.

Used by the relay (forwarding what passes) and by the quarantine (delivering what is released). A
recipient is `accepted` only when the next hop said 250 to its RCPT and to the DATA that followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rcptguard.dsn import EnvelopeParams
from rcptguard.settings import Settings, invalid

DEFAULT_NEXT_HOP = "127.0.0.1:10026"  # Postfix's re-injection port in the content-filter setup


@dataclass(frozen=True, slots=True)
class SmtpTimeouts(Settings):
    """How long the client waits for each step of a transaction, in seconds.

    The defaults are RFC 5321 §4.5.3.2's, as Postfix's SMTP client uses them: a next hop that takes nine minutes
    to answer the final dot (a busy content filter or queue) is slow, not down. Giving up sooner does not make a
    slow accept go away: the message is then sent again, and the recipient gets it twice.
    """

    connect: float = 30.0  # TCP connect (Postfix smtp_connect_timeout; the RFC leaves it open)
    greeting: float = 300.0  # the 220 greeting (§4.5.3.2.1: 5 minutes)
    command: float = 300.0  # EHLO, MAIL, RCPT, RSET, QUIT (§4.5.3.2.2-3: 5 minutes)
    data_init: float = 120.0  # the 354 after DATA (§4.5.3.2.4: 2 minutes)
    data_block: float = 180.0  # each block of the body written (§4.5.3.2.5: 3 minutes)
    data_done: float = 600.0  # the reply to the final dot (§4.5.3.2.6: 10 minutes)

    def longest_send(self) -> float:
        """The longest one single-recipient send of a message of one block (64 KB) can last with these timeouts: a
        claim on a send must outlast it. (A longer body may wait `data_block` per block: a claimed send is also cut
        off before its claim ends, see `deliver(within=...)`.)"""
        return (self.connect + self.greeting + 4 * self.command + self.data_init + self.data_block
                + self.data_done + 5.0)  # EHLO (and HELO after a refused EHLO), MAIL, RCPT; QUIT waits 5 s at most

    def capped(self, limit: float | None) -> SmtpTimeouts:
        """These timeouts, none longer than `limit`."""
        if limit is None:
            return self
        return SmtpTimeouts(*(min(getattr(self, name), limit) for name in self.__dataclass_fields__))

    def check(self) -> None:
        for name in self.__dataclass_fields__:
            if not getattr(self, name) > 0:
                raise invalid(name, f"expected a positive number of seconds, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where mail goes, and how long to wait for it (`timeout`, when set, caps every step: for tests)."""

    host: str
    port: int
    timeout: float | None = None
    helo: str | None = None
    timeouts: SmtpTimeouts = SmtpTimeouts()

    @classmethod
    def parse(cls, text: str, timeouts: SmtpTimeouts | None = None) -> NextHop:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port), timeouts=timeouts or SmtpTimeouts())

    @property
    def limits(self) -> SmtpTimeouts:
        """The timeouts in force."""
        return self.timeouts.capped(self.timeout)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What the next hop did with each recipient."""

    accepted: tuple[str, ...] = ()
    temp_failed: dict[str, tuple[int, str]] = field(default_factory=dict)
    perm_failed: dict[str, tuple[int, str]] = field(default_factory=dict)
    error: str | None = None  # a failure of the whole transaction (connection, MAIL, DATA)
    without_dsn: tuple[str, ...] = ()  # accepted by a next hop that does not offer DSN: it will send no report

    @property
    def temporary(self) -> bool:
        """Something failed that a later attempt may fix: the whole message should be retried."""
        return bool(self.temp_failed) or (self.error is not None and not self.perm_failed)

    @property
    def settled(self) -> DeliveryResult:
        """Only what is final: the recipients accepted and those refused for good."""
        return DeliveryResult(self.accepted, {}, dict(self.perm_failed), without_dsn=self.without_dsn)

    def merged(self, other: DeliveryResult) -> DeliveryResult:
        """This result and another, for other recipients of the same message (a later transaction)."""
        return DeliveryResult((*self.accepted, *other.accepted), {**self.temp_failed, **other.temp_failed},
                              {**self.perm_failed, **other.perm_failed}, other.error or self.error,
                              (*self.without_dsn, *other.without_dsn))


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


class Transport(Protocol):
    """The seam between the guard and the mail system: hand a message to the next hop, and say per recipient
    what happened. `AsyncPool` is the one implementation (and `deliver` its adapter for code without a loop); a
    test may give a door any other object with this method."""

    async def deliver(self, mail_from: str, rcpts: Sequence[str], data: bytes, *,
                      smtputf8: bool = False, params: EnvelopeParams | None = None,
                      crlf: bool = False) -> DeliveryResult: ...

    async def close(self) -> None: ...


def deliver(hop: NextHop, mail_from: str, rcpts: Sequence[str], data: bytes, *,
            smtputf8: bool = False, within: float | None = None,
            params: EnvelopeParams | None = None) -> DeliveryResult:
    """One SMTP transaction to the next hop on a new connection, for code that does not run on an event loop (the
    quarantine's releases and notices): the relay's own client, `AsyncPool`, on a loop of its own. One SMTP
    client, so the rules of a transaction (what counts as accepted, what aborts, which waits) live in one place.

    `within`: the whole send, however many blocks the body has, is given up after this many seconds (every
    recipient deferred). A claimed send passes its claim's lifetime here: no send outlasts its claim, so no other
    worker takes it over while this one is still sending."""
    if not rcpts:
        return DeliveryResult()

    async def once() -> DeliveryResult:
        pool = AsyncPool(hop, size=0)  # keeps no connection: QUIT after the transaction
        try:
            async with asyncio.timeout(within):
                return await pool.deliver(mail_from, rcpts, data, smtputf8=smtputf8, params=params)
        except TimeoutError:
            return _failed(hop, TimeoutError(f"the send took longer than {within:g} s, the claim's lifetime"), rcpts)
        finally:
            await pool.close()

    return asyncio.run(once())


def _unencodable(rcpts: Sequence[str]) -> DeliveryResult:
    """An address the next hop cannot take (UTF-8 without SMTPUTF8 there): a permanent failure."""
    text = "5.6.7 the next hop does not support SMTPUTF8, which this address needs"
    return DeliveryResult((), {}, dict.fromkeys(rcpts, (553, text)), error=text)


def _failed(hop: NextHop, exc: Exception, rcpts: Sequence[str]) -> DeliveryResult:
    """The next hop could not be reached or dropped the connection: every recipient is deferred."""
    return DeliveryResult(error=f"next hop {hop}: {type(exc).__name__}: {exc}",
                          temp_failed=dict.fromkeys(rcpts, (451, "next hop unavailable")))


class ClosedBeforeMail(ConnectionError):  # noqa: N818 - the name reads as what happened
    """The connection was gone when MAIL was sent: nothing of this message reached the next hop."""


def _whole(code: int, text: str, rcpts: Sequence[str],
           perm: dict[str, tuple[int, str]] | None = None) -> DeliveryResult:
    """The whole transaction failed with one reply: every recipient shares it."""
    perm = dict(perm or {})
    if 400 <= code < 500:
        return DeliveryResult((), dict.fromkeys(rcpts, (code, text)), perm, error=f"{code} {text}")
    return DeliveryResult((), {}, {**perm, **dict.fromkeys(rcpts, (code, text))}, error=f"{code} {text}")


class AsyncPool:
    """Persistent connections to one next hop for an asyncio server, reused across messages.

    Same contract as `deliver`; a stale idle connection (closed before MAIL) is retried once on a new one.

    A connection left idle for `idle_limit` seconds is closed then, not when the pool is next used: each open
    session holds a process of the next hop (Postfix's reinjection service has a process limit, 10 in
    docs/postfix/relay.master.cf), and the next hop's other clients (another relay on the same store, the page's
    and the commands' releases, notices) would wait for a free one, their new connection unanswered until the
    idle session timed out (Postfix after 300 s). Postfix's own client keeps idle sessions 2 s for the same
    reason (smtp_connection_cache_time_limit); under load a connection is reused long before that.
    """

    def __init__(self, hop: NextHop, size: int = 32, idle_limit: float = 2.0) -> None:
        self.hop = hop
        self.size = size
        self.idle_limit = idle_limit  # seconds
        self._idle: list[_Connection] = []
        self._closing: set[asyncio.Task[None]] = set()  # idle connections being closed (QUIT sent)

    def _take(self) -> _Connection | None:
        """The most recently used idle connection that is not too old; older ones are closed."""
        while self._idle:
            connection = self._idle.pop()
            if time.monotonic() - connection.last_used < self.idle_limit:
                return connection
            connection.abort()
        return None

    async def deliver(self, mail_from: str, rcpts: Sequence[str], data: bytes, *,
                      smtputf8: bool = False, params: EnvelopeParams | None = None,
                      crlf: bool = False) -> DeliveryResult:
        """Every recipient accounted for. Recipients the next hop puts off with 452 after accepting others (its
        recipient limit) go in further transactions, as many as it takes. `params`: what the client's envelope
        asked for (DSN, BODY, XFORWARD), said again to a next hop that offers it. `crlf`: `data` has been through
        `normalise_line_endings` already (not scanned again)."""
        params = params or EnvelopeParams()
        result, later = await self._transaction(mail_from, rcpts, data, smtputf8, params, crlf)
        while later:
            more, later = await self._transaction(mail_from, later, data, smtputf8, params, crlf)
            result = result.merged(more)
        return result

    async def _transaction(self, mail_from: str, rcpts: Sequence[str], data: bytes, smtputf8: bool,
                           params: EnvelopeParams, crlf: bool = False) -> tuple[DeliveryResult, list[str]]:
        if not rcpts:
            return DeliveryResult(), []
        for attempt in range(2):
            connection = self._take() if attempt == 0 else None  # a retry never takes another idle one
            reused = connection is not None
            try:
                if connection is None:
                    connection = await _Connection.open(self.hop)
                result, later = await connection.transaction(mail_from, rcpts, data, smtputf8=smtputf8,
                                                             params=params, crlf=crlf)
            except ClosedBeforeMail as exc:
                _abort(connection)
                if reused:
                    self._drop_idle()  # one was stale: the others are as old, and likely stale too
                    continue
                return _failed(self.hop, exc, rcpts), []
            except UnicodeError:
                _abort(connection)
                return _unencodable(rcpts), []
            except (OSError, EOFError, TimeoutError, _ReplyError) as exc:
                _abort(connection)
                if isinstance(exc, _ReplyError) and exc.code != 421:
                    return _whole(exc.code, exc.text, rcpts), []
                return _failed(self.hop, exc, rcpts), []
            except BaseException:  # cancelled (the client went away): never leave a half-used session open
                _abort(connection)
                raise
            if connection.usable and len(self._idle) < self.size:
                self._keep(connection)
            else:
                await connection.close()
            return result, later
        return _failed(self.hop, ClosedBeforeMail("next hop closed the connection"), rcpts), []

    def _keep(self, connection: _Connection) -> None:
        """Put a connection back for the next message, and have it closed if none takes it within idle_limit."""
        connection.last_used = since = time.monotonic()
        self._idle.append(connection)
        asyncio.get_running_loop().call_later(self.idle_limit, self._expire, connection, since)

    def _expire(self, connection: _Connection, since: float) -> None:
        """Close `connection` if it is still idle since `since` (taken and put back since: a later timer's)."""
        if connection.last_used != since or connection not in self._idle:
            return
        self._idle.remove(connection)
        task = asyncio.ensure_future(connection.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.abort()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class _ReplyError(Exception):
    """A reply that ends the connection's use: a refused greeting or EHLO/HELO, 421, or no SMTP reply."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


@functools.cache
def _local_name() -> str:
    return socket.getfqdn() or "localhost"


def dot_stuffed(data: bytes, *, crlf: bool = False) -> bytes:
    """The message as DATA sends it: CRLF line endings (bare CR or LF become CRLF; with `crlf`, the caller
    already made them so), a final CRLF, a dot doubled at the start of every line, and the line "." that ends
    it."""
    if not crlf:
        data = normalise_line_endings(data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return (b"." if data.startswith(b".") else b"") + data + b".\r\n"


def normalise_line_endings(content: bytes) -> bytes:
    """Every bare CR or LF becomes CRLF, so no sequence in the body can end DATA early downstream."""
    crlf = content.count(b"\r\n")
    if content.count(b"\r") == crlf == content.count(b"\n"):
        return content  # nothing bare: the usual case, decided by three scans in C
    return _LINE_ENDINGS.sub(b"\r\n", content)


_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


class _Connection:
    """One SMTP client connection on asyncio streams: EHLO once, then transactions with the envelope
    pipelined when the server offers PIPELINING (RFC 2920), and the body sent as it is, dot-stuffed once.

    A general client library re-normalises every body with regular expressions and sends one command per
    round trip; a relay's next hop sees thousands of these a second, so this one does neither. Every wait has
    its own limit (`SmtpTimeouts`), as RFC 5321 §4.5.3.2 sets them.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: SmtpTimeouts) -> None:
        self._reader = reader
        self._writer = writer
        self._limits = limits
        self.extensions: dict[str, str] = {}  # EHLO keyword -> its parameters ("XFORWARD" -> "NAME ADDR ...")
        self.usable = True  # False once the connection is in a state no later transaction can use
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, hop: NextHop) -> _Connection:
        limits = hop.limits
        async with asyncio.timeout(limits.connect):
            reader, writer = await asyncio.open_connection(hop.host, hop.port, limit=1 << 16)
        connection = cls(reader, writer, limits)
        try:
            await connection._hello((hop.helo or _local_name()).encode("ascii", "replace"))
        except BaseException:
            writer.close()
            raise
        return connection

    async def _hello(self, name: bytes) -> None:
        """Greeting, then EHLO (HELO if refused). A refusal is a connection failure: temporary, since a
        next hop that will not talk now may later; it never refuses the message itself."""
        code, text = await self._reply(self._limits.greeting)
        if code != 220:
            raise ConnectionError(f"next hop greeted with {code} {text}")
        code, text = await self._command(b"EHLO " + name + b"\r\n")
        if code == 250:
            self.extensions = {word.upper(): rest for word, _, rest in
                               (line.partition(" ") for line in text.split("\n")[1:] if line)}
            return
        code, text = await self._command(b"HELO " + name + b"\r\n")
        if code != 250:
            raise ConnectionError(f"next hop refused HELO: {code} {text}")

    async def _reply(self, within: float | None) -> tuple[int, str]:
        """One reply, all its lines, within `within` seconds (None: the caller keeps the time); EOF
        (IncompleteReadError), garbage (_ReplyError) and silence (TimeoutError) raise."""
        if within is None:  # inside the caller's clock (a pipelined group's): no clock of its own to set up
            return await self._read_reply()
        async with asyncio.timeout(within):  # a delay from now
            return await self._read_reply()

    async def _read_reply(self) -> tuple[int, str]:
        lines: list[bytes] = []
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                self.usable = False
                raise _ReplyError(451, "4.4.2 next hop sent a reply line over 64 KB") from None
            if len(line) < 4 or not line[:3].isdigit() or line[3:4] not in b" -\r\n" or line[0:1] not in b"2345":
                self.usable = False
                raise _ReplyError(451, "4.4.2 next hop sent no SMTP reply: " + _text(line[:80]).strip())
            lines.append(line[4:].rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), _text(b"\n".join(lines))

    async def transaction(self, mail_from: str, rcpts: Sequence[str], data: bytes, *, smtputf8: bool = False,
                          params: EnvelopeParams | None = None, crlf: bool = False) -> tuple[DeliveryResult, list[str]]:
        """MAIL, RCPT for each, DATA; a 4xx for a recipient aborts the whole (RSET, no DATA), so that a retry
        cannot deliver twice to the others. A connection that was already
        closed when MAIL was sent raises ClosedBeforeMail; trouble after it raises (the result is unknown).

        Also returns the recipients the next hop put off with 452 (too many recipients) after accepting others:
        RFC 5321 §4.5.3.1.10 asks the client to send those in another transaction, not to give up.
        """
        utf8 = smtputf8 and "SMTPUTF8" in self.extensions
        encoding = "utf-8" if utf8 else "ascii"
        paths = [mail_from.encode(encoding), *(r.encode(encoding) for r in rcpts)]
        if any(_CONTROL.search(path) or b">" in path for path in paths):
            raise _ReplyError(501, "5.1.3 an address with a control character cannot be sent")
        params = params or EnvelopeParams()
        dsn = "DSN" in self.extensions
        mail_options = params.mail.options(dsn=dsn)
        if "8BITMIME" not in self.extensions:
            mail_options = [o for o in mail_options if not o.startswith("BODY=")]
        elif params.mail.body is None and not data.isascii():  # declared as it is: 8-bit only when it is
            mail_options.insert(0, "BODY=8BITMIME")
        if utf8:
            mail_options.insert(0, "SMTPUTF8")
        commands = [b"MAIL FROM:<" + paths[0] + b">" + _options(mail_options) + b"\r\n",
                    *(b"RCPT TO:<" + path + b">" + _options(params.rcpt(rcpt).options() if dsn else []) + b"\r\n"
                      for path, rcpt in zip(paths[1:], rcpts, strict=True)), b"DATA\r\n"]
        await self._xforward(params.xforward)
        (mail_code, mail_text), *replies = await self._envelope(commands)
        data_code, data_text = replies.pop() if len(replies) > len(rcpts) else (0, "")
        accepted = [r for r, (code, _) in zip(rcpts, replies, strict=False) if code in (250, 251)]
        perm = {r: reply for r, reply in zip(rcpts, replies, strict=False) if 500 <= reply[0] < 600}
        temp = {r: reply for r, reply in zip(rcpts, replies, strict=False)  # a stray 2xx/3xx: not accepted
                if r not in perm and reply[0] not in (250, 251)}
        later = [r for r, (code, _) in temp.items() if code == 452] if accepted else []
        if len(later) == len(temp):
            temp = {}
        if mail_code != 250 or temp or not accepted:
            await self._abandon(data_code == 354)
            if mail_code != 250:
                return _whole(mail_code, mail_text, rcpts), []
            return DeliveryResult((), {**temp, **dict.fromkeys(accepted, (451, "not sent: retry"))}, perm), []
        if not data_code:
            data_code, data_text = await self._command(b"DATA\r\n", self._limits.data_init)
        if data_code != 354:
            if data_code != 421:
                await self._abandon(in_data=False)  # the next hop keeps the envelope until RSET
            return self._refused(data_code, data_text, accepted, perm), later
        await self._body(dot_stuffed(data, crlf=crlf))
        code, text = await self._reply(self._limits.data_done)
        if code != 250:
            return self._refused(code, text, accepted, perm), later  # those put off still get their own try
        return DeliveryResult(tuple(accepted), {}, perm, without_dsn=() if dsn else tuple(accepted)), later

    async def _xforward(self, values: dict[str, str]) -> None:
        """Tell a next hop that offers XFORWARD who the original client was (only the attributes it names), before
        MAIL; one it refuses is logged by its reply and the message goes on without it."""
        offered = set(self.extensions.get("XFORWARD", "").upper().split())
        attributes = [f"{key}={value}" for key, value in values.items() if key in offered]
        line: list[str] = []
        for attribute in [*attributes, ""]:
            if line and (not attribute or len(" ".join([*line, attribute])) > _XFORWARD_LINE):
                code, text = await self._command(("XFORWARD " + " ".join(line) + "\r\n").encode("ascii"))
                if code == 421:
                    self.usable = False
                    raise ClosedBeforeMail(f"421 {text}")
                if code != 250:  # the message goes on: who sent it is for the logs, not a reason to defer it
                    return
                line = []
            if attribute:
                line.append(attribute)

    async def _body(self, stuffed: bytes) -> None:
        """Write the body a block at a time, each block taken by the socket within `data_block` seconds (no
        wait at all when the socket takes it at once: the usual case)."""
        view = memoryview(stuffed)
        for start in range(0, len(view), _BLOCK):
            self._writer.write(view[start:start + _BLOCK])
            if self._writer.transport.get_write_buffer_size():
                async with asyncio.timeout(self._limits.data_block):
                    await self._writer.drain()

    async def _envelope(self, commands: list[bytes]) -> list[tuple[int, str]]:
        """Replies to MAIL, to each RCPT and (when pipelined) to DATA. Without PIPELINING one command at a
        time, stopping after a refused MAIL, and DATA is left to the caller. A pipelined group's replies arrive
        together: one clock for them all."""
        pipelined = "PIPELINING" in self.extensions
        limits = self._limits
        async with asyncio.timeout(max(limits.command, limits.data_init) if pipelined else limits.command):
            try:
                self._writer.write(b"".join(commands) if pipelined else commands[0])
                mail = await self._reply(None)
            except (OSError, EOFError) as exc:
                raise ClosedBeforeMail(str(exc) or type(exc).__name__) from exc
            if mail[0] == 421:
                self.usable = False
                raise ClosedBeforeMail(f"421 {mail[1]}")
            if pipelined:
                return [mail, *[await self._reply(None) for _ in commands[1:]]]
        if mail[0] != 250:
            return [mail]
        return [mail, *[await self._command(rcpt) for rcpt in commands[1:-1]]]

    async def _abandon(self, in_data: bool) -> None:
        """End a transaction that must not go on: RSET, or close when the server already waits for the body
        (a pipelined DATA was accepted) since nothing else can stop a message there."""
        if not in_data:
            with contextlib.suppress(OSError, EOFError, TimeoutError, _ReplyError):
                await self._command(b"RSET\r\n")
                return
        self.abort()  # RSET failed or timed out (its reply may still come): never reuse this connection

    def _refused(self, code: int, text: str, accepted: Sequence[str],
                 perm: dict[str, tuple[int, str]]) -> DeliveryResult:
        if code == 421:
            self.usable = False
            raise _ReplyError(421, text)
        return _whole(code, text, accepted, perm)

    async def _command(self, line: bytes, within: float | None = None) -> tuple[int, str]:
        self._writer.write(line)
        return await self._reply(self._limits.command if within is None else within)

    def abort(self) -> None:
        """Close at once, without QUIT (and without waiting)."""
        self.usable = False
        self._writer.close()

    async def close(self) -> None:
        """QUIT when the connection can still take it; close in any case."""
        if self.usable and not self._writer.is_closing():
            with contextlib.suppress(OSError, EOFError, TimeoutError, _ReplyError):
                await self._command(b"QUIT\r\n", min(self._limits.command, 5.0))
        self.abort()


_BLOCK = 1 << 16  # bytes of body written before waiting for the socket to take them
_XFORWARD_LINE = 400  # characters of attributes in one XFORWARD command (Postfix reads lines of up to 512)


def _options(words: Sequence[str]) -> bytes:
    if not words:  # the usual case
        return b""
    return b"".join(b" " + word.encode("ascii") for word in words)


def _abort(connection: _Connection | None) -> None:
    if connection is not None:
        connection.abort()
