"""What every archive reader yields: one `Record` per message or delivery, and the problems it met on the way."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

EXAMPLES_PER_KIND = 3  # problems kept as examples for each kind: enough to find the damage, not a second copy


@dataclass(frozen=True, slots=True)
class Record:
    """One message (mailboxes) or one delivery attempt (logs, message traces) as the archive shows it.

    `sender` is the envelope sender when the archive knows it, else the From: address; "" when unknown (a log
    whose from= line was rotated away, a bounce's null sender). Addresses are normalised as everywhere in
    rcptguard (`sources.addresses.normal_address`). `where` is something a person or a tool can follow back to
    the message: `file:byte-offset` in an mbox, the file's path in a Maildir or folder of .eml, `file:line` in
    a log or CSV. `status` is the delivery's outcome in logs and traces (sent, deferred, bounced...), None for
    mailboxes. `count` is how many messages the record stands for (a counts file's column; 1 otherwise).
    """

    when: dt.datetime | None
    sender: str
    recipients: tuple[str, ...]
    message_id: str | None
    where: str
    status: str | None = None
    count: int = 1
    subject: str | None = None
    direction: str | None = None  # "out", "in" or "internal" when a trace says so
    loader: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)

    def content(self) -> bytes | None:
        """The raw message, read when asked (mailboxes); None for logs and traces, which carry no content."""
        return self.loader() if self.loader is not None else None


class Problems(Counter[str]):
    """How many times each kind of damage was met (truncated, binary, not UTF-8...), with a few examples each.

    A reader counts what it cannot use and goes on; the counts are reported, never raised.
    """

    def __init__(self, counts: dict[str, int] | None = None, examples: dict[str, list[str]] | None = None) -> None:
        super().__init__(counts or {})
        self.examples: dict[str, list[str]] = examples or {}

    def __reduce__(self) -> tuple[type[Problems], tuple[dict[str, int], dict[str, list[str]]]]:
        return type(self), (dict(self), self.examples)

    def add(self, kind: str, where: str, detail: str = "") -> None:
        self[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < EXAMPLES_PER_KIND:
            kept.append(f"{where}: {detail}" if detail else where)

    def merge(self, other: Problems) -> None:
        for kind, number in other.items():
            self[kind] += number
            kept = self.examples.setdefault(kind, [])
            kept.extend(other.examples.get(kind, [])[: EXAMPLES_PER_KIND - len(kept)])


class Source:
    """An archive opened for reading: its format, its path, its records (streamed) and the problems met."""

    format = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems = Problems()

    def records(self) -> Iterator[Record]:
        raise NotImplementedError

    def parts(self, wanted: int) -> list[Source]:
        """This source cut into about `wanted` independent pieces (for a process pool); itself when it cannot be."""
        del wanted
        return [self]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format} {self.path}>"
