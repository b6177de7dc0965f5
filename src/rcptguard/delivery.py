"""Handing a message to the next hop over SMTP, with a per-recipient account of what happened.

Used by the relay (forwarding what passes) and by the quarantine (delivering what is released). A
recipient is `accepted` only when the next hop said 250 to its RCPT and to the DATA that followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import smtplib
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_NEXT_HOP = "127.0.0.1:10026"  # Postfix's re-injection port in the content-filter setup


@dataclass(frozen=True, slots=True)
class NextHop:
    host: str
    port: int
    timeout: float = 60.0
    helo: str | None = None

    @classmethod
    def parse(cls, text: str) -> NextHop:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What the next hop did with each recipient."""

    accepted: tuple[str, ...] = ()
    temp_failed: dict[str, tuple[int, str]] = field(default_factory=dict)
    perm_failed: dict[str, tuple[int, str]] = field(default_factory=dict)
    error: str | None = None  # a failure of the whole transaction (connection, MAIL, DATA)

    @property
    def temporary(self) -> bool:
        """Something failed that a later attempt may fix: the whole message should be retried."""
        return bool(self.temp_failed) or (self.error is not None and not self.perm_failed)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def deliver(hop: NextHop, mail_from: str, rcpts: Sequence[str], data: bytes, *,
            smtputf8: bool = False) -> DeliveryResult:
    """One SMTP transaction to the next hop on a new connection (see `transaction`)."""
    if not rcpts:
        return DeliveryResult()
    try:
        with _connect(hop) as smtp:
            return transaction(smtp, mail_from, rcpts, data, smtputf8=smtputf8)
    except (OSError, smtplib.SMTPException) as exc:
        return _failed(hop, exc, rcpts)
    except UnicodeError:
        return _unencodable(rcpts)


def _unencodable(rcpts: Sequence[str]) -> DeliveryResult:
    """An address the next hop cannot take (UTF-8 without SMTPUTF8 there): a permanent failure."""
    text = "5.6.7 the next hop does not support SMTPUTF8, which this address needs"
    return DeliveryResult((), {}, dict.fromkeys(rcpts, (553, text)), error=text)


def _connect(hop: NextHop) -> smtplib.SMTP:
    smtp = smtplib.SMTP(hop.host, hop.port, local_hostname=hop.helo, timeout=hop.timeout)
    smtp.ehlo_or_helo_if_needed()
    return smtp


def _failed(hop: NextHop, exc: Exception, rcpts: Sequence[str]) -> DeliveryResult:
    if isinstance(exc, smtplib.SMTPResponseException) and not isinstance(exc, smtplib.SMTPServerDisconnected):
        return _whole(exc.smtp_code, _text(exc.smtp_error), rcpts)
    return DeliveryResult(error=f"next hop {hop}: {type(exc).__name__}: {exc}",
                          temp_failed=dict.fromkeys(rcpts, (451, "next hop unavailable")))


def transaction(smtp: smtplib.SMTP, mail_from: str, rcpts: Sequence[str], data: bytes, *,
                smtputf8: bool = False) -> DeliveryResult:
    """MAIL, RCPT for each, DATA on an open connection. A recipient refused with 4xx aborts the whole
    transaction (RSET, no DATA), so that a retry of the message cannot deliver twice to the others.
    Connection-level failures raise (OSError, SMTPServerDisconnected)."""
    options: list[str] = []
    if smtputf8 and smtp.has_extn("smtputf8"):
        options.append("SMTPUTF8")
    if smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    try:
        code, reply = smtp.mail(mail_from, options)
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise ClosedBeforeMail(str(exc)) from exc
    if code == 421:
        raise ClosedBeforeMail(f"421 {_text(reply)}")
    if code != 250:
        smtp.rset()
        return _whole(code, _text(reply), rcpts)
    accepted: list[str] = []
    temp: dict[str, tuple[int, str]] = {}
    perm: dict[str, tuple[int, str]] = {}
    for rcpt in rcpts:
        code, reply = smtp.rcpt(rcpt)
        if code in (250, 251):
            accepted.append(rcpt)
        else:
            (perm if 500 <= code < 600 else temp)[rcpt] = (code, _text(reply))  # a stray 2xx/3xx: not accepted
    if temp or not accepted:
        smtp.rset()
        return DeliveryResult((), {**temp, **dict.fromkeys(accepted, (451, "not sent: retry"))}, perm)
    data_reply: bytes | str
    try:
        code, data_reply = smtp.data(data)
    except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
        code, data_reply = exc.smtp_code, exc.smtp_error
    if code == 421:
        raise smtplib.SMTPServerDisconnected(f"421 {_text(data_reply)}")
    if code != 250:
        return _whole(code, _text(data_reply), accepted, perm)
    return DeliveryResult(tuple(accepted), {}, perm)


class ClosedBeforeMail(smtplib.SMTPServerDisconnected):
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
    """

    def __init__(self, hop: NextHop, size: int = 32, idle_limit: float = 60.0) -> None:
        self.hop = hop
        self.size = size
        self.idle_limit = idle_limit  # seconds; servers drop idle sessions (Postfix after 300 s)
        self._idle: list[_Connection] = []

    def _take(self) -> _Connection | None:
        """The most recently used idle connection that is not too old; older ones are closed."""
        while self._idle:
            connection = self._idle.pop()
            if time.monotonic() - connection.last_used < self.idle_limit:
                return connection
            connection.abort()
        return None

    async def deliver(self, mail_from: str, rcpts: Sequence[str], data: bytes, *,
                      smtputf8: bool = False) -> DeliveryResult:
        if not rcpts:
            return DeliveryResult()
        for attempt in range(2):
            connection = self._take() if attempt == 0 else None  # a retry never takes another idle one
            reused = connection is not None
            try:
                if connection is None:
                    connection = await _Connection.open(self.hop)
                result = await connection.transaction(mail_from, rcpts, data, smtputf8=smtputf8)
            except ClosedBeforeMail as exc:
                _abort(connection)
                if reused:
                    self._drop_idle()  # one was stale: the others are as old, and likely stale too
                    continue
                return _failed(self.hop, exc, rcpts)
            except UnicodeError:
                _abort(connection)
                return _unencodable(rcpts)
            except (OSError, EOFError, TimeoutError, _ReplyError) as exc:
                _abort(connection)
                if isinstance(exc, _ReplyError) and exc.code != 421:
                    return _whole(exc.code, exc.text, rcpts)
                return _failed(self.hop, exc, rcpts)
            except BaseException:  # cancelled (the client went away): never leave a half-used session open
                _abort(connection)
                raise
            if connection.usable and len(self._idle) < self.size:
                connection.last_used = time.monotonic()
                self._idle.append(connection)
            else:
                await connection.close()
            return result
        return _failed(self.hop, smtplib.SMTPServerDisconnected("next hop closed the connection"), rcpts)

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.abort()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


class _ReplyError(Exception):
    """A reply that ends the connection's use: a refused greeting or EHLO/HELO, 421, or no SMTP reply."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


@functools.cache
def _local_name() -> str:
    return socket.getfqdn() or "localhost"


def dot_stuffed(data: bytes) -> bytes:
    """The message as DATA sends it: CRLF line endings (bare CR or LF become CRLF), a final CRLF, a dot
    doubled at the start of every line, and the line "." that ends it."""
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
    round trip; a relay's next hop sees thousands of these a second, so this one does neither.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self.extensions: set[str] = set()
        self.usable = True  # False once the connection is in a state no later transaction can use
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, hop: NextHop) -> _Connection:
        async with asyncio.timeout(hop.timeout):
            reader, writer = await asyncio.open_connection(hop.host, hop.port, limit=1 << 16)
            connection = cls(reader, writer, hop.timeout)
            try:
                await connection._hello((hop.helo or _local_name()).encode("ascii", "replace"))
            except BaseException:
                writer.close()
                raise
        return connection

    async def _hello(self, name: bytes) -> None:
        """Greeting, then EHLO (HELO if refused). A refusal is a connection failure: temporary, since a
        next hop that will not talk now may later; it never refuses the message itself."""
        code, text = await self._reply()
        if code != 220:
            raise ConnectionError(f"next hop greeted with {code} {text}")
        code, text = await self._command(b"EHLO " + name + b"\r\n")
        if code == 250:
            self.extensions = {line.split(" ", 1)[0].upper() for line in text.split("\n")[1:] if line}
            return
        code, text = await self._command(b"HELO " + name + b"\r\n")
        if code != 250:
            raise ConnectionError(f"next hop refused HELO: {code} {text}")

    async def _reply(self) -> tuple[int, str]:
        """One reply, all its lines; EOF (IncompleteReadError) or garbage (_ReplyError) raise."""
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

    async def transaction(self, mail_from: str, rcpts: Sequence[str], data: bytes, *,
                          smtputf8: bool = False) -> DeliveryResult:
        """MAIL, RCPT for each, DATA, as `transaction` does with smtplib. A connection that was already
        closed when MAIL was sent raises ClosedBeforeMail; trouble after it raises (the result is unknown)."""
        utf8 = smtputf8 and "SMTPUTF8" in self.extensions
        encoding = "utf-8" if utf8 else "ascii"
        paths = [mail_from.encode(encoding), *(r.encode(encoding) for r in rcpts)]
        if any(_CONTROL.search(path) or b">" in path for path in paths):
            raise _ReplyError(501, "5.1.3 an address with a control character cannot be sent")
        options = (b" SMTPUTF8" if utf8 else b"") + (b" BODY=8BITMIME" if "8BITMIME" in self.extensions else b"")
        commands = [b"MAIL FROM:<" + paths[0] + b">" + options + b"\r\n",
                    *(b"RCPT TO:<" + path + b">\r\n" for path in paths[1:]), b"DATA\r\n"]
        async with asyncio.timeout(self._timeout):
            (mail_code, mail_text), *replies = await self._envelope(commands)
            data_code, data_text = replies.pop() if len(replies) > len(rcpts) else (0, "")
            accepted = [r for r, (code, _) in zip(rcpts, replies, strict=False) if code in (250, 251)]
            perm = {r: reply for r, reply in zip(rcpts, replies, strict=False) if 500 <= reply[0] < 600}
            temp = {r: reply for r, reply in zip(rcpts, replies, strict=False)  # a stray 2xx/3xx: not accepted
                    if r not in perm and reply[0] not in (250, 251)}
            if mail_code != 250 or temp or not accepted:
                await self._abandon(data_code == 354)
                if mail_code != 250:
                    return _whole(mail_code, mail_text, rcpts)
                return DeliveryResult((), {**temp, **dict.fromkeys(accepted, (451, "not sent: retry"))}, perm)
            if not data_code:
                data_code, data_text = await self._command(b"DATA\r\n")
            if data_code != 354:
                if data_code != 421:
                    await self._abandon(in_data=False)  # the next hop keeps the envelope until RSET
                return self._refused(data_code, data_text, accepted, perm)
        async with asyncio.timeout(self._timeout + len(data) / 1_000_000):  # a second more per megabyte
            self._writer.write(dot_stuffed(data))
            await self._writer.drain()
            code, text = await self._reply()
        if code != 250:
            return self._refused(code, text, accepted, perm)
        return DeliveryResult(tuple(accepted), {}, perm)

    async def _envelope(self, commands: list[bytes]) -> list[tuple[int, str]]:
        """Replies to MAIL, to each RCPT and (when pipelined) to DATA. Without PIPELINING one command at a
        time, stopping after a refused MAIL, and DATA is left to the caller."""
        pipelined = "PIPELINING" in self.extensions
        try:
            self._writer.write(b"".join(commands) if pipelined else commands[0])
            mail = await self._reply()
        except (OSError, EOFError) as exc:
            raise ClosedBeforeMail(str(exc) or type(exc).__name__) from exc
        if mail[0] == 421:
            self.usable = False
            raise ClosedBeforeMail(f"421 {mail[1]}")
        if pipelined:
            return [mail, *[await self._reply() for _ in commands[1:]]]
        if mail[0] != 250:
            return [mail]
        return [mail, *[await self._command(rcpt) for rcpt in commands[1:-1]]]

    async def _abandon(self, in_data: bool) -> None:
        """End a transaction that must not go on: RSET, or close when the server already waits for the body
        (a pipelined DATA was accepted) since nothing else can stop a message there."""
        if not in_data:
            with contextlib.suppress(OSError, EOFError, _ReplyError):
                await self._command(b"RSET\r\n")
                return
        self.abort()

    def _refused(self, code: int, text: str, accepted: Sequence[str],
                 perm: dict[str, tuple[int, str]]) -> DeliveryResult:
        if code == 421:
            self.usable = False
            raise _ReplyError(421, text)
        return _whole(code, text, accepted, perm)

    async def _command(self, line: bytes) -> tuple[int, str]:
        self._writer.write(line)
        return await self._reply()

    def abort(self) -> None:
        """Close at once, without QUIT (and without waiting)."""
        self.usable = False
        self._writer.close()

    async def close(self) -> None:
        """QUIT when the connection can still take it; close in any case."""
        if self.usable and not self._writer.is_closing():
            with contextlib.suppress(OSError, EOFError, TimeoutError, _ReplyError):
                async with asyncio.timeout(min(self._timeout, 5.0)):
                    await self._command(b"QUIT\r\n")
        self.abort()


def _abort(connection: _Connection | None) -> None:
    if connection is not None:
        connection.abort()
