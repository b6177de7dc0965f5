"""`rcptguard quarantine`: list, inspect, release, correct, cancel, expire and purge held messages.

Exit status: 0 when the command did what was asked, 1 when it could not (unknown ID, already decided, the next
hop refused the message for good, the store is unavailable), 2 for a usage or config error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rcptguard import logs
from rcptguard.cli.common import F, build_config, open_store, store_options
from rcptguard.delivery import NextHop
from rcptguard.domains import parse_address
from rcptguard.guard import Guard
from rcptguard.model import Action, Malformed
from rcptguard.policy import ConfigError

if TYPE_CHECKING:
    from rcptguard.config import Config
    from rcptguard.policy import Policy
    from rcptguard.store.quarantine import Hold, PurgedMessage, Quarantine

log = logging.getLogger("rcptguard.quarantine")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw]?)\s*\Z")


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Store and quarantine errors become one line on stderr and exit status 1, never a traceback (except a
    decision whose delivery the next hop accepted but the store did not record: the command says that itself)."""
    from rcptguard.store import StoreError  # noqa: PLC0415 - SQLAlchemy: only when a store is opened
    from rcptguard.store.quarantine import DecidedNotRecorded, QuarantineError  # noqa: PLC0415 - same

    try:
        yield
    except DecidedNotRecorded as exc:
        if exc.delivered:  # the caller says what happened: the next hop has it
            raise
        raise click.ClickException(_one_line(exc)) from None
    except (StoreError, QuarantineError) as exc:
        raise click.ClickException(_one_line(exc)) from None


def _open(config: Path | None, db: str | None, *, claim_timeout: dt.timedelta | None = None,
          record_for: dt.timedelta | None = None, create: bool = True) -> tuple[Quarantine, Config]:
    """The quarantine, with the claim timeout of --claim-timeout, else `[relay] claim_timeout` (seconds), else
    the default (1 hour); and with --record-for, how long to retry recording an accepted delivery. With
    `create=False` (commands that only read, or that name a hold, which a new store cannot have) a missing store
    is an error that says where it was looked for, never a new empty one."""
    from rcptguard.store.quarantine import RECORD_RETRIES, Quarantine, retries_within  # noqa: PLC0415 - SQLAlchemy

    loaded = build_config(config)
    stale_after = claim_timeout if claim_timeout is not None else loaded.relay.claim_window
    retries = RECORD_RETRIES if record_for is None else retries_within(record_for)
    store = open_store(loaded, config, db, create=create)
    return Quarantine(store, stale_after=stale_after, record_retries=retries), loaded


def _next_hop(config: Config, flag: str | None) -> NextHop:
    """--next-hop, else [relay] next_hop in the config, else 127.0.0.1:10026 (like the relay and web page); with
    the timeouts of `[relay.timeouts]`."""
    try:
        return NextHop.parse(flag or config.relay.next_hop, config.relay.timeouts)
    except ValueError as exc:
        raise click.UsageError(f"--next-hop: {exc}") from None


def _retention(_ctx: click.Context, _param: click.Parameter, value: str) -> dt.timedelta:
    match = _DURATION.match(value)
    if not match or (not match.group(2) and int(match.group(1)) != 0):
        raise click.BadParameter(f"expected a duration such as 7d, 36h or 90m, got {value!r}")
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2) or "s"])


def _optional_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.timedelta | None:
    return None if value is None else _retention(ctx, param, value)


def _positive_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.timedelta | None:
    duration = _optional_duration(ctx, param, value)
    if duration is not None and duration <= dt.timedelta(0):
        raise click.BadParameter("must be longer than 0")
    return duration


def claim_options(func: F) -> F:
    """--claim-timeout and --record-for, for the commands that send released messages."""
    func = click.option("--record-for", "record_for", metavar="DURATION", callback=_optional_duration,
                        help="When the next hop accepted a message but the store fails, keep trying to record it "
                             "this long (default 30s).")(func)
    return click.option("--claim-timeout", "claim_timeout", metavar="DURATION", callback=_positive_duration,
                        help="Take over a delivery or notice another worker claimed this long ago (a dead worker's); "
                             "longer than any send. Default: [relay] claim_timeout, else 1h.")(func)


def _address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parsed = parse_address(value)
    if isinstance(parsed, Malformed):
        raise click.BadParameter(f"{value!r}: {parsed.reason}")
    return f"{parsed.local}@{parsed.domain.ascii}"


def _actor(value: str | None) -> str:
    if value:
        return value
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "cli"


def _age(since: dt.datetime, now: dt.datetime) -> str:
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _age_words(value: dt.timedelta) -> str:
    from rcptguard.notify import duration_words  # noqa: PLC0415 - Jinja2: only when needed

    return duration_words(value)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _purged_words(hold: Hold) -> str:
    assert hold.purged_at is not None
    return f"the message itself was deleted on {hold.purged_at:%Y-%m-%d} under the retention policy"


def _log_decisions() -> None:
    """While the command runs, the store's log lines (one per decision, besides its audit row) go to stderr as
    JSON, like the servers' (rcptguard.logs); the logging set-up before is restored when it ends."""
    root = logging.getLogger("rcptguard")
    saved = root.handlers[:], root.level, root.propagate

    def restore() -> None:
        root.handlers[:], root.propagate = saved[0], saved[2]
        root.setLevel(saved[1])

    logs.setup("info")
    click.get_current_context().call_on_close(restore)


def _check_correction(store: Quarantine, policy: Policy, address: str) -> None:
    """An administrator's correction is checked as the relay would check it (the config's policy and what the store
    learned): anything but pass is refused, with the verdict's reason, unless --force."""
    with _errors():
        learned = store.store.learned()
    try:
        guard = Guard(policy, learned=learned)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    verdict = guard.check(address)
    if verdict.action is Action.PASS:
        return
    instead = f" (did you mean {verdict.suggestion}?)" if verdict.suggestion else ""
    raise click.ClickException(f"--to {address}: {verdict.action}{instead}: {verdict.reason} Nothing was released; "
                               "--force sends it there anyway.")


# -- the group ------------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def quarantine() -> None:
    """Held messages: list, show, release (or correct), cancel, expire, purge."""


@quarantine.command("list")
@store_options
@click.option("--state", type=click.Choice(["held", "released", "corrected", "cancelled", "expired", "all"]),
              default="held", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many, oldest first.")
def list_command(config: Path | None, db: str | None, state: str, fmt: str, limit: int | None) -> None:
    """List holds, oldest first."""
    store, _ = _open(config, db, create=False)
    with _errors():
        found = store.list(None if state == "all" else state, limit)
    if fmt == "jsonl":
        for hold in found:
            click.echo(json.dumps(hold.to_json(), ensure_ascii=False))
        return
    if not found:
        click.echo("nothing held" if state == "held" else f"no holds in state {state}")
        return
    now = dt.datetime.now(dt.UTC)
    show_state = state == "all"
    head = f"{'ID':<10}  {'AGE':>4}  " + (f"{'STATE':<9}  " if show_state else "")
    click.echo(head + f"{'SENDER':<28}  {'RECIPIENT -> SUGGESTION':<44}  {'SUBJECT':<28}  REASON")
    for hold in found:
        target = hold.recipient + (f" -> {hold.suggestion}" if hold.suggestion else "")
        line = f"{hold.id:<10}  {_age(hold.created_at, now):>4}  " + (f"{hold.state:<9}  " if show_state else "")
        line += (f"{_cut(hold.mail_from or '<>', 28):<28}  {_cut(target, 44):<44}  "
                 f"{_cut(hold.subject, 28):<28}  {hold.reason}")
        if hold.purged_at:
            line += f" [message deleted {hold.purged_at:%Y-%m-%d}]"
        click.echo(line)


@quarantine.command()
@store_options
@click.argument("hold_id")
def show(config: Path | None, db: str | None, hold_id: str) -> None:
    """Show one hold: every field, its history and the message headers (never the body)."""
    from rcptguard.store.quarantine import header_block  # noqa: PLC0415 - SQLAlchemy: only when a store is opened

    store, _ = _open(config, db, create=False)
    with _errors():
        hold = store.require(hold_id)
        history = store.events(hold_id)
        headers = None if hold.purged_at else header_block(store.content(hold_id))
    fields: list[tuple[str, object]] = [
        ("id", hold.id), ("state", hold.state), ("sender", hold.mail_from or "<>"), ("recipient", hold.recipient),
        ("intended", hold.intended or "-"), ("suggestion", hold.suggestion or "-"), ("reason", hold.reason),
        ("score", f"{hold.score:.1f}"), ("subject", hold.subject), ("message-id", hold.message_id_header or "-"),
        ("size", f"{hold.size} bytes"), ("client", hold.client or "-"), ("received", _when(hold.received_at)),
        ("held", _when(hold.created_at)), ("decided", _when(hold.decided_at)), ("decided by", hold.decided_by or "-"),
        ("deliver to", hold.deliver_to or "-"), ("delivery", hold.delivery),
        ("attempts", hold.delivery_attempts), ("delivered", _when(hold.delivered_at)),
        ("claimed", f"{_when(hold.claimed_at)} by {hold.claimed_by or 'a worker'} (claim {hold.claim_id or '-'})"
         if hold.delivery == "sending" else "-"),
        ("last error", hold.last_error or "-"),
        ("stored message", hold.message_id + (f" ({_purged_words(hold)})" if hold.purged_at else "")),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<16}{value}")
    click.echo("signals:")
    for signal in hold.signals or [{"name": "-"}]:
        evidence = ", ".join(f"{k}={v}" for k, v in dict(signal.get("evidence") or {}).items())
        score = signal.get("score")
        click.echo(f"  {signal.get('name')}" + (f" {float(score):+.1f}" if score is not None else "")
                   + (f"  ({evidence})" if evidence else ""))
    click.echo("events:")
    for item in history:
        detail = f"  {item.detail}" if item.detail else ""
        click.echo(f"  {_when(item.at)}  {item.actor}: {item.from_state} -> {item.to_state}{detail}")
    if not history:
        click.echo("  none")
    if headers is None:
        click.echo(f"headers:        none: {_purged_words(hold)}")
        return
    click.echo("headers:")
    for line in headers.splitlines():
        click.echo(f"  {line}")


@quarantine.command("release")
@store_options
@click.argument("hold_id")
@click.option("--to", "to", metavar="ADDRESS", callback=_address,
              help="Deliver to this address instead (the hold is recorded as corrected).")
@click.option("--next-hop", "next_hop", metavar="HOST:PORT", help="Where to deliver; default: [relay] next_hop.")
@click.option("--force", is_flag=True,
              help="Deliver to --to even when the guard would not pass that address (see docs/relay.md).")
@click.option("--actor", metavar="NAME", help="Who decides, for the audit log (default: the user name).")
@claim_options
def release_command(config: Path | None, db: str | None, hold_id: str, to: str | None, force: bool,
                    next_hop: str | None, actor: str | None, claim_timeout: dt.timedelta | None,
                    record_for: dt.timedelta | None) -> None:
    """Release a held message to its recipient (or, with --to, to the corrected address) and deliver it."""
    from rcptguard.store.quarantine import DecidedNotRecorded  # noqa: PLC0415 - SQLAlchemy: only when a store is opened

    store, loaded = _open(config, db, claim_timeout=claim_timeout, record_for=record_for, create=False)
    hop = _next_hop(loaded, next_hop)
    assert hop is not None  # required=True
    if to is not None and not force:
        _check_correction(store, loaded.policy, to)
    _log_decisions()
    from rcptguard.outbox import Outbox  # noqa: PLC0415 - SQLAlchemy and the SMTP client load only when used

    try:
        with _errors():
            outcome = Outbox(store, notifier=loaded.relay.notifier()).release_outcome(
                hold_id, _actor(actor), hop, to=to, notify_sender=True)
    except DecidedNotRecorded as exc:  # _errors lets it through when the next hop has the message
        click.echo(f"{hold_id}: {exc.hold.state}; {hop} accepted the message, but the store could not record the "
                   f"delivery ({_one_line(exc.__cause__ or exc)}). It is not sent again by this command; once the "
                   f"store works, run `rcptguard quarantine mark-delivered {hold_id}`, or another worker sends it "
                   f"again after the claim timeout ({_age_words(store.stale_after)}).", err=True)
        sys.exit(1)
    hold = outcome.hold
    target = hold.deliver_to or hold.recipient
    verb = f"corrected to {target}" if hold.state == "corrected" else "released"
    if outcome.result is None:
        click.echo(f"{hold.id}: {verb}; its delivery is being handled by another worker ({hold.delivery})")
    elif hold.delivery == "delivered":
        click.echo(f"{hold.id}: {verb}; delivered to {target} via {hop}")
    elif hold.delivery == "failed":
        click.echo(f"{hold.id}: {verb}, but {hop} refused {target} for good: {hold.last_error}", err=True)
        sys.exit(1)
    else:
        click.echo(f"{hold.id}: {verb}; delivery to {target} failed for now ({hold.last_error}); "
                   "it will be retried by `rcptguard quarantine deliver-pending`")


@quarantine.command()
@store_options
@click.argument("hold_id")
@click.option("--actor", metavar="NAME", help="Who decides, for the audit log (default: the user name).")
def cancel(config: Path | None, db: str | None, hold_id: str, actor: str | None) -> None:
    """Cancel a held message: it is never sent to this recipient."""
    store, _ = _open(config, db, create=False)
    _log_decisions()
    with _errors():
        hold = store.cancel(hold_id, _actor(actor), notify_sender=True)
    click.echo(f"{hold.id}: cancelled; {hold.recipient} will not get the message (its sender is told by the "
               "relay's retry loop or `rcptguard quarantine deliver-pending`)")


@quarantine.command("mark-delivered")
@store_options
@click.argument("hold_id")
@click.option("--actor", metavar="NAME", help="Who says so, for the audit log (default: the user name).")
@click.option("--note", default="", help="What shows it, for the audit log (e.g. the next hop's queue id).")
def mark_delivered_command(config: Path | None, db: str | None, hold_id: str, actor: str | None, note: str) -> None:
    """Record that the next hop has a released message whose delivery the store failed to record (the log names
    the hold and the next hop's answer), so that it is never sent again."""
    store, _ = _open(config, db, create=False)
    _log_decisions()
    with _errors():
        hold = store.mark_delivered_by_hand(hold_id, _actor(actor), note)
    logs.event(log, "decision", hold=hold.id, message=hold.message_id, actor=_actor(actor), action="marked delivered",
               recipient=hold.recipient, deliver_to=hold.deliver_to, detail=note or None)
    click.echo(f"{hold.id}: marked delivered to {hold.deliver_to or hold.recipient}; it will not be sent again")


@quarantine.command("deliver-pending")
@store_options
@click.option("--next-hop", "next_hop", metavar="HOST:PORT", help="Where to deliver; default: [relay] next_hop.")
@click.option("--give-up-after", "give_up_after", default=None, callback=_optional_duration,
              help="Fail a delivery still deferred this long after its release, and tell the sender (s, m, h, d, w). "
                   "Default: [relay] give_up_days, else 5d.")
@click.option("--notice-from", metavar="ADDRESS", default=None,
              help="From: of the notices (default MAILER-DAEMON@ this host's name).")
@claim_options
def deliver_pending_command(config: Path | None, db: str | None, next_hop: str | None,
                            give_up_after: dt.timedelta | None, notice_from: str | None,
                            claim_timeout: dt.timedelta | None,
                            record_for: dt.timedelta | None) -> None:
    """Retry the deliveries of released messages that failed for now; give up on those deferred too long."""
    store, loaded = _open(config, db, claim_timeout=claim_timeout, record_for=record_for)
    hop = _next_hop(loaded, next_hop)
    assert hop is not None
    if give_up_after is None:
        give_up_after = dt.timedelta(days=loaded.relay.give_up_days)
    from rcptguard.outbox import Outbox  # noqa: PLC0415 - SQLAlchemy and the SMTP client load only when used

    with _errors():
        waiting = len(store.pending_deliveries())
        delivered = Outbox(store, notifier=loaded.relay.notifier(notice_from)).deliver_pending(hop)
        given_up = store.give_up(give_up_after)
        left = len(store.pending_deliveries())
    for hold in given_up:
        click.echo(f"{hold.id}: gave up ({hold.mail_from or '<>'} -> {hold.deliver_to or hold.recipient}): "
                   f"{hold.last_error}")
    counts = _send_owed(store, loaded, hop, notice_from)
    sent = counts.get("sent", 0)
    click.echo(f"delivered {delivered} of {waiting} pending; gave up {len(given_up)}; {left} still pending; "
               f"notified {sent} sender{'s' if sent != 1 else ''}")


@quarantine.command()
@store_options
@click.option("--retention", default=None, callback=_optional_duration,
              help="Expire holds older than this (s, m, h, d, w). Default: [relay] link_days (7d), the time the "
                   "held notice promises.")
@click.option("--next-hop", "next_hop", metavar="HOST:PORT",
              help="Where the notices to senders go; default: [relay] next_hop.")
@click.option("--notice-from", metavar="ADDRESS", default=None,
              help="From: of the notices (default MAILER-DAEMON@ this host's name).")
@click.option("--no-notify", is_flag=True, help="Expire without telling the senders.")
@click.option("--actor", metavar="NAME", default="expiry", show_default=True, help="Who expires, for the audit log.")
@claim_options
def expire(config: Path | None, db: str | None, retention: dt.timedelta | None, next_hop: str | None,
           notice_from: str | None, no_notify: bool, actor: str, claim_timeout: dt.timedelta | None,
           record_for: dt.timedelta | None) -> None:
    """Expire holds nobody decided on within the retention, and tell each sender that the message was not sent.

    A notice that cannot be sent now (the next hop defers it) stays owed and is sent by the next run."""
    store, loaded = _open(config, db, claim_timeout=claim_timeout, record_for=record_for)
    if retention is None:
        retention = dt.timedelta(days=loaded.relay.link_days)
    hop = None if no_notify else _next_hop(loaded, next_hop)
    _log_decisions()
    with _errors(), store.store.alone("quarantine-expire") as alone:
        if not alone:
            click.echo("another `rcptguard quarantine expire` is running against this store; nothing done")
            return
        expired = store.expire_due(retention, actor, notify=hop is not None)
        for hold in expired:
            click.echo(f"{hold.id}: expired ({hold.mail_from or '<>'} -> {hold.recipient})")
        counts = _send_owed(store, loaded, hop, notice_from) if hop is not None else {}
    sent, later = counts.get("sent", 0), counts.get("later", 0)
    again = f"; {later} to try again on the next run" if later else ""
    click.echo(f"expired {len(expired)}; notified {sent} sender{'s' if sent != 1 else ''}{again}")


@quarantine.command()
@store_options
@click.option("--bodies-after", "bodies_after", metavar="DURATION", callback=_optional_duration,
              help="Delete the bytes of messages done with this long (s, m, h, d, w). Default: [retention] "
                   "bodies_days (30).")
@click.option("--metadata-after", "metadata_after", metavar="DURATION", callback=_optional_duration,
              help="Delete every record of messages done with this long. Default: [retention] metadata_days (365).")
@click.option("--dry-run", is_flag=True, help="Say what would be purged and deleted; change nothing.")
def purge(config: Path | None, db: str | None, bodies_after: dt.timedelta | None,
          metadata_after: dt.timedelta | None, dry_run: bool) -> None:
    """Apply the retention policy: delete the stored bytes of messages nothing needs any more (every recipient
    decided, its delivery and notices settled) after [retention] bodies_days, and every record of them after
    metadata_days, counted from the last decision or delivery. A message still held, or whose release or notice is
    still pending or being sent, is never touched."""
    store, loaded = _open(config, db, create=False)
    bodies = bodies_after if bodies_after is not None else loaded.retention.bodies
    records = metadata_after if metadata_after is not None else loaded.retention.metadata
    if records < bodies:
        raise click.UsageError(f"records are kept at least as long as bytes: --metadata-after "
                               f"{_exactly(records)} is shorter than {_exactly(bodies)}")
    _log_decisions()
    with _errors(), store.store.alone("quarantine-purge") as alone:
        if not alone:
            click.echo("another `rcptguard quarantine purge` is running against this store; nothing done")
            return
        deleted = store.delete_settled(records, dry_run=dry_run)
        purged = store.purge_bodies(bodies, dry_run=dry_run)
        waiting = store.purge_waiting(bodies)
    would = "would be " if dry_run else ""
    for message in deleted:
        click.echo(f"{message.message_id}: {would}deleted with its records ({_about(message)})")
    for message in purged:
        click.echo(f"{message.message_id}: message {would}deleted, {message.size} bytes ({_about(message)})")
    total = sum(message.size for message in purged)
    kept = f"; {waiting} kept while a delivery or notice is still owed" if waiting else ""
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} {len(purged)} message{'s' if len(purged) != 1 else ''} ({total} bytes) older than "
               f"{_exactly(bodies)}, {len(deleted)} with every record older than {_exactly(records)}{kept}")


def _exactly(value: dt.timedelta) -> str:
    """A retention period as given: "30 days", "36 hours", "90 minutes" (never rounded to weeks)."""
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}{'s' if seconds != size else ''}"
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds} seconds"


def _about(message: PurgedMessage) -> str:
    holds = ", ".join(message.hold_ids)
    return (f"from {message.mail_from or '<>'}, holds {holds}, received {_when(message.received_at)}, "
            f"done {_when(message.settled_at)}")


def _send_owed(store: Quarantine, config: Config, hop: NextHop, notice_from: str | None) -> dict[str, int]:
    """Send the notices the quarantine owes (expired holds, deliveries given up); warnings on stderr."""
    from rcptguard.notify import send_owed  # noqa: PLC0415 - Jinja2: only when needed

    notifier = config.relay.notifier(notice_from)
    with _errors():
        return dict(send_owed(store, notifier, hop, links=config.relay.notice_links(store.store),
                              warn=lambda text: click.echo(f"warning: {text}", err=True)))
