"""The outbox: everything that leaves the guard on its own (released and corrected messages, the notices owed to
senders, warnings, the policy service's notices, delivery reports), claimed, sent, and marked, so that it goes
once and is never lost.

    outbox = Outbox(quarantine)
    outbox.release(hold_id, "alice", next_hop, to="j.doe@gmail.com")   # decide, claim, send, mark
    outbox.deliver_pending(next_hop)                                    # retry what the next hop deferred
    outbox.queue("warning", "", sender, notice)                        # mail no hold carries: stored first
    outbox.send_queued(next_hop)                                        # then claimed, sent, settled
    outbox.run_once(next_hop, notifier, give_up_after=...)              # every step of a retry round

The quarantine (store/quarantine.py) keeps the rows and their atomic transitions: decide, claim, mark. The outbox
owns the sending: it takes a claim, hands the message to the next hop through the one SMTP client
(`delivery.deliver`), and marks the outcome under that claim. An acceptance the store cannot record is retried,
then remembered by the quarantine (this worker never sends it again) and said loudly. Notices of holds go the
same way (`notify.send_owed`: claim, send, settle), and so does the mail no hold carries (`store.outgoing`).
Doors and commands use an Outbox; none sends anything itself.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jinja2

from rcptguard import logs
from rcptguard.delivery import NextHop, deliver
from rcptguard.dsn import EnvelopeParams
from rcptguard.errors import DecidedNotRecorded, DeliveredNotRecorded, NotPending, StoreError
from rcptguard.notify import NOTICE_LIFETIME, NoticeLinks, Notifier, send_owed
from rcptguard.rewrite import correct_headers
from rcptguard.store.outgoing import Outgoing
from rcptguard.store.quarantine import Hold, Quarantine, ReleaseOutcome, needs_smtputf8
from rcptguard.store.schema import Delivery, HoldState

__all__ = ["Backoff", "Outbox"]

log = logging.getLogger("rcptguard.outbox")


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long a delivery the next hop deferred waits before it is tried again: `first` after the first
    deferral, twice as long after each further one, never more than `longest` (seconds)."""

    first: float = 60.0
    longest: float = 3600.0

    def after(self, attempts: int) -> dt.timedelta:
        """The wait after `attempts` deferred attempts (1 or more)."""
        return dt.timedelta(seconds=min(self.first * 2 ** min(max(attempts - 1, 0), 32), self.longest))


class Outbox:
    """Sends what the quarantine says is due. Safe to use from several threads and processes at once: every send
    is claimed first, so of several workers exactly one sends it.

    With a `backoff`, a delivery the next hop deferred is not tried again before its wait is over (the relay's
    retry rounds); without one, every pending delivery is tried whenever asked (`quarantine deliver-pending`: an
    operator who asks for a retry gets one)."""

    KEEP_SENT = dt.timedelta(days=7)  # outgoing mail settled this long ago is purged by a round

    def __init__(self, quarantine: Quarantine, *, backoff: Backoff | None = None,
                 notifier: Notifier | None = None) -> None:
        self.quarantine = quarantine
        self.backoff = backoff
        self.notifier = notifier  # writes the success reports senders ask for (NOTIFY=SUCCESS); None: none
        self.outgoing = Outgoing(quarantine.store, stale_after=quarantine.stale_after)

    # -- mail no hold carries ----------------------------------------------------------------------------------

    def queue(self, kind: str, mail_from: str, recipient: str, content: bytes) -> str:
        """Store a warning, a notice or a report to send (durably: answer the client only after this); its id."""
        return self.outgoing.add(kind, mail_from, recipient, content)

    def send_queued(self, next_hop: NextHop, *, ids: Sequence[str] | None = None) -> Counter[str]:
        """Send the stored mail that is due (only `ids`, if given), each claimed first; a deferral is tried again
        after the backoff, for NOTICE_LIFETIME, then given up; a refusal is final. The count of each outcome."""
        counts: Counter[str] = Counter()
        backoff = self.backoff or Backoff()
        for item in self.outgoing.due(ids=builtins.list(ids) if ids is not None else None):
            claim = self.outgoing.claim(item.id)
            if claim is None:
                continue
            result = deliver(next_hop, item.mail_from, [item.recipient], item.content,
                             smtputf8=needs_smtputf8(item.mail_from, item.recipient),
                             within=self.quarantine.send_within)
            reply = result.temp_failed.get(item.recipient) or result.perm_failed.get(item.recipient)
            error = result.error or (f"{reply[0]} {reply[1]}" if reply else None)
            if item.recipient in result.accepted:
                outcome = "sent"
            elif result.temporary and dt.datetime.now(dt.UTC) - item.created_at < NOTICE_LIFETIME:
                outcome = "later"
            else:
                outcome = "refused"
            self.outgoing.settle(item.id, claim, outcome, error=error, retry_after=backoff.after(item.attempts + 1))
            counts[outcome] += 1
            level = logging.INFO if outcome == "sent" else logging.WARNING
            logs.event(log, "notice", level, kind=item.kind, outcome=outcome, id=item.id, to=item.recipient,
                       attempts=item.attempts + 1, error=error)
        return counts

    # -- releases ----------------------------------------------------------------------------------------------

    def release_outcome(self, hold_id: str, actor: str, next_hop: NextHop, *, to: str | None = None,
                        notify_sender: bool = False) -> ReleaseOutcome:
        """release(), also returning the next hop's answer (None if another worker took the delivery)."""
        quarantine = self.quarantine
        quarantine.record_unrecorded()
        current = quarantine.require(hold_id)
        if to is not None and to != current.recipient:
            hold = quarantine.decide(hold_id, HoldState.CORRECTED, actor, deliver_to=to, notify_sender=notify_sender)
        else:
            hold = quarantine.decide(hold_id, HoldState.RELEASED, actor, notify_sender=notify_sender)
        try:
            claim = quarantine.claim_delivery(hold.id)
            if claim is None:  # deliver_pending() on another worker took it between the two
                return ReleaseOutcome(quarantine.require(hold_id), None)
            return self._send(hold_id, next_hop, claim=claim)
        except StoreError as exc:  # the decision stands: whoever asked must not be told that nothing changed
            raise DecidedNotRecorded(hold, exc) from exc

    def release(self, hold_id: str, actor: str, next_hop: NextHop, *, to: str | None = None,
                notify_sender: bool = False) -> Hold:
        """Release a held recipient (to `to` instead: corrected) and deliver the stored bytes to the next hop;
        `notify_sender` (an administrator releases): the sender is owed a notice of it (see Quarantine.decide).

        Only the caller whose decision won delivers. Raises AlreadyDecided, NotFound, StoreError. The hold returned
        says what happened: delivery delivered, pending (a temporary failure; deliver_pending() retries) or failed.
        """
        return self.release_outcome(hold_id, actor, next_hop, to=to, notify_sender=notify_sender).hold

    def send_released(self, hold_id: str, next_hop: NextHop) -> ReleaseOutcome | None:
        """Claim and send one released (or corrected) hold whose delivery is pending, now; None if another worker
        has it. Like release(), for a decision already recorded (Quarantine.decide)."""
        self.quarantine.record_unrecorded()
        claim = self.quarantine.claim_delivery(hold_id)
        if claim is None:
            return None
        return self._send(hold_id, next_hop, retry=True, claim=claim)

    def deliver_pending(self, next_hop: NextHop, *, stale_after: dt.timedelta | None = None) -> int:
        """Retry every pending delivery once, each claimed first so that no two workers send the same one.

        Returns how many were delivered (or recorded: see Quarantine.record_unrecorded). A claim older than
        `stale_after` (default: the quarantine's; a worker died mid-send) is taken over. A delivery this worker knows
        the next hop accepted is never sent again.
        """
        quarantine = self.quarantine
        delivered = quarantine.record_unrecorded()
        for hold in quarantine.pending_deliveries(due_only=self.backoff is not None):
            if quarantine.is_unrecorded(hold.id):
                continue
            claim = quarantine.claim_delivery(hold.id, stale_after=stale_after)
            if claim is None:
                continue
            try:
                if self._send(hold.id, next_hop, retry=True, claim=claim).hold.delivery == Delivery.DELIVERED:
                    delivered += 1
            except NotPending:  # taken over while this worker sent (after the claim timeout): theirs to record
                continue
            except DeliveredNotRecorded:  # remembered by the quarantine and logged; the others go on
                continue
            except StoreError as exc:  # the store failed around this one (its claim is taken over later): go on
                logs.event(log, "a pending delivery was not retried", logging.WARNING, hold=hold.id, error=str(exc))
                continue
        return delivered

    def _send(self, hold_id: str, next_hop: NextHop, *, retry: bool = False,
              claim: str | None = None) -> ReleaseOutcome:
        """Deliver a hold this caller has claimed (`claim`: the id claim_delivery() returned; None: the hold's
        current claim) and record the outcome (a `retry` that fails for good owes the sender a notice, since no
        person waits for its answer). An acceptance the store cannot record is retried, then DeliveredNotRecorded.
        A corrected copy names the corrected address in To and Cc, unless a DKIM signature covers them. The envelope
        asks the next hop for what the client asked for (DSN, BODY, XFORWARD); a corrected recipient's ORCPT is the
        address the sender gave."""
        quarantine = self.quarantine
        hold = quarantine.require(hold_id)
        claim = claim or hold.claim_id
        target = hold.deliver_to or hold.recipient
        content = quarantine.content(hold_id)
        if target != hold.recipient:  # a correction: Reply-All must not go back to the mistyped address
            content, _ = correct_headers(content, hold.recipient, target)
        asked = hold.params
        own = asked.rcpt(hold.recipient)
        params = EnvelopeParams(asked.mail, {target: own if target == hold.recipient else own.original(hold.recipient)},
                                asked.xforward)
        result = deliver(next_hop, hold.mail_from, [target], content, smtputf8=needs_smtputf8(hold.mail_from, target),
                         within=quarantine.send_within, params=params)
        if target in result.accepted:
            delivered = self._record_delivered(hold, claim, next_hop)
            self._logged(delivered, "delivered", next_hop)
            if target in result.without_dsn and params.rcpt(target).wants("SUCCESS"):
                self._report_relayed(hold, target, params, content, next_hop)
            return ReleaseOutcome(delivered, result)
        code, text = result.temp_failed.get(target) or result.perm_failed.get(target) or (0, "")
        error = result.error or (f"{code} {text}" if code else "not accepted by the next hop")
        if target in result.perm_failed and target not in result.temp_failed:
            failed = quarantine.mark_failed(hold_id, error, permanent=True, owe_notice=retry, claim=claim)
            self._logged(failed, "failed", next_hop)
            return ReleaseOutcome(failed, result)
        wait = self.backoff.after(hold.delivery_attempts + 1) if self.backoff is not None else None
        deferred = quarantine.mark_failed(hold_id, error, permanent=False, claim=claim, retry_after=wait)
        self._logged(deferred, "deferred", next_hop)
        return ReleaseOutcome(deferred, result)

    @staticmethod
    def _logged(hold: Hold, outcome: str, next_hop: NextHop) -> None:
        """The line of one release's delivery: to whom, what the next hop did, after how many attempts."""
        logs.event(log, "delivery", logging.INFO if outcome == "delivered" else logging.WARNING, hold=hold.id,
                   message=hold.message_id, sender=hold.mail_from, to=hold.deliver_to or hold.recipient,
                   outcome=outcome, attempts=hold.delivery_attempts, next_hop=str(next_hop), error=hold.last_error)

    def _report_relayed(self, hold: Hold, target: str, params: EnvelopeParams, content: bytes,
                        next_hop: NextHop) -> None:
        """The success report the sender asked for, when the next hop sends none: stored, then sent now (a
        courtesy: trouble with it is logged, the delivery stands)."""
        if self.notifier is None or not hold.mail_from:
            return
        try:
            report = self.notifier.relayed(hold.mail_from, [target], content, params, received=hold.received_at,
                                           host=str(next_hop))
            self.send_queued(next_hop, ids=[self.queue("report", "", hold.mail_from, report)])
        except (StoreError, ValueError, TypeError, jinja2.TemplateError) as exc:
            logs.event(log, "success report not sent", logging.WARNING, hold=hold.id, error=str(exc))

    def _record_delivered(self, hold: Hold, claim: str | None, next_hop: NextHop) -> Hold:
        """Record an acceptance, retrying while the store fails; then have the quarantine remember it and say so
        loudly, with what finds the message in the next hop's log (sender, recipient, Message-ID)."""
        quarantine = self.quarantine
        try:
            return quarantine.retrying(f"the delivery of {hold.id} (accepted by {next_hop})",
                                       lambda: quarantine.mark_delivered(hold.id))
        except StoreError as exc:
            quarantine.remember_unrecorded(hold.id, claim)
            logs.event(log, "accepted by the next hop but not recorded: this worker will not send it again; if it "
                       "stops before the store works, run `rcptguard quarantine mark-delivered` for the hold",
                       logging.ERROR, hold=hold.id, claim=claim, next_hop=str(next_hop),
                       sender=hold.mail_from, recipient=hold.deliver_to or hold.recipient,
                       message_id=hold.message_id_header, error=str(exc))
            raise DeliveredNotRecorded(hold.id, next_hop, exc) from exc

    # -- a round of everything that is due --------------------------------------------------------------------

    def run_once(self, next_hop: NextHop, notifier: Notifier | None, *, give_up_after: dt.timedelta,
                 links: NoticeLinks | None = None, warn: Callable[[str], None] = lambda _text: None) -> None:
        """One retry round: deliveries the next hop deferred, those deferred past `give_up_after` given up (their
        senders owed a notice), then every notice owed (with a `notifier`; held notices with `links`). Each step
        on its own: one failing (the store down, say) does not skip the others."""
        steps: builtins.list[tuple[str, Callable[[], object]]] = [
            ("pending deliveries not retried", lambda: self.deliver_pending(next_hop)),
            ("stale deliveries not given up", lambda: self._give_up(give_up_after)),
            ("queued mail not sent", lambda: self.send_queued(next_hop)),
            ("sent mail not purged", lambda: self.outgoing.purge(self.KEEP_SENT))]
        if notifier is not None:
            steps.append(("owed notices not sent",
                          lambda: send_owed(self.quarantine, notifier, next_hop, warn=warn, links=links)))
        for failure, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - a round must outlive any one failure
                logs.event(log, failure, logging.WARNING, error=f"{type(exc).__name__}: {exc}")

    def _give_up(self, max_age: dt.timedelta) -> None:
        for hold in self.quarantine.give_up(max_age):
            logs.event(log, "gave up a released delivery", logging.WARNING, hold=hold.id, sender=hold.mail_from,
                       recipient=hold.deliver_to or hold.recipient, error=hold.last_error)
