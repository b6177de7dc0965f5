"""The sensitivity scanner: what a message carries, as named signals with evidence and a severity.

    scan_message(raw: bytes, limits=None) -> Sensitivity

One plain function over a message's octets, used by `rcptguard scan`, by the relay (a sensitive message to a
suspect recipient is held more firmly) and by any other door. It never raises on what it is given and never
returns the sensitive values themselves: a signal says which part, which pattern and how many times.
Content does not make a slip more likely; it raises the stakes, so it moves the action, by policy.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable

from rcptguard.content.detectors import Hit, Text, attachment, detect
from rcptguard.content.extract import Limits, Part, parts, single_part
from rcptguard.content.model import ContentSignal, Sensitivity, Severity
from rcptguard.model import Action, Signal, Verdict

__all__ = ["ContentSignal", "Limits", "Sensitivity", "Severity", "phrase", "raise_verdict", "scan_light",
           "scan_message", "scan_parts"]

PHRASES = {
    "MARKING_CLASSIFIED": "a classification marking",
    "MARKING_HANDLING": "a handling marking (such as CUI or FOUO)",
    "MARKING_CONFIDENTIAL": "text marked confidential",
    "PASSPORT": "what looks like a passport number",
    "NATIONAL_ID": "what looks like a national identity number",
    "PAYMENT_CARD": "what looks like a payment card number",
    "IBAN": "what looks like a bank account number (IBAN)",
    "CREDENTIAL": "what looks like a password or access key",
    "TRAVEL": "what looks like a travel itinerary",
    "MEDICAL": "what looks like medical information",
    "ATTACHMENT_KEYS": "a key or password file",
    "ATTACHMENT_NAME": "an attachment whose name suggests sensitive content",
}


def phrase(name: str) -> str:
    return PHRASES.get(name, name.lower().replace("_", " "))


def _signals(hits: Iterable[tuple[str, Hit]]) -> list[ContentSignal]:
    """Hits grouped by (signal, severity, pattern, part), with their count."""
    counted: Counter[tuple[str, Severity, str, str]] = Counter()
    for label, (name, severity, pattern) in hits:
        counted[name, severity, pattern, label] += 1
    return [ContentSignal(name, severity, phrase(name), {"part": label, "pattern": pattern, "count": str(count)})
            for (name, severity, pattern, label), count in counted.items()]


def _hits(items: Iterable[Part]) -> Iterable[tuple[str, Hit]]:
    for part in items:
        if part.filename:
            for hit in attachment(part.filename, part.content_type):
                yield part.label, hit
        if part.text:
            for hit in detect(Text(part.text)):
                yield part.label, hit


def scan_parts(items: Iterable[Part]) -> Sensitivity:
    """The sensitivity of parts already extracted."""
    listed = list(items)
    signals = sorted(_signals(_hits(listed)), key=lambda s: (-s.severity, s.name))
    unread = tuple(f"{p.label}: {p.unread}" for p in listed if p.unread)
    severity = max((s.severity for s in signals), default=Severity.NONE)
    return Sensitivity(severity, tuple(signals), unread)


_UNREADABLE = (RecursionError, MemoryError, ValueError, LookupError, UnicodeError, TypeError)


def scan_message(raw: bytes, limits: Limits | None = None) -> Sensitivity:
    """The sensitivity of one message (its octets as sent); never raises on broken MIME or hostile attachments."""
    try:
        return scan_parts(parts(raw, limits))
    except _UNREADABLE as exc:
        return _not_read(exc)


LIGHT_OCTETS = 32_768
PLAIN = frozenset({"text/plain"})


def scan_light(raw: bytes, limits: Limits | None = None) -> Sensitivity | None:
    """`scan_message` of a message of at most LIGHT_OCTETS that is one plain text part (most mail), else None.

    Such a scan costs about a tenth of a millisecond, less than handing the message to a thread; so a door runs it
    where it is, and hands anything else (HTML, attachments, long messages) with `scan_message` to a thread."""
    if len(raw) > LIGHT_OCTETS:
        return None
    try:
        single = single_part(raw, limits or Limits(), PLAIN)
        return None if single is None else scan_parts([single])
    except _UNREADABLE as exc:
        return _not_read(exc)


def _not_read(exc: BaseException) -> Sensitivity:
    return Sensitivity(Severity.NONE, (), (f"message: not read ({type(exc).__name__})",))


def raise_verdict(verdict: Verdict, found: Sensitivity, threshold: Severity) -> Verdict:
    """A recipient's verdict with what its message carries: a warning becomes a hold when the message is at least
    `threshold` sensitive; a hold (or a warning that stays one) says what the message carries, in its reason and
    a SENSITIVE_CONTENT signal, for the notice, the page and the admin list. A pass is never changed."""
    if verdict.action is Action.PASS or found.severity is Severity.NONE or verdict.action is Action.REJECT:
        return verdict
    raised = verdict.action is Action.WARN and found.severity >= threshold
    evidence = {"severity": str(found.severity), "found": "; ".join(dict.fromkeys(s.phrase for s in found.raised_by)),
                "raised": "warn→hold" if raised else ""}
    sentence = found.reason()
    if raised:
        sentence = sentence.removesuffix(".") + ", so it is held until you confirm the address."
    return dataclasses.replace(
        verdict, action=Action.HOLD if raised else verdict.action,
        signals=(*verdict.signals, Signal("SENSITIVE_CONTENT", evidence)),
        reason=f"{verdict.reason} {sentence}".strip())
