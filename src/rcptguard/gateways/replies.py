"""Plain-words texts for protocol replies: one line, ASCII, bounded length, no injection."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from rcptguard.model import Action, Verdict

MAX_REPLY_TEXT = 400  # Postfix and most clients show a reply line of this length whole


def ascii_line(text: str, limit: int = MAX_REPLY_TEXT) -> str:
    """One line of printable ASCII: accents dropped, other letters as '?', controls as spaces."""
    if not (text.isascii() and text.isprintable() and "  " not in text and text == text.strip()):
        text = _spelled(text)  # (most texts are one already: a reply's detail made for every message)
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _spelled(text: str) -> str:
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch if ch.isprintable() else " ")
            continue
        base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        out.append(base or "?")
    return " ".join("".join(out).split())


def explanation(verdict: Verdict) -> str:
    """What looked wrong and what was probably meant, for a bounce or a warning header: the finding, the
    message of a force rule if one decided, and the suggestion."""
    forced = verdict.signal("FORCE_RULE")
    message = forced.evidence.get("message", "") if forced else ""
    reason = verdict.reason.removeprefix(message).strip() if message else verdict.reason
    parts = [reason.split(". ", 1)[0].rstrip(".") + "."]
    if message:
        parts.append(message)
    parts.append(f"Did you mean {verdict.suggestion}? Check the address." if verdict.suggestion
                 else "Check the address.")
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """One SMTP reply: code, enhanced status (RFC 3463) and text. `str()` is the reply line without CRLF."""

    code: int
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    def saying(self, detail: str, limit: int = 200) -> SmtpReply:
        """The same reply with `detail` (one ASCII line, bounded) after its text."""
        return SmtpReply(self.code, self.status, f"{self.text}: {ascii_line(detail, limit)}")


class Relayed(StrEnum):
    """Every answer of the relay that is not a verdict (those are `rcpt_reply`): one table, `RELAY_REPLIES`."""

    NOT_ALLOWED = "not allowed"
    TOO_MANY_CONNECTIONS = "too many connections"
    TOO_MANY_FROM_CLIENT = "too many connections from the client"
    JUNK_COMMANDS = "junk commands"
    DATA_TOO_SLOW = "DATA took too long"
    RELAY_DENIED = "relaying denied"
    NEEDS_SMTPUTF8 = "needs SMTPUTF8"
    SENDER_OK = "sender accepted"
    RECIPIENT_OK = "recipient accepted"
    RECIPIENT_AGAIN = "recipient named again"
    INTERNAL = "internal error"
    QUARANTINE_UNAVAILABLE = "quarantine unavailable"
    NEXT_HOP_DEFERRED = "next hop deferred"
    NEXT_HOP_SLOW = "next hop slow"
    NEXT_HOP_STILL_BUSY = "next hop still busy"
    REPORT_FAILED = "delivery report failed"
    DELIVERED = "delivered"


RELAY_REPLIES: dict[Relayed, SmtpReply] = {
    Relayed.NOT_ALLOWED: SmtpReply(554, "5.7.1", "This client may not send through this relay"),
    Relayed.TOO_MANY_CONNECTIONS: SmtpReply(421, "4.7.0", "Too many connections; try again later"),
    Relayed.TOO_MANY_FROM_CLIENT: SmtpReply(421, "4.7.0", "Too many connections from this client; try again later"),
    Relayed.JUNK_COMMANDS: SmtpReply(421, "4.7.0", "Too many commands without a message; closing"),
    Relayed.DATA_TOO_SLOW: SmtpReply(421, "4.4.2", "The message took too long to arrive; closing"),
    Relayed.RELAY_DENIED: SmtpReply(550, "5.7.1", "Relaying denied: this client may not send through this relay"),
    Relayed.NEEDS_SMTPUTF8: SmtpReply(553, "5.6.7", "This address needs SMTPUTF8: give MAIL FROM the SMTPUTF8 "
                                                     "parameter"),
    Relayed.SENDER_OK: SmtpReply(250, "2.1.0", "OK"),
    Relayed.RECIPIENT_OK: SmtpReply(250, "2.1.5", "OK"),
    Relayed.RECIPIENT_AGAIN: SmtpReply(250, "2.1.5", "OK (already a recipient)"),
    Relayed.INTERNAL: SmtpReply(451, "4.3.0", "Internal error, message not accepted; try again later"),
    Relayed.QUARANTINE_UNAVAILABLE: SmtpReply(451, "4.3.0", "Quarantine unavailable; try again later"),
    Relayed.NEXT_HOP_DEFERRED: SmtpReply(451, "4.4.0", "Next hop deferred"),
    Relayed.NEXT_HOP_SLOW: SmtpReply(451, "4.4.1", "The next hop is slow to answer; try again later"),
    Relayed.NEXT_HOP_STILL_BUSY: SmtpReply(451, "4.4.1", "The next hop has not answered yet; try again later"),
    Relayed.REPORT_FAILED: SmtpReply(451, "4.4.0", "Could not send a delivery report; try again later"),
    Relayed.DELIVERED: SmtpReply(250, "2.0.0", "OK"),
}


def rcpt_reply(verdict: Verdict, reject_status: str) -> SmtpReply:
    """The relay's answer to RCPT for a verdict: the door's verdict table. Pass, warn and hold are taken (what
    happens to them is decided after DATA); reject is refused with the explanation; a malformed address gets
    the engine's reason, the words `rcptguard check` prints."""
    if verdict.signal("MALFORMED_ADDRESS") is not None:
        return SmtpReply(553, "5.1.3", ascii_line(verdict.reason))
    if verdict.action is Action.REJECT:
        return SmtpReply(550, reject_status, ascii_line(explanation(verdict)))
    return RELAY_REPLIES[Relayed.RECIPIENT_OK]
