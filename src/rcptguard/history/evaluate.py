"""Measuring history on a labelled stream of messages (`rcptguard eval-messages`).

Each line of the file is one message: `{"date": ISO 8601, "sender": "a@org.example", "recipients": [...],
"leak": "address" | null, "kind": "domain-slip" | ..., "text": "Hi Nils,..."}` (`kind` and `text` optional: the
message's opening, read for its greeting as the relay reads a message's first text part). The messages before the
cut date are learned as `rcptguard learn` would import them (every recipient delivered, near misses marked); the
rest are judged in date order by the guard and the per-message judgement, as the relay would (history.judge), its
index taking in new correspondents when a door's would (a minute after a domain it did not know was let through, and
after each hourly reload of history), and learned as the relay learns once each hold is answered: what passed or
was warned counts; a held clean recipient is taken to be sent anyway by its sender (a confirmation, which teaches
the guard as the page does), a held leak to be corrected.
A leak counts as caught when its recipient is held or warned; a clean message is a false positive when any
recipient is held (a warning is counted apart).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import io
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from rcptguard.domains import parse_address
from rcptguard.guard import Guard
from rcptguard.history.batch import Batch, Counted
from rcptguard.history.greeting import NOBODY_GREETED, Greeting, greeting_of
from rcptguard.history.judge import judge_message
from rcptguard.history.memory import MemoryHistory
from rcptguard.history.model import address_key, key_of, sender_key
from rcptguard.history.rules import HELD
from rcptguard.history.settings import HistorySettings
from rcptguard.model import Action, Malformed, Verdict
from rcptguard.policy import Policy

__all__ = ["EvalMessage", "Read", "Result", "evaluate", "explained", "read_messages"]

# When, in the stream's time, the guard's index takes in new correspondents, as the doors do (runtime.Runtime): at
# most once a `rebuild_interval` after a domain it did not know was let through, and after each reload of history
# (`[history] reload_seconds`), when correspondents may have faded
REBUILD = dt.timedelta(seconds=60)
SHOWN_SKIPPED = 20  # of the lines skipped, how many the JSON names
RELOAD = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class EvalMessage:
    when: dt.datetime
    sender: str
    recipients: tuple[str, ...]
    leak: str | None
    kind: str | None
    greeting: Greeting = NOBODY_GREETED  # of the optional "text"


@dataclass(frozen=True, slots=True)
class Read:
    """The messages of a file, in date order, and what could not be read: (where, why), where "line 5" or, in a
    file that is one JSON array, "message 5"."""
    messages: list[EvalMessage]
    skipped: list[tuple[str, str]]


def read_messages(path: Path) -> Read:
    """The messages of a JSONL file, in date order, read as a stream: gzip-compressed or not, UTF-8 (with or without
    a byte-order mark) or UTF-16; a file that is one JSON array of them also does. A line that is not a message (not
    JSON, not UTF-8, a field missing or of the wrong kind, no recipient) is skipped and named with the reason;
    OSError, EOFError or ValueError when the file itself cannot be read."""
    messages: list[EvalMessage] = []
    skipped: list[tuple[str, str]] = []
    with path.open("rb") as raw:  # opened once, and peeked at: a pipe can be read only once
        try:
            for where, row in _rows(raw):
                try:
                    messages.append(_message(row))
                except (ValueError, KeyError, TypeError, RecursionError) as exc:
                    skipped.append((where, _why(exc)))
        except zlib.error as exc:
            raise ValueError(f"not a readable gzip file: {exc}") from None
    messages.sort(key=lambda m: m.when)
    return Read(messages, skipped)


def _rows(raw: BinaryIO) -> Iterator[tuple[str, Any]]:
    """(where, the text of a line or an object) for each message of the file, blank lines left out."""
    source = cast("BinaryIO", gzip.GzipFile(fileobj=raw)) if _peek(raw, 2) == b"\x1f\x8b" else raw
    head = _peek(source, 4)
    text: io.TextIOWrapper | None = None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) > 1 and 0 in head[:2]):
        encoding = "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-16-le" if head[1] == 0 else "utf-16-be"
        text = io.TextIOWrapper(source, encoding=encoding)
    elif head.startswith(b"\xef\xbb\xbf"):
        source.read(3)
    try:
        yield from _numbered_rows(text if text is not None else source)
    finally:  # the caller closes the file itself
        if text is not None:
            text.detach()
        if source is not raw:
            source.close()


def _numbered_rows(lines: Iterable[bytes | str]) -> Iterator[tuple[str, Any]]:
    numbered = _nonblank(lines)
    first = next(numbered, None)
    if first is None:
        return
    number, line = first
    if line.lstrip()[:1] in (b"[", "["):  # one JSON array of messages, or a first line that is a list
        try:
            whole = json.loads(line)
        except (ValueError, RecursionError):
            whole = _array(line, (text for _, text in numbered))
            yield from ((f"message {n}", row) for n, row in enumerate(whole, 1))
            return
        if isinstance(whole, list) and whole and all(isinstance(row, dict) for row in whole):
            yield from ((f"message {n}", row) for n, row in enumerate(whole, 1))
        else:
            yield f"line {number}", line
    else:
        yield f"line {number}", line
    yield from ((f"line {n}", text) for n, text in numbered)


def _nonblank(lines: Iterable[bytes | str]) -> Iterator[tuple[int, bytes | str]]:
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield number, line


def _array(first: bytes | str, rest: Iterable[bytes | str]) -> list[Any]:
    """The messages of a file that is one JSON array written over several lines."""
    parts = [first, *rest]
    text = b"".join(p if isinstance(p, bytes) else p.encode("utf-8", "surrogatepass") for p in parts)
    try:
        whole = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not a JSON array of messages: {exc}") from None
    if not isinstance(whole, list):
        raise ValueError("not a JSON array of messages")  # noqa: TRY004 - a file's content, not an argument's type
    return whole


def _peek(handle: BinaryIO, size: int) -> bytes:
    peek = getattr(handle, "peek", None)
    return bytes(peek(size)[:size]) if peek is not None else b""


def _why(exc: Exception) -> str:
    if isinstance(exc, UnicodeError):
        return "not UTF-8"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg} at column {exc.colno})"
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r}"
    return str(exc)


def _message(row: object) -> EvalMessage:
    if isinstance(row, bytes):
        row = row.decode("utf-8")
    if isinstance(row, str):
        row = json.loads(row.strip())
    if not isinstance(row, dict):
        raise TypeError(f"a {type(row).__name__}, not an object")
    when = _when(_field(row, "date", "timestamp"))
    sender = _text(_field(row, "sender", "from"), "sender")
    recipients = _recipients(row)
    text = row.get("text")
    greeting = greeting_of(_text(text, "text")) if isinstance(text, str) and text else NOBODY_GREETED
    return EvalMessage(when, sender, recipients, _leak(row, recipients), _kind(row), greeting)


def _text(value: object, name: str) -> str:
    """A field that must be a string of UTF-8's characters (JSON can escape a lone surrogate, which is none)."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: {value!r} is not an address")
    value.encode("utf-8")  # UnicodeEncodeError (a ValueError): "not UTF-8"
    return value


def _field(row: dict[str, Any], name: str, *aliases: str) -> object:
    for key in (name, *aliases):
        if key in row:
            return row[key]
    raise KeyError(name)


_ZONE = re.compile(r"\s(?:[+-]\d{4}|UT|GMT|Z|[ECMP][SD]T)\s*(?:\([^()]*\))?\s*\Z", re.IGNORECASE)


def _when(value: object) -> dt.datetime:
    """A message's date: ISO 8601 (a date alone is its midnight), an RFC 5322 date as in a Date: header (with a
    zone it names as RFC 5322 does: +0200, GMT, EST...), or a Unix time in seconds (or milliseconds); UTC when an
    ISO date names no zone."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"date: {value!r} is not a date")
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            if _ZONE.search(value) is None:
                raise ValueError(f"date: {value!r} is neither ISO 8601 nor an RFC 5322 date with its zone") from None
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (ValueError, TypeError, OverflowError):
                raise ValueError(f"date: {value!r} is neither ISO 8601 nor an RFC 5322 date with its zone") from None
    else:
        try:
            seconds = value / 1000 if abs(value) > 1e11 else value  # after 1973 in milliseconds, before 5138 in s
            when = dt.datetime.fromtimestamp(seconds, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"date: {value!r} is out of range") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


_ADDRESS = re.compile(r"""[^\s<>,;:"()\[\]]+@[^\s<>,;:"()\[\]]+""")


def _recipients(row: dict[str, Any]) -> tuple[str, ...]:
    """The recipients: "recipients", or else "to", "cc" and "bcc" together; each a list of addresses (strings, or
    objects with an "address" or "email") or one string of them as a header writes them (separated by commas,
    semicolons or spaces, display names and all). A message with none is no message."""
    fields = [row["recipients"]] if "recipients" in row else [row[k] for k in ("to", "cc", "bcc") if k in row]
    if not fields:
        raise KeyError("recipients")
    out: list[str] = []
    for value in fields:
        if value is None:
            continue
        if isinstance(value, str):
            found = _ADDRESS.findall(value)
            if value.strip() and not found:
                raise ValueError(f"recipients: no address in {value!r}")
            out.extend(_text(address, "recipients") for address in found)
            continue
        if not isinstance(value, list):
            raise TypeError(f"recipients: {value!r} is not a list of addresses")
        for item in value:
            address = item.get("address", item.get("email")) if isinstance(item, dict) else item
            out.append(_text(address, "recipients"))
    if not out:
        raise ValueError("no recipients")
    return tuple(out)


def _leak(row: dict[str, Any], recipients: tuple[str, ...]) -> str | None:
    """A line's leak: an address; none when null, false, absent or empty; `true` (or a list of one address) for a
    message of one recipient names that one."""
    leak = row.get("leak")
    if leak is None or leak == "" or leak is False or leak == []:
        return None
    if leak is True and len(recipients) == 1:
        return recipients[0]
    if isinstance(leak, list) and len(leak) == 1:
        leak = leak[0]
    if leak is True:
        raise ValueError(f"leak: true names no address among {len(recipients)} recipients")
    if isinstance(leak, list):
        raise ValueError(f"leak: {len(leak)} leaks in one message; give each its own line or name one")  # noqa: TRY004 - a value the reader does not take, not a wrong type
    return _text(leak, "leak")


def _kind(row: dict[str, Any]) -> str | None:
    kind = row.get("kind", row.get("leak_kind"))
    return None if kind is None else str(kind)


@dataclass(slots=True)
class Result:
    trained: int = 0
    judged: int = 0
    leaks: Counter[str] = field(default_factory=Counter)  # by kind
    held: Counter[str] = field(default_factory=Counter)
    warned: Counter[str] = field(default_factory=Counter)
    clean: int = 0
    clean_held: int = 0
    clean_warned: int = 0
    by_signal: Counter[str] = field(default_factory=Counter)  # the signals of clean messages held
    unmatched: int = 0  # leaks naming no recipient of their message (counted as missed)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # what of the file is no message ("line 5"), and why
    span: tuple[dt.datetime, dt.datetime] | None = None  # the dates of the file's first and last message
    cut: dt.datetime | None = None

    def rate(self, caught: int, total: int) -> float:
        return caught / total if total else 0.0

    @staticmethod
    def interval(caught: int, total: int, z: float = 1.96) -> tuple[float, float]:
        """The 95% Wilson score interval of a rate: where the rate the guard really has lies, given this many
        messages (a seed of 180 leaks moves by about two points either way)."""
        if not total:
            return 0.0, 0.0
        rate, zz = caught / total, z * z
        centre = (rate + zz / (2 * total)) / (1 + zz / total)
        half = z * math.sqrt(rate * (1 - rate) / total + zz / (4 * total * total)) / (1 + zz / total)
        return round(max(0.0, centre - half), 5), round(min(1.0, centre + half), 5)

    def to_json(self) -> dict[str, Any]:
        kinds = {k: {"leaks": n, "held": self.held[k], "warned": self.warned[k],
                     "tpr": round(self.rate(self.held[k] + self.warned[k], n), 4)}
                 for k, n in sorted(self.leaks.items())}
        leaks = self.leaks.total()
        caught = self.held.total() + self.warned.total()
        return {"cut": self.cut.isoformat() if self.cut else None,
                "trained": self.trained, "judged": self.judged, "leaks": leaks,
                "tpr": round(self.rate(caught, leaks), 4), "tpr_interval": self.interval(caught, leaks),
                "leaks_held": self.held.total(),
                "leaks_warned": self.warned.total(), "clean": self.clean,
                "fpr": round(self.rate(self.clean_held, self.clean), 5),
                "fpr_interval": self.interval(self.clean_held, self.clean), "clean_held": self.clean_held,
                "clean_warned": self.clean_warned, "leaks_unmatched": self.unmatched,
                "clean_warn_rate": round(self.rate(self.clean_warned, self.clean), 4),
                "kinds": kinds, "false_positive_signals": dict(self.by_signal.most_common()),
                "lines_skipped": len(self.skipped),
                "skipped": [{"at": where, "reason": why} for where, why in self.skipped[:SHOWN_SKIPPED]]}

    def lines(self) -> Iterator[str]:
        data = self.to_json()
        yield (f"trained on {self.trained:,} messages, judged {self.judged:,}: {data['leaks']:,} leaks, "
               f"{self.clean:,} clean")
        yield from self._notes()
        low, high = data["tpr_interval"]
        within = f"; 95% interval {low:.1%}–{high:.1%}" if data["leaks"] else ""
        caught = self.held.total() + self.warned.total()
        yield (f"leaks held or warned: {self.rate(caught, data['leaks']):.1%} ({data['leaks_held']:,} held, "
               f"{data['leaks_warned']:,} warned{within})")
        most = data["fpr_interval"][1]
        places = 3 if most < 0.001 else 2  # 0.004%, not 0.00%
        bound = f"; at most {most:.{places}%} at 95%" if self.clean else ""
        yield (f"clean messages with a recipient held: {self.rate(self.clean_held, self.clean):.2%} "
               f"({self.clean_held:,}{bound}); warned: {self.rate(self.clean_warned, self.clean):.1%} "
               f"({self.clean_warned:,})")
        if self.unmatched:
            yield (f"{self.unmatched:,} leaks name no recipient of their message (counted as missed): "
                   f"check the file")
        for kind, row in data["kinds"].items():
            rate = self.rate(row["held"] + row["warned"], row["leaks"])  # not the JSON's rate: rounded twice, it is off
            yield f"  {kind:<16} {rate:.1%} of {row['leaks']:,} ({row['held']:,} held, {row['warned']:,} warned)"
        if self.by_signal:
            yield "clean messages held, by signal: " + ", ".join(f"{s} {n}" for s, n in self.by_signal.most_common(8))


    def _notes(self) -> Iterator[str]:
        """What makes the figures mean less than they seem: lines skipped, nothing on one side of the cut."""
        if self.skipped:
            shown = "; ".join(f"{where}: {why}" for where, why in self.skipped[:3])
            more = f" and {len(self.skipped) - 3:,} more" if len(self.skipped) > 3 else ""
            yield f"{len(self.skipped):,} skipped as no message ({shown}{more})"
        if self.span is not None and self.cut is not None:
            first, last = (d.date().isoformat() for d in self.span)
            if not self.judged:
                yield f"nothing judged: every message is dated before the cut ({first} to {last})"
            elif not self.trained:
                yield (f"nothing learned: no message is dated before the cut ({first} to {last}), every "
                       f"correspondent is new")


class _Near:
    """Which domains a guard finds near misses (warned or held), each judged once."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.found: dict[str, str | None] = {}

    def __call__(self, domain: str) -> str | None:
        if domain not in self.found:
            verdict = self.guard.check(f"postmaster@{domain}")
            self.found[domain] = (verdict.intended or HELD) if verdict.action >= Action.WARN else None
        return self.found[domain]


def _counted(recipients: Iterable[str], near: _Near | None) -> list[Counted]:
    out = []
    for raw in recipients:
        parsed = parse_address(raw)
        if isinstance(parsed, Malformed):
            continue
        domain = parsed.domain.ascii
        out.append(Counted(address_key(parsed), domain, near(domain) if near is not None else None))
    return out


def evaluate(messages: list[EvalMessage], cut: dt.datetime, policy: Policy, settings: HistorySettings | None = None,
             explain: Callable[[dict[str, Any]], None] | None = None) -> Result:
    """The figures of judging the messages from `cut` on, having learned the ones before; `explain` is given, for
    each judged message that is a leak or has a recipient held or warned, what happened and why (`explained`)."""
    settings = settings or HistorySettings()
    history = MemoryHistory(settings)
    result = Result(span=(messages[0].when, messages[-1].when) if messages else None, cut=cut)
    near = _Near(Guard(policy))
    training = [m for m in messages if m.when < cut]
    for message in training:
        batch = Batch()
        batch.message(sender_key(message.sender), _counted(message.recipients, near), message.when,
                      max_group=settings.max_group)
        history.record(batch)
    result.trained = len(training)
    learned = history.learned(cut)
    guard = Guard(policy, learned=learned)
    known = _known(learned, policy)
    built = reloaded = cut
    newly_known = False  # a domain the guard does not know was let through since the index was last looked at
    for message in messages[len(training):]:
        if message.when - reloaded >= RELOAD:
            newly_known, reloaded = True, message.when
        if newly_known and message.when - built >= REBUILD:
            learned = history.learned(message.when)
            fresh = _known(learned, policy)
            if fresh != known:
                guard = guard.extended(learned) if known <= fresh else Guard(policy, learned=learned)
                known = fresh
            built, newly_known = message.when, False
        verdicts = judge_message(guard, message.sender, list(message.recipients), history, settings,
                                 now=message.when, greeting=message.greeting)
        _score(result, message, verdicts)
        if explain is not None and (message.leak is not None or any(v.action >= Action.WARN for v in verdicts)):
            explain(explained(message, verdicts))
        answered = _answered(message, verdicts, settings)
        history.record(answered)
        newly_known = newly_known or any(d not in known for d in answered.domains)
    return result


def explained(message: EvalMessage, verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """One judged message as a line of `eval-messages --explain`: its outcome (a leak caught, held or warned, or
    missed; a clean message with a recipient held, or warned) and the verdict of each recipient held or warned, and
    of the leak, with the signals and the reason."""
    worst = max((v.action for v in verdicts), default=Action.PASS)
    leaked = _leaked(message, verdicts)
    if message.leak is not None:
        action = leaked.action if leaked is not None else Action.PASS
        outcome = "held" if action >= Action.HOLD else "warned" if action is Action.WARN else "missed"
    else:
        outcome = "clean-held" if worst >= Action.HOLD else "clean-warned"
    shown = [v for v in verdicts if v.action >= Action.WARN or v is leaked]
    return {"date": message.when.isoformat(), "sender": message.sender, "recipients": list(message.recipients),
            "leak": message.leak, "kind": message.kind, "outcome": outcome,
            "verdicts": [{"address": v.address, "verdict": str(v.action), "suggestion": v.suggestion,
                          "signals": [s.name for s in v.signals], "reason": v.reason} for v in shown]}


def _known(learned: dict[str, int], policy: Policy) -> set[str]:
    """The learned domains the guard's index holds (runtime.Runtime's known set)."""
    return {d for d, n in learned.items() if n >= policy.learn_min_count}


def _leaked(message: EvalMessage, verdicts: Sequence[Verdict]) -> Verdict | None:
    """The verdict of the message's leak, however the file writes it and its recipient (a display name, the case,
    either form of an internationalised domain: compared as history keys them), or None."""
    leak = _leak_key(message)
    if leak is None:
        return None
    return next((v for v in verdicts if (key_of(v.address) or v.address.lower()) == leak), None)


def _leak_key(message: EvalMessage) -> str | None:
    return None if message.leak is None else key_of(message.leak) or message.leak.lower()


def _answered(message: EvalMessage, verdicts: list[Verdict], settings: HistorySettings) -> Batch:
    """What the doors learn from a judged message once its sender answered every hold: the recipients that passed
    or were warned count; a held clean recipient was sent anyway (a confirmation, as on the page: it counts for
    that sender); a held leak was corrected, and counts nothing."""
    sender = sender_key(message.sender)
    leak = _leak_key(message)
    batch = Batch()
    counted = []
    for verdict in verdicts:
        parsed = parse_address(verdict.address)
        if isinstance(parsed, Malformed) or verdict.action is Action.REJECT:
            continue
        address, domain = address_key(parsed), parsed.domain.ascii
        if verdict.action is Action.HOLD:
            if address == leak or sender is None:
                continue
            batch.confirmed(sender, domain, message.when)
        doubted = verdict.action >= Action.WARN and not verdict.about_person  # a wrong person: nothing of the domain
        counted.append(Counted(address, domain, verdict.intended if doubted else None))
    batch.message(sender, counted, message.when, max_group=settings.max_group)
    return batch


def _score(result: Result, message: EvalMessage, verdicts: list[Verdict]) -> None:
    result.judged += 1
    if message.leak is not None:
        kind = message.kind or "leak"
        result.leaks[kind] += 1
        verdict = _leaked(message, verdicts)
        result.unmatched += verdict is None
        if verdict is not None and verdict.action >= Action.HOLD:
            result.held[kind] += 1
        elif verdict is not None and verdict.action is Action.WARN:
            result.warned[kind] += 1
        return
    result.clean += 1
    actions = [v.action for v in verdicts]
    if any(a >= Action.HOLD for a in actions):
        result.clean_held += 1
        for v in verdicts:
            if v.action >= Action.HOLD:
                result.by_signal.update(s.name for s in v.signals if s.score > 0 or s.name.startswith("ODD"))
    elif Action.WARN in actions:
        result.clean_warned += 1
