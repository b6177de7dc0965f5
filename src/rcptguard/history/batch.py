"""What is learned, gathered in memory before it is written: a `Batch` of tallies, added to in any order.

    batch.message("me@org.example", [Counted("bob@partner.example", "partner.example")], when)
    batch.inbound("partner.example", when)
    batch.confirmed("me@org.example", "raytheon.co", when)

A door adds the recipients it let through without a hold (a near miss the guard warned of carries the domain it
resembles in `near`); `rcptguard learn` adds what it imports. The store adds a batch to its tables in one
transaction (rcptguard.store.history); the in-memory history (rcptguard.history.memory) adds it to its dicts.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from rcptguard.history.model import Tally, places
from rcptguard.history.rules import near_for

__all__ = ["Batch", "Counted"]

K = TypeVar("K")


class Counted(NamedTuple):
    """One recipient that counts: its address (history's form), its domain, and the domain it is one slip from
    when the guard warned of it (a tuple: a large import makes millions)."""

    address: str
    domain: str
    near: str | None = None


@dataclass(slots=True)
class Batch:
    domains: dict[str, Tally] = field(default_factory=dict)
    inbound_domains: dict[str, Tally] = field(default_factory=dict)
    near: dict[str, str] = field(default_factory=dict)
    sender_domains: dict[tuple[str, str], Tally] = field(default_factory=dict)
    sender_addresses: dict[tuple[str, str], Tally] = field(default_factory=dict)
    address_domains: dict[str, str] = field(default_factory=dict)
    pairs: dict[tuple[str, str], Tally] = field(default_factory=dict)
    places: dict[tuple[str, str], Tally] = field(default_factory=dict)  # (the rest's digest, address): model.places
    confirmations: dict[tuple[str, str], dt.datetime] = field(default_factory=dict)
    messages: int = 0

    def __bool__(self) -> bool:
        return bool(self.domains or self.inbound_domains or self.confirmations)

    def message(self, sender: str | None, recipients: Sequence[Counted], when: dt.datetime, *, count: int = 1,
                max_group: int = 30) -> None:
        """`count` messages from `sender` (None: nobody's own history, the null sender) to `recipients`."""
        if not recipients:
            return
        self.messages += count
        domains = self.domains
        for domain in {r.domain for r in recipients}:
            tally = domains.get(domain)
            if tally is None:
                tally = domains[domain] = Tally()
            tally.add(count, when)
            if sender is not None:
                _tally(self.sender_domains, (sender, domain)).add(count, when)
        for recipient in recipients:
            if recipient.near is not None and (near := near_for(recipient.domain, recipient.near)) is not None:
                self.near.setdefault(recipient.domain, near)
            if sender is not None:
                _tally(self.sender_addresses, (sender, recipient.address)).add(count, when)
                self.address_domains[recipient.address] = recipient.domain
        if len(recipients) >= 2:
            addresses = sorted({r.address for r in recipients})
            if 2 <= len(addresses) <= max_group:
                for pair in itertools.combinations(addresses, 2):
                    _tally(self.pairs, pair).add(count, when)
                for address, rest in places(sender, addresses):
                    _tally(self.places, (rest, address)).add(count, when)

    def inbound(self, domain: str, when: dt.datetime, *, count: int = 1) -> None:
        """`count` messages received from `domain`: evidence that it is real."""
        _tally(self.inbound_domains, domain).add(count, when)

    def confirmed(self, sender: str, domain: str, when: dt.datetime) -> None:
        """`sender` confirmed a hold of `domain` ("send anyway")."""
        self.confirmations[(sender, domain)] = max(when, self.confirmations.get((sender, domain), when))

    def merge(self, other: Batch) -> None:
        _merge(self.domains, other.domains)
        _merge(self.inbound_domains, other.inbound_domains)
        _merge(self.sender_domains, other.sender_domains)
        _merge(self.sender_addresses, other.sender_addresses)
        _merge(self.pairs, other.pairs)
        _merge(self.places, other.places)
        for domain, near in other.near.items():
            self.near.setdefault(domain, near)
        self.address_domains.update(other.address_domains)
        for key, when in other.confirmations.items():
            self.confirmations[key] = max(when, self.confirmations.get(key, when))
        self.messages += other.messages


    def to_json(self) -> str:
        """The batch as compact JSON (times as POSIX seconds), for the history feed; `from_json` reads it back."""
        return json.dumps({
            "d": [[k, *_out(t)] for k, t in self.domains.items()],
            "i": [[k, *_out(t)] for k, t in self.inbound_domains.items()],
            "n": self.near,
            "sd": [[s, d, *_out(t)] for (s, d), t in self.sender_domains.items()],
            "sa": [[s, a, self.address_domains[a], *_out(t)] for (s, a), t in self.sender_addresses.items()],
            "p": [[a, b, *_out(t)] for (a, b), t in self.pairs.items()],
            "g": [[r, a, *_out(t)] for (r, a), t in self.places.items()],
            "c": [[s, d, w.timestamp()] for (s, d), w in self.confirmations.items()],
            "m": self.messages,
        }, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Batch:
        data = json.loads(text)
        batch = cls(messages=int(data["m"]), near=dict(data["n"]))
        batch.domains = {k: _in(*t) for k, *t in data["d"]}
        batch.inbound_domains = {k: _in(*t) for k, *t in data["i"]}
        batch.sender_domains = {(s, d): _in(*t) for s, d, *t in data["sd"]}
        for s, a, domain, *t in data["sa"]:
            batch.sender_addresses[(s, a)] = _in(*t)
            batch.address_domains[a] = domain
        batch.pairs = {(a, b): _in(*t) for a, b, *t in data["p"]}
        batch.places = {(r, a): _in(*t) for r, a, *t in data.get("g", ())}  # absent from an older door's entries
        batch.confirmations = {(s, d): _time(w) for s, d, w in data["c"]}
        return batch


def _out(tally: Tally) -> tuple[int, float | None, float | None]:
    return (tally.count, tally.first.timestamp() if tally.first else None,
            tally.last.timestamp() if tally.last else None)


def _in(count: int, first: float | None, last: float | None) -> Tally:
    return Tally(int(count), _time(first) if first is not None else None, _time(last) if last is not None else None)


def _time(posix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(posix, dt.UTC)


def _merge(mine: dict[K, Tally], theirs: dict[K, Tally]) -> None:
    for key, tally in theirs.items():
        _tally(mine, key).merge(tally)


def _tally(table: dict[K, Tally], key: K) -> Tally:
    found = table.get(key)
    if found is None:
        found = table[key] = Tally()
    return found
