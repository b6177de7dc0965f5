"""What a door, `learn` and the evaluation need of history, whichever keeps it (the store, or memory)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Protocol

from rcptguard.history.batch import Batch
from rcptguard.history.model import Facts

__all__ = ["WRITTEN_AT_MOST", "HistoryView"]

WRITTEN_AT_MOST = 500  # a sender's addresses at one domain compared with a name greeted; more, and none are


class HistoryView(Protocol):
    def facts(self, sender: str | None, addresses: Sequence[str], now: dt.datetime,
              own: Collection[str] = ()) -> Facts:
        """What history says of these recipients (history's form of each address), for `sender`. `own`: the
        organisation's domains (`judge.organisation`: its protected ones, neither public mail providers nor whole
        suffixes); the domains its people send from that are, or are under, one of them are the sender's
        organisation too, whose people a personal address may name (`Facts.colleagues`, `Facts.own`)."""
        ...

    def written_at(self, sender: str, domain: str) -> dict[str, int]:
        """The addresses at `domain` that `sender` (history's form) has written to, with their messages; {} when
        there are more than `WRITTEN_AT_MOST` (asked only when a message greets somebody none of its recipients
        can be: rcptguard.history.greeting)."""
        ...

    def record(self, batch: Batch) -> None:
        """Add what was learned."""
        ...

    def confirmation(self, sender: str, domain: str) -> dt.datetime | None:
        """When `sender` (history's form) last confirmed `domain` (A-label form), or None."""
        ...

    def learned(self, now: dt.datetime) -> dict[str, int]:
        """The organisation's correspondents by the poisoning guard (rules.qualifies), with their message counts."""
        ...
