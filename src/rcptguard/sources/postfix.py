"""Postfix logs: one record per delivery attempt (`to=<…>, … status=sent`), its sender joined by queue id.

Reads syslog files with the classic timestamp (`Jan  5 10:00:01`, the year inferred from the file's date and
carried over New Year) or an RFC 3339 one (`2026-01-05T10:00:01.123+01:00`), rotated and gzipped files in the
order they were written (`mail.log.2.gz`, `mail.log.1`, `mail.log`, one queue table across them), and the
journal's export (`journalctl -o json`, one object a line). The queue table maps a queue id to its `from=` and
`message-id=` until Postfix logs `removed`; it holds at most `MAX_QUEUE` ids (the oldest go first), so memory
stays flat on any length of log. A delivery whose `from=` line is missing (cut by rotation) is still a record,
with an empty sender, and its queue id is counted once in the problems.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from rcptguard.sources.addresses import normal_address
from rcptguard.sources.record import Record, Source

MAX_QUEUE = 200_000
_LINE = re.compile(
    r"(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+) \S+ postfix[^\s\[:]*(?:\[\d+\])?: "
    r"(?P<qid>[0-9A-Za-z]{5,}): (?P<what>to=<|from=<|message-id=|removed)(?P<rest>.*)"
)
_JOURNAL_MESSAGE = re.compile(r"(?P<qid>[0-9A-Za-z]{5,}): (?P<what>to=<|from=<|message-id=|removed)(?P<rest>.*)")
_STATUS = re.compile(r"status=([a-z]+)")
_ORIG_TO = re.compile(r"orig_to=<([^>]*)>")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                       "Dec"), 1)}


def rotation_order(paths: list[Path]) -> list[Path]:
    """Rotated logs oldest first: `mail.log.3.gz`, `mail.log.2.gz`, `mail.log.1`, `mail.log` (then by name)."""

    def age(path: Path) -> tuple[str, int]:
        name = path.name.removesuffix(".gz")
        stem, _, number = name.rpartition(".")
        if number.isdigit():
            return stem, -int(number)
        return name, 0

    return sorted(paths, key=age)


class PostfixLog(Source):
    """One Postfix log, or a set of rotated ones read as one stream."""

    format = "postfix-log"

    def __init__(self, path: Path, files: list[Path] | None = None, local_zone: dt.tzinfo | None = None) -> None:
        super().__init__(path)
        self.files = rotation_order(files) if files is not None else [path]
        self.zone = local_zone or dt.datetime.now().astimezone().tzinfo or dt.UTC
        self._queue: dict[str, tuple[str | None, str | None]] = {}  # id -> sender (None: unseen), id
        self._missing: set[str] = set()

    def records(self) -> Iterator[Record]:
        for path in self.files:
            try:
                handle = _open_text(path)
            except OSError as exc:
                self.problems.add("unreadable", str(path), exc.strerror or str(exc))
                continue
            with handle:
                yield from self._read(path, handle)

    def _read(self, path: Path, handle: TextIO) -> Iterator[Record]:
        clock = _Clock(path, self.zone)
        name = str(path)
        number = 0
        match_line, event = _LINE.match, self._event
        try:
            for number, line in enumerate(handle, 1):
                if line.startswith("{"):
                    yield from self._journal_line(name, number, line)
                    continue
                match = match_line(line)
                if match is None:
                    if not line[:1].isalnum() and line.strip():
                        self.problems.add("unparsable line", f"{name}:{number}", line[:60].rstrip())
                    continue
                ts, qid, what, rest = match.groups()
                record = event(qid, what, rest, name, number, clock.parse, ts)
                if record is not None:
                    if "\ufffd" in line:
                        self.problems.add("not UTF-8", record.where)
                    yield record
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            self.problems.add("truncated", f"{name}:{number}", str(exc) or "the compressed file ends early")

    def _journal_line(self, name: str, number: int, line: str) -> Iterator[Record]:
        if '"postfix' not in line:
            return
        where = f"{name}:{number}"
        try:
            entry = json.loads(line)
        except ValueError:
            self.problems.add("unparsable line", where, "not a JSON object")
            return
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # the journal writes a message that is not UTF-8 as its octets
            message = bytes(b for b in message if isinstance(b, int) and 0 <= b < 256).decode("utf-8", "replace")
            self.problems.add("not UTF-8", where)
        if not isinstance(message, str) or not str(entry.get("SYSLOG_IDENTIFIER", "")).startswith("postfix"):
            return
        match = _JOURNAL_MESSAGE.match(message)
        if match is None:
            return
        record = self._event(match["qid"], match["what"], match["rest"], name, number, _journal_time,
                             entry.get("__REALTIME_TIMESTAMP"))
        if record is not None:
            yield record

    def _event(self, qid: str, what: str, rest: str, name: str, number: int,
               when: Callable[[Any], dt.datetime | None], stamp: object) -> Record | None:
        """The record of a delivery line (its time `when(stamp)`, where it is `name:number`, made only for a
        delivery or a problem: most lines are neither), or None after noting a line's sender or Message-ID."""
        queue = self._queue
        if what == "from=<":
            sender = rest[: rest.find(">")]
            known = queue.pop(qid, None)
            queue[qid] = ((self._address(sender, name, number) or "") if sender else "", known[1] if known else None)
            if len(queue) > MAX_QUEUE:
                del queue[next(iter(queue))]
            return None
        if what == "message-id=":
            known = queue.get(qid)
            queue[qid] = (known[0] if known else None, rest.strip().strip("<>") or None)
            return None
        if what == "removed":
            queue.pop(qid, None)
            self._missing.discard(qid)
            return None
        original = _ORIG_TO.search(rest)
        recipient = self._address(original[1] if original is not None else rest[: rest.find(">")], name, number)
        if recipient is None:
            return None
        where = f"{name}:{number}"
        known_sender, message_id = queue.get(qid, (None, None))
        if known_sender is None and qid not in self._missing:
            self._missing.add(qid)
            self.problems.add("no from= line", where, f"queue id {qid} (its start was rotated away?)")
        status = _STATUS.search(rest)
        return Record(when=when(stamp), sender=known_sender or "", recipients=(recipient,), message_id=message_id,
                      where=where, status=status[1] if status is not None else None)

    def _address(self, raw: str, name: str, number: int) -> str | None:
        normal = normal_address(raw)
        if normal is None:
            self.problems.add("bad address", f"{name}:{number}", raw[:80])
        return normal


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def _journal_time(value: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(str(value)) / 1e6, dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


class _Clock:
    """Turns a log line's timestamp into an aware datetime; the classic form gets its year from the file."""

    def __init__(self, path: Path, zone: dt.tzinfo) -> None:
        self.zone = zone
        try:
            written = dt.datetime.fromtimestamp(path.stat().st_mtime, zone)
        except OSError:
            written = dt.datetime.now(zone)
        self.written = written
        self.year: int | None = None
        self.month = 0
        self._last: tuple[str, dt.datetime | None] = ("", None)  # a second's lines share their stamp

    def parse(self, text: str) -> dt.datetime | None:
        last = self._last
        if text == last[0]:
            return last[1]
        when = self._parse(text)
        self._last = (text, when)
        return when

    def _parse(self, text: str) -> dt.datetime | None:
        if text[0].isdigit():
            try:
                when = dt.datetime.fromisoformat(text)
            except ValueError:
                return None
            return when if when.tzinfo is not None else when.replace(tzinfo=self.zone)
        month = _MONTHS.get(text[:3], 0)
        if self.year is None:  # the log ends when the file was last written: a later month is last year's
            self.year = self.written.year - (month > self.written.month)
        elif month < self.month and self.month - month > 6:
            self.year += 1  # December, then January
        self.month = month
        try:
            return dt.datetime(self.year, month, int(text[4:6]), int(text[7:9]), int(text[10:12]), int(text[13:15]),
                               tzinfo=self.zone)
        except ValueError:
            return None
