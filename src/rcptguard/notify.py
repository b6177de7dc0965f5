"""Notices to senders: "your message is held, choose here", "your message was not sent", "it could not be
delivered" and "an administrator decided about it", all sent by `send_owed` from what the quarantine owes.

Plain text plus simple HTML, from Jinja2 templates an operator can override (`[notify] template_dir`:
files named like those in `rcptguard/data/templates/`). A notice never contains the held message's body.
It goes out from the null sender with `Auto-Submitted: auto-replied`, and is never sent to the null sender
or in answer to a message that is itself automatic (RFC 3834).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesHeaderParser, BytesParser
from email.utils import format_datetime, make_msgid
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import jinja2

from rcptguard import logs, lookalike
from rcptguard.delivery import NextHop, deliver
from rcptguard.dsn import EnvelopeParams
from rcptguard.store.quarantine import notice_kind, summarize
from rcptguard.store.schema import Delivery, HoldState

if TYPE_CHECKING:
    from rcptguard.model import Verdict
    from rcptguard.store.links import Links
    from rcptguard.store.quarantine import Hold, Quarantine

log = logging.getLogger("rcptguard.notify")


class HeldView(Protocol):
    """What a notice needs of a hold (rcptguard.store.quarantine.Hold has it)."""

    @property
    def recipient(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def suggestion(self) -> str | None: ...
    @property
    def mail_from(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def message_id_header(self) -> str: ...
    @property
    def received_at(self) -> dt.datetime: ...
    @property
    def about_person(self) -> bool: ...  # held for doubts of the person at a right domain, not of the domain


class Doubted(Protocol):
    """A recipient a notice or the page tells of: a verdict, a hold, a flagged warning."""

    @property
    def about_person(self) -> bool: ...  # the person at a right domain doubted, not the domain


@dataclass(frozen=True, slots=True)
class Doubt:
    """How a notice or the confirmation page names what was doubted of `count` recipients, `people` of them persons
    at a right domain (`Verdict.about_person`, `Hold.about_person`) and the rest mistyped-looking addresses."""

    people: int
    count: int

    @classmethod
    def of(cls, recipients: Sequence[Doubted]) -> Doubt:
        return cls(sum(1 for r in recipients if r.about_person), len(recipients))

    def _said(self, addresses: tuple[str, str], people: tuple[str, str], mixed: str) -> str:
        """The words for mistyped-looking addresses only, persons doubted only (each: one, several), or both."""
        if not self.people:
            return addresses[self.count != 1]
        return people[self.count != 1] if self.people == self.count else mixed

    @property
    def check(self) -> str:
        """The notice's heading."""
        return self._said(("Check the address",) * 2, ("Check the recipient",) * 2, "Check the address")

    @property
    def doubted(self) -> str:
        """What the message went to: "an address that looks mistyped"."""
        return self._said(("an address that looks mistyped", "addresses that look mistyped"),
                          ("a recipient who may not be the one you meant",
                           "recipients who may not be the ones you meant"),
                          "addresses that look mistyped or may not be the ones you meant")

    @property
    def because(self) -> str:
        """Why it was held: "an address looks mistyped"."""
        return self._said(("an address looks mistyped", "addresses look mistyped"),
                          ("the recipient may not be the one you meant",
                           "the recipients may not be the ones you meant"),
                          "addresses look mistyped or may not be the ones you meant")

    @property
    def topics(self) -> str:
        """What a warning quiets: "this domain", or the addresses of persons doubted."""
        return self._said(("this domain", "these domains"), ("this address", "these addresses"),
                          "these domains and addresses")


@dataclass(frozen=True, slots=True)
class Flagged:
    """A recipient a notice tells of that is not a hold (a warning, a message in Postfix's hold queue)."""

    recipient: str
    reason: str
    suggestion: str | None
    about_person: bool = False  # the recipient may not be the one meant, not its address mistyped (as a Verdict's)

    @classmethod
    def of(cls, verdict: Verdict) -> Flagged:
        return cls(verdict.address, verdict.reason, verdict.suggestion, verdict.about_person)


@dataclass(frozen=True)
class Notifier:
    host: str = ""
    sender: str = ""  # From: of notices; default MAILER-DAEMON@host
    template_dir: Path | None = None
    name_deciders: bool = False  # an administrator's decision notice names who decided (the audit log's actor)

    @cached_property
    def _env(self) -> jinja2.Environment:
        loaders: list[jinja2.BaseLoader] = []
        if self.template_dir is not None:
            loaders.append(jinja2.FileSystemLoader(self.template_dir))
        loaders.append(jinja2.PackageLoader("rcptguard", "data/templates"))
        env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "html.j2"), default_for_string=False), keep_trailing_newline=True)
        env.filters["lookalike"] = lambda address: lookalike.note(str(address)) or ""  # "In gmаil.com, the 'а' is…"
        return env

    @cached_property
    def hostname(self) -> str:  # looked up once: a notice names it several times
        return self.host or socket.getfqdn() or "localhost"

    def held(self, holds: Sequence[HeldView], link: str, retention: dt.timedelta) -> bytes:
        """The notice that a message waits for its sender's choice, with the one link to the page."""
        first = holds[0]
        subject = f"Not sent yet: {first.subject}" if first.subject else "Your message has not been sent yet"
        return self._message("notice_hold", holds, subject, link=link, retention=duration_words(retention))

    def expired(self, holds: Sequence[HeldView], retention: dt.timedelta,
                report: DeliveryReport | None = None) -> bytes:
        """The notice that a held message was not sent, because nobody chose within the retention."""
        first = holds[0]
        subject = f"Not sent: {first.subject}" if first.subject else "Your message was not sent"
        return self._message("notice_expired", holds, subject, report=report, retention=duration_words(retention))

    def undelivered(self, holds: Sequence[HeldView], report: DeliveryReport | None = None) -> bytes:
        """The notice that a released message could not be delivered: refused for good, or deferred too long
        (each hold's last_error says which)."""
        first = holds[0]
        subject = f"Not delivered: {first.subject}" if first.subject else "Your message could not be delivered"
        return self._message("notice_undelivered", holds, subject, report=report)

    def decided(self, holds: Sequence[Hold], report: DeliveryReport | None = None) -> bytes:
        """The notice that an administrator decided about held recipients (cancelled, or released: and how its
        delivery went so far), so that the sender no longer waits for the expiry notice the held notice
        promised."""
        first = holds[0]
        subject = f"Decided by an administrator: {first.subject}" if first.subject else \
            "An administrator decided about your message"
        items = [{
            "recipient": hold.recipient, "state": hold.state, "to": hold.deliver_to or hold.recipient,
            "decided": _words_when(hold.decided_at or hold.created_at),
            "by": (hold.decided_by or None) if self.name_deciders else None,
            "delivery": hold.delivery, "delivered": _words_when(hold.delivered_at) if hold.delivered_at else None,
            "last_error": hold.last_error,
        } for hold in holds]
        return self._message("notice_decided", holds, subject, report=report, items=items)

    def relayed(self, mail_from: str, delivered: Sequence[str], original: bytes, params: EnvelopeParams, *,
                received: dt.datetime, host: str, orcpts: dict[str, str | None] | None = None) -> bytes:
        """The success report the sender asked for (NOTIFY=SUCCESS) of recipients handed to a next hop (`host`)
        that sends no reports itself: `Action: relayed`, as RFC 3461 §4.1 asks of a relay to a non-DSN server."""
        subject, message_id = summarize(original)
        report = DeliveryReport(tuple(ReportedRecipient(
            rcpt, "2.0.0", f"handed to {host}, which does not offer delivery reports",
            (orcpts or {}).get(rcpt) or params.rcpt(rcpt).orcpt, "relayed") for rcpt in delivered),
            received, original, params.mail.envid, full=False)
        title = f"Delivered: {subject}" if subject else "Your message was delivered"
        return self._compose("notice_relayed", mail_from, title, in_reply_to=message_id, report=report,
                             subject=subject, date=format_datetime(received), delivered=delivered, next_hop=host)

    def warned(self, mail_from: str, items: Sequence[Flagged], subject: str | None, quiet: dt.timedelta, *,
               in_reply_to: str | None = None) -> bytes:
        """The notice that a message was delivered but some of its addresses look mistyped or may be the wrong
        person's (a warning, not a hold), to the sender, who can fix the address; `quiet`: how long no other
        warning of these domains (or addresses, for a person doubted) follows. `subject` None: told while the
        message is being sent (the policy service, at RCPT), not after."""
        doubt = Doubt.of(items)
        title = f"{doubt.check}: " + ", ".join(item.recipient for item in items)
        return self._compose("notice_warned", mail_from, title, in_reply_to=in_reply_to, subject=subject,
                             items=items, quiet=duration_words(quiet), doubt=doubt)

    def queue_held(self, mail_from: str, items: Sequence[Flagged], *, more: int = 0, queue_id: str = "") -> bytes:
        """The policy service's notice that Postfix holds a message in its queue for these recipients (`more`:
        held recipients not listed); an administrator releases it there."""
        listed = ", ".join(item.recipient for item in items) + (f" and {more} more" if more else "")
        return self._compose("notice_queue_hold", mail_from, f"Your message to {listed} is on hold", items=items,
                             more=more, queue_id=queue_id)

    def _message(self, template: str, holds: Sequence[HeldView], subject: str, *,
                 report: DeliveryReport | None = None, **context: Any) -> bytes:  # noqa: ANN401
        first = holds[0]
        return self._compose(template, first.mail_from, subject, in_reply_to=first.message_id_header, report=report,
                             holds=holds, subject=first.subject, date=format_datetime(first.received_at),
                             doubt=Doubt.of(holds), **context)

    def _compose(self, template: str, to: str, title: str, *, in_reply_to: str | None = None,
                 report: DeliveryReport | None = None, **context: Any) -> bytes:  # noqa: ANN401
        """A notice to `to`: the template's text and HTML parts, automatic (RFC 3834), from the null sender's
        MAILER-DAEMON (or `sender`), in reply to the message it is about when its Message-ID is known. With a
        `report`, a delivery status notification (RFC 3464) whose first part is that notice: mail clients show it
        as a bounce, scripts read its message/delivery-status part."""
        values = {"host": self.hostname, **context}
        text = self._env.get_template(f"{template}.txt.j2").render(values)
        html = self._env.get_template(f"{template}.html.j2").render(values)
        message = EmailMessage(policy=email_policy.SMTP if to.isascii() else email_policy.SMTPUTF8)
        message["From"] = self.sender or f"MAILER-DAEMON@{self.hostname}"
        message["To"] = header_safe(to)
        message["Subject"] = header_safe(title)
        message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
        message["Message-ID"] = make_msgid("rcptguard", domain=self.hostname)
        message["Auto-Submitted"] = "auto-replied"
        if re.fullmatch(r"<[^<>\s]+>", in_reply_to or ""):
            message["In-Reply-To"] = in_reply_to
            message["References"] = in_reply_to
        # 7bit/8bit rather than quoted-printable: the link stays one unbroken line in any raw view.
        message.set_content(text, cte="7bit" if text.isascii() else "8bit")
        message.add_alternative(html, subtype="html", cte="7bit" if html.isascii() else "8bit")
        if report is not None:
            report.wrap(message, self.hostname)
        return message.as_bytes()


NOTICE_LIFETIME = dt.timedelta(days=5)  # a notice the next hop defers this long is given up


@dataclass(frozen=True, slots=True)
class ReportedRecipient:
    """One recipient of a delivery report: what became of it (failed, or relayed to a next hop that sends no
    reports), its status code (RFC 3463) and why."""

    recipient: str
    status: str
    diagnostic: str
    original: str | None = None  # ORCPT as the client gave it ("rfc822;" xtext)
    action: Literal["failed", "relayed"] = "failed"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The machine-readable part of a notice that says recipients were not delivered (RFC 3464), with the
    original message's headers (or, when the sender asked RET=FULL, the whole message)."""

    recipients: tuple[ReportedRecipient, ...]
    arrival: dt.datetime
    original: bytes
    envid: str | None = None
    full: bool = False

    def wrap(self, message: EmailMessage, host: str) -> None:
        """Make `message` (headers and a multipart/alternative body) this report's human-readable part."""
        readable = MIMEPart(policy=message.policy)
        readable["Content-Type"] = message["Content-Type"]
        readable.set_payload(message.get_payload())
        del message["Content-Type"]
        message["Content-Type"] = "multipart/report; report-type=delivery-status"
        per_message = [("Reporting-MTA", f"dns; {host}"), ("Arrival-Date", format_datetime(self.arrival))]
        if self.envid:
            per_message.insert(1, ("Original-Envelope-Id", self.envid))
        blocks: list[Message | str] = [_fields(per_message)]
        for one in self.recipients:
            fields: list[tuple[str, str]] = [("Original-Recipient", one.original)] if one.original else []
            fields += [("Final-Recipient", f"rfc822; {one.recipient}"), ("Action", one.action),
                       ("Status", one.status), ("Diagnostic-Code", f"X-Rcptguard; {header_safe(one.diagnostic)}")]
            blocks.append(_fields(fields))
        status = MIMEPart(policy=message.policy)
        status["Content-Type"] = "message/delivery-status"
        status.set_payload(blocks)
        returned = MIMEPart(policy=message.policy)
        if self.full:
            returned["Content-Type"] = "message/rfc822"
            returned.set_payload([BytesParser(policy=email_policy.compat32).parsebytes(self.original)])
        else:
            returned["Content-Type"] = "text/rfc822-headers"
            head = self.original.split(b"\r\n\r\n", 1)[0]
            returned.set_payload(head.decode("utf-8", "replace") + "\r\n")
        message.set_payload([readable, status, returned])


def _fields(pairs: Sequence[tuple[str, str]]) -> Message:
    block = Message(policy=email_policy.SMTP)
    for name, value in pairs:
        block[name] = value
    return block


@dataclass(frozen=True, slots=True)
class NoticeLinks:
    """How a held notice gets its link to the page: a fresh one-time link for the message, valid for `ttl`, under
    `base_url` (the page's public address)."""

    links: Links
    base_url: str
    ttl: dt.timedelta

    def issue(self, message_id: str) -> tuple[str, str]:
        """A new link for the message: (its URL, the raw token, to revoke it if the notice is not sent)."""
        raw = self.links.issue(message_id, self.ttl)
        return f"{self.base_url.rstrip('/')}/confirm/{raw}", raw


def send_owed(quarantine: Quarantine, notifier: Notifier, hop: NextHop, *, warn: Callable[[str], None],
              links: NoticeLinks | None = None, grace: dt.timedelta | None = None,
              message_ids: Sequence[str] | None = None) -> Counter[str]:
    """Send every notice the quarantine owes its senders (held messages, with a link from `links`; expired holds;
    released messages that could not be delivered; an administrator's decisions, once `grace` has passed: see
    Quarantine.owed_notices), one per message and kind, each claimed first so that two workers never send the
    same one, and record each outcome: sent, refused (for good), skipped (a bounce or an auto-reply gets none), or
    later (the next hop deferred it, or an operator's template failed: owed again for the next call, for
    NOTICE_LIFETIME). Without `links`, held notices are left to a caller that can make their links.
    `message_ids`: only the notices of these messages (the relay's, right after it held them). Returns the count
    of each outcome."""
    counts: Counter[str] = Counter()
    for group in quarantine.owed_notices(grace=grace).values():
        if message_ids is not None and group[0].message_id not in message_ids:
            continue
        if links is None and notice_kind(group[0]) == "held":  # its link needs the page's address: not ours
            continue
        claimed = quarantine.claim_notice(group)
        if not claimed:
            continue
        outcome = _send_notice(quarantine, notifier, hop, claimed, warn, links)
        counts[outcome] += 1
        quarantine.settle_notice(claimed, outcome)
        first = claimed[0]
        logs.event(log, "notice", logging.INFO if outcome in ("sent", "skipped") else logging.WARNING,
                   kind=notice_kind(first), outcome=outcome, message=first.message_id, to=first.mail_from,
                   holds=[hold.id for hold in claimed])
    return counts


def _send_notice(quarantine: Quarantine, notifier: Notifier, hop: NextHop, group: list[Hold],
                 warn: Callable[[str], None], links: NoticeLinks | None) -> str:
    first = group[0]
    if not wants_notice(first.mail_from, quarantine.content(first.id)):
        return "skipped"
    kind = notice_kind(first)
    if kind == "held":
        assert links is not None  # send_owed leaves held notices to callers that can make their links
        link, raw = links.issue(first.message_id)
        outcome = _send_made(hop, group, warn, lambda: notifier.held(group, link, links.ttl), quarantine.send_within)
        if outcome != "sent":
            links.links.revoke(raw)
        return outcome
    wanted = [hold for hold in group if _reported(kind, hold)]
    if not wanted:  # every recipient's NOTIFY asks for no such report (RFC 3461)
        return "skipped"
    return _send_made(hop, wanted, warn, lambda: _made(quarantine, notifier, kind, wanted), quarantine.send_within)


def _reported(kind: str, hold: Hold) -> bool:
    """Whether the sender asked to hear of what happened to this held recipient: never with NOTIFY=NEVER; of a
    failure (expired, cancelled, not deliverable) only when NOTIFY includes FAILURE (or was not given)."""
    params = hold.params.rcpt(hold.recipient)
    if params.never:
        return False
    failed = kind in ("expired", "undelivered") or hold.state == HoldState.CANCELLED
    return params.wants("FAILURE") or not failed


def _made(quarantine: Quarantine, notifier: Notifier, kind: str, group: list[Hold]) -> bytes:
    first = group[0]
    report = _report(quarantine, kind, group)
    if kind == "expired":
        return notifier.expired(group, (first.decided_at or first.created_at) - first.created_at, report)
    if kind == "decided":
        return notifier.decided(group, report)
    return notifier.undelivered(group, report)


def _held_as(hold: Hold) -> str:
    return "held as likely not the recipient meant" if hold.about_person else "held as a likely mistyped address"


def _report(quarantine: Quarantine, kind: str, group: list[Hold]) -> DeliveryReport | None:
    """The delivery status part of a notice: each recipient of `group` that ends without delivery (expired,
    cancelled, refused for good or deferred too long), with ENVID, ORCPT and RET as the sender gave them."""
    failed = []
    for hold in group:
        if kind == "expired":
            status, why = "5.4.7", f"{_held_as(hold)}; nobody released it in time"
        elif hold.state == HoldState.CANCELLED:
            status, why = "5.7.1", f"{_held_as(hold)}; cancelled by {hold.decided_by or 'a person'}"
        elif hold.delivery == Delivery.FAILED:
            code = re.search(r"\b[45]\.\d{1,3}\.\d{1,3}\b", hold.last_error or "")
            status, why = (f"5{code[0][1:]}" if code else "5.0.0"), hold.last_error or "not delivered"
        else:
            continue
        failed.append(ReportedRecipient(hold.deliver_to or hold.recipient, status, why,
                                        hold.params.rcpt(hold.recipient).orcpt))
    if not failed:
        return None
    first, mail = group[0], group[0].params.mail
    return DeliveryReport(tuple(failed), first.received_at, quarantine.content(first.id), mail.envid,
                          mail.ret == "FULL")


def _send_made(hop: NextHop, group: list[Hold], warn: Callable[[str], None], make: Callable[[], bytes],
               within: float) -> str:
    first = group[0]
    try:
        data = make()
    except (ValueError, TypeError, jinja2.TemplateError) as exc:
        warn(f"cannot write the notice to {first.mail_from}: {exc}")
        return _later_or_never(first, warn)  # an operator's template: once it is fixed, the next call sends it
    result = deliver(hop, "", [first.mail_from], data, smtputf8=not first.mail_from.isascii(), within=within)
    if first.mail_from in result.accepted:
        return "sent"
    reason = result.error or "; ".join(f"{c} {t}" for c, t in {**result.temp_failed, **result.perm_failed}.values())
    if result.temporary:
        warn(f"the notice to {first.mail_from} was not sent, will try again: {reason}")
        return _later_or_never(first, warn)
    warn(f"the notice to {first.mail_from} was refused: {reason}")
    return "refused"


def _later_or_never(hold: Hold, warn: Callable[[str], None]) -> str:
    if dt.datetime.now(dt.UTC) - (hold.decided_at or hold.created_at) > NOTICE_LIFETIME:
        warn(f"gave up the notice to {hold.mail_from}: not sent within {duration_words(NOTICE_LIFETIME)}")
        return "refused"
    return "later"


def header_safe(value: str) -> str:
    """A header value with no way to start another header: line breaks and controls become spaces."""
    cleaned = "".join(" " if (ord(c) < 32 or c in "\x7f\u2028\u2029\x85") else c for c in value)
    return " ".join(cleaned.split())[:300]


class Warned:
    """Which (sender, domain) pairs were warned lately: a sender hears about a mistyped-looking domain at most
    once in `interval` seconds. A recipient that may be the wrong person at a right domain is its own topic (the
    address, `topic`): a second wrong pick at the same partner the same day is told too. In memory, bounded to
    `size` pairs of each kind (the oldest forgotten first): a message to thousands of people doubted forgets other
    people, never the domains senders were told of."""

    @staticmethod
    def topic(recipient: str, verdict: Verdict) -> str:
        """What a warning of this recipient quiets: its domain, or the address when the person is doubted."""
        local, _, domain = recipient.rpartition("@")
        domain = verdict.domain_ascii or domain  # one form of an IDN for either
        return f"{local}@{domain}" if verdict.about_person else domain

    def __init__(self, interval: float, size: int) -> None:
        self.interval = interval
        self.size = size
        self._domains: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._people: OrderedDict[tuple[str, str], float] = OrderedDict()

    @staticmethod
    def key(sender: str, topic: str) -> tuple[str, str]:
        return sender.lower(), topic.lower()

    def _told(self, topic: str) -> OrderedDict[tuple[str, str], float]:
        return self._people if "@" in topic else self._domains

    def due(self, sender: str, topic: str) -> bool:
        """True (and remembered as told now) when this sender was not warned about this topic lately."""
        key, now, told = self.key(sender, topic), time.monotonic(), self._told(topic)
        last = told.get(key)
        if last is not None and now - last < self.interval:
            return False
        told[key] = now
        told.move_to_end(key)
        while len(told) > self.size:
            told.popitem(last=False)
        return True

    def forget(self, sender: str, topics: Sequence[str]) -> None:
        """The warning about these topics did not reach the sender: the next one may try again."""
        for topic in topics:
            self._told(topic).pop(self.key(sender, topic), None)


def wants_notice(mail_from: str, content: bytes) -> bool:
    """Never answer the null sender, nor a message that is itself automatic (RFC 3834)."""
    if not mail_from:
        return False
    end = content.find(b"\r\n\r\n")
    if b"auto-submitted" not in (content[:end] if end >= 0 else content).lower():
        return True  # no such field: nothing to parse (the relay asks this of every message with a warning)
    try:
        auto = BytesHeaderParser(policy=email_policy.default).parsebytes(content).get("auto-submitted")
    except Exception:  # noqa: BLE001 - unreadable headers: notify
        return True
    return auto is None or str(auto).strip().lower().startswith("no")


def _words_when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%d %B %Y, %H:%M UTC")


def duration_words(value: dt.timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


__all__ = ["Doubt", "Flagged", "HeldView", "NoticeLinks", "Notifier", "duration_words", "header_safe", "send_owed",
           "wants_notice"]
