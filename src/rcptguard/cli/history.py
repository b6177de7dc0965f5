"""History commands: `learn` (import the organisation's own archives), `known` (inspect and correct what history
counts), `report observe` (what observe mode would have done) and `eval-messages` (history and the odd recipient
out, measured on a labelled stream of messages).

Exit status: 0 when the command did what was asked, 1 when it could not (an archive unreadable, an unknown domain),
2 for a usage or config error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from rcptguard.cli.common import (
    build_config,
    build_policy,
    detection_options,
    first_line,
    open_store,
    store_options,
)

if TYPE_CHECKING:
    from rcptguard.config import Config
    from rcptguard.guard import Guard
    from rcptguard.history.learn import Imported
    from rcptguard.policy import Policy
    from rcptguard.store.history import Correspondent, StoreHistory

FORMATS = click.Choice(["text", "jsonl"])


def _history(config: Path | None, db: str | None, *, create: bool) -> tuple[StoreHistory, Config]:
    from rcptguard.store.history import StoreHistory  # noqa: PLC0415 - SQLAlchemy: only when a store is opened

    loaded = build_config(config)
    return StoreHistory(open_store(loaded, config, db, create=create), loaded.history), loaded


def _own_domains(loaded: Config, own: tuple[str, ...]) -> list[str]:
    """--own, else the protected domains of the policy that are not whole suffixes (mil)."""
    from rcptguard.domains import DomainError, is_public_suffix, normalize_domain  # noqa: PLC0415 - light, but lazy

    names = own or tuple(d for d in loaded.policy.protect if not is_public_suffix(d))
    out = []
    for name in names:
        try:
            out.append(normalize_domain(name.strip().lstrip("@")).ascii)
        except DomainError as exc:
            raise click.UsageError(f"--own {name!r}: {exc}") from None
    return out


# -- learn -------------------------------------------------------------------------------------------------


@click.command("learn")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@store_options
@click.option("--own", multiple=True, metavar="DOMAIN",
              help="One of the organisation's own domains (repeatable; default: the protected domains). Mail from "
                   "them is outbound, mail to them from elsewhere inbound.")
@click.option("--format", "source_format", metavar="FORMAT",
              help="The archives' format when detection is not wanted (postfix-log, mbox, maildir, eml-dir, eml, "
                   "m365-trace, google-log, counts).")
def learn(sources: tuple[Path, ...], config: Path | None, db: str | None, own: tuple[str, ...],
          source_format: str | None) -> None:
    """Import history from SOURCES: Postfix logs (rotated, gzipped, journal JSON), mbox, Maildir, folders of .eml,
    Microsoft 365 message traces, Google Workspace email log exports, lists of domains or addresses with counts.
    Importing the same archive twice counts nothing twice; a log that grew adds its new lines."""
    from rich.console import Console  # noqa: PLC0415 - only this command draws
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    from rcptguard.history.learn import Importer  # noqa: PLC0415 - SQLAlchemy, the readers: only here
    from rcptguard.sources import SourceError, open_source, open_sources  # noqa: PLC0415
    from rcptguard.store import StoreError  # noqa: PLC0415

    history, loaded = _history(config, db, create=True)
    policy = loaded.policy.with_domains(known=tuple(history.added()))
    domains = _own_domains(loaded, own)
    guard = _guard_with(policy, history)
    console = Console(stderr=True)
    results: list[Imported] = []
    failed: list[str] = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,.0f} records"),
                  TimeElapsedColumn(), console=console) as progress:
        for path in sources:
            try:
                opened = [open_source(path, source_format)] if source_format else open_sources([path])
            except SourceError as exc:
                failed.append(str(exc))
                continue
            for source in opened:
                task = progress.add_task(f"{source.path} ({source.format})", total=None)

                def advance(n: int, task: TaskID = task) -> None:
                    progress.advance(task, n)

                importer = Importer(history, guard, domains, loaded.history, progress=advance)
                try:
                    results.append(importer.run(source))
                except StoreError as exc:
                    raise click.ClickException(first_line(exc)) from None
                except (OSError, SourceError) as exc:
                    failed.append(f"{source.path}: {first_line(exc)}")
                progress.stop_task(task)
    _summary(results, failed, domains, history)
    if failed:
        sys.exit(1)


def _guard_with(policy: Policy, history: StoreHistory) -> Guard:
    """The guard that judges imported domains (a near miss is marked): the policy and what history counts."""
    from rcptguard.guard import Guard  # noqa: PLC0415
    from rcptguard.policy import ConfigError  # noqa: PLC0415

    try:
        return Guard(policy, learned=history.learned())
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _summary(results: list[Imported], failed: list[str], own: list[str], history: StoreHistory) -> None:
    from rcptguard.history.learn import summarize  # noqa: PLC0415

    for r in results:
        rate = r.records / r.seconds if r.seconds else 0.0
        skipped = f", {r.skipped:,} imported before" if r.skipped else ""
        click.echo(f"{r.path} ({r.format}): {r.records:,} records{skipped} in {r.seconds:.1f}s ({rate:,.0f}/s): "
                   f"{r.outbound:,} messages out to {len(r.domains):,} domains, {r.inbound:,} in, "
                   f"{r.undelivered:,} not delivered, {r.foreign:,} neither from nor to {', '.join(own) or 'us'}")
        for kind, number in sorted(r.problems.items()):
            examples = "; ".join(r.problems.examples.get(kind, []))
            click.echo(f"  {number:,} {kind}" + (f" (e.g. {examples})" if examples else ""))
    total = summarize(results)
    learned = history.learned()
    click.echo(f"total: {total['records']:,} records read, {total['skipped']:,} skipped as imported before, "
               f"{total['outbound']:,} messages out, {total['inbound']:,} in; history now counts "
               f"{len(learned):,} correspondents")
    if not own:
        click.echo("note: no own domains (--own or protected domains): every message was counted as outbound")
    for line in failed:
        click.echo(f"error: {line}", err=True)


# -- known ------------------------------------------------------------------------------------------------


def _row(c: Correspondent) -> dict[str, Any]:
    f = c.facts
    return {"domain": c.domain, "known": c.known, "messages": f.org.count, "senders": f.senders,
            "inbound": f.inbound, "first_seen": f.org.first.isoformat() if f.org.first else None,
            "last_seen": f.org.last.isoformat() if f.org.last else None, "near": f.near, "state": f.state}


@click.group("known")
def known() -> None:
    """Inspect and correct what history counts as the organisation's correspondents."""


@known.command("list")
@store_options
@click.option("--all", "everything", is_flag=True, help="Every domain history has seen, not only correspondents.")
@click.option("--format", "output", type=FORMATS, default="text", show_default=True)
def known_list(config: Path | None, db: str | None, everything: bool, output: str) -> None:
    """The correspondents history counts (with --all, every domain it has seen), most written to first."""
    history, _ = _history(config, db, create=False)
    rows = [c for c in history.correspondents() if everything or c.known]
    rows.sort(key=lambda c: (-c.facts.org.count, c.domain))
    for c in rows:
        if output == "jsonl":
            click.echo(json.dumps(_row(c), ensure_ascii=False))
            continue
        f = c.facts
        last = f"{f.org.last:%Y-%m-%d}" if f.org.last else "-"
        mark = "known" if c.known else "new  "
        notes = ", ".join(x for x in (f.state or "", f"near {f.near}" if f.near else "",
                                      f"{f.inbound} in" if f.inbound else "") if x)
        click.echo(f"{mark}  {c.domain:<40} {f.org.count:>8,} msgs {f.senders:>5,} senders  last {last}"
                   + (f"  ({notes})" if notes else ""))


@known.command("show")
@click.argument("domain")
@store_options
@click.option("--format", "output", type=FORMATS, default="text", show_default=True)
def known_show(domain: str, config: Path | None, db: str | None, output: str) -> None:
    """What history knows of DOMAIN: its counts, whether it counts and why not, who writes there and to whom."""
    from rcptguard.history.rules import why_not  # noqa: PLC0415

    history, loaded = _history(config, db, create=False)
    name = _domain(domain)
    found = history.correspondents([name])
    if not found:
        raise click.ClickException(f"history knows nothing of {name}")
    [c] = found
    why = why_not(c.facts, loaded.history, dt.datetime.now(dt.UTC))
    senders = history.top_senders(name)
    addresses = history.top_addresses(name)
    if output == "jsonl":
        row = {**_row(c), "why_not": why,
               "top_senders": [{"sender": s, "messages": n, "confirmed_at": w.isoformat() if w else None}
                               for s, n, w in senders],
               "top_addresses": [{"address": a, "messages": n} for a, n in addresses]}
        click.echo(json.dumps(row, ensure_ascii=False))
        return
    f = c.facts
    click.echo(f"{c.domain}: {'a correspondent' if c.known else 'not a correspondent: ' + (why or '')}")
    click.echo(f"  {f.org.count:,} messages from {f.senders:,} senders, {f.inbound:,} received from it")
    if f.org.first and f.org.last:
        click.echo(f"  first {f.org.first:%Y-%m-%d %H:%M}, last {f.org.last:%Y-%m-%d %H:%M} (UTC)")
    if f.near:
        click.echo(f"  a near miss of {f.near}")
    if f.state:
        click.echo(f"  {f.state} by an administrator")
    for s, n, w in senders:
        click.echo(f"  sender  {s}: {n:,}" + (f" (confirmed {w:%Y-%m-%d})" if w else ""))
    for a, n in addresses:
        click.echo(f"  address {a}: {n:,}")


def _domain(raw: str) -> str:
    from rcptguard.domains import DomainError, normalize_domain  # noqa: PLC0415

    try:
        return normalize_domain(raw.strip().lstrip("@")).ascii
    except DomainError as exc:
        raise click.UsageError(f"{raw!r}: {exc}") from None


@known.command("add")
@click.argument("domains", nargs=-1, required=True)
@store_options
def known_add(domains: tuple[str, ...], config: Path | None, db: str | None) -> None:
    """Make DOMAINS known correspondents, whatever history counted (the doors take it at their next rebuild)."""
    history, _ = _history(config, db, create=True)
    for name in map(_domain, domains):
        history.set_state(name, "added")
        click.echo(f"{name}: added")


@known.command("forget")
@click.argument("domains", nargs=-1, required=True)
@store_options
def known_forget(domains: tuple[str, ...], config: Path | None, db: str | None) -> None:
    """Make DOMAINS unknown, whatever history counted, and drop every sender's confirmation of them, until added
    again (a slip that was let through, a correspondent that changed hands)."""
    history, _ = _history(config, db, create=False)
    for name in map(_domain, domains):
        history.set_state(name, "forgotten")
        click.echo(f"{name}: forgotten")


@known.command("prune")
@store_options
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
def known_prune(config: Path | None, db: str | None, dry_run: bool) -> None:
    """Delete the history that has faded: rows whose messages weigh less than half a message ([history]
    half_life_days; they count for nothing any more), the observations older than [history] observations_days, and
    the history feed's old entries. Domains an administrator added or forgot stay, and so does a confirmation
    younger than two half-lives. One runner at a time: another run against the same store is left alone."""
    from rcptguard.store import StoreError  # noqa: PLC0415 - SQLAlchemy: only when a store is opened

    history, loaded = _history(config, db, create=False)
    now = dt.datetime.now(dt.UTC)
    try:
        with history.store.alone("history-prune") as alone:
            if not alone:
                click.echo("another `rcptguard known prune` is running against this store; nothing done")
                return
            counts = history.prune(now, dry_run=dry_run,
                                   observations_before=now - dt.timedelta(days=loaded.history.observations_days))
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb}: " + ", ".join(f"{n:,} from {table}" for table, n in counts.items()))


# -- report observe -----------------------------------------------------------------------------------------


@click.group("report")
def report() -> None:
    """Reports from the store."""


@report.command("observe")
@store_options
@click.option("--since", metavar="DATE", help="Only what was observed from this date (YYYY-MM-DD) on.")
@click.option("--format", "output", type=FORMATS, default="text", show_default=True)
def report_observe(config: Path | None, db: str | None, since: str | None, output: str) -> None:
    """What enforcement would have done while `mode = "observe"`: every recipient that would have been warned,
    held or refused, counted by verdict and by domain."""
    history, _ = _history(config, db, create=False)
    start = _date(since) if since else None
    rows = history.observations(start)
    if output == "jsonl":
        for o in rows:
            click.echo(json.dumps({"at": o.at.isoformat(), "door": o.door, "sender": o.sender,
                                   "recipient": o.recipient, "verdict": o.verdict, "score": round(o.score, 2),
                                   "intended": o.intended, "signals": o.signals.split(), "reason": o.reason},
                                  ensure_ascii=False))
        return
    if not rows:
        click.echo("nothing observed" + (f" since {since}" if since else "") + ": every recipient would have passed")
        return
    verdicts = Counter(o.verdict for o in rows)
    click.echo(f"{len(rows):,} recipients would not have simply passed, {rows[0].at:%Y-%m-%d %H:%M} to "
               f"{rows[-1].at:%Y-%m-%d %H:%M} UTC: "
               + ", ".join(f"{verdicts[v]:,} {v}" for v in ("reject", "hold", "warn") if verdicts[v]))
    domains = Counter((o.verdict, o.recipient.rsplit("@", 1)[-1].lower(), o.intended or "") for o in rows)
    for (verdict, domain, intended), number in sorted(domains.items(), key=lambda x: (-x[1], x[0])):
        meant = f" (for {intended})" if intended else ""
        click.echo(f"  {verdict:<6} {number:>6,}  {domain}{meant}")


def _date(text: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"expected a date such as 2026-12-01, got {text!r}") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


# -- eval-messages ------------------------------------------------------------------------------------------


@click.command("eval-messages")
@click.argument("messages", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--train-until", "train_until", metavar="DATE",
              help="Learn from the messages before this date (YYYY-MM-DD or ISO 8601), judge the rest. By default "
                   "the first two thirds of the messages are learned.")
@detection_options
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--explain", type=click.Path(dir_okay=False, writable=True, path_type=Path), metavar="FILE",
              help="Write, one JSON object a line, each judged leak (held, warned or missed) and each clean message "
                   "with a recipient held or warned, with every such recipient's verdict, signals and reason.")
def eval_messages(messages: Path, train_until: str | None, config: Path | None, protect: tuple[str, ...],
                  known: tuple[str, ...], known_files: tuple[Path, ...], output: str, explain: Path | None) -> None:
    """Measure history and the odd recipient out on MESSAGES, one JSON object a line: {"date": ISO 8601, "sender":
    "a@org.example", "recipients": [...], "leak": "address" | null} (and optionally "kind": the kind of leak);
    other common forms are taken too (docs/history.md), and lines that are not messages are skipped and named.
    Prints the share of leaks held or warned, and of clean messages with a recipient held, overall and by kind."""
    from rcptguard.history.evaluate import evaluate, read_messages  # noqa: PLC0415

    loaded = build_config(config)
    policy = build_policy(loaded, protect, known, known_files)
    cut = _cut(train_until) if train_until is not None else None
    try:
        read = read_messages(messages)
    except (OSError, EOFError, ValueError) as exc:
        raise click.ClickException(f"{messages}: {first_line(exc)}") from None
    if not read.messages:
        why = f": {read.skipped[0][0]}: {read.skipped[0][1]}" if read.skipped else ""
        raise click.ClickException(f"{messages}: no message in the file{why}")
    chosen = cut is None
    if cut is None:
        cut = read.messages[len(read.messages) * 2 // 3].when
    try:
        with explain.open("w", encoding="utf-8") if explain else contextlib.nullcontext() as out:
            result = evaluate(read.messages, cut, policy, loaded.history, explain=_writer(out) if out else None)
    except OSError as exc:
        raise click.ClickException(f"{explain}: {first_line(exc)}") from None
    if chosen:
        click.echo(f"no --train-until: learning from the messages dated before {cut.isoformat()}, {result.trained:,} "
                   f"of {len(read.messages):,} (two thirds, as near as their dates allow)", err=True)
    result.skipped = read.skipped
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    for line in result.lines():
        click.echo(line)


def _writer(out: TextIO) -> Callable[[dict[str, Any]], None]:
    def write(line: dict[str, Any]) -> None:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return write


def _cut(text: str) -> dt.datetime:
    try:
        cut = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"expected a date such as 2026-06-01, got {text!r}",
                                 param_hint="--train-until") from None
    return cut if cut.tzinfo else cut.replace(tzinfo=dt.UTC)
