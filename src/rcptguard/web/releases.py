"""Releases sent in the background, so that a page never waits for the next hop.

    releases = Releases(quarantine, next_hop, workers=4)
    hold = quarantine.decide(hold_id, "released", actor)   # delivery = pending, recorded at once
    releases.submit(hold.id)                                 # claimed and sent by a worker thread

The decision is recorded before the page answers; the delivery is then claimed (`delivery = 'sending'`) and
sent by one of a few worker threads, through the quarantine's own claim-then-send path (`send_released`). A claim
makes the send exactly one worker's: if the relay's retry loop (`deliver_pending`) takes a pending delivery first,
the worker here finds nothing to do; if this process dies before its workers get to a delivery, it stays pending
and the relay's loop sends it.

With a notifier, the notices the quarantine owes (an administrator's decisions) are sent here too: `notify_soon`
(after a decision, and after sending a release that owes one) runs one pass of notify.send_owed on the pool once
the quarantine's notice_grace has passed since the last call, so that a run of decisions on one message makes one
notice. A notice still owed when the process stops is sent by the relay's retry loop.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor

from rcptguard import logs
from rcptguard.delivery import NextHop
from rcptguard.notify import Notifier, send_owed
from rcptguard.outbox import Outbox
from rcptguard.store import StoreError
from rcptguard.store.quarantine import Quarantine, QuarantineError

__all__ = ["Releases"]

log = logging.getLogger("rcptguard.web")


class Releases:
    """A small pool of threads that claim and send released holds."""

    # A pass of notices waits this much beyond the grace, so that the last decision's grace has surely passed.
    NOTICE_MARGIN = 0.25

    def __init__(self, quarantine: Quarantine, next_hop: NextHop, *, workers: int = 4,
                 notifier: Notifier | None = None) -> None:
        self.quarantine = quarantine
        self.next_hop = next_hop
        self.notifier = notifier
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rcptguard-release")
        self._timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()
        self._closed = False

    def submit(self, hold_id: str) -> Future[str]:
        """Send the released hold in the background; the future's result is its delivery state afterwards
        ("taken": another worker claimed it first)."""
        return self._executor.submit(self.deliver, hold_id)

    def deliver(self, hold_id: str) -> str:
        """Claim and send one released hold, now, in this thread; its delivery state afterwards."""
        try:
            outcome = Outbox(self.quarantine, notifier=self.notifier).send_released(hold_id, self.next_hop)
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
        if hold.notice == "pending":
            self.notify_soon()
        return hold.delivery

    def notify_soon(self) -> None:
        """Send the owed notices once the quarantine's notice_grace has passed since this call (a later call
        starts the wait again). Nothing without a notifier."""
        if self.notifier is None:
            return
        delay = self.quarantine.notice_grace.total_seconds() + self.NOTICE_MARGIN
        with self._timer_lock:
            if self._closed:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(delay, self._submit_notices)
            self._timer.daemon = True
            self._timer.start()

    def _submit_notices(self) -> None:
        with self._timer_lock:
            self._timer = None
            if self._closed:
                return
            self._executor.submit(self.send_notices)

    def send_notices(self) -> Counter[str]:
        """One pass of send_owed, now, in this thread: the count of each outcome."""
        assert self.notifier is not None
        try:
            counts = send_owed(self.quarantine, self.notifier, self.next_hop, links=None,  # held notices: the relay's
                               warn=lambda text: logs.event(log, "web_notice", logging.WARNING, warning=text))
        except StoreError as exc:  # still owed: the relay's retry loop sends it
            logs.event(log, "web_notices_unfinished", logging.ERROR, error=str(exc))
            return Counter()
        except Exception:  # a thread pool keeps what it raises to itself: say it here
            log.exception("web: sending the owed notices failed unexpectedly; the relay's retry loop sends them")
            return Counter()
        if counts:
            logs.event(log, "web_notices", **dict(counts))
        return counts

    def close(self) -> None:
        """Stop: finish the deliveries being sent; those still queued stay pending for the relay's retry loop
        (and notices not sent yet stay owed, for the same)."""
        with self._timer_lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._executor.shutdown(wait=True, cancel_futures=True)
