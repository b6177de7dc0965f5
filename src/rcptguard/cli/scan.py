"""`rcptguard scan`: what already went astray in an archive (rcptguard.audit), with a progress bar and a summary."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from pathlib import Path

import click
from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from rcptguard.cli.common import build_guard, build_policy, detection_options


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date such as 2025-01-31, got {value!r}", param_hint="--since") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


class _Rate(ProgressColumn):
    """Done of total and the rate, in octets for the archive read, in messages for the content scanned."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed or 0.0
        if task.fields.get("unit") == "octets":
            done = f"{filesize.decimal(int(task.completed))}/{filesize.decimal(int(task.total or 0))}"
            return Text(f"{done} {filesize.decimal(int(speed))}/s", style="progress.data.speed")
        return Text(f"{int(task.completed):,}/{int(task.total or 0):,} messages {speed:,.0f}/s",
                    style="progress.data.speed")


class _Bars:
    """The two bars of a scan: octets read (with rate and time left), then messages whose content is scanned."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), _Rate(), TimeRemainingColumn(),
                                 console=console, transient=False, disable=not console.is_terminal)
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            description = "reading archive" if phase == "read" else "scanning content"
            unit = "octets" if phase == "read" else "messages"
            self.tasks[phase] = self.progress.add_task(description, total=total or None, unit=unit)
        self.progress.update(self.tasks[phase], completed=done, total=total or None)


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@detection_options
@click.option("--since", metavar="DATE", help="Only messages on or after this date (2025-01-31).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("rcptguard-scan"),
              show_default=True, help="Folder for findings.jsonl, findings.csv, report.html and the scan's state.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes (default: every core).")
@click.option("--no-content", "no_content", is_flag=True, help="Do not scan the messages' content.")
def scan(paths: tuple[Path, ...], config: Path | None, protect: tuple[str, ...], known: tuple[str, ...],
         known_files: tuple[Path, ...], since: str | None, out: Path, jobs: int | None, no_content: bool) -> None:
    """Find mail an archive already sent to lookalike domains: mbox files, Maildir folders, folders of .eml,
    Postfix logs and Microsoft 365 / Google Workspace trace exports (format detected). A re-run on a grown
    archive reads only what is new. Writes findings.jsonl, findings.csv and report.html into --out."""
    from rcptguard.audit.findings import read_findings  # noqa: PLC0415 - the audit is loaded only for this command
    from rcptguard.audit.report import Totals, write_report  # noqa: PLC0415
    from rcptguard.audit.scan import ScanOptions, State, run_scan  # noqa: PLC0415
    from rcptguard.errors import SourceError  # noqa: PLC0415

    policy = build_policy(config, protect, known, known_files)
    build_guard(policy)  # a config error is a usage error before any worker starts
    options = ScanOptions(since=_since(since), content=not no_content, jobs=jobs or os.cpu_count() or 1)
    console = Console(stderr=True)
    bars = _Bars(console)
    try:
        with bars.progress:
            result = run_scan(list(paths), policy, out, options, progress=bars)
    except SourceError as exc:
        raise click.UsageError(str(exc)) from None
    state = State.load(out)
    findings = list(read_findings(out / "findings.jsonl"))
    totals = Totals(state.messages, dict(state.months), dict(result.sources), dict(result.problems))
    report = write_report(out / "report.html", findings, totals)
    _summary(Console(), result, len(findings), out, report)


def _summary(console: Console, result: object, all_findings: int, out: Path, report: Path) -> None:
    from rcptguard.audit.scan import ScanResult  # noqa: PLC0415

    assert isinstance(result, ScanResult)
    rate = result.messages / result.seconds if result.seconds else 0.0
    console.print(f"[bold]Scanned[/bold] {result.messages:,} messages ({result.recipients:,} recipients) "
                  f"in {result.seconds:.1f} s, {rate:,.0f} messages/s; {result.skipped:,} records skipped "
                  "(read by an earlier run, or before --since)")
    console.print("Sources: " + ", ".join(f"{n} {kind}" for kind, n in sorted(result.sources.items())))
    verdicts = Counter(f.verdict for f in result.findings)
    severities = Counter(f.severity for f in result.findings)
    console.print(f"[bold]Findings[/bold]: {len(result.findings):,} new ({all_findings:,} in all); "
                  + ", ".join(f"{n:,} {v}" for v, n in verdicts.most_common())
                  + (f"; {result.dropped_by_history:,} lookalikes passed as long-standing correspondents"
                     if result.dropped_by_history else ""))
    if result.findings:
        console.print("Severity: " + ", ".join(f"{n:,} {s}" for s, n in severities.most_common()))
        table = Table(title="Top lookalike domains", show_edge=False)
        table.add_column("domain")
        table.add_column("meant")
        table.add_column("recipients", justify="right")
        for (domain, intended), count in Counter((f.domain, f.intended or "?") for f in result.findings).most_common(8):
            table.add_row(domain, intended, f"{count:,}")
        console.print(table)
    if result.problems:
        console.print("[bold]Problems[/bold] (counted and skipped): "
                      + ", ".join(f"{n:,} {kind}" for kind, n in result.problems.most_common()))
        for kind, examples in result.problems.examples.items():
            for example in examples[:2]:
                console.print(f"  {kind}: {example}", highlight=False, markup=False)
    if result.unread_content:
        console.print(f"{result.unread_content:,} messages' content only partly read (budget, broken parts)")
    console.print(f"Wrote {out / 'findings.jsonl'}, {out / 'findings.csv'} and {report}", highlight=False)
