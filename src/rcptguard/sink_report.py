"""The sink's report for the intended organisations: who keeps mistyping their domains, from which servers.

    rows = tally(Refusals(store).since(cutoff))      # one Row per day, intended, typo, sender's domain, server
    summary = Summary.of(rows)                        # the same, added up per day, intended domain, sender, server
    text(summary) | jsonl(rows) | csv_text(rows) | html(summary)

jsonl and csv carry the rows (for a spreadsheet or another tool); text and html the summary, read by a person. The
HTML page is one file with its style and its charts inline (no script, no fetch), readable on a phone: the scan's
report style and charts (rcptguard.audit.report), shared.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import jinja2

from rcptguard.audit.report import bars, columns
from rcptguard.store.sink import Refusal

__all__ = ["Row", "Summary", "csv_text", "html", "jsonl", "tally", "text"]

TOP = 50  # lines per table in the text and HTML forms (the rows in jsonl and csv are all there)


@dataclass(frozen=True, slots=True)
class Row:
    """Refused recipients of one day, for one typo of one intended domain, from one sender's domain and server."""

    day: str
    intended: str
    typo: str
    sender_domain: str
    client_ip: str
    helo: str
    count: int


def tally(refusals: Iterable[Refusal]) -> list[Row]:
    """The refusals grouped (memory: one counter per group, however many refusals), by day, intended domain, typo,
    then the most refused first."""
    counts: Counter[tuple[str, str, str, str, str, str]] = Counter()
    for r in refusals:
        counts[r.day, r.intended_domain, r.typo_domain, r.sender_domain, r.client_ip, r.helo] += 1
    rows = [Row(*key, count) for key, count in counts.items()]
    rows.sort(key=lambda r: (r.day, r.intended, r.typo, -r.count, r.sender_domain, r.client_ip, r.helo))
    return rows


@dataclass(frozen=True, slots=True)
class Tally:
    """One line of a summary table: a name, its refused recipients, and what it came with (typos, senders, ...)."""

    name: str
    count: int
    detail: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    first_day: str | None
    last_day: str | None
    days: list[Tally] = field(default_factory=list)  # every day from the first to the last, quiet ones at 0
    intended: list[Tally] = field(default_factory=list)  # detail: its typo domains
    senders: list[Tally] = field(default_factory=list)  # detail: the intended domains they mistyped
    servers: list[Tally] = field(default_factory=list)  # name "ip (helo)"; detail: the senders' domains

    @classmethod
    def of(cls, rows: list[Row]) -> Summary:
        if not rows:
            return cls(0, None, None)
        by_day: Counter[str] = Counter()
        totals: dict[str, Counter[str]] = {"intended": Counter(), "senders": Counter(), "servers": Counter()}
        details: dict[str, defaultdict[str, Counter[str]]] = {k: defaultdict(Counter) for k in totals}
        for row in rows:
            server = f"{row.client_ip} ({row.helo})" if row.helo else row.client_ip
            by_day[row.day] += row.count
            for kind, name, detail in (("intended", row.intended, row.typo),
                                       ("senders", row.sender_domain or "<>", row.intended),
                                       ("servers", server, row.sender_domain or "<>")):
                totals[kind][name] += row.count
                details[kind][name][detail] += row.count
        first, last = min(by_day), max(by_day)
        days = [Tally(day, by_day.get(day, 0)) for day in _days(first, last)]

        def table(kind: str) -> list[Tally]:
            ranked = sorted(totals[kind].items(), key=lambda item: (-item[1], item[0]))
            return [Tally(name, count, tuple(d for d, _ in details[kind][name].most_common()))
                    for name, count in ranked]

        return cls(sum(by_day.values()), first, last, days, table("intended"), table("senders"), table("servers"))


def _days(first: str, last: str) -> Iterator[str]:
    day, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    while day <= end:
        yield day.isoformat()
        day += dt.timedelta(days=1)


def text(summary: Summary) -> str:
    """The summary for a terminal or a mail to the intended organisation."""
    if not summary.total:
        return "No misdirected mail was refused in this period.\n"
    out = [f"{summary.total} misdirected recipients refused, {summary.first_day} to {summary.last_day}.", ""]
    sections = (("Per day", summary.days, ""), ("Per intended domain", summary.intended, "typed as"),
                ("Per sending domain", summary.senders, "meant"), ("Per sending server", summary.servers, "for"))
    for title, tallies, joiner in sections:
        out.append(f"{title}:")
        width = max(len(t.name) for t in tallies[:TOP])
        for item in tallies[:TOP]:
            detail = f"  {joiner} {', '.join(item.detail[:5])}" if joiner and item.detail else ""
            more = f" and {len(item.detail) - 5} more" if len(item.detail) > 5 else ""
            out.append(f"  {item.name:<{width}}  {item.count:>7}{detail}{more}")
        if len(tallies) > TOP:
            out.append(f"  ... and {len(tallies) - TOP} more")
        out.append("")
    return "\n".join(out)


def jsonl(rows: list[Row]) -> str:
    return "".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in rows)


def csv_text(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["day", "intended", "typo", "sender_domain", "client_ip", "helo", "count"])
    for row in rows:
        writer.writerow([_cell(v) for v in (row.day, row.intended, row.typo, row.sender_domain, row.client_ip,
                                            row.helo, row.count)])
    return buffer.getvalue()


def _cell(value: str | int) -> str | int:
    """A CSV cell a spreadsheet shows as text: a HELO beginning with = + - @ is not run as a formula."""
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def html(summary: Summary, generated: dt.datetime | None = None) -> str:
    """One page, self-contained (inline style and SVG, no script, a Content-Security-Policy that forbids every
    fetch), in the style and with the charts of the scan's report (rcptguard.audit.report)."""
    environment = jinja2.Environment(loader=jinja2.PackageLoader("rcptguard", "audit"), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template("sink_report.html.j2").render(
        s=summary, top=TOP, generated=(generated or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        chart_days=columns([(d.name, d.count) for d in summary.days], unit="refused"),
        chart_intended=bars([(t.name, t.count) for t in summary.intended[:12]]),
        chart_senders=bars([(t.name, t.count) for t in summary.senders[:12]], colour="#1f7a8c"))
