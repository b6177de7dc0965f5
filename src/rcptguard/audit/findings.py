"""Findings: one misdirected recipient of one message, where to find the message, and what it carried.

Written one JSON object a line (`findings.jsonl`) and one CSV row (`findings.csv`), the same fields in the same
order, so that an incident team can pull the messages (`where`: `file:byte-offset` in an mbox, the file of a
Maildir or .eml, `file:line` in a log or trace export). The sensitive values themselves are never written: only
which signal raised the severity, in which part, by which pattern.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

FIELDS_NOT_IN_CSV = ("signals",)


@dataclass(frozen=True, slots=True)
class Finding:
    """One misdirected recipient of one message."""

    message_id: str | None
    date: str | None  # ISO 8601, UTC
    sender: str
    recipient: str
    domain: str  # the recipient's domain as read (Unicode form)
    intended: str | None  # the domain it was probably meant for
    suggestion: str | None
    verdict: str  # warn, hold or reject: what the guard would have done
    score: float
    reason: str
    severity: str  # none, low, medium, high; "unknown" where the archive holds no content (logs, traces)
    raised_by: str  # "PASSPORT (passport machine-readable zone) in attachment crew.pdf; …"
    where: str
    format: str
    status: str | None  # the delivery's status in logs and traces (sent, bounced…)
    domain_messages: int  # messages to this domain in the archive scanned
    history: str = ""  # what the archive shows of the domain: "30 messages from 7 senders over 270 days, …"
    signals: tuple[str, ...] = ()  # the guard's signal names

    @property
    def key(self) -> tuple[str, str]:
        return self.where, self.recipient

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["signals"] = list(self.signals)
        return out

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Finding:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["signals"] = tuple(values.get("signals") or ())  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


CSV_FIELDS = [f.name for f in fields(Finding) if f.name not in FIELDS_NOT_IN_CSV]


def read_findings(path: Path) -> Iterator[Finding]:
    """The findings of a `findings.jsonl` (none when it does not exist); a damaged line is skipped."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                yield Finding.from_json(json.loads(line))
            except (ValueError, TypeError):
                continue


def append_findings(folder: Path, findings: Iterable[Finding]) -> int:
    """Append to `findings.jsonl` and `findings.csv` in the folder (the CSV gets its header when new)."""
    jsonl, table = folder / "findings.jsonl", folder / "findings.csv"
    new_table = not table.exists() or table.stat().st_size == 0
    written = 0
    with jsonl.open("a", encoding="utf-8") as lines, table.open("a", encoding="utf-8", newline="") as rows:
        writer = csv.DictWriter(rows, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new_table:
            writer.writeheader()
        for finding in findings:
            lines.write(json.dumps(finding.to_json(), ensure_ascii=False) + "\n")
            writer.writerow({k: _cell(v) for k, v in finding.to_json().items()})
            written += 1
    return written


def _cell(value: object) -> object:
    """A CSV cell; text starting like a formula is quoted with an apostrophe so that a spreadsheet shows it."""
    if isinstance(value, str) and value[:1] in {"=", "+", "-", "@"}:
        return "'" + value
    return value
