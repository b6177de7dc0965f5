"""What the archive itself shows of who the organisation writes to, as `learn` would count it.

A scan counts, for every recipient domain, the messages sent there, up to `MAX_SENDERS` distinct senders, the
first and last time, and whether mail *from* that domain is in the archive too (a domain that wrote to us is
real). A domain the organisation has written to for long enough, by more than one person, is a correspondent:
its messages are not findings just because it resembles another domain. The poisoning guard of `learn` applies:
a domain one slip from a *protected* domain (army.ml for mil) never becomes a correspondent by volume alone,
since a slip repeated 117,000 times is still a slip; it needs mail from it.

This history lives in the scan (and its state file, so that a re-run keeps it); the store's learned history is
read as well when the command is given one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

MAX_SENDERS = 8


@dataclass(slots=True)
class DomainHistory:
    messages: int = 0
    senders: set[str] = field(default_factory=set)
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    inbound: int = 0

    def saw(self, sender: str, when: dt.datetime | None, count: int = 1) -> None:
        self.messages += count
        if sender and len(self.senders) < MAX_SENDERS:
            self.senders.add(sender)
        if when is not None:
            self.first = when if self.first is None or when < self.first else self.first
            self.last = when if self.last is None or when > self.last else self.last

    def merge(self, other: DomainHistory) -> None:
        self.messages += other.messages
        self.inbound += other.inbound
        self.senders |= set(list(other.senders)[: max(0, MAX_SENDERS - len(self.senders))])
        for when in (other.first, other.last):
            if when is not None:
                self.saw("", when, 0)

    @property
    def span_days(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return (self.last - self.first).total_seconds() / 86_400

    def to_json(self) -> dict[str, object]:
        return {"messages": self.messages, "senders": sorted(self.senders), "inbound": self.inbound,
                "first": self.first.isoformat() if self.first else None,
                "last": self.last.isoformat() if self.last else None}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> DomainHistory:
        def when(value: object) -> dt.datetime | None:
            return dt.datetime.fromisoformat(value) if isinstance(value, str) else None

        senders = data.get("senders")
        return cls(int(str(data.get("messages", 0))), set(senders) if isinstance(senders, list) else set(),
                   when(data.get("first")), when(data.get("last")), int(str(data.get("inbound", 0))))


@dataclass(frozen=True, slots=True)
class HistoryRule:
    """When the archive's own history makes a domain a correspondent (see the module docstring)."""

    min_messages: int = 3
    min_senders: int = 2
    min_days: float = 180.0

    def established(self, seen: DomainHistory | None, slip_of_protected: bool) -> bool:
        if seen is None:
            return False
        if seen.inbound:
            return True
        if slip_of_protected:
            return False
        return (seen.messages >= self.min_messages and len(seen.senders) >= self.min_senders
                and seen.span_days >= self.min_days)

    def describe(self, seen: DomainHistory | None) -> str:
        if seen is None or not seen.messages:
            return "first contact in the archive"
        span = f" over {seen.span_days:.0f} days" if seen.span_days >= 1 else ""
        senders = len(seen.senders)
        who = f"{senders}{'+' if senders >= MAX_SENDERS else ''} sender{'s' if senders != 1 else ''}"
        return f"{seen.messages} message{'s' if seen.messages != 1 else ''} from {who}{span}, none received from it"
