"""An SMTP relay and Postfix after-queue content filter that holds mistyped recipients in a quarantine.

    Postfix -> 127.0.0.1:10025 (rcptguard relay) -> 127.0.0.1:10026 (back into Postfix, or any next hop)

Per recipient, at RCPT time the guard decides; after DATA the message is split:

    pass    forwarded to the next hop unchanged
    warn    forwarded with an X-Rcptguard-Warning header per warned recipient
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
import datetime as dt
import email.utils
import hashlib
import ipaddress
import logging
import re
import signal
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from rcptguard import logs
from rcptguard.delivery import DEFAULT_NEXT_HOP, AsyncPool, DeliveryResult, NextHop, normalise_line_endings
from rcptguard.model import Action, Verdict
from rcptguard.notify import Notifier, send_owed, wants_notice
from rcptguard.runtime import GuardFactory, Runtime
from rcptguard.store import Store, StoreError
from rcptguard.store.links import Links
from rcptguard.store.quarantine import HeldRecipient, Hold, Quarantine

from .replies import ascii_line, explanation, header_value, warning_text

log = logging.getLogger("rcptguard.relay")

TEMPFAIL = "451 4.3.0 Internal error, message not accepted; try again later"
DEFAULT_SIZE_LIMIT = 64 * 1024 * 1024  # above Postfix's message_size_limit default (10 MB)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """The `[relay]` section of the config file."""

    next_hop: str = DEFAULT_NEXT_HOP
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # client networks that may send through the relay
    size_limit: int = DEFAULT_SIZE_LIMIT
    hostname: str | None = None
    reject_status: str = "5.7.1"
    warn_header: str = "X-Rcptguard-Warning"
    flush_interval: float = 2.0
    rebuild_interval: float = 60.0
    retry_interval: float = 30.0  # seconds between attempts to deliver released messages still pending
    give_up_days: float = 5.0  # a released message the next hop defers this long fails; its sender is told
    workers: int = 32  # connections to the next hop kept open between messages
    notify: bool = True  # send each sender of a held message a notice with a link to the confirmation page
    base_url: str = "http://127.0.0.1:8025"  # where `rcptguard web` is reached by senders ([web] base_url)
    notice_from: str = ""  # From: of notices (default MAILER-DAEMON@hostname)
    link_days: float = 7.0  # how long a confirmation link works; held mail expires after the same time
    template_dir: str | None = None  # operator's notice templates ([notify] template_dir)
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(default=(), compare=False)

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> RelaySettings:
        names = set(cls.__dataclass_fields__) - {"networks"}
        unknown = set(section) - names
        if unknown:
            raise ValueError(f"relay.{min(unknown)}: unknown key (expected one of: {', '.join(sorted(names))})")
        values = dict(section)
        if "allow" in values:
            values["allow"] = tuple(values["allow"])
        settings = cls(**values)
        try:
            networks = tuple(ipaddress.ip_network(n, strict=False) for n in settings.allow)
        except ValueError as exc:
            raise ValueError(f"relay.allow: {exc}") from None
        NextHop.parse(settings.next_hop)
        return cls(**{**values, "networks": networks})


def with_warnings(content: bytes, header: str, verdicts: Sequence[Verdict]) -> bytes:
    """The copy for warned recipients, with one header per warned domain: domains only, never an address,
    since the copy goes to every warned recipient (a Bcc recipient's address must not show)."""
    found = dict.fromkeys(warning_text(v) for v in verdicts)
    return b"".join(f"{header}: {header_value(text)}\r\n".encode() for text in found) + content


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

    def readuntil(self, separator: bytes = b"\n") -> Coroutine[Any, Any, bytes]:
        return self._reader.readuntil(b"\r\n" if separator == b"\n" else separator)

    async def read_data(self, size_limit: int | None) -> bytes | None:
        """The message after DATA, dots unstuffed, read in whatever chunks arrive rather than line by line.

        It ends where aiosmtpd's own loop would end it: at the first line that is a single dot between
        CRLFs (the CRLF that ended the DATA command counts as the one before a first line). A bare CR or
        LF never ends a line here. None when the message is longer than `size_limit`: it is read to its
        end and dropped. Bytes after the end (a pipelined next command) go back to the reader.
        """
        reader = self._reader
        buffer = bytearray(b"\r\n")
        searched = 0
        too_big = False
        while True:
            chunk = await reader.read(_DRAIN)  # the reader's buffer is empty after this
            if not chunk:  # end of stream: aiosmtpd has already cancelled this session
                raise asyncio.CancelledError
            buffer += chunk
            end = buffer.find(_END_OF_DATA, searched)
            if end >= 0:
                rest = buffer[end + len(_END_OF_DATA):]
                if rest and not reader.at_eof():
                    reader.feed_data(bytes(rest))  # no await since read(): this puts it back in front
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


class GuardedSMTP(SMTP):
    """aiosmtpd's SMTP, strict about command lines and paths: a command ends at CRLF only, and a path must
    be a closed `<...>` with no CR or LF inside, so `RCPT TO:<a@arm\ny.mil>` is refused, not cut short.
    DATA is read in chunks (aiosmtpd reads it a line at a time: most of a relay's time per message)."""

    line_length_limit = 1 << 16  # of a command line; message lines may be any length (normalised later)
    _held: list[bytes]
    _pipelined = False  # inside MAIL or RCPT: their replies may wait for the next one

    def _cb_client_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held = []
        super()._cb_client_connected(cast("asyncio.StreamReader", _CRLFLines(reader)), writer)

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
        await self._writer.drain()

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
        try:
            content = await reader.read_data(self.data_size_limit)
        except asyncio.CancelledError:
            self._writer.close()
            raise
        if content is None:
            self.envelope = self._create_envelope()
            await self.push("552 5.3.4 Error: Too much mail data")
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self.event_handler.handle_DATA(self, self.session, self.envelope)
        self.envelope = self._create_envelope()
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
        await self._path_command(arg, "MAIL FROM:<address>", super().smtp_MAIL)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        await self._path_command(arg, "RCPT TO:<address>", super().smtp_RCPT)

    async def _path_command(self, arg: str | None, usage: str,
                            command: Callable[[str | None], Coroutine[Any, Any, None]]) -> None:
        """MAIL or RCPT: a strict path first; its reply may wait for the next one when the client pipelines."""
        if arg is not None and not _PATH.match(arg):
            await self.push(f"501 5.5.4 Syntax: {usage}")
            return
        self._pipelined = True
        try:
            await command(arg)
        finally:
            self._pipelined = False


class AcceptedCopies:
    """The copies of a message (plain, warned) the next hop accepted while the message itself was answered
    4xx because another copy, or the delivery report, was deferred. When the client retries the message,
    those copies are not sent again: a retry repeats nothing. In memory, bounded by count and age."""

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
            self._copies[key] = (time.monotonic(), result)
            self._copies.move_to_end(key)
        while len(self._copies) > self.size:
            self._copies.popitem(last=False)

    def forget(self, mail_from: str, sent: Sequence[Copy]) -> None:
        if self._copies:
            for rcpts, body, _ in sent:
                self._copies.pop(self._key(mail_from, rcpts, body), None)


Copy = tuple[list[str], bytes, DeliveryResult]  # recipients, the body sent to them, what the next hop did


class RelayHandler:
    """aiosmtpd hooks: decide at RCPT, split and account for every recipient after DATA."""

    def __init__(self, runtime: Runtime, quarantine: Quarantine | None, settings: RelaySettings) -> None:
        self.runtime = runtime
        self.quarantine = quarantine
        self.settings = settings
        self.next_hop = NextHop.parse(settings.next_hop)
        self.hostname = settings.hostname or socket.getfqdn() or "localhost"
        self.pool = AsyncPool(self.next_hop, size=settings.workers)
        self.links = Links(quarantine.store) if quarantine is not None else None
        self.notifier = Notifier(host=self.hostname, sender=settings.notice_from,
                                 template_dir=Path(settings.template_dir) if settings.template_dir else None)
        self.accepted = 0
        self.copies = AcceptedCopies()

    def _allowed(self, session: Session) -> bool:
        peer = session.peer[0] if isinstance(session.peer, tuple) else ""
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.settings.networks)

    async def handle_EHLO(self, _server: SMTP, session: Session, _envelope: Envelope,  # noqa: N802 - aiosmtpd hook
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        # GuardedSMTP reads pipelined commands and DATA after them correctly, and batches its replies.
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(self, _server: SMTP, session: Session, envelope: Envelope,  # noqa: N802 - aiosmtpd hook
                          address: str, mail_options: list[str]) -> str:
        if not self._allowed(session):
            return "550 5.7.1 Relaying denied: this client may not send through this relay"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.rcptguard = {}  # type: ignore[attr-defined] # verdicts by recipient, for DATA
        return "250 2.1.0 OK"

    async def handle_RCPT(self, _server: SMTP, session: Session, envelope: Envelope,  # noqa: N802 - aiosmtpd hook
                          address: str, rcpt_options: list[str]) -> str:
        if not self._allowed(session):
            return "550 5.7.1 Relaying denied: this client may not send through this relay"
        verdict = self.runtime.guard.check(address)
        if verdict.signal("MALFORMED_ADDRESS") is not None:
            return f"553 5.1.3 {ascii_line(verdict.reason)}"
        if verdict.action is Action.REJECT:
            logs.event(log, "rejected", sender=envelope.mail_from, recipient=address, verdict="reject",
                       intended=verdict.intended, signals=[s.name for s in verdict.signals])
            return f"550 {self.settings.reject_status} {ascii_line(explanation(verdict))}"
        if address in envelope.rcpt_tos:
            return "250 2.1.5 OK (already a recipient)"  # once is enough: a recipient is accounted for once
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.rcptguard[address] = verdict  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def handle_DATA(self, _server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        try:
            return await self._data(session, envelope)
        except Exception:  # never a 5xx for our own failure: the client keeps the message and retries
            log.exception("internal error in DATA")
            return TEMPFAIL

    async def _forward(self, mail_from: str, rcpts: list[str], body: bytes, *,
                       smtputf8: bool = False) -> DeliveryResult:
        return await self.pool.deliver(mail_from, rcpts, body, smtputf8=smtputf8)

    async def _notify(self, holds: list[Hold]) -> bool:
        """Tell the sender what was held and give the one link to choose. False when that failed for now:
        the message is then answered 4xx, and its next delivery (held once, by its key) tries again."""
        assert self.links is not None
        ttl = dt.timedelta(days=self.settings.link_days)
        try:
            token = await asyncio.to_thread(self.links.issue_once, holds[0].message_id, ttl)
        except (StoreError, ValueError) as exc:
            logs.event(log, "no link for the notice", logging.WARNING, error=str(exc))
            return False
        if token is None:
            return True  # already told, on an earlier delivery of the same message
        link = f"{self.settings.base_url.rstrip('/')}/confirm/{token}"
        sender = holds[0].mail_from
        result: DeliveryResult | None = None
        try:
            notice = self.notifier.held(holds, link, ttl)
            result = await self._forward("", [sender], notice, smtputf8=not sender.isascii())
        except Exception as exc:  # noqa: BLE001 - an operator's template may fail: try again later
            logs.event(log, "notice failed", logging.ERROR, sender=sender, error=f"{type(exc).__name__}: {exc}")
        if result is not None and sender in result.accepted:
            return True
        if result is not None and not result.temporary:
            logs.event(log, "notice refused", logging.WARNING, sender=sender, error=result.error)
            return True  # the sender's address is refused for good: nothing a retry can mend
        logs.event(log, "notice not sent; will retry", logging.WARNING, sender=sender,
                   error=result.error if result else "template")
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(self.links.revoke, token)
        return False

    async def _forward_copies(self, mail_from: str, groups: list[tuple[list[str], bytes]], *,
                              utf8: bool) -> tuple[list[Copy], str | None]:
        """Forward each copy (plain, warned) to its recipients, unless a retry of this message already got it
        accepted. The copies sent, and the 4xx reply when the next hop deferred one (the accepted ones are
        then remembered, so the client's retry does not send them again)."""
        sent: list[Copy] = []
        for rcpts, body in groups:
            if not rcpts:
                continue
            result = self.copies.get(mail_from, rcpts, body) or await self._forward(
                mail_from, rcpts, body, smtputf8=utf8)
            if result.temporary:
                first = next(iter(result.temp_failed.values()), (451, result.error or ""))
                logs.event(log, "next hop deferred", logging.WARNING, sender=mail_from, error=result.error,
                           reply=f"{first[0]} {first[1]}", already_accepted=[r for *_, c in sent for r in c.accepted])
                self.copies.remember(mail_from, sent)
                return sent, f"451 4.4.0 Next hop deferred: {ascii_line(first[1], 200)}"
            sent.append((rcpts, body, result))
        return sent, None

    async def handle_exception(self, error: Exception) -> str:
        log.error("internal error", exc_info=error)
        return TEMPFAIL

    async def _data(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if not isinstance(raw, bytes):
            return TEMPFAIL
        content = normalise_line_endings(raw)
        mail_from = envelope.mail_from or ""
        verdicts: dict[str, Verdict] = envelope.rcptguard  # type: ignore[attr-defined]
        passed = [r for r in envelope.rcpt_tos if verdicts[r].action is Action.PASS]
        warned = [r for r in envelope.rcpt_tos if verdicts[r].action is Action.WARN]
        held = [r for r in envelope.rcpt_tos if verdicts[r].action is Action.HOLD]
        utf8 = "SMTPUTF8" in (o.upper() for o in envelope.mail_options)

        hold_ids: list[str] = []
        if held:
            if self.quarantine is None:
                return "451 4.3.0 Quarantine not configured; try again later"
            recipients = [HeldRecipient(r, verdicts[r].intended, verdicts[r].suggestion, verdicts[r].reason,
                                        [s.to_json() for s in verdicts[r].signals], verdicts[r].score) for r in held]
            client = session.peer[0] if isinstance(session.peer, tuple) else ""
            try:
                holds = await asyncio.to_thread(self.quarantine.hold, mail_from=mail_from, recipients=recipients,
                                                content=content, client=str(client))
            except StoreError as exc:
                logs.event(log, "quarantine unavailable", logging.ERROR, error=str(exc))
                return "451 4.3.0 Quarantine unavailable; try again later"
            hold_ids = [h.id for h in holds]
            if self.settings.notify and wants_notice(mail_from, content) and not await self._notify(holds):
                return "451 4.3.0 Could not tell the sender about the held recipients; try again later"

        groups = [(passed, content)]
        if warned:
            groups.append((warned, with_warnings(content, self.settings.warn_header, [verdicts[r] for r in warned])))
        sent, deferred = await self._forward_copies(mail_from, groups, utf8=utf8)
        if deferred is not None:
            return deferred
        accepted = [r for *_, result in sent for r in result.accepted]
        perm_failed = {r: reply for *_, result in sent for r, reply in result.perm_failed.items()}
        if perm_failed:
            if not accepted and not hold_ids:
                code, text = next(iter(perm_failed.values()))
                return f"{code if 500 <= code < 600 else 550} 5.0.0 Next hop refused: {ascii_line(text, 200)}"
            if mail_from:
                report = dsn(mail_from, perm_failed, self.hostname)
                result = await self._forward("", [mail_from], report)
                if result.temporary:
                    self.copies.remember(mail_from, sent)
                    return "451 4.4.0 Could not send a delivery report; try again later"
        self.copies.forget(mail_from, sent)
        for rcpt in accepted:
            domain = verdicts[rcpt].domain_ascii
            if domain:
                self.runtime.saw(domain)
        self.accepted += 1
        logs.event(log, "message", sender=mail_from, forwarded=accepted, held=dict(zip(held, hold_ids, strict=False)),
                   refused_by_next_hop=sorted(perm_failed), warned=warned, size=len(content))
        note = f"; held {len(hold_ids)} for confirmation ({', '.join(hold_ids)})" if hold_ids else ""
        return f"250 2.0.0 OK: forwarded {len(accepted)}{note}"


async def serve(handler: RelayHandler, host: str, port: int, *, ready: Callable[[int], None] | None = None,
                stop: asyncio.Event | None = None, quarantine: Quarantine | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or `stop`); retry pending released deliveries in the background."""
    loop = asyncio.get_running_loop()
    settings = handler.settings

    def factory() -> SMTP:
        return GuardedSMTP(handler, data_size_limit=settings.size_limit, enable_SMTPUTF8=True, decode_data=False,
                    hostname=handler.hostname, ident="rcptguard relay", timeout=300, loop=loop)

    server = await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    logs.event(log, "listening", host=host, port=bound, next_hop=str(handler.next_hop))
    if ready is not None:
        ready(bound)
    stop = stop or asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(handler.runtime.maintain())]
    if quarantine is not None:
        tasks.append(asyncio.create_task(_retry_pending(handler, quarantine)))
    try:
        async with server:
            await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.to_thread(handler.runtime.close)
        await handler.pool.close()
        logs.event(log, "stopped", messages=handler.accepted)


async def _retry_pending(handler: RelayHandler, quarantine: Quarantine) -> None:
    """Every `retry_interval`: retry released deliveries the next hop deferred, give up on those deferred for
    `give_up_days`, and send the notices the quarantine owes (those, refusals found by a retry, and expiry
    notices not sent before). Each step on its own: one failing does not skip the others."""
    settings = handler.settings
    give_up = dt.timedelta(days=settings.give_up_days)

    def warn(text: str) -> None:
        logs.event(log, "notice", logging.WARNING, detail=text)

    def given_up() -> None:
        for hold in quarantine.give_up(give_up):
            logs.event(log, "gave up a released delivery", logging.WARNING, hold=hold.id, sender=hold.mail_from,
                       recipient=hold.deliver_to or hold.recipient, error=hold.last_error)

    steps: list[tuple[str, Callable[[], object]]] = [
        ("pending deliveries not retried", lambda: quarantine.deliver_pending(handler.next_hop)),
        ("stale deliveries not given up", given_up)]
    if settings.notify:
        steps.append(("owed notices not sent",
                      lambda: send_owed(quarantine, handler.notifier, handler.next_hop, warn=warn)))
    while True:
        await asyncio.sleep(settings.retry_interval)
        for failure, step in steps:
            try:
                await asyncio.to_thread(step)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                logs.event(log, failure, logging.WARNING, error=f"{type(exc).__name__}: {exc}")


def build(factory: GuardFactory, store: Store | None,
          settings: RelaySettings) -> tuple[RelayHandler, Quarantine | None]:
    runtime = Runtime(factory, store, flush_interval=settings.flush_interval,
                      rebuild_interval=settings.rebuild_interval)
    quarantine = Quarantine(store) if store is not None else None
    return RelayHandler(runtime, quarantine, settings), quarantine
