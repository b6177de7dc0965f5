"""An SMTP relay and Postfix after-queue content filter that holds mistyped recipients in a quarantine.

    Postfix -> 127.0.0.1:10025 (rcptguard relay) -> 127.0.0.1:10026 (back into Postfix, or any next hop)

Per recipient, at RCPT time the guard decides; after DATA the message is split:

    pass    forwarded to the next hop unchanged
    warn    forwarded unchanged; the sender (never the recipient) gets a short notice, once a day per domain
            (per address when history doubts the person, not the domain)
    hold    stored in the quarantine (idempotent: a redelivered message is held once)
    reject  refused at RCPT with the explanation (550 5.7.1)

The reply after DATA is 250 only when every recipient is accounted for: the held copy is durably stored and
the next hop accepted the forwarded ones. Otherwise 4xx, so the sending MTA keeps the message and retries
(a retry may repeat a delivery once; it never loses one). Recipients the next hop refuses permanently get a
DSN to the sender (or, when nothing else was accepted, the 5xx itself). Any internal error is
`451 4.3.0`, never a 5xx, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import email.policy
import email.utils
import hashlib
import ipaddress
import logging
import re
import resource
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import jinja2
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from rcptguard import logs
from rcptguard.content import Severity, raise_verdict, scan_light, scan_message
from rcptguard.content.settings import ContentSettings
from rcptguard.delivery import (
    DEFAULT_NEXT_HOP,
    AsyncPool,
    DeliveryResult,
    NextHop,
    SmtpTimeouts,
    Transport,
    normalise_line_endings,
)
from rcptguard.dsn import (
    XFORWARD_ATTRIBUTES,
    DsnError,
    EnvelopeParams,
    MailParams,
    RcptParams,
    parse_xforward,
    split_params,
    xtext_decode,
)
from rcptguard.history import HistorySettings
from rcptguard.metrics import Metrics, check_metrics_listen
from rcptguard.model import Action, Verdict
from rcptguard.notify import Flagged, NoticeLinks, Notifier, Warned, send_owed, wants_notice
from rcptguard.outbox import Backoff, Outbox
from rcptguard.runtime import GuardFactory, Runtime, raise_fd_limit, serve_until_stopped
from rcptguard.settings import Settings, invalid
from rcptguard.store import Store, StoreError
from rcptguard.store.links import Links
from rcptguard.store.quarantine import HeldRecipient, Quarantine, summarize
from rcptguard.world import DnsSettings, World, consult

from .replies import RELAY_REPLIES, Relayed, ascii_line, rcpt_reply

log = logging.getLogger("rcptguard.relay")

TEMPFAIL = str(RELAY_REPLIES[Relayed.INTERNAL])
_RESERVED_FILES = 64  # open files kept free of client connections: the store, the listening socket, logs
DEFAULT_SIZE_LIMIT = 64 * 1024 * 1024  # above Postfix's message_size_limit default (10 MB)


@dataclass(frozen=True, slots=True)
class RelaySettings(Settings):
    """The `[relay]` section of the config file (limits and timeouts: docs/relay.md, "Limits and timeouts")."""

    next_hop: str = DEFAULT_NEXT_HOP
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # client networks that may send through the relay
    size_limit: int = DEFAULT_SIZE_LIMIT
    hostname: str | None = None
    reject_status: str = "5.7.1"
    warn_notice: bool = True  # tell the sender of a warned recipient (the recipient is never told)
    warn_notice_interval: float = 86400.0  # at most one such notice per sender and domain (or address), seconds
    flush_interval: float = 2.0
    rebuild_interval: float = 60.0
    retry_interval: float = 30.0  # seconds between the outbox's rounds (deferred releases, owed notices)
    retry_backoff: float = 60.0  # a deferred release waits this long before its next try, twice as long each time
    retry_backoff_max: float = 3600.0  # and never longer than this
    give_up_days: float = 5.0  # a released message the next hop defers this long fails; its sender is told
    workers: int = 32  # connections to the next hop kept open between messages
    notify: bool = True  # send each sender of a held message a notice with a link to the confirmation page
    base_url: str = "http://127.0.0.1:8025"  # where `rcptguard web` is reached by senders ([web] base_url)
    notice_from: str = ""  # From: of notices (default MAILER-DAEMON@hostname)
    link_days: float = 7.0  # how long a confirmation link works; held mail expires after the same time
    template_dir: str | None = None  # operator's notice templates ([notify] template_dir)
    name_deciders: bool = False  # notices of an administrator's decision name who decided ([notify])
    # -- limits and timeouts towards the clients (Postfix) --
    idle_timeout: float = 300.0  # a client that sends nothing this long is disconnected (RFC 5321 §4.5.3.2.7)
    data_time_limit: float = 3600.0  # the whole of one message's DATA, however steadily it trickles in
    reply_within: float = 540.0  # answer the final dot within this, before the client's own limit (Postfix: 600 s)
    max_connections: int = 400  # client connections at once, in total
    max_connections_per_client: int = 200  # and from one address
    junk_command_limit: int = 100  # NOOP, RSET, HELP, VRFY without a message between them
    claim_timeout: float = 3600.0  # a release or notice being sent this long is a dead worker's: taken over
    metrics_listen: str = ""  # HOST:PORT of its Prometheus metrics (GET /metrics); empty: not served
    # -- towards the next hop: RFC 5321 §4.5.3.2 by default ([relay.timeouts]; see delivery.SmtpTimeouts) --
    timeouts: SmtpTimeouts = field(default_factory=SmtpTimeouts)
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(), compare=False, metadata={"derived": True})  # `allow`, parsed

    def check(self) -> None:
        check_metrics_listen(self.metrics_listen)
        try:
            self.derive("networks", tuple(ipaddress.ip_network(n, strict=False) for n in self.allow))
        except (TypeError, ValueError) as exc:
            raise invalid("allow", str(exc)) from None
        try:
            NextHop.parse(self.next_hop)
        except ValueError as exc:
            raise invalid("next_hop", str(exc)) from None
        for name in ("workers", "max_connections", "max_connections_per_client", "junk_command_limit"):
            if getattr(self, name) < 1:
                raise invalid(name, "at least 1")
        if self.claim_timeout <= self.timeouts.longest_send():
            raise invalid("claim_timeout", f"{self.claim_timeout:g} s is not longer than the longest send the "
                          f"next-hop timeouts allow ({self.timeouts.longest_send():g} s): a slow send would be "
                          "taken over and sent twice")

    @property
    def claim_window(self) -> dt.timedelta:
        """`claim_timeout` as the quarantine takes it."""
        return dt.timedelta(seconds=self.claim_timeout)

    @property
    def hop(self) -> NextHop:
        """The next hop, with the configured timeouts."""
        return NextHop.parse(self.next_hop, self.timeouts)

    def notice_links(self, store: Store) -> NoticeLinks:
        """How held notices get their links: on the page at `base_url`, valid for `link_days`."""
        return NoticeLinks(Links(store), self.base_url, dt.timedelta(days=self.link_days))

    def notifier(self, sender: str | None = None) -> Notifier:
        """The notices to senders as these settings make them (`[notify]`, which `[relay]` may override): the
        relay, the page and the CLI send the same notices."""
        return Notifier(host=self.hostname or "", sender=sender or self.notice_from, name_deciders=self.name_deciders,
                        template_dir=Path(self.template_dir) if self.template_dir else None)


_OWN_HEADER = re.compile(rb"(?im)^x-rcptguard-[^:\r\n]*:.*(?:\r\n[ \t].*)*\r\n")


def original_client(xforward: dict[str, str]) -> str:
    """The client Postfix received the message from, as XFORWARD told it ("mx.example.org[192.0.2.1]"), or ""."""
    known = {k: xtext_decode(v) for k, v in xforward.items() if v not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]")}
    if "ADDR" not in known:
        return ""
    return f"{known.get('NAME', 'unknown')}[{known['ADDR']}]"


def without_own_headers(content: bytes) -> bytes:
    """The message without any `X-Rcptguard-*` header fields it arrived with (folded lines included): a header
    of ours is only what the guard itself says. The body is never touched."""
    end = content.find(b"\r\n\r\n")
    head = content if end < 0 else content[:end + 2]
    if b"x-rcptguard-" not in head.lower():
        return content
    return _OWN_HEADER.sub(b"", head) + content[len(head):]


def dsn(mail_from: str, failed: dict[str, tuple[int, str]], hostname: str) -> bytes:
    """A delivery status notification (RFC 3464) for recipients the next hop refused permanently."""
    boundary = email.utils.make_msgid().strip("<>").replace("@", ".")
    lines = "\r\n".join(f"  {rcpt}: {code} {ascii_line(text, 300)}" for rcpt, (code, text) in failed.items())
    status = "\r\n".join(
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.0.0\r\n"
        f"Diagnostic-Code: smtp; {code} {ascii_line(text, 300)}\r\n" for rcpt, (code, text) in failed.items())
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\nTo: {mail_from}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nDate: {email.utils.formatdate()}\r\n"
        f"Message-ID: {email.utils.make_msgid(domain=hostname)}\r\nAuto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
        f'boundary="{boundary}"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n'
        f"Your message could not be delivered to these recipients:\r\n\r\n{lines}\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {hostname}\r\n\r\n"
        f"{status}\r\n--{boundary}--\r\n").encode()


@dataclass(frozen=True, slots=True)
class WarningNotice:
    """The notice a sender is owed about warned recipients of one message: those of the domains (or, for a person
    doubted, the addresses) it was not told about in the last `warn_notice_interval` (per sender; `Warned`). The
    relay and the milter send it."""

    mail_from: str
    flagged: list[Flagged]
    topics: list[str]

    @classmethod
    def due(cls, warned: Warned, mail_from: str, recipients: Sequence[tuple[str, Verdict]]) -> WarningNotice | None:
        """The notice for the recipients whose topics are due (remembered as told now), or None."""
        topics = {rcpt: Warned.topic(rcpt, verdict) for rcpt, verdict in recipients}
        due = sorted(topic for topic in dict.fromkeys(topics.values()) if warned.due(mail_from, topic))
        fresh = [Flagged.of(verdict) for rcpt, verdict in recipients if topics[rcpt] in due]
        return cls(mail_from, fresh, due) if fresh else None

    def compose(self, notifier: Notifier, content: bytes, interval: float) -> bytes:
        subject, message_id = summarize(content)
        return notifier.warned(self.mail_from, self.flagged, subject, dt.timedelta(seconds=interval),
                               in_reply_to=message_id)

    def not_sent(self, warned: Warned, exc: Exception) -> None:
        """It could not be stored: forgotten as told, so the next message may try again; logged."""
        warned.forget(self.mail_from, self.topics)
        logs.event(log, "warning notice not queued", logging.WARNING, sender=self.mail_from,
                   recipients=[f.recipient for f in self.flagged], error=f"{type(exc).__name__}: {exc}")


_PLAIN_PATH = re.compile(r"[ \t]*<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                         r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(.*)\Z", re.DOTALL)
_PATH = re.compile(r"(?i:FROM|TO):[ \t]*<[^<>\x00-\x1f\x7f]*>(?:[ \t]+[^\x00-\x1f\x7f]*)?\Z")


_END_OF_DATA = b"\r\n.\r\n"
_DRAIN = 1 << 30  # more than a StreamReader ever buffers: one read() takes all it has


class _CRLFLines:
    """A StreamReader whose command lines end only at CRLF: a bare LF stays inside the line (and the path
    check below refuses it) instead of ending a command early."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """The next command line. At the end of the stream (the client closed, or half-closed after its last
        command was answered) the session ends quietly: aiosmtpd's loop takes CancelledError as a closed peer."""
        try:
            return await self._reader.readuntil(b"\r\n" if separator == b"\n" else separator)
        except asyncio.IncompleteReadError:
            raise asyncio.CancelledError from None

    def _put_back(self, rest: bytes) -> None:
        """Bytes read past the end of a message go back in front of the reader, also after the client
        half-closed (StreamReader.feed_data refuses data after EOF; its buffer does not)."""
        if not self._reader.at_eof():  # read() emptied the buffer: at EOF only if the client half-closed
            self._reader.feed_data(rest)  # no await since read(): this puts it back in front
        else:
            self._reader._buffer[0:0] = rest  # type: ignore[attr-defined]  # noqa: SLF001

    async def read_data(self, size_limit: int | None, progress: Callable[[], None] = lambda: None,
                        time_limit: float | None = None) -> bytes | None:
        """The message after DATA, dots unstuffed, read in whatever chunks arrive rather than line by line.

        It ends where aiosmtpd's own loop would end it: at the first line that is a single dot between
        CRLFs (the CRLF that ended the DATA command counts as the one before a first line). A bare CR or
        LF never ends a line here. None when the message is longer than `size_limit`: it is read to its
        end and dropped. Bytes after the end (a pipelined next command) go back to the reader.

        `progress` is called as data arrives (the caller's idle timer restarts); the whole message must arrive
        within `time_limit` seconds (TimeoutError).
        """
        reader = self._reader
        buffer = bytearray(b"\r\n")
        searched = 0
        too_big = False
        deadline = None if time_limit is None else time.monotonic() + time_limit
        while True:
            chunk = await reader.read(_DRAIN)  # the reader's buffer is empty after this
            if not chunk:  # end of stream before the end of the message: nothing of it is taken
                raise asyncio.CancelledError
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError
            progress()
            buffer += chunk
            end = buffer.find(_END_OF_DATA, searched)
            if end >= 0:
                rest = buffer[end + len(_END_OF_DATA):]
                if rest:
                    self._put_back(bytes(rest))
                if too_big or (size_limit and end > size_limit):
                    return None
                body = buffer[:end + 2]
                if b"\r\n." in body:
                    body = body.replace(b"\r\n.", b"\r\n")
                return bytes(body[2:])
            searched = max(len(buffer) - len(_END_OF_DATA) + 1, 0)
            if too_big or (size_limit and searched > size_limit):  # the message is at least `searched` long
                too_big = True  # read on to the end, keeping only what may be the start of it
                del buffer[:searched]
                searched = 0

    def line_waiting(self) -> bool:
        """Whether a whole command line has already arrived (the client pipelines)."""
        return b"\r\n" in getattr(self._reader, "_buffer", b"")  # StreamReader has no public peek

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - everything else is the StreamReader's
        return getattr(self._reader, name)


class DoorLimits(Protocol):
    """The limit GuardedSMTP reads from its handler's settings."""

    @property
    def junk_command_limit(self) -> int: ...


class Door(Protocol):
    """What GuardedSMTP asks of its handler, besides aiosmtpd's hooks: the relay's (RelayHandler) and the typo
    domains' sink (gateways.sink.SinkHandler) answer alike."""

    @property
    def settings(self) -> DoorLimits: ...

    def admit(self, peer: object) -> str | None: ...

    def left(self, peer: object) -> None: ...

    def limit_hit(self, limit: str, peer: object) -> None: ...

    def malformed(self, address: str) -> str | None: ...


class GuardedSMTP(SMTP):
    """aiosmtpd's SMTP, strict about command lines and paths: a command ends at CRLF only, and a path must
    be a closed `<...>` with no CR or LF inside, so `RCPT TO:<a@arm\ny.mil>` is refused, not cut short.
    DATA is read in chunks (aiosmtpd reads it a line at a time: most of a relay's time per message).

    Its clock: a session idle for `idle_timeout` is closed, and commands that move no mail (NOOP, RSET, HELP,
    VRFY) do not restart it, nor may a client send more than `junk_command_limit` of them between messages.
    DATA restarts it with every chunk that arrives (a slow, steady sender is not idle), within the overall
    `data_time_limit`; while the relay forwards the message, the client's clock stands still.
    """

    line_length_limit = 1 << 16  # of a command line; message lines may be any length (normalised later)
    event_handler: Door
    _held: list[bytes]
    _pipelined = False  # inside MAIL or RCPT: their replies may wait for the next one
    _admitted = False  # counted among the open connections (see RelayHandler.admit)
    _deadline = 0.0  # when the idle timer fires (loop time)
    _junk = 0  # junk commands since the last MAIL

    def _cb_client_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held = []
        super()._cb_client_connected(cast("asyncio.StreamReader", _CRLFLines(reader)), writer)

    async def _handle_client(self) -> None:
        """Refuse a client before the greeting when it may not send, or when too many are connected."""
        assert self.session is not None
        refusal = self.event_handler.admit(self.session.peer)
        if refusal is not None:
            await self.push(refusal)
            if self.transport is not None:
                self.transport.close()
            return
        self._admitted = True
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self.event_handler.left(self.session.peer if self.session is not None else None)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        """The client closed its side. aiosmtpd would cancel the session at once, dropping a complete message
        whose final dot and QUIT arrived with the EOF; here what arrived is still read and answered, and the
        session ends when the reader runs dry."""
        if self.session is not None and self.session.ssl is not None:
            return super().eof_received()
        return asyncio.StreamReaderProtocol.eof_received(self)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd restarts the idle timer for every command with a new timer; here the deadline moves and one
        timer follows it (set again for the deadline when it fires early), so a command sets no timer at all."""
        self._deadline_before = self._deadline
        deadline = self._deadline = self.loop.time() + (duration or self._timeout_duration or 0)
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._timeout_cb)

    def _timeout_cb(self) -> None:
        if self.loop.time() < self._deadline:  # the session was active since the timer was set: not idle yet
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)
            return
        super()._timeout_cb()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it untyped

    def _keep_deadline(self, deadline: float) -> None:
        """Put the idle timer back to `deadline` (aiosmtpd restarts it for every command)."""
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        self._timeout_handle = self.loop.call_at(deadline, self._timeout_cb)
        self._deadline = deadline

    def _stop_clock(self) -> None:
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()

    async def _junk_command(self, command: Callable[[str | None], Coroutine[Any, Any, None]],
                            arg: str | None) -> None:
        """NOOP, RSET, HELP, VRFY: answered, but they do not keep an idle session alive, and too many close it."""
        deadline = self._deadline_before
        self._junk += 1
        if self._junk > self.event_handler.settings.junk_command_limit:
            self.event_handler.limit_hit("junk commands", self.session.peer if self.session else None)
            await self.push(str(RELAY_REPLIES[Relayed.JUNK_COMMANDS]))
            if self.transport is not None:
                self.transport.close()
            return
        self._keep_deadline(deadline)
        await command(arg)

    _deadline_before = 0.0  # the deadline before aiosmtpd restarted the timer for the current command

    async def push(self, status: str | bytes) -> None:
        """Send a reply; with fewer writes than aiosmtpd (one per line): the lines of a multi-line reply go
        out together, and so do the replies to MAIL and RCPT when the client pipelined the next command
        (RFC 2920). A held reply always goes out with the next one, and no held reply can close a session."""
        line = (status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") if isinstance(status, str)
                else status) + b"\r\n"
        if line[3:4] == b"-" or (self._pipelined and cast("_CRLFLines", self._reader).line_waiting()):
            self._held.append(line)
            return
        if self._held:
            line = b"".join((*self._held, line))
            self._held.clear()
        self._writer.write(line)
        transport = self._writer.transport
        if transport.get_write_buffer_size() or transport.is_closing():  # wait for the socket, or raise if it is gone
            await self._writer.drain()

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        await self._junk_command(super().smtp_NOOP, arg)

    @syntax("RSET")
    async def smtp_RSET(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        await self._junk_command(super().smtp_RSET, arg)

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        await self._junk_command(super().smtp_HELP, arg)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        await self._junk_command(super().smtp_VRFY, arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command name
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if self.envelope is None or not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        reader = cast("_CRLFLines", self._reader)
        handler = cast("RelayHandler", self.event_handler)  # the relay's: the sink never reads DATA
        settings = handler.settings
        last_reset = time.monotonic()
        every = min(1.0, (self._timeout_duration or 1.0) / 4)

        def progress() -> None:  # data arrives: the client is not idle (the timer restarted now and then)
            nonlocal last_reset
            now = time.monotonic()
            if now - last_reset >= every:
                last_reset = now
                self._reset_timeout()

        try:
            content = await reader.read_data(self.data_size_limit, progress, settings.data_time_limit)
        except asyncio.CancelledError:
            self._writer.close()
            raise
        except TimeoutError:
            self.event_handler.limit_hit("DATA time limit", self.session.peer if self.session else None)
            await self.push(str(RELAY_REPLIES[Relayed.DATA_TOO_SLOW]))
            if self.transport is not None:
                self.transport.close()
            return
        if content is None:
            self.envelope = self._create_envelope()
            await self.push("552 5.3.4 Error: Too much mail data")
            return
        self.envelope.content = self.envelope.original_content = content
        self._stop_clock()  # forwarding is the relay's time, not the client's
        try:
            assert self.session is not None
            status = await handler.handle_DATA(self, self.session, self.envelope)
        finally:
            if self.transport is not None:  # not after the client went away: nothing is left to time out
                self._reset_timeout()
        self.envelope = self._create_envelope()
        self._junk = 0
        await self.push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # A plain <local@domain> in one match; anything else through aiosmtpd's full RFC 5322 parser
        # (which also defines a class on every call: a third of the relay's time per message).
        plain = _PLAIN_PATH.match(arg)
        if plain is not None and len(plain[1].rpartition("@")[0]) <= (self.local_part_limit or 64):
            return plain[1], plain[2]
        result: tuple[str | None, str | None] = super()._getaddr(arg)
        return result

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        self._junk = 0  # a transaction begins: RSETs between the messages of a cached connection are no junk
        await self._path_command(arg, "MAIL FROM:<address>", super().smtp_MAIL)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        await self._path_command(arg, "RCPT TO:<address>", super().smtp_RCPT)

    @syntax("XFORWARD attribute=value ...")
    async def smtp_XFORWARD(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        """Postfix's XFORWARD (XFORWARD_README): the original client of the message that follows, as a content
        filter's client (Postfix's smtp) knows it; kept for this transaction, logged, and said again to the next
        hop when it offers XFORWARD."""
        assert self.session is not None
        assert self.envelope is not None
        if not self.session.extended_smtp:
            await self.push("503 5.5.1 Error: send EHLO first")
        elif self.envelope.mail_from is not None:
            await self.push("503 5.5.1 Error: XFORWARD not allowed during a mail transaction")
        else:
            try:
                values = parse_xforward(arg or "")
            except DsnError as exc:
                await self.push(str(exc))
                return
            forwarded: dict[str, str] = getattr(self.envelope, "xforward", {})
            self.envelope.xforward = {**forwarded, **values}  # type: ignore[attr-defined]
            await self.push("250 2.0.0 Ok")

    def _take_params(self, arg: str, kind: str) -> str:
        """Take the parameters the guard carries on (DSN's and BODY) out of a MAIL or RCPT argument and keep them
        for the handler's hook (`self.params`); the rest goes to aiosmtpd, which refuses what nobody knows with
        555. DsnError for a malformed one."""
        head, _, rest = arg.partition(">")
        if not rest.strip() or self.session is None or not self.session.extended_smtp:
            self.params: MailParams | RcptParams = MailParams() if kind == "MAIL" else RcptParams()
            return arg
        params = split_params(rest)
        self.params = MailParams.take(params) if kind == "MAIL" else RcptParams.take(params)
        for key in params:
            if key not in ("SMTPUTF8", "SIZE"):
                raise DsnError(f"{key} is not carried on by this relay", code="555")
        return head + ">" + "".join(f" {key}={value}" if value else f" {key}" for key, value in params.items())

    async def _path_command(self, arg: str | None, usage: str,
                            command: Callable[[str | None], Coroutine[Any, Any, None]]) -> None:
        """MAIL or RCPT: a strict path first; its reply may wait for the next one when the client pipelines."""
        if arg is not None and not _PATH.match(arg):
            await self.push(f"501 5.5.4 Syntax: {usage}")
            return
        if arg is not None:
            try:
                arg = self._take_params(arg, usage[:4])
            except DsnError as exc:
                await self.push(str(exc))
                return
        self._pipelined = True
        if usage.startswith("RCPT") and arg is not None and not _PLAIN_PATH.match(arg[3:]):
            malformed = self.event_handler.malformed(arg[3:].strip().partition(">")[0].lstrip("<"))
            if malformed is not None:  # say why, as `rcptguard check` does, not aiosmtpd's "malformed address"
                try:
                    await self.push(malformed)
                finally:
                    self._pipelined = False
                return
        try:
            await command(arg)
        finally:
            self._pipelined = False


class AcceptedCopies:
    """What the next hop already settled of a message (per copy, plain or warned: the recipients it accepted or
    refused for good) while the message itself was answered 4xx: another copy, another part of a split copy, or
    the delivery report was deferred, or the answer came too late for the client. When the client retries the
    message, only what is not settled is sent: a retry repeats nothing. In memory, bounded by count and age."""

    def __init__(self, size: int = 10_000, ttl: float = 5 * 86_400.0) -> None:
        self.size = size
        self.ttl = ttl  # the sending MTA's queue lifetime: it will not retry after that (Postfix: 5 days)
        self._copies: OrderedDict[bytes, tuple[float, DeliveryResult]] = OrderedDict()

    @staticmethod
    def _key(mail_from: str, rcpts: Sequence[str], body: bytes) -> bytes:
        envelope = "\0".join((mail_from, *rcpts)).encode("utf-8", "surrogateescape")
        return hashlib.sha256(envelope + b"\0\0" + body).digest()

    def __bool__(self) -> bool:
        return bool(self._copies)

    def get(self, mail_from: str, rcpts: Sequence[str], body: bytes) -> DeliveryResult | None:
        if not self._copies:  # the usual case: nothing was deferred, so nothing to hash
            return None
        found = self._copies.get(self._key(mail_from, rcpts, body))
        if found is None or time.monotonic() - found[0] > self.ttl:
            return None
        return found[1]

    def remember(self, mail_from: str, sent: Sequence[Copy]) -> None:
        for rcpts, body, result in sent:
            key = self._key(mail_from, rcpts, body)
            self._copies[key] = (time.monotonic(), result.settled)
            self._copies.move_to_end(key)
        while len(self._copies) > self.size:
            self._copies.popitem(last=False)

    def forget(self, mail_from: str, sent: Sequence[Copy]) -> None:
        if self._copies:
            for rcpts, body, _ in sent:
                self._copies.pop(self._key(mail_from, rcpts, body), None)


Copy = tuple[list[str], bytes, DeliveryResult]  # recipients, the body sent to them, what the next hop did


_ADDRESSES_REMEMBERED = 4096  # client addresses whose `allow` answer is kept


def _address(peer: object) -> str:
    """The client's IP address from aiosmtpd's peer (host, port, ...) tuple; "" if it has none."""
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


class RelayHandler:
    """aiosmtpd hooks: decide at RCPT, split and account for every recipient after DATA."""

    def __init__(self, runtime: Runtime, quarantine: Quarantine, settings: RelaySettings) -> None:
        self.runtime = runtime
        self.quarantine = quarantine
        self.settings = settings
        self.next_hop = settings.hop
        self.hostname = settings.hostname or socket.getfqdn() or "localhost"
        self.pool: Transport = AsyncPool(self.next_hop, size=settings.workers)
        self.notices_due = asyncio.Event()  # something to send now, not at the next round:
        self.owed: set[str] = set()  # the messages whose held notices are owed since
        self.queued: set[str] = set()  # and the outgoing mail stored since
        self.notifier = settings.notifier()
        self.outbox = Outbox(quarantine, backoff=Backoff(settings.retry_backoff, settings.retry_backoff_max),
                             notifier=self.notifier)
        self.accepted = 0
        self.copies = AcceptedCopies()
        self.connections: Counter[str] = Counter()  # open client connections by address
        self.late: dict[bytes, asyncio.Task[str]] = {}  # messages still being handled after their answer was due
        self.answered_late: OrderedDict[bytes, tuple[float, str]] = OrderedDict()  # and the 250s they ended with
        self.warned = Warned(settings.warn_notice_interval, self.copies.size)  # who heard of which domain lately
        # (or, for a person doubted, which address)
        self._limit_logged: dict[str, float] = {}
        self._allowed_addresses: dict[str, bool] = {}  # client address -> in `allow` (`_allowed`)
        self.world: World | None = None  # the world's evidence (DNS), when on: `build` sets it from [dns]
        self.content = ContentSettings()  # the sensitivity scanner ([content]); `build` sets it
        self.metrics = Metrics("relay", quarantine.store)
        self.metrics.watch(runtime)

    def fit_connections(self, open_files: int) -> None:
        """Lower the connection limits to what `open_files` allows (keeping room for the store, the next hop's
        connections and the log): a relay out of file descriptors accepts nobody, the legitimate client included.
        When the total is lowered, one client gets at most half of it."""
        settings = self.settings
        total = min(settings.max_connections, max(open_files - settings.workers - _RESERVED_FILES, 2))
        share = total if total == settings.max_connections else max(total // 2, 1)
        per_client = min(settings.max_connections_per_client, share)
        if (total, per_client) != (settings.max_connections, settings.max_connections_per_client):
            logs.event(log, "connection limits lowered", logging.WARNING, open_files=open_files,
                       max_connections=total, max_connections_per_client=per_client)
            self.settings = dataclasses.replace(settings, max_connections=total,
                                                max_connections_per_client=per_client)

    def admit(self, peer: object) -> str | None:
        """None when a new client connection may go on (it is counted until `left`), else the reply that closes it:
        554 for a client outside `allow`, 421 when too many are connected (in total or from this client)."""
        if not self._allowed(peer):
            self.limit_hit("client not allowed", peer)
            return str(RELAY_REPLIES[Relayed.NOT_ALLOWED])
        address = _address(peer)
        settings = self.settings
        if self.connections.total() >= settings.max_connections:
            self.limit_hit("max_connections", peer)
            return str(RELAY_REPLIES[Relayed.TOO_MANY_CONNECTIONS])
        if self.connections[address] >= settings.max_connections_per_client:
            self.limit_hit("max_connections_per_client", peer)
            return str(RELAY_REPLIES[Relayed.TOO_MANY_FROM_CLIENT])
        self.connections[address] += 1
        return None

    def left(self, peer: object) -> None:
        address = _address(peer)
        self.connections[address] -= 1
        if self.connections[address] <= 0:
            del self.connections[address]

    def limit_hit(self, limit: str, peer: object) -> None:
        """Log that a limit refused or closed a client: at most once a minute per limit, with the count since."""
        now = time.monotonic()
        key = f"{limit}:{_address(peer)}"
        self._limit_logged.setdefault(f"{key}:count", 0.0)
        self._limit_logged[f"{key}:count"] += 1
        if now - self._limit_logged.get(key, -3600.0) >= 60.0:
            count = int(self._limit_logged.pop(f"{key}:count"))
            self._limit_logged[key] = now
            logs.event(log, "limit hit", logging.WARNING, limit=limit, client=_address(peer), times=count,
                       connections=self.connections.total())

    def _allowed(self, peer: object) -> bool:
        """Whether the client's address is in `allow` (asked at connect, MAIL and RCPT: remembered by address)."""
        text = _address(peer)
        allowed = self._allowed_addresses.get(text)
        if allowed is None:
            if len(self._allowed_addresses) >= _ADDRESSES_REMEMBERED:
                self._allowed_addresses.clear()
            allowed = self._allowed_addresses[text] = self._in_networks(text)
        return allowed

    def _in_networks(self, text: str) -> bool:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.settings.networks)

    async def handle_EHLO(self, _server: SMTP, session: Session, _envelope: Envelope,  # noqa: N802 - aiosmtpd hook
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        # DSN's parameters make MAIL and RCPT longer (RFC 3461 §5: by 100 and 500 characters at most).
        _server.command_size_limits["MAIL"] = 1024
        _server.command_size_limits["RCPT"] = 1024
        # GuardedSMTP reads pipelined commands and DATA after them correctly, and batches its replies.
        return [*responses[:-1], "250-PIPELINING", "250-DSN", f"250-XFORWARD {' '.join(XFORWARD_ATTRIBUTES)}",
                responses[-1]]

    async def handle_MAIL(self, _server: SMTP, session: Session, envelope: Envelope,  # noqa: N802 - aiosmtpd hook
                          address: str, mail_options: list[str]) -> str:
        if not self._allowed(session.peer):
            return str(RELAY_REPLIES[Relayed.RELAY_DENIED])
        if address and not address.isascii() and "SMTPUTF8" not in (o.upper() for o in mail_options):
            return str(RELAY_REPLIES[Relayed.NEEDS_SMTPUTF8])
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.rcptguard = {}  # type: ignore[attr-defined] # verdicts by recipient, for DATA
        envelope.params = cast("GuardedSMTP", _server).params  # type: ignore[attr-defined] # RET, ENVID, BODY
        envelope.rcpt_params = {}  # type: ignore[attr-defined] # NOTIFY, ORCPT by recipient
        return str(RELAY_REPLIES[Relayed.SENDER_OK])

    def malformed(self, address: str) -> str | None:
        """The 553 reply for an address the engine finds malformed (with its reason), else None."""
        verdict = self.runtime.guard.check(address)
        return str(rcpt_reply(verdict, "")) if verdict.signal("MALFORMED_ADDRESS") is not None else None

    async def handle_RCPT(self, _server: SMTP, session: Session, envelope: Envelope,  # noqa: N802 - aiosmtpd hook
                          address: str, rcpt_options: list[str]) -> str:
        if not self._allowed(session.peer):
            return str(RELAY_REPLIES[Relayed.RELAY_DENIED])
        if not address.isascii() and not envelope.smtp_utf8:
            return str(RELAY_REPLIES[Relayed.NEEDS_SMTPUTF8])
        started = time.perf_counter()
        verdict = await consult(self.world, self.runtime.guard.check(address))  # DNS: a rare slip, in budget
        self.metrics.decided(verdict, time.perf_counter() - started)
        reply = rcpt_reply(verdict, self.settings.reject_status)
        logs.decision(log, verdict, door="relay", sender=envelope.mail_from, recipient=address,
                      client=_address(session.peer), reply=reply.code)
        if reply.code != 250 and self.runtime.observing and verdict.signal("MALFORMED_ADDRESS") is None:
            reply = rcpt_reply(dataclasses.replace(verdict, action=Action.PASS), "")  # recorded at DATA
        if reply.code != 250:
            return str(reply)
        if address in envelope.rcpt_tos:
            return str(RELAY_REPLIES[Relayed.RECIPIENT_AGAIN])  # once is enough: a recipient is accounted for once
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.rcptguard[address] = verdict  # type: ignore[attr-defined]
        envelope.rcpt_params[address] = cast("GuardedSMTP", _server).params  # type: ignore[attr-defined]
        return str(reply)

    async def handle_DATA(self, _server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        """The answer to the final dot, within `reply_within` (before the client gives up and sends again).

        When the next hop is slower than that, the client gets 451 and the work goes on: its outcome is
        remembered (AcceptedCopies), and the client's retry waits for it instead of sending a second copy.
        """
        try:
            deadline = time.monotonic() + self.settings.reply_within  # one answer, within reply_within in all
            key = self._late_key(envelope) if self.late or self.answered_late else None
            earlier = self.late.get(key) if key is not None else None
            # the same message, still being handled from an earlier attempt: its outcome, or still busy
            if earlier is not None and not await _ended_within(earlier, self.settings.reply_within):
                return str(RELAY_REPLIES[Relayed.NEXT_HOP_STILL_BUSY])
            late_answer = self.answered_late.pop(key, None) if key is not None else None
            if late_answer is not None and time.monotonic() - late_answer[0] <= self.copies.ttl:
                return late_answer[1]  # done after its client was told 451: the retry gets its 250
            if earlier is not None and deadline - time.monotonic() < self.settings.reply_within / 2:
                return str(RELAY_REPLIES[Relayed.NEXT_HOP_STILL_BUSY])  # it ended 4xx late: no time for a new try
            task = asyncio.get_running_loop().create_task(self._data(session, envelope))
            try:
                done = await _ended_within(task, max(deadline - time.monotonic(), 0.0))
            except asyncio.CancelledError:  # the client went away: the work goes on, its outcome remembered
                self._orphan(task, envelope)
                raise
            if not done:
                self._orphan(task, envelope)
                logs.event(log, "answer due before the next hop answered", logging.WARNING,
                           sender=envelope.mail_from, recipients=len(envelope.rcpt_tos),
                           waited=self.settings.reply_within)
                return str(RELAY_REPLIES[Relayed.NEXT_HOP_SLOW])
            return task.result()
        except Exception:  # never a 5xx for our own failure: the client keeps the message and retries
            log.exception("internal error in DATA")
            return TEMPFAIL

    @staticmethod
    def _late_key(envelope: Envelope) -> bytes:
        content = envelope.original_content if isinstance(envelope.original_content, bytes) else b""
        return AcceptedCopies._key(envelope.mail_from or "", envelope.rcpt_tos, content)  # noqa: SLF001

    def _orphan(self, task: asyncio.Task[str], envelope: Envelope) -> None:
        """The client was answered 451 (or left) before `task` ended. Its retry of the message waits for the task
        and, when the message was handled in full, gets the task's 250 without anything being done again."""
        key = self._late_key(envelope)
        if task.done():
            self._answered_late(key, task)
            return
        self.late[key] = task

        def finished(done: asyncio.Task[str]) -> None:
            if self.late.get(key) is done:
                del self.late[key]
            self._answered_late(key, done)

        task.add_done_callback(finished)

    def _answered_late(self, key: bytes, task: asyncio.Task[str]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("internal error in DATA after the answer", exc_info=task.exception())
            return
        reply = task.result()
        if reply.startswith("250"):  # 4xx: the retry does it again, minus what the next hop settled (copies)
            self.answered_late[key] = (time.monotonic(), reply)
            while len(self.answered_late) > self.copies.size:
                self.answered_late.popitem(last=False)

    async def _tell_of_warnings(self, mail_from: str, warned: list[tuple[str, Verdict]], content: bytes) -> None:
        """Queue a notice to the sender of the warned recipients it was not told about in the last
        `warn_notice_interval` (per sender and domain, or address); the outbox sends it at once. A warning is a
        courtesy: a store that fails here is logged, and the mail goes on."""
        notice = WarningNotice.due(self.warned, mail_from, warned)
        if notice is None:
            return
        try:
            mail = notice.compose(self.notifier, content, self.settings.warn_notice_interval)
            self._queued(await asyncio.to_thread(self.outbox.queue, "warning", "", mail_from, mail))
        except (StoreError, ValueError, TypeError, jinja2.TemplateError) as exc:
            notice.not_sent(self.warned, exc)

    def _queued(self, row_id: str) -> None:
        """Mail stored for the outbox: have the retry loop send it now, not at its next round."""
        self.queued.add(row_id)
        self.notices_due.set()

    async def _forward(self, mail_from: str, rcpts: list[str], body: bytes, *, smtputf8: bool = False,
                       params: EnvelopeParams | None = None) -> DeliveryResult:
        # the body is the relay's content: its line endings made CRLF once, in `_data`
        return await self.pool.deliver(mail_from, rcpts, body, smtputf8=smtputf8, params=params, crlf=True)

    async def _forward_copies(self, mail_from: str, groups: list[tuple[list[str], bytes]], *,
                              utf8: bool, params: EnvelopeParams) -> tuple[list[Copy], str | None]:
        """Forward each copy (plain, warned) to its recipients, except those an earlier attempt at this message
        already settled. The copies sent, and the 4xx reply when the next hop deferred a part of one (what it
        settled is then remembered, so the client's retry does not send it again)."""
        sent: list[Copy] = []
        for rcpts, body in groups:
            if not rcpts:
                continue
            result = self.copies.get(mail_from, rcpts, body) or DeliveryResult()
            todo = [r for r in rcpts if r not in result.accepted and r not in result.perm_failed]
            if todo:
                answered = await self._forward(mail_from, todo, body, smtputf8=utf8, params=params)
                self.metrics.next_hop_answered(len(answered.accepted), len(answered.temp_failed),
                                               len(answered.perm_failed))
                result = result.merged(answered)
            if result.temporary:
                first = next(iter(result.temp_failed.values()), (451, result.error or ""))
                logs.event(log, "next hop deferred", logging.WARNING, sender=mail_from, error=result.error,
                           reply=f"{first[0]} {first[1]}", already_accepted=len(result.accepted) + sum(
                               len(c.accepted) for *_, c in sent))
                self.copies.remember(mail_from, [*sent, (rcpts, body, result)])
                return sent, str(RELAY_REPLIES[Relayed.NEXT_HOP_DEFERRED].saying(first[1]))
            sent.append((rcpts, body, result))
        return sent, None

    async def _report(self, mail_from: str, sent: list[Copy], perm_failed: dict[str, tuple[int, str]],
                      params: EnvelopeParams, content: bytes) -> bool:
        """Store the reports the sender asked for (NOTIFY): of recipients the next hop refused for good, and of
        success where the next hop will send none. False when a refusal's report could not be stored (the
        message is then deferred: a bounce must not be lost); a success report is a courtesy, logged if lost."""
        reported = {r: reply for r, reply in perm_failed.items() if params.rcpt(r).wants("FAILURE")}
        if reported:
            try:
                report = dsn(mail_from, reported, self.hostname)
                self._queued(await asyncio.to_thread(self.outbox.queue, "report", "", mail_from, report))
            except StoreError as exc:
                logs.event(log, "delivery report not stored", logging.ERROR, sender=mail_from, error=str(exc))
                return False
        relayed = [r for *_, result in sent for r in result.without_dsn if params.rcpt(r).wants("SUCCESS")]
        if relayed:
            try:
                report = self.notifier.relayed(mail_from, relayed, content, params, received=dt.datetime.now(dt.UTC),
                                               host=str(self.next_hop))
                self._queued(await asyncio.to_thread(self.outbox.queue, "report", "", mail_from, report))
            except (StoreError, ValueError, TypeError, jinja2.TemplateError) as exc:
                logs.event(log, "success report not stored", logging.WARNING, sender=mail_from, error=str(exc))
        return True

    async def _weigh_content(self, verdicts: dict[str, Verdict], content: bytes) -> dict[str, Verdict]:
        """The verdicts with what the message carries (rcptguard.content): scanned only when a recipient is
        warned about or held, within [content]'s budget; off the event loop unless it is a short plain text
        message, whose scan costs less than the hand-over to a thread."""
        if not self.content.enabled or not any(v.action in (Action.WARN, Action.HOLD) for v in verdicts.values()):
            return verdicts
        limits = self.content.limits
        found = scan_light(content, limits)
        if found is None:
            found = await asyncio.to_thread(scan_message, content, limits)
        if found.severity is Severity.NONE:
            return verdicts
        logs.event(log, "content", severity=str(found.severity), signals=sorted({s.name for s in found.signals}))
        return {r: raise_verdict(v, found, self.content.threshold) for r, v in verdicts.items()}

    async def handle_exception(self, error: Exception) -> str:
        log.error("internal error", exc_info=error)
        return TEMPFAIL

    def _enforced(self, mail_from: str, verdicts: dict[str, Verdict]) -> dict[str, Action]:
        """The action taken for each recipient: its verdict's, or in observe mode pass (what would have happened is
        logged and recorded)."""
        if not self.runtime.observing:
            return {r: v.action for r, v in verdicts.items()}
        for verdict in verdicts.values():
            if verdict.action is not Action.PASS:
                self.runtime.observed("relay", mail_from, verdict)
        return dict.fromkeys(verdicts, Action.PASS)

    async def _data(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if not isinstance(raw, bytes):
            return TEMPFAIL
        content = without_own_headers(normalise_line_endings(raw))
        mail_from = envelope.mail_from or ""
        at_rcpt: dict[str, Verdict] = envelope.rcptguard  # type: ignore[attr-defined]
        guarded = [at_rcpt[r] for r in envelope.rcpt_tos]
        greeting, displays = self.runtime.greeting(content)
        judged = self.runtime.judge_or_not(mail_from, guarded, fresh=False, greeting=greeting,
                                           displays=displays)  # history in memory: no read to wait for
        if self.runtime.stale(mail_from, judged):  # the store may know a newer confirmation: one read, off the loop
            judged = await asyncio.to_thread(self.runtime.judge_or_not, mail_from, guarded, greeting=greeting,
                                             displays=displays)
        verdicts = dict(zip(envelope.rcpt_tos, judged, strict=True))
        verdicts = await self._weigh_content(verdicts, content)
        acting = self._enforced(mail_from, verdicts)
        passed = [r for r in envelope.rcpt_tos if acting[r] in (Action.PASS, Action.WARN)]
        warned = [r for r in passed if acting[r] is Action.WARN]
        held = [r for r in envelope.rcpt_tos if acting[r] is Action.HOLD]
        utf8 = "SMTPUTF8" in (o.upper() for o in envelope.mail_options)
        params = EnvelopeParams(getattr(envelope, "params", MailParams()), dict(getattr(envelope, "rcpt_params", {})),
                                dict(getattr(envelope, "xforward", {})))
        peer = str(session.peer[0]) if isinstance(session.peer, tuple) else ""
        client = original_client(params.xforward) or peer

        hold_ids: list[str] = []
        if held:
            recipients = [HeldRecipient(r, verdicts[r].intended, verdicts[r].suggestion, verdicts[r].reason,
                                        [s.to_json() for s in verdicts[r].signals], verdicts[r].score) for r in held]
            notify = self.settings.notify and wants_notice(mail_from, content)
            try:
                holds = await asyncio.to_thread(self.quarantine.hold, mail_from=mail_from, recipients=recipients,
                                                content=content, client=client, notify=notify, envelope=params)
                await asyncio.to_thread(self.quarantine.store.verify)
            except StoreError as exc:
                logs.event(log, "quarantine unavailable", logging.ERROR, error=str(exc))
                return str(RELAY_REPLIES[Relayed.QUARANTINE_UNAVAILABLE])
            hold_ids = [h.id for h in holds]
            if notify:  # owed in the store with the holds: the outbox sends it now, and again until it goes
                self.owed.add(holds[0].message_id)
                self.notices_due.set()

        groups = [(passed, content)]  # warned recipients get the message as it is: the warning is the sender's
        sent, deferred = await self._forward_copies(mail_from, groups, utf8=utf8, params=params)
        if deferred is not None:
            return deferred
        accepted = [r for *_, result in sent for r in result.accepted]
        perm_failed = {r: reply for *_, result in sent for r, reply in result.perm_failed.items()}
        if perm_failed and not accepted and not hold_ids:
            code, text = next(iter(perm_failed.values()))
            return f"{code if 500 <= code < 600 else 550} 5.0.0 Next hop refused: {ascii_line(text, 200)}"
        if mail_from and not await self._report(mail_from, sent, perm_failed, params, content):
            self.copies.remember(mail_from, sent)
            return str(RELAY_REPLIES[Relayed.REPORT_FAILED])
        self.copies.forget(mail_from, sent)
        self.runtime.saw(mail_from, [verdicts[r] for r in accepted])
        self.accepted += 1
        if warned and self.settings.warn_notice and wants_notice(mail_from, content):
            await self._tell_of_warnings(mail_from, [(r, verdicts[r]) for r in warned if r in accepted], content)
        logs.event(log, "message", sender=mail_from, client=client, forwarded=accepted,
                   held=dict(zip(held, hold_ids, strict=False)), refused_by_next_hop=sorted(perm_failed), warned=warned,
                   size=len(content))
        note = f"; held {len(hold_ids)} for confirmation" if hold_ids else ""  # counts: a reply line stays short
        return str(RELAY_REPLIES[Relayed.DELIVERED].saying(f"forwarded {len(accepted)}{note}"))


async def _ended_within(task: asyncio.Task[str], seconds: float) -> bool:
    """Whether `task` ended within `seconds`; it goes on either way. `asyncio.wait` for one task, with one future and
    one timer (this runs for every message: `asyncio.wait` makes sets, a future per call and a callback per task)."""
    if task.done():
        return True
    loop = task.get_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(seconds, wake)
    task.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()


async def serve(handler: RelayHandler, host: str, port: int, *, ready: Callable[[int], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or `stop`); retry pending released deliveries in the background."""
    loop = asyncio.get_running_loop()
    settings = handler.settings

    def factory() -> SMTP:
        return GuardedSMTP(handler, data_size_limit=settings.size_limit, enable_SMTPUTF8=True, decode_data=False,
                    hostname=handler.hostname, ident="rcptguard relay", timeout=settings.idle_timeout, loop=loop)

    raise_fd_limit()  # max_connections, not the soft limit on open files (often 1,024), bounds the clients
    handler.fit_connections(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    server = await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    logs.event(log, "listening", host=host, port=bound, next_hop=str(handler.next_hop))
    if ready is not None:
        ready(bound)
    tasks = [asyncio.create_task(handler.runtime.maintain()), asyncio.create_task(retry_pending(handler))]
    try:
        await serve_until_stopped(server, stop or asyncio.Event(), tasks)
    finally:
        if handler.late:  # messages whose client was told 451 while the next hop was slow: let them end
            _, unfinished = await asyncio.wait(list(handler.late.values()), timeout=10.0)
            for late in unfinished:
                late.cancel()
        await asyncio.to_thread(handler.runtime.close)
        await handler.pool.close()
        if handler.world is not None:
            await handler.world.close()
        logs.event(log, "stopped", messages=handler.accepted)


class Sending(Protocol):
    """What the outbox's rounds need of a door that holds and queues mail (the relay's handler, the milter's
    service): its settings and quarantine, and what it stored since the last round (`owed` notices of held
    messages, `queued` outgoing mail), with `notices_due` set when something waits to be sent now."""

    settings: RelaySettings
    quarantine: Quarantine
    outbox: Outbox
    notifier: Notifier
    next_hop: NextHop
    notices_due: asyncio.Event
    owed: set[str]
    queued: set[str]


async def retry_pending(handler: Sending) -> None:
    """Every `retry_interval`, one round of the outbox: retry released deliveries the next hop deferred, give up
    on those deferred for `give_up_days`, send the notices the quarantine owes and the mail stored for sending.
    What the door just stored (a held message's notice, a warning, a report) is sent at once, between rounds."""
    settings, quarantine, outbox = handler.settings, handler.quarantine, handler.outbox
    links = settings.notice_links(quarantine.store)
    notifier = handler.notifier if settings.notify else None

    def warn(text: str) -> None:
        logs.event(log, "notice", logging.WARNING, detail=text)

    def send_now(message_ids: list[str], queued: list[str]) -> None:
        try:
            if message_ids:
                send_owed(quarantine, handler.notifier, handler.next_hop, warn=warn, links=links,
                          message_ids=message_ids)
            if queued:
                outbox.send_queued(handler.next_hop, ids=queued)
        except Exception as exc:  # noqa: BLE001 - still owed or stored: the next round sends them
            logs.event(log, "mail not sent yet", logging.WARNING, error=f"{type(exc).__name__}: {exc}")

    next_round = time.monotonic() + settings.retry_interval
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handler.notices_due.wait(), max(next_round - time.monotonic(), 0))
        if handler.notices_due.is_set():
            handler.notices_due.clear()
            owed, queued = sorted(handler.owed), sorted(handler.queued)
            handler.owed.clear()
            handler.queued.clear()
            await asyncio.to_thread(send_now, owed, queued)
        if time.monotonic() >= next_round:
            await asyncio.to_thread(outbox.run_once, handler.next_hop, notifier, links=links, warn=warn,
                                    give_up_after=dt.timedelta(days=settings.give_up_days))
            next_round = time.monotonic() + settings.retry_interval


def build(factory: GuardFactory, store: Store, settings: RelaySettings, dns: DnsSettings | None = None,
          content: ContentSettings | None = None, history: HistorySettings | None = None) -> RelayHandler:
    """The relay's handler: the guard from `factory` (what the store learned), its quarantine in `store`; with
    `dns` enabled (on unless `[dns] enabled = false`: `DnsSettings.for_door(default=True)`), the world's evidence
    for the rare verdicts that want it (docs/world.md)."""
    runtime = Runtime(factory, store, flush_interval=settings.flush_interval,
                      rebuild_interval=settings.rebuild_interval, history=history)
    handler = RelayHandler(runtime, Quarantine(store, stale_after=settings.claim_window), settings)
    if dns is not None and dns.enabled:
        handler.world = World(dns, observe=handler.metrics.dns_answer)
    if content is not None:
        handler.content = content
    return handler
