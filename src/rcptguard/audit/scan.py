"""`rcptguard scan`: what already went astray in an archive, and what it carried.

    plan      the archives opened (`sources.open_sources`), cut into tasks for a process pool (an mbox into byte
              ranges, a Maildir into lists of files; a log is one task), what a previous run scanned left out
    check     each task in a worker: every record's recipients judged by the guard; a recipient the guard would
              warn about, hold or reject is a candidate; the archive's own history counted on the way
    history   the workers' histories merged (with the previous runs'): a candidate at a domain the organisation
              has long written to is dropped (`audit.history.HistoryRule`)
    content   each remaining message read once and given to the sensitivity scanner (mailboxes only: logs and
              traces hold no content, their findings say "unknown")
    write     findings appended to findings.jsonl and findings.csv, the state saved, the report written

The state (`scan-state.json` in the output folder) remembers each file by the hash of its first 4 KiB (so a
rotated log is still known under its new name): how far an mbox was read, how many lines of a log or export,
which Maildir and .eml files; and the history counted. A re-run on a grown archive reads only what is new.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import os
import queue
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcptguard.audit.findings import Finding, append_findings
from rcptguard.audit.history import DomainHistory, HistoryRule
from rcptguard.content import Limits, Severity, scan_message
from rcptguard.domains import normalize_domain
from rcptguard.errors import DomainError
from rcptguard.guard import Guard
from rcptguard.model import Action, Role
from rcptguard.policy import Policy
from rcptguard.sources import Source, open_sources
from rcptguard.sources.mailbox import Mbox, MessageFiles
from rcptguard.sources.record import Problems, Record
from rcptguard.sources.traces import CountsSource

STATE = "scan-state.json"
HEAD = 4096
LINE_OCTETS = 160  # a log line's length, to turn lines read into octets for the progress bar
PROGRESS_EVERY = 0.25  # seconds between a worker's progress reports

NEVER_KNOWN = frozenset({"NO_SUCH_TLD", "MALFORMED_ADDRESS"})

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True, slots=True)
class ScanOptions:
    since: dt.datetime | None = None
    content: bool = True
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    limits: Limits = field(default_factory=Limits)
    rule: HistoryRule = field(default_factory=HistoryRule)


@dataclass(frozen=True, slots=True)
class Task:
    """One piece of work for a worker: a source (or part of one) and what earlier runs already read of it."""

    number: int
    source: Source
    octets: int
    skip_lines: dict[str, int] = field(default_factory=dict)  # path -> lines read before (logs, exports)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A recipient the guard would not let pass, with its message's record."""

    record: Record
    recipient: str
    domain: str
    domain_ascii: str
    verdict: str
    score: float
    reason: str
    intended: str | None
    suggestion: str | None
    signals: tuple[str, ...]
    format: str


@dataclass(slots=True)
class TaskResult:
    number: int
    candidates: list[Candidate] = field(default_factory=list)
    history: dict[str, DomainHistory] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)
    messages: int = 0
    recipients: int = 0
    skipped: int = 0  # records before --since or read by an earlier run
    lines: dict[str, int] = field(default_factory=dict)  # path -> last line read
    seen: list[str] = field(default_factory=list)
    months: Counter[str] = field(default_factory=Counter)  # messages scanned per month


@dataclass(slots=True)
class ScanResult:
    """What a scan did: the totals of this run, the findings it added, the problems met."""

    messages: int = 0
    recipients: int = 0
    skipped: int = 0
    candidates: int = 0
    dropped_by_history: int = 0
    findings: list[Finding] = field(default_factory=list)
    problems: Problems = field(default_factory=Problems)
    sources: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    octets: int = 0
    unread_content: int = 0


# -- the state of earlier runs ------------------------------------------------------------------------------


def _head(path: Path, size: int = HEAD) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def file_key(path: Path, size: int = HEAD) -> str:
    """A file's identity across renames (rotation) and growth: the hash of its first 4 KiB (or fewer)."""
    return hashlib.sha256(_head(path, size)).hexdigest()[:32]


@dataclass(slots=True)
class State:
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # file key -> {"path", "octets" | "lines"}
    seen: set[str] = field(default_factory=set)
    history: dict[str, DomainHistory] = field(default_factory=dict)
    months: Counter[str] = field(default_factory=Counter)
    messages: int = 0

    @classmethod
    def load(cls, folder: Path) -> State:
        path = folder / STATE
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return cls()
        return cls(dict(data.get("files", {})), set(data.get("seen", [])),
                   {d: DomainHistory.from_json(h) for d, h in data.get("history", {}).items()},
                   Counter(data.get("months", {})), int(data.get("messages", 0)))

    def of(self, path: Path) -> dict[str, Any]:
        """What earlier runs read of this file: found by its first 4 KiB, or by the fewer octets it had then."""
        found = self.files.get(file_key(path))
        if found is not None:
            return found
        for key, entry in self.files.items():
            head = int(entry.get("head", HEAD))
            if head < HEAD and entry.get("path") == str(path) and file_key(path, head) == key:
                return entry
        return {}

    def mark(self, path: Path, **read: int) -> None:
        """Note what this run read of a file (octets of an mbox, lines of a log), keyed as `of` finds it."""
        entry = self.of(path)
        for key in [k for k, e in self.files.items() if e is entry]:
            del self.files[key]
        head = min(HEAD, path.stat().st_size) if path.exists() else HEAD
        self.files[file_key(path, head)] = {"path": str(path), "head": head,
                                           **{k: max(v, int(entry.get(k, 0))) for k, v in read.items()}}

    def save(self, folder: Path) -> None:
        data = {"version": 1, "files": self.files, "seen": sorted(self.seen), "months": dict(self.months),
                "messages": self.messages, "history": {d: h.to_json() for d, h in self.history.items()}}
        temporary = folder / (STATE + ".new")
        temporary.write_text(json.dumps(data), "utf-8")
        temporary.replace(folder / STATE)


# -- planning -------------------------------------------------------------------------------------------------


def _message_key(path: Path, source: MessageFiles) -> str:
    """A message file's key: a Maildir file keeps its name up to the flags when it moves from new/ to cur/."""
    return path.name.split(":", 1)[0] if source.format == "maildir" else str(path)


def plan(sources: list[Source], state: State, jobs: int) -> Iterator[Task]:
    """The tasks for the sources, without what earlier runs read."""
    number = 0
    for source in sources:
        parts: list[tuple[Source, int, dict[str, int]]] = []
        if isinstance(source, Mbox):
            size = source.path.stat().st_size
            done = int(state.of(source.path).get("octets", 0))
            begin = done if 0 < done <= size else 0
            parts = [(p, (p.end or size) - p.begin, {}) for p in Mbox(source.path, begin).parts(jobs * 2)
                     if isinstance(p, Mbox)]
        elif isinstance(source, MessageFiles):
            files = [p for p in source.message_files() if _message_key(p, source) not in state.seen]
            chunk = max(1, len(files) // (jobs * 2) + 1)
            for i in range(0, len(files), chunk):
                group = files[i : i + chunk]
                parts.append((MessageFiles(source.path, source.format, group), sum(_size(p) for p in group), {}))
        elif source.format != "unknown":
            files = getattr(source, "files", [source.path])
            skip = {str(p): int(state.of(p).get("lines", 0)) for p in files}
            parts = [(source, sum(_size(p) for p in files), skip)]
        for part, octets, skip in parts:
            number += 1
            yield Task(number, part, max(octets, 1), skip)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# -- the workers ----------------------------------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _init(policy: Policy, options: ScanOptions, reports: Any) -> None:  # noqa: ANN401 - a multiprocessing queue
    _worker["guard"] = Guard(policy)
    _worker["options"] = options
    _worker["reports"] = reports


def _position(task: Task, record: Record, index: int, files: int) -> int:
    """How many of the task's octets are behind this record (for the progress bar)."""
    source = task.source
    if isinstance(source, Mbox):
        return int(record.where.rsplit(":", 1)[1]) - source.begin
    if isinstance(source, MessageFiles):
        return task.octets * index // max(files, 1)
    return int(record.where.rsplit(":", 1)[1]) * LINE_OCTETS


def check_task(task: Task) -> TaskResult:
    """Read one task's records and judge their recipients (in a worker, or in this process for one job)."""
    guard: Guard = _worker["guard"]
    options: ScanOptions = _worker["options"]
    reports = _worker["reports"]
    result = TaskResult(task.number)
    source = task.source
    files = len(source.files or []) if isinstance(source, MessageFiles) else 0
    reported, last = 0, time.monotonic()
    for index, record in enumerate(source.records()):
        if _skip(task, record, result, options):
            continue
        _count(record, result)
        for recipient in record.recipients:
            verdict = guard.check(recipient)
            result.recipients += 1
            if verdict.action >= Action.WARN and verdict.domain_ascii:
                result.candidates.append(Candidate(
                    record, recipient, verdict.domain or "", verdict.domain_ascii, str(verdict.action),
                    round(verdict.score, 2), verdict.reason, verdict.intended, verdict.suggestion,
                    tuple(s.name for s in verdict.signals), source.format))
        if time.monotonic() - last > PROGRESS_EVERY:
            position = min(_position(task, record, index, files), task.octets)
            reports.put(("read", position - reported))
            reported, last = position, time.monotonic()
    reports.put(("read", task.octets - reported))
    result.problems = source.problems
    return result


def _skip(task: Task, record: Record, result: TaskResult, options: ScanOptions) -> bool:
    """Whether an earlier run read this record, or it is older than --since; notes what it read either way."""
    path, _, number = record.where.rpartition(":")
    if task.skip_lines and number.isdigit():
        line = int(number)
        result.lines[path] = max(result.lines.get(path, 0), line)
        if line <= task.skip_lines.get(path, 0):
            result.skipped += 1
            return True
    if isinstance(task.source, MessageFiles):
        key = _message_key(Path(record.where), task.source)
        result.seen.append(key)
    if options.since is not None and record.when is not None and record.when < options.since:
        result.skipped += 1
        return True
    return False


def _count(record: Record, result: TaskResult) -> None:
    """The record in the archive's history: messages per recipient domain, mail from the sender's domain."""
    result.messages += record.count
    if record.when is not None:
        result.months[record.when.astimezone(dt.UTC).strftime("%Y-%m")] += record.count
    for recipient in record.recipients:
        domain = recipient.rpartition("@")[2]
        result.history.setdefault(domain, DomainHistory()).saw(record.sender, record.when, record.count)
    if record.sender and record.direction != "out":
        sender_domain = record.sender.rpartition("@")[2]
        if sender_domain not in {r.rpartition("@")[2] for r in record.recipients}:
            result.history.setdefault(sender_domain, DomainHistory()).inbound += 1


def content_of(where_and_record: tuple[str, Record]) -> tuple[str, dict[str, Any]]:
    """The sensitivity of one message (in a worker)."""
    where, record = where_and_record
    options: ScanOptions = _worker["options"]
    try:
        raw = record.content()
    except OSError as exc:
        return where, {"severity": "unknown", "raised_by": "", "unread": [f"message: {exc.strerror or exc}"]}
    if raw is None:
        return where, {"severity": "unknown", "raised_by": "", "unread": []}
    found = scan_message(raw, options.limits)
    raised = "; ".join(f"{s.name} ({s.evidence.get('pattern', '')}) in {s.evidence.get('part', '')}"
                       for s in found.raised_by)
    return where, {"severity": str(found.severity), "raised_by": raised, "unread": list(found.unread)}


# -- the run --------------------------------------------------------------------------------------------------


class _Local:
    """The queue a worker reports on, when the work runs in this process."""

    def __init__(self, progress: Progress, totals: dict[str, list[int]]) -> None:
        self.progress = progress
        self.totals = totals

    def put(self, item: tuple[str, int]) -> None:
        phase, delta = item
        self.totals[phase][0] += delta
        self.progress(phase, *self.totals[phase])


def run_scan(paths: list[Path], policy: Policy, out: Path, options: ScanOptions | None = None,
             progress: Progress | None = None) -> ScanResult:
    """Scan the archives under `paths` into `out` (findings.jsonl, findings.csv, the state); see the module."""
    options = options or ScanOptions()
    progress = progress or (lambda _phase, _done, _total: None)
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    state = State.load(out)
    sources = open_sources([p.resolve() for p in paths])
    result = ScanResult()
    policy = _with_counts(policy, [s for s in sources if isinstance(s, CountsSource)], result)
    sources = [s for s in sources if not isinstance(s, CountsSource)]
    for source in sources:
        result.sources[source.format] += 1
        if source.format == "unknown":
            result.problems.merge(source.problems)
    tasks = list(plan(sources, state, options.jobs))
    result.octets = sum(t.octets for t in tasks)
    totals = {"read": [0, result.octets], "content": [0, 0]}
    outcomes = _run(tasks, policy, options, progress, totals)
    guard = Guard(policy)
    candidates = _merge(outcomes, state, result)
    kept = _by_history(candidates, state.history, guard, options.rule, result)
    contents = _contents(kept, policy, options, progress, totals)
    result.findings = [_finding(c, contents.get(c.record.where), state.history.get(c.domain_ascii), options.rule)
                       for c in kept]
    result.unread_content = sum(1 for c in contents.values() if c.get("unread"))
    append_findings(out, result.findings)
    _remember(tasks, outcomes, state)
    state.save(out)
    result.seconds = time.monotonic() - started
    return result


def _with_counts(policy: Policy, counts: list[CountsSource], result: ScanResult) -> Policy:
    """The policy with the domains of counts lists as known correspondents (the organisation's own list)."""
    known: list[str] = []
    for source in counts:
        result.sources[source.format] += 1
        known.extend(r.recipients[0].rpartition("@")[2] for r in source.records())
        result.problems.merge(source.problems)
    return policy.with_domains((), tuple(dict.fromkeys(known))) if known else policy


def _run(tasks: list[Task], policy: Policy, options: ScanOptions, progress: Progress,
         totals: dict[str, list[int]]) -> list[TaskResult]:
    if options.jobs <= 1 or len(tasks) <= 1:
        _init(policy, options, _Local(progress, totals))
        return [check_task(task) for task in tasks]
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    with ProcessPoolExecutor(options.jobs, mp_context=context, initializer=_init,
                             initargs=(policy, options, reports)) as pool:
        futures = [pool.submit(check_task, task) for task in tasks]
        _drain_until_done(futures, reports, progress, totals)
        return [f.result() for f in futures]


def _drain_until_done(futures: list[Future[TaskResult]], reports: Any, progress: Progress,  # noqa: ANN401
                      totals: dict[str, list[int]]) -> None:
    while True:
        finished = all(f.done() for f in futures)
        try:
            while True:
                phase, delta = reports.get(timeout=0.1)
                totals[phase][0] += delta
                progress(phase, *totals[phase])
        except queue.Empty:
            pass
        if finished:
            return


def _merge(outcomes: list[TaskResult], state: State, result: ScanResult) -> list[Candidate]:
    candidates: list[Candidate] = []
    for outcome in outcomes:
        result.messages += outcome.messages
        result.recipients += outcome.recipients
        result.skipped += outcome.skipped
        result.problems.merge(outcome.problems)
        candidates.extend(outcome.candidates)
        state.months.update(outcome.months)
        for domain, seen in outcome.history.items():
            state.history.setdefault(domain, DomainHistory()).merge(seen)
    state.messages += result.messages
    result.candidates = len(candidates)
    return candidates


def _slip_of_protected(guard: Guard, intended: str | None) -> bool:
    if not intended:
        return False
    try:
        entry = guard.index.covering(normalize_domain(intended))
    except DomainError:
        return False
    return entry is not None and entry.role is Role.PROTECTED


def _by_history(candidates: list[Candidate], history: dict[str, DomainHistory], guard: Guard, rule: HistoryRule,
                result: ScanResult) -> list[Candidate]:
    kept = []
    for candidate in candidates:
        seen = history.get(candidate.domain_ascii)
        if NEVER_KNOWN.intersection(candidate.signals):
            kept.append(candidate)  # mail there bounces: no history makes it a correspondent
        elif rule.established(seen, _slip_of_protected(guard, candidate.intended)):
            result.dropped_by_history += 1
        else:
            kept.append(candidate)
    return kept


def _contents(kept: list[Candidate], policy: Policy, options: ScanOptions, progress: Progress,
              totals: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    """The sensitivity of each message with a finding, read once however many of its recipients were found."""
    if not options.content:
        return {}
    messages = {c.record.where: c.record for c in kept if c.record.loader is not None}
    totals["content"] = [0, len(messages)]
    progress("content", 0, len(messages))
    items = list(messages.items())
    out: dict[str, dict[str, Any]] = {}
    if options.jobs <= 1 or len(items) < 50:
        _init(policy, options, None)
        for item in items:
            where, found = content_of(item)
            out[where] = found
            totals["content"][0] += 1
            progress("content", *totals["content"])
        return out
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(options.jobs, mp_context=context, initializer=_init,
                             initargs=(policy, options, None)) as pool:
        for where, found in pool.map(content_of, items, chunksize=16):
            out[where] = found
            totals["content"][0] += 1
            progress("content", *totals["content"])
    return out


def _finding(candidate: Candidate, content: dict[str, Any] | None, seen: DomainHistory | None,
             rule: HistoryRule) -> Finding:
    record = candidate.record
    when = record.when.astimezone(dt.UTC).isoformat() if record.when is not None else None
    return Finding(
        message_id=record.message_id, date=when, sender=record.sender, recipient=candidate.recipient,
        domain=candidate.domain, intended=candidate.intended, suggestion=candidate.suggestion,
        verdict=candidate.verdict, score=candidate.score, reason=candidate.reason,
        severity=(content or {}).get("severity", "unknown"), raised_by=(content or {}).get("raised_by", ""),
        where=record.where, format=candidate.format, status=record.status,
        domain_messages=seen.messages if seen is not None else 0, history=rule.describe(seen),
        signals=candidate.signals)


def _remember(tasks: list[Task], outcomes: list[TaskResult], state: State) -> None:
    """What this run read, for the next one."""
    for task, outcome in zip(tasks, outcomes, strict=True):
        source = task.source
        if isinstance(source, Mbox):
            state.mark(source.path, octets=source.end if source.end is not None else source.path.stat().st_size)
        state.seen.update(outcome.seen)
        for path, lines in outcome.lines.items():
            state.mark(Path(path), lines=lines)


def severity_rank(name: str) -> int:
    try:
        return int(Severity.parse(name))
    except ValueError:
        return -1
