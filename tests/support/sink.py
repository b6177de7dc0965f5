"""A recording SMTP sink: the next hop that a private Postfix relays to in integration tests."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from rcptguard.delivery import NextHop
from tests.support.processes import StartStop, free_port

if TYPE_CHECKING:
    from aiosmtpd.smtp import Envelope, Session


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the sink received it: envelope sender, accepted recipients and the raw DATA bytes.

    ``mail_from`` is ``""`` for the null sender (``MAIL FROM:<>``, e.g. a bounce); ``data`` is the DATA content
    after dot-unstuffing, with its original CRLF line endings.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_params: str = ""  # what MAIL FROM carried after the path, as sent (a sink with `extensions` only)
    rcpt_params: tuple[str, ...] = ()  # and each RCPT TO, in order
    xforward: str = ""  # the XFORWARD attributes of the transaction, as sent


class _Handler:
    """aiosmtpd hooks that record messages and optionally refuse recipients or DATA."""

    def __init__(self, sink: RecordingSink) -> None:
        self._sink = sink

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = (self._sink.reply_rcpt or {}).get(address)
        if reply is not None:
            return reply
        if self._sink.max_rcpts and len(envelope.rcpt_tos) >= self._sink.max_rcpts:
            return "452 4.5.3 Error: too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        self._sink.connections += 1
        extra = ["250-PIPELINING"] if self._sink.pipelining else []  # aiosmtpd reads pipelined commands in order
        if self._sink.extensions:
            extra += ["250-DSN", "250-XFORWARD NAME ADDR PROTO HELO SOURCE"]  # as Postfix: IDENT and PORT not asked
        return [*responses[:-1], *extra, responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self._sink.reply_data is not None:
            return self._sink.reply_data
        data = envelope.original_content
        if data is None:  # aiosmtpd always sets it before calling the hook; keep the type checker honest
            data = b""
        mail_from = envelope.mail_from or ""
        if mail_from == "<>":  # aiosmtpd keeps the null reverse-path literally; a bounce has mail_from == ""
            mail_from = ""
        self._sink._record(Message(mail_from, tuple(envelope.rcpt_tos), bytes(data),
                                   getattr(envelope, "raw_mail", ""), tuple(getattr(envelope, "raw_rcpts", ())),
                                   getattr(envelope, "raw_xforward", "")))
        if self._sink.delay_data:  # recorded first, answered late: a client that dies meanwhile may resend
            await asyncio.sleep(self._sink.delay_data)
        return "250 2.0.0 OK: recorded"


class _ExtendedSMTP(SMTP):
    """An SMTP server that offers DSN and XFORWARD, as Postfix's does, and records what MAIL, RCPT and XFORWARD
    carried, to the letter: the sink with `extensions` (which its handler's EHLO hook announces)."""

    async def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        raw = (arg or "").partition(">")[2].strip()
        await super().smtp_MAIL(_only_path(arg))
        if self.envelope is not None and self.envelope.mail_from is not None:
            self.envelope.raw_mail = raw  # type: ignore[attr-defined]
            self.envelope.raw_rcpts = []  # type: ignore[attr-defined]

    async def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        count = len(self.envelope.rcpt_tos) if self.envelope is not None else 0
        await super().smtp_RCPT(_only_path(arg))
        if self.envelope is not None and len(self.envelope.rcpt_tos) > count:
            self.envelope.raw_rcpts.append((arg or "").partition(">")[2].strip())  # type: ignore[attr-defined]

    async def smtp_XFORWARD(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        assert self.envelope is not None
        before = getattr(self.envelope, "raw_xforward", "")
        self.envelope.raw_xforward = f"{before} {arg or ''}".strip()  # type: ignore[attr-defined]
        await self.push("250 2.0.0 Ok")


def _only_path(arg: str | None) -> str | None:
    """A MAIL or RCPT argument without its parameters but BODY and SMTPUTF8 (which aiosmtpd itself takes)."""
    if arg is None:
        return None
    head, _, rest = arg.partition(">")
    kept = [word for word in rest.split() if word.upper().split("=")[0] in ("BODY", "SMTPUTF8", "SIZE")]
    return head + ">" + "".join(" " + word for word in kept)


class _Controller(Controller):
    def __init__(self, *args: object, extended: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.extended = extended

    def factory(self) -> SMTP:
        if not self.extended:
            return super().factory()
        return _ExtendedSMTP(self.handler, **self.SMTP_kwargs)


class RecordingSink(StartStop):
    """A real SMTP server on 127.0.0.1 that records every message it accepts.

    The port is chosen once, so ``stop()`` followed by ``start()`` serves on the same port again (a Postfix
    instance whose ``relayhost`` points here keeps working).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        reply_rcpt: dict[str, str] | None = None,
        reply_data: str | None = None,
        delay_data: float = 0.0,
        pipelining: bool = False,
        max_rcpts: int = 0,
        extensions: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self.max_rcpts = max_rcpts  # recipients per transaction; more get 452 (Postfix: smtpd_recipient_limit)
        self.port = port if port is not None else free_port()
        self.reply_rcpt = reply_rcpt
        self.reply_data = reply_data
        self.delay_data = delay_data
        self.pipelining = pipelining
        self.extensions = extensions  # offer DSN and XFORWARD, and record what MAIL, RCPT and XFORWARD carried
        self.connections = 0  # EHLOs seen: how many SMTP sessions clients opened
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._controller: Controller | None = None

    # -- recording -------------------------------------------------------------------------------------------

    def _record(self, message: Message) -> None:
        with self._lock:
            self._messages.append(message)

    @property
    def messages(self) -> list[Message]:
        """A snapshot of the messages received so far, in arrival order."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def rcpts(self) -> list[str]:
        """Every recipient of every message received so far, in arrival order."""
        return [rcpt for message in self.messages for rcpt in message.rcpt_tos]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Message]:
        """Poll until at least ``count`` messages arrived; raise AssertionError listing what did arrive."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages
            if len(got) >= count:
                return got
            if time.monotonic() >= deadline:
                summary = [(m.mail_from, m.rcpt_tos, len(m.data)) for m in got]
                raise AssertionError(f"sink got {len(got)} of {count} messages within {timeout:.1f}s: {summary}")
            time.sleep(0.05)

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def hop(self) -> NextHop:
        """This sink as a next hop for the relay, the quarantine or the web page."""
        return NextHop(self.host, self.port, timeout=10)

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> Self:
        if self._controller is not None:
            return self
        controller = _Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            decode_data=False,
            enable_SMTPUTF8=True,
            ready_timeout=10.0,
            extended=self.extensions,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RecordingSink {self.host}:{self.port} {state}, {len(self.messages)} messages>"
