"""Hosted mail's message-trace exports (CSV) and plain lists of domains or addresses with counts.

Layouts read, each by its column names (any order; other columns ignored):

- Microsoft 365 / Exchange Online, `Get-MessageTrace` or `Get-MessageTraceV2 | Export-Csv`: `Received`,
  `SenderAddress`, `RecipientAddress`, `Subject`, `Status` (Delivered, Failed, Pending, Expanded, Quarantined,
  FilteredAsSpam, GettingStatus), `MessageId`, `MessageTraceId`, `FromIP`, `ToIP`, `Size`; times in UTC.
  Source: the cmdlet's reference (learn.microsoft.com/powershell/module/exchange/get-messagetrace) and the
  MessageTrace report's fields (learn.microsoft.com/previous-versions/office/developer/o365-enterprise-developers/
  jj984335). Windows PowerShell 5.1 writes a `#TYPE …` line first, and may write UTF-16: both are read.
- Microsoft 365 historical search / "Enhanced summary" report (`Start-HistoricalSearch`, the new EAC's
  downloadable reports): `origin_timestamp_utc` (or `origin_timestamp`), `sender_address`, `recipient_status`
  (`address##Receive, Send;address##Receive, Fail`: each recipient with its events), `message_subject`,
  `total_bytes`, `message_id`, `network_message_id`, `original_client_ip`, `directionality` (Originating,
  Incoming), `connector_id`, `delivery_priority`. Source: "Message trace in the new Exchange admin center"
  (learn.microsoft.com/exchange/monitoring/trace-an-email-message/message-trace-modern-eac), "Enhanced summary
  reports".
- Google Workspace Email Log Search export: `Message ID`, `Start date`, `End date`, `Sender`, `Message size`,
  `Subject`, `Direction` (Sent, Received, Mixed), `Attachments`, `Recipient address`, `Event target`
  (SMTP_OUT, GMAIL_INBOX, …), `Event date`, `Event status`. Source: Google Workspace Admin Help, "Email log
  search export fields" (support.google.com/a/answer/13828463). One row per delivery step: a message's
  recipient is one record, from its first row.
- counts: `domain` or `address` a line, with an optional count after a space, tab or comma (`#` comments, an
  optional header line). Records carry the domain or address as their one recipient and the count.
"""

from __future__ import annotations

import csv
import datetime as dt
import email.utils
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from rcptguard.domains import normalize_domain
from rcptguard.errors import DomainError
from rcptguard.sources.addresses import message_id, normal_address
from rcptguard.sources.record import Record, Source

M365_STATUS = {"delivered": "sent", "failed": "bounced", "pending": "deferred", "gettingstatus": "deferred",
               "filteredasspam": "filtered"}
M365_EVENT = {"send": "sent", "deliver": "sent", "fail": "bounced", "defer": "deferred", "drop": "dropped",
              "expand": "expanded", "receive": "received"}
GOOGLE_STATUS = {"delivered": "sent", "bounced": "bounced", "deferred": "deferred", "dropped": "dropped"}
DIRECTION = {"originating": "out", "outbound": "out", "2": "out", "sent": "out", "incoming": "in", "inbound": "in",
             "1": "in", "received": "in", "mixed": "internal", "intraorg": "internal"}
_TIME_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S %Z", "%Y/%m/%d %H:%M:%S",
                 "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %I:%M %p", "%Y-%m-%d %H:%M:%S %Z")
_SPLIT = re.compile(r"[;,]\s*")
_FIELDS = re.compile(r"[,\t ;]+")


def open_text(path: Path) -> TextIO:
    """A text file in the encoding its first octets show: UTF-16 or UTF-8 (with or without a BOM)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return path.open(encoding="utf-16", errors="replace", newline="")
    return path.open(encoding="utf-8-sig", errors="replace", newline="")


def loose_time(text: str) -> dt.datetime | None:
    """A trace's time in any of the forms exports use, as an aware datetime (UTC when no zone is given)."""
    text = text.strip()
    if not text:
        return None
    when: dt.datetime | None = None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        for form in _TIME_FORMATS:
            try:
                when = dt.datetime.strptime(text, form)  # noqa: DTZ007 - exports give UTC: set below
                break
            except ValueError:
                continue
        else:
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def csv_header(handle: TextIO) -> tuple[list[str], int]:
    """The column names of a CSV export (after any `#TYPE` line), lower-cased, and the line they were on."""
    number = 0
    for number, line in enumerate(handle, 1):
        if line.startswith("#TYPE") or not line.strip():
            continue
        return [name.strip().lower() for name in next(csv.reader([line]))], number
    return [], number


def _opened(source: Source) -> TextIO | None:
    """The source's file opened as text, or None with the failure counted."""
    try:
        return open_text(source.path)
    except OSError as exc:
        source.problems.add("unreadable", str(source.path), exc.strerror or str(exc))
        return None


class TraceSource(Source):
    """A CSV export of message traces (Microsoft 365 or Google Workspace)."""

    def __init__(self, path: Path, format_name: str) -> None:
        super().__init__(path)
        self.format = format_name

    def records(self) -> Iterator[Record]:
        handle = _opened(self)
        if handle is None:
            return
        with handle:
            names, first = csv_header(handle)
            rows = csv.DictReader(handle, fieldnames=names, restval="")
            read = {"received": self._m365, "origin_timestamp_utc": self._m365_summary,
                    "origin_timestamp": self._m365_summary}
            reader = next((read[n] for n in names if n in read), self._google)
            seen: set[tuple[str | None, str]] = set()
            try:
                for number, row in enumerate(rows, first + 1):
                    where = f"{self.path}:{number}"
                    if "\ufffd" in "".join(v for v in row.values() if isinstance(v, str)):
                        self.problems.add("not UTF-8", where)
                    yield from reader(row, where, seen)
            except csv.Error as exc:
                self.problems.add("unparsable line", f"{self.path}:{rows.line_num + first}", str(exc))

    def _sender(self, raw: str, where: str) -> str:
        if not raw.strip() or raw.strip() == "<>":
            return ""
        normal = normal_address(raw.strip())
        if normal is None:
            self.problems.add("bad address", where, raw[:80])
        return normal or ""

    def _recipient(self, raw: str, where: str) -> str | None:
        normal = normal_address(raw.strip())
        if normal is None:
            self.problems.add("bad address", where, raw[:80])
        return normal

    def _m365(self, row: dict[str, str], where: str, _seen: set[tuple[str | None, str]]) -> Iterator[Record]:
        recipient = self._recipient(row.get("recipientaddress", ""), where)
        if recipient is None:
            return
        status = row.get("status", "").strip()
        yield Record(when=loose_time(row.get("received", "")), sender=self._sender(row.get("senderaddress", ""), where),
                     recipients=(recipient,), message_id=message_id(row.get("messageid", "")), where=where,
                     status=M365_STATUS.get(status.lower(), status.lower() or None),
                     subject=row.get("subject") or None)

    def _m365_summary(self, row: dict[str, str], where: str, _seen: set[tuple[str | None, str]]) -> Iterator[Record]:
        when = loose_time(row.get("origin_timestamp_utc") or row.get("origin_timestamp", ""))
        sender = self._sender(row.get("sender_address", ""), where)
        direction = DIRECTION.get(row.get("directionality", "").strip().lower())
        for item in row.get("recipient_status", "").split(";"):
            address, _, events = item.partition("##")
            if not address.strip():
                continue
            recipient = self._recipient(address, where)
            if recipient is None:
                continue
            last = events.split(",")[-1].strip().lower()
            yield Record(when=when, sender=sender, recipients=(recipient,),
                         message_id=message_id(row.get("message_id", "")), where=where,
                         status=M365_EVENT.get(last, last or None), subject=row.get("message_subject") or None,
                         direction=direction)

    def _google(self, row: dict[str, str], where: str, seen: set[tuple[str | None, str]]) -> Iterator[Record]:
        ident = message_id(row.get("message id", ""))
        when = loose_time(row.get("start date") or row.get("event date") or row.get("date", ""))
        sender = self._sender(row.get("sender", ""), where)
        status = row.get("event status", "").strip().lower()
        for raw in _SPLIT.split(row.get("recipient address", "")):
            if not raw.strip():
                continue
            recipient = self._recipient(raw, where)
            if recipient is None or (ident, recipient) in seen:
                continue
            if ident is not None:
                seen.add((ident, recipient))
            yield Record(when=when, sender=sender, recipients=(recipient,), message_id=ident, where=where,
                         status=GOOGLE_STATUS.get(status, status or None), subject=row.get("subject") or None,
                         direction=DIRECTION.get(row.get("direction", "").strip().lower()))


class CountsSource(Source):
    """A plain list of domains or addresses, each with an optional count."""

    format = "counts"

    def records(self) -> Iterator[Record]:
        handle = _opened(self)
        if handle is None:
            return
        with handle:
            yield from self._lines(handle)

    def _lines(self, handle: TextIO) -> Iterator[Record]:
        for number, line in enumerate(handle, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            where = f"{self.path}:{number}"
            fields = [part.strip().strip('"') for part in _FIELDS.split(text, maxsplit=2)]
            name, count = fields[0], fields[1] if len(fields) > 1 else ""
            if number == 1 and not count.isdigit() and name.lower() in {"domain", "address", "recipient", "email"}:
                continue
            item = self._item(name, where)
            if item is None:
                continue
            if count and not count.isdigit():
                self.problems.add("unparsable line", where, f"count {count[:20]!r} is not a number")
                continue
            yield Record(when=None, sender="", recipients=(item,), message_id=None, where=where,
                         count=int(count) if count else 1)

    def _item(self, name: str, where: str) -> str | None:
        if "@" in name:
            normal = normal_address(name)
        else:
            try:
                normal = normalize_domain(name.lstrip("*").lstrip(".")).ascii
            except DomainError:
                normal = None
        if normal is None:
            self.problems.add("bad address", where, name[:80])
        return normal
