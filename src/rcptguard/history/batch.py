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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from rcptguard.history.model import Tally

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
            if recipient.near is not None:
                self.near.setdefault(recipient.domain, recipient.near)
            if sender is not None:
                _tally(self.sender_addresses, (sender, recipient.address)).add(count, when)
                self.address_domains[recipient.address] = recipient.domain
        if len(recipients) >= 2:
            addresses = sorted({r.address for r in recipients})
            if 2 <= len(addresses) <= max_group:
                for pair in itertools.combinations(addresses, 2):
                    _tally(self.pairs, pair).add(count, when)

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
        for domain, near in other.near.items():
            self.near.setdefault(domain, near)
        self.address_domains.update(other.address_domains)
        for key, when in other.confirmations.items():
            self.confirmations[key] = max(when, self.confirmations.get(key, when))
        self.messages += other.messages


def _merge(mine: dict[K, Tally], theirs: dict[K, Tally]) -> None:
    for key, tally in theirs.items():
        _tally(mine, key).merge(tally)


def _tally(table: dict[K, Tally], key: K) -> Tally:
    found = table.get(key)
    if found is None:
        found = table[key] = Tally()
    return found
