"""The report people read: one self-contained HTML file, charts drawn in it as inline SVG, no network needed.

It shows the messages per month to lookalike domains, the top lookalike domains and what they were mistaken for,
the senders who slip most (to train, not to blame), the severity of what went, and the findings in a table with
filters (the table holds the first `TABLE_ROWS` findings, most severe first; findings.csv holds them all). A
Content-Security-Policy forbids every fetch: the file opens the same from a laptop or a USB stick. The style
(report_style.html.j2) and the charts (`bars`, `columns`) are shared with the sink's report (sink_report).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from rcptguard.audit.findings import Finding

TABLE_ROWS = 20_000
TOP = 12
SEVERITIES = ("high", "medium", "low", "none", "unknown")
SEVERITY_COLOURS = {"high": "#b3261e", "medium": "#e07b00", "low": "#c9a400", "none": "#5b8c5a", "unknown": "#8a8f98"}


@dataclass(frozen=True, slots=True)
class Totals:
    """What the report says of the archive as a whole (every run of the scan together)."""

    messages: int
    months: dict[str, int]
    sources: dict[str, int]
    problems: dict[str, int]


def bars(items: list[tuple[str, int]], *, colour: str = "#2f5d8a") -> Markup:
    """Horizontal bars as HTML rows (label, bar, count): the text stays readable at any width, a phone's too."""
    if not items:
        return Markup('<p class="empty">Nothing to show.</p>')
    top = max(n for _, n in items) or 1
    rows = [f'<div class="bar-row"><span class="bar-label" title="{escape(label)}">{escape(label)}</span>'
            f'<span class="bar"><i style="width: {max(1.0, 100 * count / top):.1f}%; background: {colour}"></i></span>'
            f'<span class="bar-value">{count:,}</span></div>' for label, count in items]
    return Markup('<div class="bars" role="img">' + "".join(rows) + "</div>")  # noqa: S704 - text through escape()


def columns(items: list[tuple[str, int]], unit: str = "messages") -> Markup:
    """Vertical bars over time (messages per month, refusals per day), labels under every few bars."""
    if not items:
        return Markup('<p class="empty">Nothing to show.</p>')
    top = max(n for _, n in items) or 1
    width, height, base = 900, 250, 215
    step = (width - 50) / len(items)
    every = max(1, -(-len(items) // 6))
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" preserveAspectRatio="xMinYMin meet">',
             f'<line x1="40" y1="{base}" x2="{width}" y2="{base}" class="axis"/>',
             f'<text x="36" y="24" text-anchor="end" class="tick">{top:,}</text>']
    for i, (month, count) in enumerate(items):
        bar = max(1, round((base - 20) * count / top))
        x = 44 + i * step
        parts.append(f'<rect x="{x:.1f}" y="{base - bar}" width="{max(step - 3, 1):.1f}" height="{bar}" rx="2" '
                     f'fill="#2f5d8a"><title>{escape(month)}: {count:,} {escape(unit)}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{base + 26}" text-anchor="middle" class="tick">'
                         f"{escape(month)}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers, and text through escape()


def _severity_bar(counts: Counter[str]) -> Markup:
    total = sum(counts.values())
    if not total:
        return Markup('<p class="empty">Nothing to show.</p>')
    parts = ['<svg class="chart" viewBox="0 0 600 40" role="img" preserveAspectRatio="xMinYMin meet">']
    x = 0.0
    for name in SEVERITIES:
        if counts[name]:
            width = 600 * counts[name] / total
            parts.append(f'<rect x="{x:.1f}" y="4" width="{width:.1f}" height="32" fill="{SEVERITY_COLOURS[name]}">'
                         f"<title>{name}: {counts[name]:,}</title></rect>")
            x += width
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers, and text through escape()


def _month(finding: Finding) -> str | None:
    return finding.date[:7] if finding.date else None


def _months_between(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    out: list[str] = []
    while f"{year:04d}-{month:02d}" <= last and len(out) < 600:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def context(findings: Iterable[Finding], totals: Totals) -> dict[str, object]:
    """Everything the template shows, computed once."""
    listed = list(findings)
    messages: dict[str, Finding] = {}
    for finding in listed:
        messages.setdefault(finding.where, finding)
    per_month = Counter(m for m in (_month(f) for f in messages.values()) if m)
    months = _months_between(min(per_month), max(per_month)) if per_month else []
    pairs = Counter(f"{f.domain} → {f.intended or '(no such domain: mail bounces)'}" for f in listed)
    senders = Counter(f.sender or "(unknown sender)" for f in messages.values())
    severity = Counter(f.severity for f in messages.values())
    rank = {name: i for i, name in enumerate(SEVERITIES)}
    ordered = sorted(listed, key=lambda f: (rank.get(f.severity, 9), f.date or ""), reverse=False)
    rows = [[f.date[:10] if f.date else "", f.sender, f.recipient, f.intended or "", f.verdict, f.severity,
             f.raised_by, f.reason, f.where, f.message_id or ""] for f in ordered[:TABLE_ROWS]]
    data = json.dumps(rows, ensure_ascii=False).replace("</", "<\\/")
    dates = sorted(f.date for f in listed if f.date)
    return {
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "totals": totals,
        "findings": len(listed),
        "messages": len(messages),
        "domains": len({f.domain for f in listed}),
        "senders": len(senders),
        "period": f"{dates[0][:10]} to {dates[-1][:10]}" if dates else "no dates",
        "severity": severity,
        "severities": SEVERITIES,
        "colours": SEVERITY_COLOURS,
        "chart_months": columns([(m, per_month[m]) for m in months]),
        "chart_domains": bars(pairs.most_common(TOP), colour="#8a3ffc"),
        "chart_senders": bars(senders.most_common(TOP), colour="#1f7a8c"),
        "chart_severity": _severity_bar(severity),
        "rows": Markup(data),  # noqa: S704 - JSON in a script element of type application/json, "</" escaped
        "shown": len(rows),
        "verdicts": sorted({f.verdict for f in listed}),
    }


def write_report(path: Path, findings: Iterable[Finding], totals: Totals) -> Path:
    env = jinja2.Environment(loader=jinja2.PackageLoader("rcptguard", "audit"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html.j2").render(**context(findings, totals))
    temporary = path.with_suffix(".html.new")
    temporary.write_text(html, "utf-8")
    temporary.replace(path)
    return path
