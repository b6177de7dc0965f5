"""Handing a message to the next hop over SMTP, with a per-recipient account of what happened.

Used by the relay (forwarding what passes) and by the quarantine (delivering what is released). A
recipient is `accepted` only when the next hop said 250 to its RCPT and to the DATA that followed.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiosmtplib

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
    accepted, temp, perm = [], {}, {}
    for rcpt in rcpts:
        code, reply = smtp.rcpt(rcpt)
        if code in (250, 251):
            accepted.append(rcpt)
        elif 400 <= code < 500:
            temp[rcpt] = (code, _text(reply))
        else:
            perm[rcpt] = (code, _text(reply))
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
    """Persistent connections to one next hop for an asyncio server (aiosmtplib), reused across messages.

    Same contract as `deliver`; a stale idle connection (closed before MAIL) is retried once on a new one.
    """

    def __init__(self, hop: NextHop, size: int = 32) -> None:
        self.hop = hop
        self.size = size
        self._idle: list[aiosmtplib.SMTP] = []

    async def deliver(self, mail_from: str, rcpts: Sequence[str], data: bytes, *,
                      smtputf8: bool = False) -> DeliveryResult:
        if not rcpts:
            return DeliveryResult()
        for attempt in range(2):
            smtp = self._idle.pop() if self._idle else None
            reused = smtp is not None
            try:
                if smtp is None:
                    smtp = aiosmtplib.SMTP(hostname=self.hop.host, port=self.hop.port, timeout=self.hop.timeout,
                                           local_hostname=self.hop.helo, start_tls=False)
                    await smtp.connect()
                result = await _async_transaction(smtp, mail_from, rcpts, data, smtputf8)
            except ClosedBeforeMail as exc:
                await _async_close(smtp)
                if reused and attempt == 0:
                    continue
                return _failed(self.hop, exc, rcpts)
            except UnicodeError:
                await _async_close(smtp)
                return _unencodable(rcpts)
            except (OSError, aiosmtplib.SMTPException, TimeoutError) as exc:
                await _async_close(smtp)
                if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code != 421:
                    return _whole(exc.code, exc.message, rcpts)
                return _failed(self.hop, exc, rcpts)
            if len(self._idle) < self.size:
                self._idle.append(smtp)
            else:
                await _async_close(smtp)
            return result
        return _failed(self.hop, smtplib.SMTPServerDisconnected("next hop closed the connection"), rcpts)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp in idle:
            await _async_close(smtp)


async def _async_transaction(smtp: aiosmtplib.SMTP, mail_from: str, rcpts: Sequence[str], data: bytes,
                             smtputf8: bool) -> DeliveryResult:
    await smtp._ehlo_or_helo_if_needed()  # noqa: SLF001 - the one public way is through sendmail()
    options: list[str] = []
    encoding = "ascii"
    if smtputf8 and smtp.supports_extension("smtputf8"):
        options.append("SMTPUTF8")
        encoding = "utf-8"
    if smtp.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    try:
        await smtp.mail(mail_from, options=options, encoding=encoding)
    except aiosmtplib.SMTPSenderRefused as exc:
        if exc.code == 421:
            raise ClosedBeforeMail(f"421 {exc.message}") from exc
        await smtp.rset()
        return _whole(exc.code, exc.message, rcpts)
    except (OSError, aiosmtplib.SMTPServerDisconnected) as exc:
        raise ClosedBeforeMail(str(exc)) from exc
    accepted: list[str] = []
    temp: dict[str, tuple[int, str]] = {}
    perm: dict[str, tuple[int, str]] = {}
    for rcpt in rcpts:
        try:
            await smtp.rcpt(rcpt, encoding=encoding)
            accepted.append(rcpt)
        except aiosmtplib.SMTPRecipientRefused as exc:
            (temp if 400 <= exc.code < 500 else perm)[rcpt] = (exc.code, exc.message)
    if temp or not accepted:
        await smtp.rset()
        return DeliveryResult((), {**temp, **dict.fromkeys(accepted, (451, "not sent: retry"))}, perm)
    try:
        await smtp.data(data)
    except aiosmtplib.SMTPDataError as exc:
        if exc.code == 421:
            raise
        return _whole(exc.code, exc.message, accepted, perm)
    return DeliveryResult(tuple(accepted), {}, perm)


async def _async_close(smtp: aiosmtplib.SMTP | None) -> None:
    if smtp is None:
        return
    try:
        await smtp.quit()
    except (OSError, aiosmtplib.SMTPException, TimeoutError):
        smtp.close()
