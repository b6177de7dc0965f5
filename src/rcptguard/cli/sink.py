"""`rcptguard sink`: the typo domains' SMTP server (docs/sink.md), and its `report`, `purge` and `check`."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rcptguard.cli.common import build_config, db_url, listen_address, metrics_served, serve_until_stopped
from rcptguard.policy import ConfigError

if TYPE_CHECKING:
    from rcptguard.store.sink import Refusals

_SINCE = re.compile(r"\s*(\d+)\s*([dhw])\s*\Z")
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.datetime | None:
    """--since: a date (2026-11-01, from its midnight UTC) or a time ago (7d, 36h, 2w)."""
    if value is None:
        return None
    match = _SINCE.match(value)
    if match:
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    try:
        return dt.datetime.combine(dt.date.fromisoformat(value.strip()), dt.time(), dt.UTC)
    except ValueError:
        raise click.BadParameter(f"expected a date such as 2026-11-01 or a time ago such as 7d, got {value!r}") \
            from None


def _refusals(config: Path | None, db: str | None, *, create: bool) -> tuple[Refusals, float]:
    """The sink's table in the store (--db, else [db] url), and `[sink] keep_days`."""
    from rcptguard.store import Store, StoreError  # noqa: PLC0415 - SQLAlchemy: only when a store is opened
    from rcptguard.store.sink import Refusals  # noqa: PLC0415 - same

    loaded = build_config(config)
    try:
        store = Store.open(db_url(loaded, db), create=create)
    except StoreError as exc:  # StoreNotFound included: a report or a purge never creates a store
        raise click.ClickException(str(exc)) from None
    click.get_current_context().call_on_close(store.close)
    return Refusals(store), loaded.sink.keep_days


@click.group(invoke_without_command=True)
@click.option("--listen", default="127.0.0.1:10027", show_default=True,
              help="HOST:PORT to listen on, or `systemd` for the sockets systemd passes (rcptguard-sink.socket on "
                   "port 25: the server needs no privilege; docs/sink.md).")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML config file with a [sink] section (docs/sink.md).")
@click.option("--db", "db", metavar="URL", help="Store URL (sqlite:///path or postgresql://...); wins over the config.")
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def sink(ctx: click.Context, listen: str, config: Path | None, db: str | None, log_level: str) -> None:
    """SMTP server for typo domains: refuse every recipient at RCPT with what was meant, keep only metadata.

    Without a subcommand it serves; `report` and `purge` read and trim what it recorded; `check` shows what it
    answers."""
    if ctx.invoked_subcommand is not None:
        return
    from rcptguard import logs  # noqa: PLC0415 - the server's modules load only when it runs
    from rcptguard.gateways import sink as sink_mod  # noqa: PLC0415 - same

    logs.setup(log_level)
    loaded = build_config(config)
    settings = loaded.sink
    if not settings.domains and not settings.intended:
        raise click.UsageError("the sink answers for no domain: set [sink] domains (typo = intended) or [sink] "
                               "intended (see docs/sink.md)")
    sockets = _systemd_sockets() if listen == "systemd" else None
    host, port = ("", 0) if sockets else listen_address(listen)
    try:
        settings.tls_context()
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"[sink] tls_cert, tls_key: {exc}") from None
    refusals, _ = _refusals(config, db, create=True)
    try:
        handler = sink_mod.build(settings, refusals, loaded.policy)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt), metrics_served("sink", handler.metrics, settings.metrics_listen):
        serve_until_stopped("sink", host, port,
                            lambda ready: sink_mod.serve(handler, host, port, ready=ready, sockets=sockets))


def _systemd_sockets() -> list[socket.socket]:
    """The listening sockets systemd passed this process (socket activation: LISTEN_PID, LISTEN_FDS from fd 3)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or not os.environ.get("LISTEN_FDS", "").isdigit():
        raise click.UsageError("--listen systemd: no sockets were passed by systemd (start rcptguard-sink.socket)")
    return [socket.socket(fileno=fd) for fd in range(3, 3 + int(os.environ["LISTEN_FDS"]))]


@sink.command()
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), help="TOML config file.")
@click.option("--db", "db", metavar="URL", help="Store URL; wins over the config.")
@click.option("--since", callback=_since, metavar="DATE|AGO",
              help="From this date (2026-11-01) or this long ago (7d, 36h, 2w); default: everything kept.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl", "csv", "html"]), default="text",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file instead of standard output.")
def report(config: Path | None, db: str | None, since: dt.datetime | None, fmt: str, output: Path | None) -> None:
    """What the sink refused, per day, intended domain, sending domain and sending server: text or HTML for a
    person, JSONL or CSV (one row per day, intended domain, typo, sender's domain and server) for a tool."""
    from rcptguard import sink_report  # noqa: PLC0415 - only this command makes reports
    from rcptguard.store import StoreError  # noqa: PLC0415 - SQLAlchemy: only when a store is opened

    refusals, _ = _refusals(config, db, create=False)
    try:
        rows = sink_report.tally(refusals.since(since))
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "jsonl":
        out = sink_report.jsonl(rows)
    elif fmt == "csv":
        out = sink_report.csv_text(rows)
    elif fmt == "html":
        out = sink_report.html(sink_report.Summary.of(rows))
    else:
        out = sink_report.text(sink_report.Summary.of(rows))
    if output is not None:
        output.write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)


@sink.command()
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), help="TOML config file.")
@click.option("--db", "db", metavar="URL", help="Store URL; wins over the config.")
@click.option("--dry-run", is_flag=True, help="Say how many would be deleted; change nothing.")
def purge(config: Path | None, db: str | None, dry_run: bool) -> None:
    """Delete the sink's records older than [sink] keep_days (30 by default)."""
    from rcptguard.store import StoreError  # noqa: PLC0415 - SQLAlchemy: only when a store is opened

    refusals, keep_days = _refusals(config, db, create=False)
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=keep_days)
    try:
        count = refusals.older_than(cutoff) if dry_run else refusals.purge(cutoff)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {count} refusal record{'s' if count != 1 else ''} older than {keep_days:g} days")


@sink.command()
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), help="TOML config file.")
@click.argument("addresses", nargs=-1, required=True)
def check(config: Path | None, addresses: tuple[str, ...]) -> None:
    """Print the reply the sink gives at RCPT for each address (limits and store aside): which typo domains it
    answers for, and the words senders will read."""
    from rcptguard.gateways.sink import TypoDomains, answer_for  # noqa: PLC0415 - the engine: only when asked

    loaded = build_config(config)
    try:
        domains = TypoDomains(loaded.sink, loaded.policy)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    for address in addresses:
        click.echo(f"{address}\n  {answer_for(domains, address)}")
