"""History in the store: the tables of rcptguard.history, written a batch at a time and read a message at a time.

    history = StoreHistory(store)
    history.record(batch)                          # one transaction, every table (upserts: counts add up)
    history.facts("me@org.example", ["bob@partner.example"], now)  # a handful of indexed look-ups
    history.learned(now)                           # the correspondents the poisoning guard lets count

`correspondents` holds the organisation's tally per domain (with inbound messages, the domain a near miss
resembles, an administrator's state); `sender_domains` and `sender_addresses` each sender's; `co_recipients` how
often two addresses were on one message, `co_places` who filled each place in a group of recipients.
`imported_sources` is what `rcptguard learn` read, and `observations`
what observe mode would have done.

The doors do not read these tables per message: they judge against `MirroredHistory`, the same history held in
memory and kept current (its docstring says how).
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Table, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from rcptguard.errors import StoreError
from rcptguard.history.batch import Batch
from rcptguard.history.memory import NEIGHBOURS, ORG_NEIGHBOURS_AT_MOST, MemoryHistory
from rcptguard.history.model import (
    DomainFacts,
    Facts,
    Seen,
    Tally,
    colleague_names,
    named_in,
    organisation_of,
    places,
)
from rcptguard.history.rules import qualifies
from rcptguard.history.settings import HistorySettings
from rcptguard.history.view import WRITTEN_AT_MOST
from rcptguard.providers import providers
from rcptguard.store import Store, as_utc, error_line, utc_now
from rcptguard.store.schema import (
    co_places,
    co_recipients,
    correspondents,
    history_feed,
    imported_sources,
    observations,
    sender_addresses,
    sender_domains,
)

__all__ = ["Correspondent", "MirroredHistory", "Observation", "SourceMark", "StoreHistory", "write_batch"]

_CHUNK = 500  # keys in one IN (...) list
_LOAD_CHUNK = 10_000  # rows fetched at a time when the whole history is read
FEED_KEEP = dt.timedelta(hours=1)  # how long the history feed keeps an entry
FEED_OVERLAP = dt.timedelta(minutes=2)  # how far back each look at the feed reads again
_FADE_STEPS = 48  # powers of two a count is compared with when pruning (2**48 messages: more than any count)
CATCH_UP_BURST = 3  # times a second the store is asked for one sender's confirmation of one domain
_ASKED_LIMIT = 100_000  # pairs remembered as asked (then forgotten all at once)


@dataclass(frozen=True, slots=True)
class Correspondent:
    """One domain as `rcptguard known` shows it."""

    domain: str
    facts: DomainFacts
    known: bool  # the poisoning guard lets it count (rules.qualifies)


@dataclass(frozen=True, slots=True)
class SourceMark:
    """How much of an imported source was read (rcptguard learn)."""

    fingerprint: str
    format: str
    path: str
    records: int


@dataclass(frozen=True, slots=True)
class Observation:
    """A verdict observe mode did not enforce."""

    at: dt.datetime
    door: str
    sender: str
    recipient: str
    verdict: str
    score: float
    intended: str | None
    signals: str
    reason: str


def _tally(count: int, first: dt.datetime, last: dt.datetime) -> Tally:
    return Tally(int(count), as_utc(first), as_utc(last))


def _seen(count: object, first: object, last: object) -> Seen:
    return Seen(int(count or 0), as_utc(first) if isinstance(first, dt.datetime) else None,  # type: ignore[call-overload]
                as_utc(last) if isinstance(last, dt.datetime) else None)


class StoreHistory:
    def __init__(self, store: Store, settings: HistorySettings | None = None) -> None:
        self.store = store
        self.engine = store.engine
        self.settings = settings or HistorySettings()

    # -- writing --------------------------------------------------------------------------------------

    def record(self, batch: Batch, origin: str | None = None) -> None:
        """Add a batch to the store in one transaction, and to the history feed (from `origin`, a door's mirror,
        which has it already)."""
        if not batch:
            return
        try:
            with self.engine.begin() as connection:
                write_batch(connection, batch, origin=origin)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record history: {error_line(exc)}") from exc

    # -- reading one message's facts ------------------------------------------------------------------

    def _rows(self, query: Any) -> list[Any]:  # noqa: ANN401 - a SQLAlchemy statement
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(query).all())
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read history: {error_line(exc)}") from exc

    def _domain_facts(self, domains: Sequence[str], sender: str | None) -> dict[str, DomainFacts]:
        rows = self._rows(select(correspondents).where(correspondents.c.domain.in_(domains)))
        senders = dict(self._rows(select(sender_domains.c.domain, func.count()).where(
            sender_domains.c.domain.in_(domains)).group_by(sender_domains.c.domain)))
        mine: dict[str, Any] = {}
        if sender is not None:
            mine = {r.domain: r for r in self._rows(select(sender_domains).where(
                sender_domains.c.sender == sender, sender_domains.c.domain.in_(domains)))}
        found = {}
        for row in rows:
            found[row.domain] = DomainFacts(org=_seen(row.count, row.first_seen, row.last_seen),
                                            senders=int(senders.get(row.domain, 0)), inbound=int(row.inbound),
                                            near=row.near, state=row.state)
        out = {}
        for domain in domains:
            base = found.get(domain) or DomainFacts(senders=int(senders.get(domain, 0)))  # only confirmed
            own = mine.get(domain)
            if own is not None:
                base = DomainFacts(base.org, base.senders, base.inbound, base.near, base.state,
                                   _seen(own.count, own.first_seen, own.last_seen),
                                   as_utc(own.confirmed_at) if own.confirmed_at is not None else None)
            out[domain] = base
        return out

    def facts(self, sender: str | None, addresses: Sequence[str], now: dt.datetime,  # noqa: ARG002
              own: Collection[str] = ()) -> Facts:
        unique = sorted(set(addresses))[:_CHUNK]
        domains = sorted({a.rsplit("@", 1)[-1] for a in unique})
        if not unique:
            return Facts()
        by_org = {a: int(n) for a, n in self._rows(
            select(sender_addresses.c.address, func.sum(sender_addresses.c.count))
            .where(sender_addresses.c.address.in_(unique)).group_by(sender_addresses.c.address))}
        by_sender: dict[str, int] = {}
        neighbours: dict[str, tuple[str, ...]] = {}
        if sender is not None:
            by_sender = {a: int(n) for a, n in self._rows(select(sender_addresses.c.address, sender_addresses.c.count)
                                                          .where(sender_addresses.c.sender == sender,
                                                                 sender_addresses.c.address.in_(unique)))}
            for domain in sorted({a.rsplit("@", 1)[-1] for a in unique if a not in by_sender}):  # new to the sender
                near = [a for (a,) in self._rows(
                    select(sender_addresses.c.address).where(sender_addresses.c.sender == sender,
                                                             sender_addresses.c.domain == domain)
                    .order_by(sender_addresses.c.count.desc(), sender_addresses.c.address).limit(NEIGHBOURS))]
                if near:
                    neighbours[domain] = tuple(sorted(near))
        org_neighbours: dict[str, tuple[str, ...]] = {}
        total = func.sum(sender_addresses.c.count)
        for domain in sorted({a.rsplit("@", 1)[-1] for a in unique if a not in by_org}):  # only a new address's
            rows = self._rows(select(sender_addresses.c.address, total).where(sender_addresses.c.domain == domain)
                              .group_by(sender_addresses.c.address).order_by(total.desc(), sender_addresses.c.address)
                              .limit(ORG_NEIGHBOURS_AT_MOST + 1))
            if 0 < len(rows) <= ORG_NEIGHBOURS_AT_MOST:  # a domain this large: the sender's own neighbours only
                org_neighbours[domain] = tuple(sorted(a for a, _ in rows[:NEIGHBOURS]))
        pairs = {}
        filled: dict[str, dict[str, int]] = {}
        if 1 < len(unique) <= self.settings.max_group:  # as they are remembered: for groups this size
            pairs = {(a, b): int(n) for a, b, n in self._rows(
                select(co_recipients.c.a, co_recipients.c.b, co_recipients.c.count)
                .where(co_recipients.c.a.in_(unique), co_recipients.c.b.in_(unique)))}
            owner = {rest: address for address, rest in places(sender, unique)}
            for rest, address, count in self._rows(select(co_places.c.rest, co_places.c.address, co_places.c.count)
                                                   .where(co_places.c.rest.in_(sorted(owner)))):
                filled.setdefault(owner[rest], {})[address] = int(count)
        colleagues, ours = self._colleagues(sender, unique, own)
        return Facts(domains=self._domain_facts(domains, sender), by_sender=by_sender, by_org=by_org, pairs=pairs,
                     neighbours=neighbours, org_neighbours=org_neighbours, places=filled,
                     colleagues=colleagues, own=ours)

    def written_at(self, sender: str, domain: str) -> dict[str, int]:
        a = sender_addresses.c
        rows = self._rows(select(a.address, a.count).where(a.sender == sender, a.domain == domain)
                          .limit(WRITTEN_AT_MOST + 1))
        return {address: int(n) for address, n in rows} if len(rows) <= WRITTEN_AT_MOST else {}

    def _colleagues(self, sender: str | None, unique: Sequence[str],
                    own: Collection[str]) -> tuple[dict[str, str], tuple[str, ...]]:
        """Facts.colleagues and Facts.own: when a recipient is at a public mail provider, the people of the sender's
        organisation read whole (the senders of its domains: the sender's, and those its people send from under
        `own`; and the addresses written to there), and of those whose name a recipient spells (`named_in`), the
        sender and the ones the sender has written to or had mail from; a door's mirror keeps the names in memory."""
        public = providers()
        home = sender.rpartition("@")[2] if sender else None
        wanted = [a.rpartition("@")[0] for a in unique if a.rpartition("@")[2] in public]
        if home is None or home in public or not wanted:
            return {}, ()
        people: defaultdict[str, set[str]] = defaultdict(set)
        for (someone,) in self._rows(select(sender_domains.c.sender).distinct()):
            people[someone.rpartition("@")[2]].add(someone)
        ours = organisation_of(home, people, own)
        a = sender_addresses.c
        for address, domain in self._rows(select(a.address, a.domain).distinct().where(a.domain.in_(ours))):
            people[domain].add(address)
        names = [colleague_names(people.get(domain, ())) for domain in ours]
        found = {local: who for local in wanted if (who := named_in(local, names)) is not None}
        them = sorted(set(found.values()))
        known = {address for (address,) in self._rows(select(a.address).where(a.sender == sender,
                                                                                a.address.in_(them)))}
        known.update(writer for (writer,) in self._rows(select(a.sender).where(a.address == sender,
                                                                                 a.sender.in_(them))))
        return {name: who for name, who in found.items() if who == sender or who in known}, ours

    # -- all of it, into memory (the doors' mirror) ---------------------------------------------------

    def load(self, into: MemoryHistory | None = None) -> MemoryHistory:
        """Every table read into an in-memory history (`MirroredHistory`), streamed in chunks. A name that recurs
        (a sender on each of its rows, a domain, an address on its pairs) is held once."""
        return self.snapshot(into)[0]

    def snapshot(self, into: MemoryHistory | None = None,
                 feed_since: dt.datetime | None = None) -> tuple[MemoryHistory, dict[int, dt.datetime]]:
        """`load`, with the history feed's entries since `feed_since` that the history read holds. On PostgreSQL
        every table and the feed are read in one snapshot (REPEATABLE READ), so that the entries are exactly those
        whose changes were read; SQLite reads as it goes (a change committed meanwhile may be followed twice
        until the next full read)."""
        memory = into if into is not None else MemoryHistory(self.settings)
        names: dict[str, str] = {}
        one = names.setdefault
        marks: dict[int, dt.datetime] = {}
        try:
            with self.engine.connect() as plain:
                connection = (plain.execution_options(isolation_level="REPEATABLE READ")
                              if plain.dialect.name == "postgresql" else plain)
                f = history_feed.c
                for entry, at in connection.execute(select(f.id, f.at).where(f.at > feed_since) if feed_since
                                                    else select(f.id, f.at)):
                    marks[int(entry)] = as_utc(at)
                streamed = connection.execution_options(yield_per=_LOAD_CHUNK)
                c = correspondents.c
                for domain, count, first, last, inbound, near, state in streamed.execute(
                        select(c.domain, c.count, c.first_seen, c.last_seen, c.inbound, c.near, c.state)):
                    memory.load_domain(one(domain, domain), _tally(count, first, last), int(inbound), near, state)
                d = sender_domains.c
                for sender, domain, count, first, last, confirmed in streamed.execute(
                        select(d.sender, d.domain, d.count, d.first_seen, d.last_seen, d.confirmed_at)):
                    memory.load_sender_domain(one(sender, sender), one(domain, domain), _tally(count, first, last),
                                              as_utc(confirmed) if confirmed is not None else None)
                a = sender_addresses.c
                for sender, address, domain, count in streamed.execute(select(a.sender, a.address, a.domain,
                                                                              a.count)):
                    memory.load_sender_address(one(sender, sender), one(address, address), one(domain, domain),
                                               int(count))
                p = co_recipients.c
                for first, second, count in streamed.execute(select(p.a, p.b, p.count)):
                    memory.load_pair(one(first, first), one(second, second), int(count))
                g = co_places.c
                for rest, address, count in streamed.execute(select(g.rest, g.address, g.count)):
                    memory.load_place(rest, one(address, address), int(count))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read history: {error_line(exc)}") from exc
        return memory, marks

    # -- the history feed ------------------------------------------------------------------------------

    def feed(self, since: dt.datetime) -> list[tuple[int, dt.datetime, str | None, str | None]]:
        """The feed's entries stamped after `since`: (id, at, origin, batch as JSON or None: read everything)."""
        f = history_feed.c
        return [(int(i), as_utc(at), origin, text) for i, at, origin, text in
                self._rows(select(f.id, f.at, f.origin, f.batch).where(f.at > since).order_by(f.id))]

    def announce_reread(self) -> None:
        """Tell the doors to read the whole history again (after an import: too much to send as one entry)."""
        try:
            with self.engine.begin() as connection:
                _reread(connection)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write to the history feed: {error_line(exc)}") from exc

    def prune_feed(self, before: dt.datetime) -> int:
        try:
            with self.engine.begin() as connection:
                return int(connection.execute(delete(history_feed).where(history_feed.c.at < before)).rowcount)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prune the history feed: {error_line(exc)}") from exc

    # -- the organisation's correspondents -----------------------------------------------------------

    def correspondents(self, domains: Iterable[str] | None = None) -> list[Correspondent]:
        """Every domain history knows of (or these), with its facts and whether it counts, by domain name."""
        now = utc_now()
        senders = select(sender_domains.c.domain, func.count().label("senders")).group_by(
            sender_domains.c.domain).subquery()
        query = select(correspondents, senders.c.senders).select_from(
            correspondents.outerjoin(senders, senders.c.domain == correspondents.c.domain))
        wanted = sorted(set(domains)) if domains is not None else None
        out = []
        for chunk in _chunks(wanted) if wanted is not None else [None]:
            rows = self._rows(query if chunk is None else query.where(correspondents.c.domain.in_(chunk)))
            for row in rows:
                facts = DomainFacts(org=_seen(row.count, row.first_seen, row.last_seen),
                                    senders=int(row.senders or 0), inbound=int(row.inbound), near=row.near,
                                    state=row.state)
                out.append(Correspondent(row.domain, facts, qualifies(facts, self.settings, now)))
        return sorted(out, key=lambda c: c.domain)

    def learned(self, now: dt.datetime | None = None) -> dict[str, int]:
        """The correspondents the poisoning guard lets count, with their message counts."""
        now = now or utc_now()
        return {c.domain: c.facts.org.count for c in self.correspondents() if qualifies(c.facts, self.settings, now)}

    def confirmation(self, sender: str, domain: str) -> dt.datetime | None:
        """When `sender` last confirmed `domain`, or None (one look-up by the primary key)."""
        rows = self._rows(select(sender_domains.c.confirmed_at).where(
            sender_domains.c.sender == sender, sender_domains.c.domain == domain,
            sender_domains.c.confirmed_at.is_not(None)))
        return as_utc(rows[0][0]) if rows else None

    def added(self) -> list[str]:
        """The domains an administrator made known (rcptguard known add)."""
        return [r[0] for r in self._rows(select(correspondents.c.domain).where(correspondents.c.state == "added"))]

    def set_state(self, domain: str, state: str | None) -> None:
        """Mark a domain added or forgotten (None: as learned); `forgotten` also drops every sender's confirmation
        of it."""
        now = utc_now()
        make = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        statement = make(correspondents).values(domain=domain, count=0, first_seen=now, last_seen=now, inbound=0,
                                                state=state)
        try:
            with self.engine.begin() as connection:
                connection.execute(statement.on_conflict_do_update(index_elements=["domain"], set_={"state": state}))
                if state == "forgotten":
                    connection.execute(update(sender_domains).where(sender_domains.c.domain == domain)
                                       .values(confirmed_at=None))
                _reread(connection)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot change {domain}: {error_line(exc)}") from exc

    def top_senders(self, domain: str, limit: int = 10) -> list[tuple[str, int, dt.datetime | None]]:
        rows = self._rows(select(sender_domains.c.sender, sender_domains.c.count, sender_domains.c.confirmed_at)
                          .where(sender_domains.c.domain == domain)
                          .order_by(sender_domains.c.count.desc(), sender_domains.c.sender).limit(limit))
        return [(s, int(n), as_utc(c) if c is not None else None) for s, n, c in rows]

    def top_addresses(self, domain: str, limit: int = 10) -> list[tuple[str, int]]:
        total = func.sum(sender_addresses.c.count)
        rows = self._rows(select(sender_addresses.c.address, total).where(sender_addresses.c.domain == domain)
                          .group_by(sender_addresses.c.address).order_by(total.desc(), sender_addresses.c.address)
                          .limit(limit))
        return [(a, int(n)) for a, n in rows]

    # -- imported sources -----------------------------------------------------------------------------

    def source(self, fingerprint: str) -> SourceMark | None:
        rows = self._rows(select(imported_sources).where(imported_sources.c.fingerprint == fingerprint))
        return SourceMark(rows[0].fingerprint, rows[0].format, rows[0].path, int(rows[0].records)) if rows else None

    def known_sources(self, fingerprints: Sequence[str]) -> set[str]:
        """Those of these fingerprints imported before (messages of a folder, each marked on its own)."""
        found: set[str] = set()
        for chunk in _chunks(sorted(set(fingerprints))):
            found.update(r[0] for r in self._rows(select(imported_sources.c.fingerprint)
                                                  .where(imported_sources.c.fingerprint.in_(chunk))))
        return found

    def record_source(self, mark: SourceMark, batch: Batch) -> None:
        """The batch and how far the source was read, in one transaction: an import cut short counts nothing twice."""
        self.record_sources([mark], batch, what=mark.path)

    def record_sources(self, marks: Sequence[SourceMark], batch: Batch, *, what: str) -> None:
        """The batch and the marks of what it counted (a source read so far, or each message of a folder), in one
        transaction."""
        now = utc_now()
        make = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        statement = make(imported_sources)
        statement = statement.on_conflict_do_update(
            index_elements=["fingerprint"],
            set_={"records": statement.excluded.records, "path": statement.excluded.path, "last_imported": now})
        rows = [{"fingerprint": m.fingerprint, "format": m.format, "path": m.path, "records": m.records,
                 "first_imported": now, "last_imported": now} for m in marks]
        try:
            with self.engine.begin() as connection:
                write_batch(connection, batch, feed=False)  # the import announces itself once, at its end
                if rows:
                    connection.execute(statement, rows)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record the import of {what}: {error_line(exc)}") from exc

    # -- observe mode ---------------------------------------------------------------------------------

    def observe(self, rows: Sequence[Observation]) -> None:
        if not rows:
            return
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(observations), [asdict(o) for o in rows])
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record observations: {error_line(exc)}") from exc

    def observations(self, since: dt.datetime | None = None) -> list[Observation]:
        query = select(observations).order_by(observations.c.at, observations.c.id)
        if since is not None:
            query = query.where(observations.c.at >= since)
        return [Observation(as_utc(r.at), r.door, r.sender, r.recipient, r.verdict, float(r.score), r.intended,
                            r.signals, r.reason) for r in self._rows(query)]

    # -- retention ------------------------------------------------------------------------------------

    def prune(self, now: dt.datetime | None = None, *, observations_before: dt.datetime | None = None,
              dry_run: bool = False) -> dict[str, int]:
        """Delete the rows whose messages have faded below half a message (`rules.FADED`: what no longer counts
        for anything), the feed's old entries, and with `observations_before` the observations older; the rows
        deleted (or, with `dry_run`, that would be) per table. A domain an administrator added or forgot is kept,
        and so is a sender's confirmation younger than two half-lives. The doors read everything again after."""
        now = now or utc_now()
        faded = _faded(now, self.settings.half_life)
        kept_confirmation = now - 2 * self.settings.half_life
        c, d, a, p, g = correspondents.c, sender_domains.c, sender_addresses.c, co_recipients.c, co_places.c
        conditions: list[tuple[Table, Any]] = [
            (sender_addresses, a.last_seen < faded(a.count)),
            (co_recipients, p.last_seen < faded(p.count)),
            (co_places, g.last_seen < faded(g.count)),
            (sender_domains, and_(d.last_seen < faded(d.count),
                                  or_(d.confirmed_at.is_(None), d.confirmed_at < kept_confirmation))),
            (correspondents, and_(c.state.is_(None), c.last_seen < faded(c.count + c.inbound))),
            (history_feed, history_feed.c.at < now - FEED_KEEP),
        ]
        if observations_before is not None:
            conditions.append((observations, observations.c.at < observations_before))
        counts: dict[str, int] = {}
        try:
            with self.engine.begin() as connection:
                for table, condition in conditions:
                    if dry_run:
                        counts[table.name] = int(connection.execute(
                            select(func.count()).select_from(table).where(condition)).scalar_one())
                    else:
                        counts[table.name] = int(connection.execute(delete(table).where(condition)).rowcount)
                if not dry_run and any(counts.values()):
                    _reread(connection)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prune history: {error_line(exc)}") from exc
        return counts


class MirroredHistory:
    """The store's history held in memory for a door: judging a message reads no database.

    A door judges every message against its sender's history (rcptguard.history.judge); read from the store, that
    history read once (`StoreHistory.snapshot`), then kept current by what reaches this process:

    - what this door learns is written to the store and, once written, added to the mirror (`record`);
    - what every other writer adds (other instances of the doors, a release's confirmation on any web instance, the
      command line) is in the history feed, written in the same transaction as the change: `follow`, at each
      flush, adds the entries it has not seen (its own excepted);
    - what cannot be sent as an entry (an import, `known add|forget`) is an entry that says "read everything
      again", and `follow` does; so does a door that looked away longer than the feed is kept (FEED_KEEP);
    - a full read every `[history] reload_seconds` (`reload`) is the safety net for anything the feed missed.

    The feed is followed with an overlap (FEED_OVERLAP): an entry committed late, or stamped by a writer whose clock
    is a little behind, is still seen, and one seen before is not added twice (`applied`, by id). A door asks the
    store itself for a confirmation before it holds (`catch_up`), not waiting for the next `follow`.

    `record`, `follow` and `reload` run on the learner's one thread, in order, so that the mirror never misses nor
    counts twice what this door wrote; `facts` may be called on any thread (a lock guards the swap and the
    additions). What the poisoning guard lets count (`learned`, for the index) is always read from the store.
    """

    def __init__(self, store: StoreHistory) -> None:
        self.store = store
        self.settings = store.settings
        self.lock = threading.Lock()
        self.origin = uuid.uuid4().hex  # this mirror's name on the feed entries it writes
        self.asked: dict[tuple[str, str], tuple[float, int]] = {}  # (sender, domain) -> this second's asks
        self.memory = self._read()

    def _read(self) -> MemoryHistory:
        """The whole history read, and with it the feed's entries it holds (`applied`, by id: those in the overlap),
        when (`looked`, this clock; `loaded`, monotonic) and how long it took (`read_seconds`)."""
        looked = utc_now()
        started = time.perf_counter()
        memory, marks = self.store.snapshot(feed_since=looked - FEED_KEEP)
        self.read_seconds = time.perf_counter() - started
        self.applied: dict[int, dt.datetime] = marks
        self.looked = looked
        self.loaded = time.monotonic()
        return memory

    def facts(self, sender: str | None, addresses: Sequence[str], now: dt.datetime,
              own: Collection[str] = ()) -> Facts:
        with self.lock:
            return self.memory.facts(sender, addresses, now, own)

    def written_at(self, sender: str, domain: str) -> dict[str, int]:
        with self.lock:
            return self.memory.written_at(sender, domain)

    def record(self, batch: Batch) -> None:
        self.store.record(batch, origin=self.origin)
        with self.lock:
            self.memory.record(batch)

    def follow(self) -> list[Batch]:
        """Add what other writers changed since the last look (the feed's entries); read everything again when an
        entry asks it, or when the last look is older than the feed is kept. What was added, for the caller
        (a domain learned elsewhere may change the index); a full read returns nothing."""
        looked = utc_now()
        if looked - self.looked > FEED_KEEP - FEED_OVERLAP:
            self.reload()
            return []
        since = self.looked - FEED_OVERLAP
        fresh: list[Batch] = []
        reread = False
        for entry, at, origin, text in self.store.feed(since):
            if entry in self.applied:
                continue
            self.applied[entry] = at
            if origin == self.origin:
                continue
            if text is None:
                reread = True
            else:
                fresh.append(Batch.from_json(text))
        if reread:
            self.reload()
            return []
        with self.lock:
            for batch in fresh:
                self.memory.record(batch)
        self.looked = looked
        self.applied = {entry: at for entry, at in self.applied.items() if at > looked - 2 * FEED_OVERLAP}
        return fresh

    def sizes(self) -> dict[str, int]:
        """Rows of history held in memory, by table (what a full read reads, and what the door's memory holds)."""
        memory = self.memory
        return {"correspondents": len(memory.domains), "sender_domains": len(memory.sender_domains),
                "sender_addresses": len(memory.by_sender), "co_recipients": len(memory.pairs),
                "co_places": memory.place_rows}

    def prune(self) -> int:
        """Delete the feed's entries older than it is kept (any door may; the deletes are idempotent)."""
        return self.store.prune_feed(utc_now() - FEED_KEEP)

    def confirmation(self, sender: str, domain: str) -> dt.datetime | None:
        """As far as the mirror knows (no read: `catch_up` asks the store)."""
        with self.lock:
            return self.memory.confirmation(sender, domain)

    def would_ask(self, sender: str, domain: str) -> bool:
        """Whether `catch_up` would read the store for this pair now (this second's asks are not spent), or
        answer from memory: a door judges on its loop, and goes off it only to read."""
        since, asked = self.asked.get((sender, domain), (0.0, 0))
        return asked < CATCH_UP_BURST or time.monotonic() - since >= 1.0

    def catch_up(self, sender: str, domain: str) -> dt.datetime | None:
        """The store's answer to `confirmation`, taken into the mirror: a door asks it before it holds or warns, so
        that a sender who said "send anyway" a moment ago, on the page of any instance, is not held again while the
        next look at the feed is still seconds away. The store is asked at most CATCH_UP_BURST times a second for
        one pair: a flood of holds to one domain reads a few rows a second, not one a hold (the rest are answered
        from memory, which the feed brings up to date at each flush)."""
        key = (sender, domain)
        now = time.monotonic()
        with self.lock:
            since, asked = self.asked.get(key, (now, 0))
            if now - since >= 1.0:
                since, asked = now, 0
            if asked >= CATCH_UP_BURST:
                return self.memory.confirmation(sender, domain)
            if len(self.asked) >= _ASKED_LIMIT:
                self.asked.clear()
            self.asked[key] = (since, asked + 1)
        when = self.store.confirmation(sender, domain)
        if when is not None:
            batch = Batch()
            batch.confirmed(sender, domain, when)
            with self.lock:
                self.memory.record(batch)
        return when

    def learned(self, now: dt.datetime) -> dict[str, int]:
        return self.store.learned(now)

    def observe(self, rows: Sequence[Observation]) -> None:
        self.store.observe(rows)

    def reload(self) -> None:
        """Read the whole history again and swap it in (on the learner's thread: see the class)."""
        fresh = self._read()
        with self.lock:
            self.memory = fresh


def _upsert(connection: Connection, table: Table, keys: Sequence[str], columns: Sequence[str],
            rows: list[tuple[Any, ...]], adds: Sequence[str] = ("count",),
            extra: Callable[[Any], dict[str, Any]] | None = None) -> None:
    """Insert rows (tuples of `columns`, times already converted by `_Times`), or add their counts to the rows
    already there (first seen the earlier, last seen the later).

    The statement is compiled once and the rows go to the driver's executemany as they are: SQLAlchemy's
    per-row parameter processing cost ten times the database's own work on a large import."""
    if not rows:
        return
    make = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = make(table)
    new = statement.excluded
    values: dict[str, Any] = {c: table.c[c] + new[c] for c in adds}
    if "first_seen" in table.c:
        values["first_seen"] = case((new.first_seen < table.c.first_seen, new.first_seen), else_=table.c.first_seen)
    values["last_seen"] = case((new.last_seen > table.c.last_seen, new.last_seen), else_=table.c.last_seen)
    if extra is not None:
        values.update(extra(new))
    compiled = statement.on_conflict_do_update(index_elements=list(keys), set_=values).compile(
        dialect=connection.dialect, column_keys=list(columns))
    order = compiled.positiontup
    params: Sequence[Any] = rows
    if not order:  # PostgreSQL (psycopg): a dict a row
        params = [dict(zip(columns, row, strict=True)) for row in rows]
    elif list(order) != list(columns):  # SQLite: a tuple a row, in the statement's order (the columns' own, so far)
        take = [columns.index(name) for name in order]
        params = [tuple(row[i] for i in take) for row in rows]
    connection.exec_driver_sql(str(compiled), params)


class _Times:
    """A batch's times as the store's driver takes them, each distinct one converted once for all the tables (the
    rows of one message share its time): on SQLite the text SQLAlchemy's DATETIME writes (UTC, no offset), on
    PostgreSQL an aware UTC datetime."""

    __slots__ = ("convert", "written")

    def __init__(self, dialect: str) -> None:
        self.convert: Callable[[dt.datetime], object] = _sqlite_time if dialect == "sqlite" else _utc_time
        self.written: dict[dt.datetime, object] = {}

    def __call__(self, value: dt.datetime | None) -> object:
        if value is None:
            return None
        text = self.written.get(value)
        if text is None:
            text = self.written[value] = self.convert(value)
        return text


def _sqlite_time(value: dt.datetime) -> str:
    if value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # "%Y-%m-%d %H:%M:%S.%f" without "+00:00", faster


def _utc_time(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


_KEY = operator.itemgetter(0)  # rows in the order of their keys (PostgreSQL's locks taken in one order), which
# are unique: comparing the keys alone is a third of the time of comparing the (key, tally) pairs

_CORRESPONDENT = ("domain", "count", "first_seen", "last_seen", "inbound", "near")
_SENDER_DOMAIN = ("sender", "domain", "count", "first_seen", "last_seen", "confirmed_at")
_SENDER_ADDRESS = ("sender", "address", "domain", "count", "first_seen", "last_seen")
_PAIR = ("a", "b", "count", "last_seen")
_PLACE = ("rest", "address", "count", "last_seen")


def write_batch(connection: Connection, batch: Batch, *, origin: str | None = None, feed: bool = True) -> None:
    """Add a batch to the store on `connection`, in the caller's transaction (a release records its confirmation
    with the decision), and with `feed` to the history feed, in the same transaction."""
    if feed and batch:
        connection.execute(insert(history_feed).values(at=utc_now(), origin=origin, batch=batch.to_json()))
    at = _Times(connection.dialect.name)
    near, confirmations, address_domains = batch.near, batch.confirmations, batch.address_domains
    corr = [(d, t.count, at(t.first), at(t.last), 0, near.get(d)) for d, t in sorted(batch.domains.items(), key=_KEY)]
    inbound = [(d, 0, at(t.first), at(t.last), t.count, None)
               for d, t in sorted(batch.inbound_domains.items(), key=_KEY)]
    per_domain = [(s, d, t.count, at(t.first), at(t.last), at(confirmations.get((s, d))))
                  for (s, d), t in sorted(batch.sender_domains.items(), key=_KEY)]
    confirmed_only = [(s, d, 0, at(when), at(when), at(when))
                      for (s, d), when in sorted(confirmations.items(), key=_KEY) if (s, d) not in batch.sender_domains]
    per_address = [(s, a, address_domains[a], t.count, at(t.first), at(t.last))
                   for (s, a), t in sorted(batch.sender_addresses.items(), key=_KEY)]
    pairs = [(a, b, t.count, at(t.last)) for (a, b), t in sorted(batch.pairs.items(), key=_KEY)]
    filled = [(r, a, t.count, at(t.last)) for (r, a), t in sorted(batch.places.items(), key=_KEY)]
    confirmed = sender_domains.c.confirmed_at
    _upsert(connection, correspondents, ["domain"], _CORRESPONDENT, corr + inbound, adds=("count", "inbound"),
            extra=lambda new: {"near": func.coalesce(correspondents.c.near, new.near)})
    _upsert(connection, sender_domains, ["sender", "domain"], _SENDER_DOMAIN, per_domain + confirmed_only,
            extra=lambda new: {"confirmed_at": case((confirmed.is_(None), new.confirmed_at),
                                                    (new.confirmed_at > confirmed, new.confirmed_at),
                                                    else_=confirmed)})
    _upsert(connection, sender_addresses, ["sender", "address"], _SENDER_ADDRESS, per_address)
    _upsert(connection, co_recipients, ["a", "b"], _PAIR, pairs)
    _upsert(connection, co_places, ["rest", "address"], _PLACE, filled)


def _faded(now: dt.datetime, half_life: dt.timedelta) -> Callable[[Any], Any]:
    """For a count column, the time before which a row last seen weighs less than half a message (rules.FADED):
    a count of at most 2**j has faded once it is more than j + 1 half-lives old. One CASE over powers of two, so
    that the same statement runs on SQLite (no logarithm) and PostgreSQL; it errs on keeping (a count of 3 waits
    as long as one of 4)."""
    def cutoff(count: Any) -> Any:  # noqa: ANN401 - a SQLAlchemy column expression
        return case(*((count <= 2 ** j, now - (j + 1) * half_life) for j in range(_FADE_STEPS)),
                    else_=now - (_FADE_STEPS + 1) * half_life)
    return cutoff


def _reread(connection: Connection) -> None:
    connection.execute(insert(history_feed).values(at=utc_now(), origin=None, batch=None))


def _chunks(items: Sequence[str]) -> Iterable[list[str]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, _CHUNK)):
        yield chunk
