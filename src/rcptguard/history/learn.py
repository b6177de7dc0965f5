"""Importing history from the organisation's own archives (`rcptguard learn`): what it already sent, and who wrote
to it, from day one.

Each record a reader (rcptguard.sources) yields is sorted by direction: outbound (the sender is at one of the
organisation's own domains, or a trace says so; with no own domains given, everything is outbound) counts towards
history when it was delivered (`status` sent, or a mailbox's copy), as a message from that sender to its recipients;
inbound (from elsewhere to one of ours) counts as evidence that the sending domain is real; the rest (not ours, not
delivered) is counted in the summary and nothing else. A Postfix log's deliveries of one message (one line per
recipient) are gathered into one message by sender and Message-ID, so co-recipients are learned from logs too.

Every domain is judged once by the guard: one it would warn of or hold (a near miss of a protected, known or
popular domain) is marked so, and the poisoning guard (rules.py) asks more of it before it counts.

**Importing twice counts nothing twice.** A source is known by the fingerprint of its first records (their dates,
senders, recipients, Message-IDs and statuses: the same content under another name, or gzipped by logrotate, is the
same source), with how many records were read. An import reads on from there: the same file again adds nothing, a
log that grew adds its new lines. The counts and the mark are written in one transaction at every checkpoint, so an
import cut short and started again neither loses nor repeats a record.

A folder of messages (a Maildir, a folder of .eml) has no order to read on from: files are added anywhere in it,
and a mail client renames them (new/ to cur/, flags). Each of its messages is marked on its own instead, by the
fingerprint of its record, and a message marked before is skipped wherever it now is. A folder imported before
messages were marked one by one (one mark for the folder) has the messages that mark covers marked one by one at
its next import, uncounted; if its files were reordered since, the old mark no longer matches and the folder is
counted again once.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import itertools
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Self

from rcptguard.guard import Guard
from rcptguard.history.batch import Batch, Counted
from rcptguard.history.rules import HELD
from rcptguard.history.settings import HistorySettings
from rcptguard.model import Action
from rcptguard.sources import Record, Source
from rcptguard.sources.record import Problems
from rcptguard.store.history import SourceMark, StoreHistory

__all__ = ["FINGERPRINT_RECORDS", "Imported", "Importer"]

FINGERPRINT_RECORDS = 8  # records that identify a source
PER_MESSAGE = frozenset({"maildir", "eml-dir", "eml"})  # sources whose messages are each marked (no order to keep)
CHECKPOINT = 50_000  # records between writes (counts and the mark, in one transaction)
OPEN_MESSAGES = 512  # log deliveries gathered by message at once; the oldest is counted first
_DELIVERED = frozenset({"sent", "delivered", "relayed", "expanded"})


@dataclass(slots=True)
class Imported:
    """What one source gave."""

    path: str
    format: str
    records: int = 0  # read this time
    skipped: int = 0  # read before (an earlier import of the same content)
    outbound: int = 0  # messages counted
    inbound: int = 0  # messages received, counted as evidence
    undelivered: int = 0  # deferred, bounced, expired...
    foreign: int = 0  # neither from nor to the organisation
    recipients: int = 0
    domains: set[str] = field(default_factory=set)
    problems: Problems = field(default_factory=Problems)
    seconds: float = 0.0


def fingerprint(records: list[Record]) -> str:
    """The fingerprint of a source's first records: `count:` and 60 hex digits of their sha256."""
    digest = hashlib.sha256()
    for r in records:
        when = r.when.isoformat() if r.when is not None else ""
        digest.update("\x1f".join((when, r.sender, ",".join(r.recipients), r.message_id or "", r.status or "",
                                   str(r.count))).encode("utf-8", "surrogatepass") + b"\x1e")
    return f"{len(records)}:{digest.hexdigest()[:60]}"


class Importer:
    """Imports sources into the store's history, judged by `guard`; `own` are the organisation's domains."""

    def __init__(self, history: StoreHistory, guard: Guard, own: Iterable[str],
                 settings: HistorySettings | None = None, *, progress: Callable[[int], None] | None = None,
                 checkpoint: int = CHECKPOINT) -> None:
        self.history = history
        self.guard = guard
        self.own = frozenset(own)
        self.settings = settings or HistorySettings()
        self.progress = progress
        self.checkpoint = checkpoint
        self._near: dict[str, str | None] = {}
        self._now = dt.datetime.now(dt.UTC)

    def near(self, domain: str) -> str | None:
        """The domain this one is a near miss of (the guard warns of it or holds it), if it is; judged once."""
        if domain in self._near:
            return self._near[domain]
        verdict = self.guard.check(f"postmaster@{domain}")
        found = (verdict.intended or HELD) if verdict.action >= Action.WARN else None
        self._near[domain] = found
        return found

    def _ours(self, domain: str) -> bool:
        return domain in self.own or any(domain.endswith("." + d) for d in self.own)

    def run(self, source: Source) -> Imported:
        with _CyclesLater() as cycles:
            return self._run(source, cycles)

    def _run(self, source: Source, cycles: _CyclesLater) -> Imported:
        started = time.perf_counter()
        done = Imported(str(source.path), source.format)
        stream = iter(source.records())
        head = list(itertools.islice(stream, FINGERPRINT_RECORDS))
        mark = self._mark(head)
        if source.format in PER_MESSAGE:
            return self._run_messages(source, itertools.chain(head, stream), done, started, cycles,
                                      before=mark.records if mark is not None else 0)
        skip = mark.records if mark is not None else 0
        records = itertools.chain(head, stream)
        if skip:
            consumed = sum(1 for _ in itertools.islice(records, skip))
            done.skipped = consumed
        position = done.skipped
        batch, gathered = Batch(), _Gathered()
        for record in records:
            position += 1
            done.records += 1
            self._one(record, batch, gathered, done)
            if done.records % self.checkpoint == 0:
                self._write(batch, gathered, done, head, source, position)
                batch = Batch()
                cycles.collect()
            if self.progress is not None and done.records % 1000 == 0:
                self.progress(1000)
        self._write(batch, gathered, done, head, source, position)
        if done.outbound or done.inbound:
            self.history.announce_reread()  # the running doors read the history again at their next look
        if self.progress is not None:
            self.progress(done.records % 1000)
        done.problems.merge(source.problems)
        done.seconds = time.perf_counter() - started
        return done

    def _run_messages(self, source: Source, records: Iterator[Record], done: Imported, started: float,
                      cycles: _CyclesLater, *, before: int) -> Imported:
        """`run` for a folder of messages: each marked on its own, one marked before skipped (see the module). The
        first `before` were counted by an import that marked the folder as a whole: they are marked now, not
        counted again."""
        while chunk := list(itertools.islice(records, self.checkpoint)):
            prints = ["m" + fingerprint([r]) for r in chunk]  # never a source's mark of its first record
            known = self.history.known_sources(prints)
            batch, gathered, marks = Batch(), _Gathered(), []
            for record, mark in zip(chunk, prints, strict=True):
                counted_before, before = before > 0, max(before - 1, 0)
                if mark in known:  # imported before, or the same message met earlier in the folder
                    done.skipped += 1
                    continue
                known.add(mark)
                marks.append(SourceMark(mark, source.format, record.where, 1))
                if counted_before:
                    done.skipped += 1
                    continue
                done.records += 1
                self._one(record, batch, gathered, done)
            for message in gathered.drain():
                self._count(message, batch, done)
            self.history.record_sources(marks, batch, what=str(source.path))
            cycles.collect()
            if self.progress is not None:
                self.progress(len(chunk))
        if done.outbound or done.inbound:
            self.history.announce_reread()
        done.problems.merge(source.problems)
        done.seconds = time.perf_counter() - started
        return done

    def _mark(self, head: list[Record]) -> SourceMark | None:
        """The longest prefix of these records imported before (a source that had fewer records then)."""
        for size in range(len(head), 0, -1):
            found = self.history.source(fingerprint(head[:size]))
            if found is not None:
                return found
        return None

    def _write(self, batch: Batch, gathered: _Gathered, done: Imported, head: list[Record], source: Source,
               position: int) -> None:
        for message in gathered.drain():
            self._count(message, batch, done)
        if not head:
            return
        mark = SourceMark(fingerprint(head[: min(position, FINGERPRINT_RECORDS)]), source.format, str(source.path),
                          position)
        self.history.record_source(mark, batch)

    def _one(self, record: Record, batch: Batch, gathered: _Gathered, done: Imported) -> None:
        direction = record.direction
        sender = record.sender
        sender_domain = sender.rsplit("@", 1)[1] if "@" in sender else ""
        if direction is None:
            if not self.own or (sender_domain and self._ours(sender_domain)):
                direction = "out"
            elif any(self._ours(r.rsplit("@", 1)[-1]) for r in record.recipients):
                direction = "in"
        if direction == "in":
            if sender_domain and not self._ours(sender_domain):
                batch.inbound(sender_domain, record.when or self._now, count=record.count)
                done.inbound += record.count
            return
        if direction not in ("out", "internal"):
            done.foreign += record.count
            return
        if record.status is not None and record.status not in _DELIVERED:
            done.undelivered += record.count
            return
        if record.message_id and record.status is not None:  # a log's deliveries, one recipient a line
            for message in gathered.add(record):
                self._count(message, batch, done)
            return
        self._count(record, batch, done)

    def _count(self, record: Record, batch: Batch, done: Imported) -> None:
        recipients = [Counted(r, domain, self.near(domain)) for r in dict.fromkeys(record.recipients)
                      if (domain := r.rsplit("@", 1)[-1])]
        if not recipients:
            return
        batch.message(record.sender or None, recipients, record.when or self._now, count=record.count,
                      max_group=self.settings.max_group)
        done.outbound += record.count
        done.recipients += len(recipients)
        done.domains.update(r.domain for r in recipients)


class _CyclesLater:
    """Python's cycle collector paused while an import runs, and run once at each checkpoint instead.

    An import makes millions of short-lived objects (records, tuples) and keeps a batch of hundreds of thousands of
    tallies until its checkpoint. The collector, run after every 700 new objects, walked that batch again and again
    and took a quarter of the import's CPU, for nothing: none of it is a cycle (the objects go as soon as they are
    unused). A cycle made anyway (by a library) lives until the next checkpoint, so memory stays bounded by one
    batch. The collector is left as it was found (a caller that turned it off keeps it off)."""

    def __enter__(self) -> Self:
        self.paused = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *_: object) -> None:
        if self.paused:
            gc.enable()

    def collect(self) -> None:
        if self.paused:
            gc.collect()


class _Gathered:
    """A log's deliveries gathered into messages by (sender, Message-ID): the lines of one message come close
    together, so a few hundred open messages suffice; the oldest is let go first."""

    def __init__(self) -> None:
        self.open: OrderedDict[tuple[str, str], tuple[Record, dict[str, None]]] = OrderedDict()

    def add(self, record: Record) -> Iterator[Record]:
        key = (record.sender, record.message_id or "")
        known = self.open.get(key)
        if known is None:
            self.open[key] = (record, dict.fromkeys(record.recipients))
        else:
            known[1].update(dict.fromkeys(record.recipients))
        while len(self.open) > OPEN_MESSAGES:
            yield _whole(*self.open.popitem(last=False)[1])

    def drain(self) -> Iterator[Record]:
        while self.open:
            yield _whole(*self.open.popitem(last=False)[1])


def _whole(first: Record, recipients: dict[str, None]) -> Record:
    if len(recipients) == len(first.recipients):
        return first
    return Record(first.when, first.sender, tuple(recipients), first.message_id, first.where, first.status,
                  first.count)


def summarize(results: list[Imported]) -> Counter[str]:
    """The totals of several imports."""
    total: Counter[str] = Counter()
    for r in results:
        for name in ("records", "skipped", "outbound", "inbound", "undelivered", "foreign", "recipients"):
            total[name] += getattr(r, name)
    return total
