"""Releases sent in the background, so that a page never waits for the next hop.

    releases = Releases(quarantine, next_hop, workers=4)
    hold = quarantine.decide(hold_id, "released", actor)   # delivery = pending, recorded at once
    releases.submit(hold.id)                                 # claimed and sent by a worker thread

The decision is recorded before the page answers; the delivery is then claimed (`delivery = 'sending'`) and
sent by one of a few worker threads, through the quarantine's own claim-then-send path (`send_released`). A claim
makes the send exactly one worker's: if the relay's retry loop (`deliver_pending`) takes a pending delivery first,
the worker here finds nothing to do; if this process dies before its workers get to a delivery, it stays pending
and the relay's loop sends it.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from rcptguard import logs
from rcptguard.delivery import NextHop
from rcptguard.store import StoreError
from rcptguard.store.quarantine import Quarantine, QuarantineError

__all__ = ["Releases"]

log = logging.getLogger("rcptguard.web")


class Releases:
    """A small pool of threads that claim and send released holds."""

    def __init__(self, quarantine: Quarantine, next_hop: NextHop, *, workers: int = 4) -> None:
        self.quarantine = quarantine
        self.next_hop = next_hop
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rcptguard-release")

    def submit(self, hold_id: str) -> Future[str]:
        """Send the released hold in the background; the future's result is its delivery state afterwards
        ("taken": another worker claimed it first)."""
        return self._executor.submit(self.deliver, hold_id)

    def deliver(self, hold_id: str) -> str:
        """Claim and send one released hold, now, in this thread; its delivery state afterwards."""
        try:
            outcome = self.quarantine.send_released(hold_id, self.next_hop)
            if outcome is None:
                return "taken"
            hold = outcome.hold
        except (StoreError, QuarantineError) as exc:  # still pending or claimed: the relay's retry loop sends it
            logs.event(log, "web_release_unfinished", logging.ERROR, hold=hold_id, error=str(exc))
            return "unknown"
        except Exception:  # a thread pool keeps what it raises to itself: say it here
            log.exception("web: the release of %s failed unexpectedly; the relay's retry loop sends it", hold_id)
            return "unknown"
        logs.event(log, "web_release", hold=hold_id, delivery=hold.delivery, to=hold.deliver_to,
                   error=hold.last_error)
        return hold.delivery

    def close(self) -> None:
        """Stop: finish the deliveries being sent; those still queued stay pending for the relay's retry loop."""
        self._executor.shutdown(wait=True, cancel_futures=True)
