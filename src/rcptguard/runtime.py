"""What every long-running door shares: the current guard, and learning correspondents from traffic.

Every recipient domain a gateway lets through is counted; counts go to the store in batches (every
`flush_interval` seconds and at shutdown) and survive restarts. When domains cross `learn_min_count`, the
guard is rebuilt in a thread and swapped in (at most once per `rebuild_interval`): the index stays
immutable while it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import time
from collections import Counter
from collections.abc import Callable

from rcptguard import logs
from rcptguard.guard import Guard
from rcptguard.store import Store, StoreError

log = logging.getLogger("rcptguard.runtime")

GuardFactory = Callable[[dict[str, int]], Guard]


class Learner:
    """Counts the recipient domains mail is let through to, and writes them to the store in batches."""

    def __init__(self, store: Store | None, initial: dict[str, int]) -> None:
        self.store = store
        self.counts: Counter[str] = Counter(initial)
        self.pending: Counter[str] = Counter()
        self.newly_known = False

    def saw(self, domain: str, min_count: int) -> None:
        self.counts[domain] += 1
        self.pending[domain] += 1
        if self.counts[domain] == min_count:
            self.newly_known = True

    def take(self) -> Counter[str]:
        """The counts not yet written, handed over (call on the thread that calls `saw`)."""
        batch, self.pending = self.pending, Counter()
        return batch

    def write(self, batch: Counter[str]) -> None:
        """Write a batch to the store (any thread)."""
        if batch and self.store is not None:
            self.store.add_counts(batch)

    def flush(self) -> None:
        batch = self.take()
        try:
            self.write(batch)
        except StoreError:
            self.pending.update(batch)  # try again next time; learning is never worth a lost message
            raise


class Runtime:
    """The current guard of a gateway, rebuilt as the organisation's correspondents are learned."""

    def __init__(self, factory: GuardFactory, store: Store | None, *, flush_interval: float = 2.0,
                 rebuild_interval: float = 60.0) -> None:
        self.store = store
        self.factory = factory
        learned = store.learned() if store is not None else {}
        self.learner = Learner(store, learned)
        self.guard = factory(dict(learned))
        self.flush_interval = flush_interval
        self.rebuild_interval = rebuild_interval

    def saw(self, domain: str) -> None:
        self.learner.saw(domain, self.guard.policy.learn_min_count)

    async def maintain(self) -> None:
        """Write learned counts to the store, and rebuild the index when domains became known."""
        last_rebuild = time.monotonic()
        while True:
            await asyncio.sleep(self.flush_interval)
            batch = self.learner.take()  # swapped here, on the loop that counts: no count is lost meanwhile
            try:
                await asyncio.to_thread(self.learner.write, batch)
            except Exception as exc:  # noqa: BLE001 - keep the counts, and keep the loop alive
                self.learner.pending.update(batch)
                logs.event(log, "store unavailable; counts kept for later", logging.WARNING, error=str(exc))
            if self.learner.newly_known and time.monotonic() - last_rebuild >= self.rebuild_interval:
                self.learner.newly_known = False
                snapshot = dict(self.learner.counts)
                try:
                    self.guard = await asyncio.to_thread(self.factory, snapshot)
                except Exception as exc:  # noqa: BLE001 - the old guard keeps serving
                    logs.event(log, "index rebuild failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
                    continue
                finally:
                    last_rebuild = time.monotonic()
                logs.event(log, "index rebuilt", learned=len(snapshot))

    def close(self) -> None:
        try:
            self.learner.flush()
        except StoreError as exc:
            logs.event(log, "could not save learned counts", logging.ERROR, error=str(exc))


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
