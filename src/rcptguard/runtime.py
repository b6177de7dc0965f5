"""What every long-running door shares: the current guard, and learning history from the traffic it lets through.

Each message a door lets through adds to the organisation's history (rcptguard.history): the recipients that passed
or were warned, by sender, domain and address, and which of them were on one message. Nothing held counts (a
release counts through the quarantine, as that sender's confirmation), and a warned near miss counts only under the
poisoning guard's rule (history/rules.py). A door judges with history held in memory (store.history.MirroredHistory),
never a database read per message. What is learned goes to the store in batches (every `flush_interval`
seconds and at shutdown) and survives restarts. When a domain the guard does not know is let through, the
correspondents are read again at the next `rebuild_interval` and, if the known set changed, the guard is rebuilt in
a thread and swapped in: the index stays immutable while it serves, and is never rebuilt per message.

In observe mode (`mode = "observe"`) the doors let everything through; what they would have done is recorded here
too (`observed`) for `rcptguard report observe`, and only what would have passed is learned.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import resource
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from rcptguard import logs
from rcptguard.guard import Guard
from rcptguard.history import Batch, Counted, HistorySettings, HistoryView, MemoryHistory, sender_key
from rcptguard.history.greeting import NOBODY_GREETED, Greeting, greeting_of, header_addresses, opening
from rcptguard.history.judge import adjust
from rcptguard.history.model import key_of
from rcptguard.model import Action, Verdict
from rcptguard.store import Store, StoreError
from rcptguard.store.history import MirroredHistory, Observation, StoreHistory

log = logging.getLogger("rcptguard.runtime")

GuardFactory = Callable[[dict[str, int]], Guard]
FEED_PRUNE_SECONDS = 600.0  # how often a door deletes the history feed's old entries
EXTEND_MIN = 20_000  # domains the index may be extended by since its last full build, at least ...
EXTEND_SHARE = 0.1  # ... or this share of the domains that build knew, whichever is more


def counted(verdicts: Sequence[Verdict]) -> list[Counted]:
    """The recipients that count towards history: those let through without a hold (a warned one carries the domain
    it resembles, for the poisoning guard, unless only the person was doubted: `Verdict.about_person`)."""
    out = []
    for verdict in verdicts:
        key = key_of(verdict.address) if verdict.action <= Action.WARN else None
        if key is None:
            continue
        near = verdict.intended if verdict.action is Action.WARN and not verdict.about_person else None
        out.append(Counted(key, key.rpartition("@")[2], near))  # the key's domain is the A-label form
    return out


class Learner:
    """Gathers what a door lets through into a batch, and writes it to the store."""

    def __init__(self, history: HistoryView, settings: HistorySettings) -> None:
        self.history = history
        self.settings = settings
        self.pending = Batch()
        # What `saw` was told, until `take` adds it to the batch: a deque, so that any thread may tell it (the
        # milter's, one a message) without waking the loop that takes it.
        self.inbox: deque[tuple[str | None, Sequence[Counted], dt.datetime]] = deque()
        self.observed: list[Observation] = []
        self.newly_known = False  # an unknown domain was let through: the known set may have changed
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="learner")  # one write at a time, in order
        self.inflight: tuple[Future[None], Batch, list[Observation]] | None = None  # the write maintain awaits

    def saw(self, sender: str, recipients: Sequence[Counted], *, unknown: bool,
            when: dt.datetime | None = None) -> None:
        """One message let through to `recipients` (any thread)."""
        self.inbox.append((sender_key(sender), recipients, when or dt.datetime.now(dt.UTC)))
        if unknown:
            self.newly_known = True

    def take(self) -> tuple[Batch, list[Observation]]:
        """What is not yet written, handed over (on the loop's thread, or the one that flushes at shutdown)."""
        inbox, max_group = self.inbox, self.settings.max_group
        while inbox:
            sender, recipients, when = inbox.popleft()
            self.pending.message(sender, recipients, when, max_group=max_group)
        batch, self.pending = self.pending, Batch()
        observed, self.observed = self.observed, []
        return batch, observed

    def write(self, batch: Batch, observed: list[Observation]) -> None:
        """Write to the store (any thread)."""
        self.history.record(batch)
        if observed and isinstance(self.history, MirroredHistory):
            self.history.observe(observed)

    async def write_soon(self, batch: Batch, observed: list[Observation]) -> None:
        """`write` on the learner's own thread, awaited; `flush` at shutdown waits for it even when the awaiting task
        was cancelled in the middle, and writes it again if it failed."""
        future = self.writer.submit(self.write, batch, observed)
        self.inflight = (future, batch, observed)
        try:
            await asyncio.wrap_future(future)
        finally:
            if future.done():  # ended while awaited: a failure is the caller's to keep
                self.inflight = None

    def keep(self, batch: Batch, observed: list[Observation]) -> None:
        """Put back what could not be written: learning is never worth a lost message, nor is it lost."""
        batch.merge(self.pending)
        self.pending = batch
        self.observed = observed + self.observed

    async def reload_soon(self, mirror: MirroredHistory) -> None:
        """The mirror read again, on the learner's thread: after the writes before it, before the writes after it."""
        await asyncio.wrap_future(self.writer.submit(mirror.reload))

    def flush(self) -> None:
        """Write what is pending, after the write in flight (if any) has ended; at shutdown."""
        if self.inflight is not None:
            future, batch, observed = self.inflight
            self.inflight = None
            try:
                future.result()
            except Exception:  # noqa: BLE001 - its task was cancelled before it could keep them: kept here
                self.keep(batch, observed)
        batch, observed = self.take()
        try:
            self.write(batch, observed)
        except StoreError:
            self.keep(batch, observed)
            raise


class Runtime:
    """The current guard of a gateway, rebuilt as the organisation's correspondents are learned, and its history."""

    def __init__(self, factory: GuardFactory, store: Store | None, *, flush_interval: float = 2.0,
                 rebuild_interval: float = 60.0, history: HistorySettings | None = None) -> None:
        self.store = store
        self.factory = factory
        self.settings = history or HistorySettings()
        # History in memory, judged without a database read (MirroredHistory: kept current by this door's own
        # learning, the history feed followed at each flush, and a reload every `[history] reload_seconds`).
        self.history: HistoryView = (MirroredHistory(StoreHistory(store, self.settings)) if store is not None
                                     else MemoryHistory(self.settings))
        learned = self.history.learned(dt.datetime.now(dt.UTC))
        self.learner = Learner(self.history, self.settings)
        started = time.perf_counter()
        self.guard = factory(dict(learned))
        self.index_seconds = time.perf_counter() - started  # how long the last full build of the index took
        self.extend_seconds = 0.0  # how long its last extension took (`_rebuild`)
        self._known = self._known_set(learned) | self._read_added()
        self._built_with = len(self._known)  # domains known at the last full build
        self.extensions = 0  # index extensions since the last full build
        self.followed = time.monotonic()  # when the history feed was last followed (or the history read)
        self.flush_interval = flush_interval
        self.rebuild_interval = rebuild_interval
        self._pruned = time.monotonic()

    @property
    def known_domains(self) -> int:
        """The domains history made known to the index (learned correspondents, added ones)."""
        return len(self._known)

    @property
    def observing(self) -> bool:
        return self.guard.policy.mode == "observe"

    def _known_set(self, learned: dict[str, int]) -> frozenset[str]:
        least = self.guard.policy.learn_min_count
        return frozenset(d for d, n in learned.items() if n >= least)

    def _read_added(self) -> frozenset[str]:
        """The domains an administrator made known (`rcptguard known add`), which the guard's factory reads too."""
        mirror = self.history
        return frozenset(mirror.store.added()) if isinstance(mirror, MirroredHistory) else frozenset()

    def may_be_confirmed(self, sender: str, domain: str | None) -> bool:
        """Whether `sender` confirmed `domain` (A-label form), as far as the history in memory knows."""
        key = sender_key(sender)
        return key is not None and domain is not None and self.history.confirmation(key, domain) is not None

    def _unconfirmed(self, key: str, verdicts: Sequence[Verdict]) -> list[str]:
        """The domains these verdicts warn or hold (no force rule) that `key` has not confirmed, as far as memory
        knows: those `catch_up` asks the store about."""
        mirror = self.history
        domains = {v.domain_ascii for v in verdicts if v.action >= Action.WARN and v.domain_ascii is not None
                   and v.signal("FORCE_RULE") is None}
        return sorted(d for d in domains if d is not None and mirror.confirmation(key, d) is None)

    def stale(self, sender: str, verdicts: Sequence[Verdict]) -> bool:
        """Whether `catch_up` would read the store for these verdicts now: a door judges from memory on its loop
        (`judge(fresh=False)`), and judges again off the loop only then."""
        key = sender_key(sender)
        mirror = self.history
        if key is None or not isinstance(mirror, MirroredHistory):
            return False
        return any(mirror.would_ask(key, domain) for domain in self._unconfirmed(key, verdicts))

    def catch_up(self, sender: str, verdicts: Sequence[Verdict]) -> bool:
        """Whether the store knows a confirmation, by `sender`, of a domain these verdicts warn or hold that the
        history in memory did not know yet (now it does). Asked only for such recipients, one indexed row each: a
        sender who said "send anyway" on the page a second ago is not held again for want of the next flush. When
        the store cannot be read, the history in memory answers alone."""
        key = sender_key(sender)
        mirror = self.history
        if key is None or not isinstance(mirror, MirroredHistory):
            return False
        found = False
        for domain in self._unconfirmed(key, verdicts):
            try:
                found = mirror.catch_up(key, domain) is not None or found
            except StoreError as exc:
                logs.event(log, "confirmations unavailable; judged with those in memory", logging.WARNING,
                           error=str(exc))
                break
        return found

    def judge(self, sender: str, verdicts: Sequence[Verdict], *, last_only: bool = False,
              fresh: bool = True, greeting: Greeting = NOBODY_GREETED,
              displays: Mapping[str, str] | None = None) -> list[Verdict]:
        """The guard's verdicts for one message's recipients, changed by the sender's history and each other
        (history.judge.adjust), from history in memory; with `fresh`, a recipient still warned or held is judged
        again if the store knows a newer confirmation of its domain (`catch_up`: one read, so not on a loop).
        `greeting`, `displays`: whom the message greets, its recipients' display names (a door that read it)."""
        judged = adjust(sender, verdicts, self.history, self.guard.policy, self.settings, last_only=last_only,
                        greeting=greeting, displays=displays)
        if fresh and self.catch_up(sender, judged[-1:] if last_only else judged):
            judged = adjust(sender, verdicts, self.history, self.guard.policy, self.settings, last_only=last_only,
                            greeting=greeting, displays=displays)
        return judged

    def judge_or_not(self, sender: str, verdicts: Sequence[Verdict], *, last_only: bool = False,
                     fresh: bool = True, greeting: Greeting = NOBODY_GREETED,
                     displays: Mapping[str, str] | None = None) -> list[Verdict]:
        """`judge`, or the guard's verdicts as they are when the store cannot be read: history sharpens the typo
        model's verdicts, and mail the typo model lets through is never stopped for want of it (a hold still needs
        the quarantine, which answers for itself)."""
        try:
            return self.judge(sender, verdicts, last_only=last_only, fresh=fresh, greeting=greeting,
                              displays=displays)
        except StoreError as exc:
            logs.event(log, "history unavailable; judged without it", logging.WARNING, error=str(exc))
            return list(verdicts)

    def greeting(self, content: bytes) -> tuple[Greeting, dict[str, str]]:
        """Whom a message's opening greets, and (when it greets somebody) the addresses of its To and Cc fields with
        their display names; nobody when `[history] greetings` is off or the message cannot be read
        (rcptguard.history.greeting)."""
        if not self.settings.greetings:
            return NOBODY_GREETED, {}
        try:
            greeting = greeting_of(opening(content))
            return (greeting, header_addresses(content)) if greeting else (NOBODY_GREETED, {})
        except Exception as exc:  # noqa: BLE001 - advisory: a message this cannot read is judged without its greeting
            logs.event(log, "opening not read", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
            return NOBODY_GREETED, {}

    def saw(self, sender: str, verdicts: Sequence[Verdict]) -> None:
        """One message let through to these recipients (their verdicts as enforced or, in observe mode, as they
        would have been): the ones that count are learned."""
        recipients = counted(verdicts)
        unknown = any(r.domain not in self._known for r in recipients)
        self.learner.saw(sender, recipients, unknown=unknown)

    def observed(self, door: str, sender: str, verdict: Verdict) -> None:
        """Observe mode: a verdict the door did not enforce, logged and recorded for `rcptguard report observe`."""
        logs.event(log, "would", door=door, sender=sender, recipient=verdict.address, verdict=str(verdict.action),
                   intended=verdict.intended, signals=[s.name for s in verdict.signals], reason=verdict.reason)
        self.learner.observed.append(Observation(
            dt.datetime.now(dt.UTC), door, sender, verdict.address, str(verdict.action), verdict.score,
            verdict.intended, " ".join(s.name for s in verdict.signals), verdict.reason))

    async def maintain(self) -> None:
        """Write learned history to the store, and rebuild the index when domains became known."""
        last_rebuild = time.monotonic()
        while True:
            await asyncio.sleep(self.flush_interval)
            batch, observed = self.learner.take()  # swapped here, on the loop that counts: nothing is lost meanwhile
            try:
                await self.learner.write_soon(batch, observed)
            except Exception as exc:  # noqa: BLE001 - keep what was learned, and keep the loop alive
                self.learner.keep(batch, observed)
                logs.event(log, "store unavailable; history kept for later", logging.WARNING, error=str(exc))
            await self._follow()
            await self._reload()
            if self.learner.newly_known and time.monotonic() - last_rebuild >= self.rebuild_interval:
                self.learner.newly_known = False
                last_rebuild = time.monotonic()
                await self._rebuild()

    async def _follow(self) -> None:
        """What the other writers changed (the history feed), added to the mirrored history on the learner's
        thread; a domain learned elsewhere that this door does not know yet calls for an index rebuild. Now and
        then the feed's old entries are deleted."""
        mirror = self.history
        if not isinstance(mirror, MirroredHistory):
            return
        loaded = mirror.loaded
        try:
            added = await asyncio.wrap_future(self.learner.writer.submit(mirror.follow))
            if time.monotonic() - self._pruned >= FEED_PRUNE_SECONDS:
                self._pruned = time.monotonic()
                await asyncio.wrap_future(self.learner.writer.submit(mirror.prune))
        except Exception as exc:  # noqa: BLE001 - the mirror serves on; the next look reads from where this one did
            logs.event(log, "history feed unavailable", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
            return
        self.followed = time.monotonic()
        if mirror.loaded != loaded or any(domain not in self._known for batch in added for domain in batch.domains):
            self.learner.newly_known = True  # read again (a domain forgotten or added, say), or a new domain

    async def _reload(self) -> None:
        """The mirrored history read again from the store when it is `reload_seconds` old (the old one serves on if
        the store cannot be read)."""
        mirror = self.history
        if not isinstance(mirror, MirroredHistory) or time.monotonic() - mirror.loaded < self.settings.reload_seconds:
            return
        try:
            await self.learner.reload_soon(mirror)
        except Exception as exc:  # noqa: BLE001 - the old mirror keeps serving; tried again at the next flush
            logs.event(log, "history reload failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
            return
        self.learner.newly_known = True  # domains may have faded, been forgotten or added meanwhile

    async def _rebuild(self) -> None:
        """The guard made again when the known domains changed: extended with the new ones while domains are only
        added (`Guard.extended`: milliseconds, where a full build of a million domains takes half a minute), built
        anew when one was forgotten or faded, or when the extensions since the last build reach
        `EXTEND_SHARE` of what that build knew (a build ranks every known domain by its count again)."""
        try:
            learned = await asyncio.to_thread(self.history.learned, dt.datetime.now(dt.UTC))
            added = await asyncio.to_thread(self._read_added)
            known = self._known_set(learned) | added
            if known == self._known:
                return
            new = known - self._known
            started = time.perf_counter()
            if self._known <= known and (  # only added
                    len(known) - self._built_with <= max(EXTEND_MIN, self._built_with * EXTEND_SHARE)):
                self.guard = await asyncio.to_thread(self.guard.extended, learned, added - self._known)
                self.extensions += 1
                self.extend_seconds = seconds = time.perf_counter() - started
                how = "extended"
            else:
                self.guard = await asyncio.to_thread(self.factory, learned)
                self._built_with, self.extensions, how = len(known), 0, "rebuilt"
                self.index_seconds = seconds = time.perf_counter() - started
            self._known = known
        except Exception as exc:  # noqa: BLE001 - the old guard keeps serving
            logs.event(log, "index rebuild failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            return
        logs.event(log, f"index {how}", learned=len(learned), known=len(known), new=len(new),
                   seconds=round(seconds, 3))

    def close(self) -> None:
        try:
            self.learner.flush()
        except StoreError as exc:
            logs.event(log, "could not save learned history", logging.ERROR, error=str(exc))


def raise_fd_limit() -> None:
    """Allow as many open connections as the hard limit does (the soft limit is often 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


async def serve_until_stopped(server: asyncio.Server, stop: asyncio.Event,
                              tasks: list[asyncio.Task[None]]) -> None:
    """Serve until `stop` is set or SIGTERM/SIGINT arrives (when this thread may take signals: not a test's
    thread), then cancel the door's background tasks. The door's own shutdown follows."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        async with server:
            await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
