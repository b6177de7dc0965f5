"""History in memory: the same facts as the store, for the evaluation (`rcptguard eval-messages`) and tests."""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence

from rcptguard.history.batch import Batch
from rcptguard.history.model import (
    DomainFacts,
    Facts,
    Seen,
    Tally,
    add_colleague,
    colleague_names,
    named_in,
    organisation_of,
    places,
)
from rcptguard.history.rules import qualifies
from rcptguard.history.settings import HistorySettings
from rcptguard.history.view import WRITTEN_AT_MOST
from rcptguard.providers import providers

__all__ = ["MemoryHistory"]

NEIGHBOURS = 200  # a sender's addresses at one domain, at most, compared with a new one
ORG_NEIGHBOURS_AT_MOST = 2000  # at a domain where the organisation wrote to more addresses, only the sender's count
_NO_TALLY = Tally()  # what `_domain` reads for a key with no tally (only read, never added to)


class MemoryHistory:
    def __init__(self, settings: HistorySettings | None = None) -> None:
        self.settings = settings or HistorySettings()
        self.domains: dict[str, Tally] = {}
        self.inbound: Counter[str] = Counter()
        self.near: dict[str, str] = {}
        self.states: dict[str, str] = {}
        self.senders: defaultdict[str, set[str]] = defaultdict(set)
        self.sender_domains: dict[tuple[str, str], Tally] = {}
        self.confirmed: dict[tuple[str, str], dt.datetime] = {}
        self.by_sender: Counter[tuple[str, str]] = Counter()
        self.by_org: Counter[str] = Counter()
        self.addresses_at: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        self.pairs: Counter[tuple[str, str]] = Counter()
        # the rest's digest -> who filled the place (model.places): (address, count) while one person did (most
        # places: a tuple is a quarter of a dict), then {address: count}
        self.places: dict[str, tuple[str, int] | dict[str, int]] = {}
        self.place_rows = 0  # (place, address) pairs: rows of co_places
        self.tops: dict[tuple[str, str], tuple[str, ...]] = {}  # (sender, domain) -> its neighbours, as last worked out
        self.org_at: defaultdict[str, set[str]] = defaultdict(set)  # domain -> every address written to there
        self.org_tops: dict[str, tuple[str, ...]] = {}  # domain -> the organisation's neighbours there
        self.people_at: defaultdict[str, set[str]] = defaultdict(set)  # domain -> the senders whose domain it is
        # a domain people send from -> the names its people spell (colleague_names: its senders, and every address
        # written to there), kept as they come
        self.names_at: dict[str, dict[str, str | None]] = {}

    def record(self, batch: Batch) -> None:
        for domain, tally in batch.domains.items():
            self.domains.setdefault(domain, Tally()).merge(tally)
        for domain, tally in batch.inbound_domains.items():
            self.inbound[domain] += tally.count
        for domain, near in batch.near.items():
            self.near.setdefault(domain, near)
        for (sender, domain), tally in batch.sender_domains.items():
            self.senders[domain].add(sender)
            self.sender_domains.setdefault((sender, domain), Tally()).merge(tally)
            self._person(sender)
        for (sender, address), tally in batch.sender_addresses.items():
            self.by_sender[(sender, address)] += tally.count
            self.by_org[address] += tally.count
            domain = batch.address_domains[address]
            self.addresses_at[(sender, domain)].add(address)
            self._written_to(domain, address)
            self.tops.pop((sender, domain), None)
            self.org_tops.pop(domain, None)
        for pair, tally in batch.pairs.items():
            self.pairs[pair] += tally.count
        for (rest, address), tally in batch.places.items():
            self._fill(rest, address, tally.count, add=True)
        for key, when in batch.confirmations.items():
            self.confirmed[key] = max(when, self.confirmed.get(key, when))
            self.senders[key[1]].add(key[0])
            self._person(key[0])
            if key not in batch.sender_domains:  # as the store writes it: a row of no messages, seen then
                self.sender_domains.setdefault(key, Tally()).merge(Tally(0, when, when))

    # -- loaded from the store, a row at a time (rcptguard.store.history.StoreHistory.load) -----------------

    def load_domain(self, domain: str, tally: Tally, inbound: int, near: str | None, state: str | None) -> None:
        self.domains[domain] = tally
        if inbound:
            self.inbound[domain] = inbound
        if near is not None:
            self.near[domain] = near
        if state is not None:
            self.states[domain] = state

    def load_sender_domain(self, sender: str, domain: str, tally: Tally, confirmed: dt.datetime | None) -> None:
        self.senders[domain].add(sender)
        self._person(sender)
        self.sender_domains[(sender, domain)] = tally
        if confirmed is not None:
            self.confirmed[(sender, domain)] = confirmed

    def load_sender_address(self, sender: str, address: str, domain: str, count: int) -> None:
        self.by_sender[(sender, address)] = count
        self.by_org[address] += count
        self.addresses_at[(sender, domain)].add(address)
        self._written_to(domain, address)

    def _person(self, sender: str) -> None:
        """A sender is one of the people of its domain (unless a public mail provider's): their names are known from
        then on, with those of every address written to there (kept as they come: `_written_to`)."""
        domain = sender.rpartition("@")[2]
        if domain in providers():
            return
        there = self.people_at[domain]
        if sender in there:
            return
        there.add(sender)
        names = self.names_at.get(domain)
        if names is None:
            names = self.names_at[domain] = colleague_names(self.org_at.get(domain, ()))
        add_colleague(names, sender)

    def _written_to(self, domain: str, address: str) -> None:
        there = self.org_at[domain]
        if address not in there:
            there.add(address)
            names = self.names_at.get(domain)
            if names is not None:  # a domain people send from
                add_colleague(names, address)

    def load_pair(self, a: str, b: str, count: int) -> None:
        self.pairs[(a, b)] = count

    def load_place(self, rest: str, address: str, count: int) -> None:
        self._fill(rest, address, count, add=False)

    def _fill(self, rest: str, address: str, count: int, *, add: bool) -> None:
        filled = self.places.get(rest)
        if filled is None:
            self.places[rest] = (address, count)
            self.place_rows += 1
        elif isinstance(filled, tuple):
            if filled[0] == address:
                self.places[rest] = (address, filled[1] + count if add else count)
            else:
                self.places[rest] = {filled[0]: filled[1], address: count}
                self.place_rows += 1
        else:
            self.place_rows += address not in filled
            filled[address] = filled.get(address, 0) + count if add else count

    def _domain(self, domain: str, sender: str | None) -> DomainFacts:
        tally = self.domains.get(domain, _NO_TALLY)
        mine = self.sender_domains.get((sender, domain), _NO_TALLY) if sender else _NO_TALLY
        return DomainFacts(org=Seen(tally.count, tally.first, tally.last), senders=len(self.senders.get(domain, ())),
                           inbound=self.inbound.get(domain, 0), near=self.near.get(domain),
                           state=self.states.get(domain), sender=Seen(mine.count, mine.first, mine.last),
                           confirmed=self.confirmed.get((sender, domain)) if sender else None)

    def facts(self, sender: str | None, addresses: Sequence[str], now: dt.datetime,  # noqa: ARG002
              own: Collection[str] = ()) -> Facts:
        # (dict.get, not the Counters' [], whose missing keys cost a call of __missing__ each: this runs for every
        # message a door passes)
        unique = sorted(set(addresses))
        by_sender, by_org = self.by_sender, self.by_org
        mine = {a: n for a in unique if (n := by_sender.get((sender, a), 0))} if sender else {}
        everybody = {a: n for a in unique if (n := by_org.get(a, 0))}
        grouped = 2 <= len(unique) <= self.settings.max_group  # as groups are remembered: this size
        neighbours = {}
        if sender:
            for domain in {a.rsplit("@", 1)[-1] for a in unique if a not in mine}:  # new to the sender
                top = self._neighbours(sender, domain)
                if top:
                    neighbours[domain] = top
        org_neighbours = {}
        for domain in {a.rsplit("@", 1)[-1] for a in unique if a not in everybody}:  # only a new address's
            top = self._org_neighbours(domain)
            if top:
                org_neighbours[domain] = top
        colleagues = {}
        public = providers()
        ours: tuple[str, ...] = ()
        if sender and (home := sender.rpartition("@")[2]) not in public:
            wanted = [a.rpartition("@")[0] for a in unique if a.rpartition("@")[2] in public]
            if wanted:
                ours = organisation_of(home, self.names_at, own)
                names = [self.names_at.get(d, {}) for d in ours]
                by_sender = self.by_sender
                for local in wanted:
                    who = named_in(local, names)
                    if who is not None and (who == sender or by_sender.get((sender, who))
                                            or by_sender.get((who, sender))):
                        colleagues[local] = who
        pairs = self.pairs
        return Facts(
            domains={d: self._domain(d, sender) for d in {a.rsplit("@", 1)[-1] for a in unique}},
            by_sender=mine,
            by_org=everybody,
            pairs={p: n for p in itertools.combinations(unique, 2) if (n := pairs.get(p, 0))} if grouped else {},
            neighbours=neighbours,
            org_neighbours=org_neighbours,
            places={a: _filled(found) for a, rest in places(sender, unique) if (found := self.places.get(rest))}
            if grouped else {},
            colleagues=colleagues,
            own=ours,
        )

    def written_at(self, sender: str, domain: str) -> dict[str, int]:
        there = self.addresses_at.get((sender, domain), ())
        if len(there) > WRITTEN_AT_MOST:
            return {}
        return {a: self.by_sender[(sender, a)] for a in there}

    def _neighbours(self, sender: str, domain: str) -> tuple[str, ...]:
        """The sender's most written-to addresses at `domain`, kept until the sender writes there again."""
        top = self.tops.get((sender, domain))
        if top is None:
            there = self.addresses_at.get((sender, domain), ())
            top = tuple(sorted(heapq.nsmallest(NEIGHBOURS, there, key=lambda a: (-self.by_sender[(sender, a)], a))))
            if top:  # nothing is kept for a domain the sender never wrote to
                self.tops[(sender, domain)] = top
        return top

    def _org_neighbours(self, domain: str) -> tuple[str, ...]:
        """The organisation's most written-to addresses at `domain`, kept until somebody writes there again; none at
        a domain of more than ORG_NEIGHBOURS_AT_MOST addresses (a public mail provider: worked out again at every
        flush, that would be a pause on the door's loop, for namesakes that do not count there)."""
        top = self.org_tops.get(domain)
        if top is None:
            there = self.org_at.get(domain, ())
            if len(there) > ORG_NEIGHBOURS_AT_MOST:
                return ()
            top = tuple(sorted(heapq.nsmallest(NEIGHBOURS, there, key=lambda a: (-self.by_org[a], a))))
            if top:
                self.org_tops[domain] = top
        return top

    def confirmation(self, sender: str, domain: str) -> dt.datetime | None:
        return self.confirmed.get((sender, domain))

    def learned(self, now: dt.datetime) -> dict[str, int]:
        return {d: t.count for d, t in self.domains.items()
                if qualifies(self._domain(d, None), self.settings, now)}


def _filled(found: tuple[str, int] | dict[str, int]) -> dict[str, int]:
    return {found[0]: found[1]} if isinstance(found, tuple) else dict(found)
