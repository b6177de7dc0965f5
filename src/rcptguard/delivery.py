"""Handing a message to the next hop over SMTP, with a per-recipient account of what happened.

Used by the relay (forwarding what passes) and by the quarantine (delivering what is released). A
recipient is `accepted` only when the next hop said 250 to its RCPT and to the DATA that followed.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field


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
    """One SMTP transaction to the next hop. A recipient refused with 4xx aborts the whole transaction
    (RSET, no DATA), so that a retry of the message cannot deliver twice to the others."""
    if not rcpts:
        return DeliveryResult()
    try:
        with smtplib.SMTP(hop.host, hop.port, local_hostname=hop.helo, timeout=hop.timeout) as smtp:
            smtp.ehlo_or_helo_if_needed()
            options: list[str] = []
            if smtputf8 and smtp.has_extn("smtputf8"):
                options.append("SMTPUTF8")
            if smtp.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            code, reply = smtp.mail(mail_from, options)
            if code != 250:
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
            if code != 250:
                return _whole(code, _text(data_reply), accepted, perm)
            return DeliveryResult(tuple(accepted), {}, perm)
    except smtplib.SMTPServerDisconnected as exc:
        return DeliveryResult(error=f"next hop {hop} disconnected: {exc}",
                              temp_failed=dict.fromkeys(rcpts, (451, "next hop disconnected")))
    except smtplib.SMTPResponseException as exc:
        return _whole(exc.smtp_code, _text(exc.smtp_error), rcpts)
    except (OSError, smtplib.SMTPException) as exc:
        return DeliveryResult(error=f"next hop {hop} unreachable: {exc}",
                              temp_failed=dict.fromkeys(rcpts, (451, "next hop unreachable")))


def _whole(code: int, text: str, rcpts: Sequence[str],
           perm: dict[str, tuple[int, str]] | None = None) -> DeliveryResult:
    """The whole transaction failed with one reply: every recipient shares it."""
    perm = dict(perm or {})
    if 400 <= code < 500:
        return DeliveryResult((), dict.fromkeys(rcpts, (code, text)), perm, error=f"{code} {text}")
    return DeliveryResult((), {}, {**perm, **dict.fromkeys(rcpts, (code, text))}, error=f"{code} {text}")
