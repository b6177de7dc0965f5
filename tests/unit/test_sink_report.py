"""The sink's report (per day, intended domain, sending domain and server; text, JSONL, CSV, HTML) and its purge, from
the command line against a store with rows of several days."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from rcptguard.cli import main
from rcptguard.sink_report import Summary, html, tally
from rcptguard.store import Store
from rcptguard.store.sink import Refusal, Refusals

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def refusal(days_ago: float, typo: str = "army.ml", intended: str = "army.mil", sender: str = "partner.example",
            ip: str = "192.0.2.1", helo: str = "mx.partner.example") -> Refusal:
    return Refusal(NOW - dt.timedelta(days=days_ago), ip, helo, sender, None, typo, intended)


@pytest.fixture
def filled(store: Store, db_url: str) -> str:
    Refusals(store).add([
        refusal(40),  # older than the 30 days kept
        refusal(2), refusal(2), refusal(2, "navy.ml", "navy.mil"),
        refusal(1, sender="travel.example", ip="198.51.100.7", helo="=cmd|' /c calc'!A1"),
        refusal(0, "af.ml", "af.mil", sender=""),
    ])
    return db_url


def run(*args: str) -> str:
    result = CliRunner().invoke(main, ["sink", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_text_report_adds_up_per_day_intended_sender_and_server(filled: str) -> None:
    out = run("report", "--db", filled, "--since", "7d")
    assert out.startswith(f"5 misdirected recipients refused, {(NOW - dt.timedelta(days=2)).date()} to "
                          f"{NOW.date()}.")
    assert re.search(r"Per intended domain:\n  army\.mil\s+3  typed as army\.ml\n  af\.mil\s+1  typed as af\.ml\n"
                     r"  navy\.mil\s+1  typed as navy\.ml\n", out), out
    assert re.search(r"  partner\.example\s+3  meant army\.mil, navy\.mil", out), out
    assert re.search(r"  192\.0\.2\.1 \(mx\.partner\.example\)\s+4  for partner\.example, <>", out), out
    everything = run("report", "--db", filled)
    assert everything.startswith("6 misdirected recipients refused")


def test_jsonl_and_csv_carry_one_row_per_group(filled: str) -> None:
    rows = [json.loads(line) for line in run("report", "--db", filled, "--since", "7d", "--format", "jsonl")
            .splitlines()]
    day = str((NOW - dt.timedelta(days=2)).date())
    assert rows[0] == {"day": day, "intended": "army.mil", "typo": "army.ml", "sender_domain": "partner.example",
                       "client_ip": "192.0.2.1", "helo": "mx.partner.example", "count": 2}
    assert sum(row["count"] for row in rows) == 5
    table = list(csv.DictReader(io.StringIO(run("report", "--db", filled, "--since", "7d", "--format", "csv"))))
    assert [int(r["count"]) for r in table] == [row["count"] for row in rows]
    assert [r["helo"] for r in table if r["sender_domain"] == "travel.example"] == ["'=cmd|' /c calc'!A1"]


def test_html_is_one_self_contained_page(filled: str, tmp_path: Path) -> None:
    """Inline style and SVG, no script, nothing fetched; names escaped."""
    out = tmp_path / "report.html"
    run("report", "--db", filled, "--since", "2026-01-01", "--format", "html", "-o", str(out))
    page = out.read_text(encoding="utf-8")
    for outside in ("<script", "src=", "href=", "url("):
        assert outside not in page
    assert '<meta name="viewport"' in page
    assert page.count("<rect") == 41  # a bar for every day from the first to the last
    assert "=cmd|&#39; /c calc&#39;!A1" in page
    assert '<td data-label="Intended domain">army.mil</td><td data-label="Refused">4</td>' in page  # 40 days ago too
    assert "<style>" in page  # the scan's report style, shared


def test_an_empty_report_says_so() -> None:
    assert Summary.of(tally([])).total == 0
    assert "No misdirected mail was refused" in html(Summary.of([]))


def test_quiet_days_are_in_the_chart() -> None:
    summary = Summary.of(tally([refusal(5), refusal(0)]))
    assert [d.count for d in summary.days] == [1, 0, 0, 0, 0, 1]


def test_purge_deletes_what_is_older_than_keep_days(filled: str, tmp_path: Path) -> None:
    assert run("purge", "--db", filled, "--dry-run") == "would delete 1 refusal record older than 30 days\n"
    assert run("purge", "--db", filled) == "deleted 1 refusal record older than 30 days\n"
    assert run("purge", "--db", filled) == "deleted 0 refusal records older than 30 days\n"
    config = tmp_path / "sink.toml"
    config.write_text(f'[db]\nurl = "{filled}"\n\n[sink]\nintended = ["mil"]\nkeep_days = 1.5\n', encoding="utf-8")
    assert run("purge", "--config", str(config)) == "deleted 3 refusal records older than 1.5 days\n"


def test_report_and_purge_never_create_a_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sink", "report", "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert not (tmp_path / "none.db").exists()


def test_a_bad_since_is_a_usage_error(filled: str) -> None:
    result = CliRunner().invoke(main, ["sink", "report", "--db", filled, "--since", "last week"])
    assert result.exit_code == 2
    assert "expected a date such as 2026-11-01 or a time ago such as 7d" in result.output


def test_serving_without_domains_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "sink.toml"
    config.write_text("[sink]\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["sink", "--config", str(config), "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert result.exit_code == 2
    assert "the sink answers for no domain" in result.output


def test_check_prints_what_senders_will_read(tmp_path: Path) -> None:
    """`sink check` answers from the config alone (no store, no server): the refusal, not served, malformed."""
    config = tmp_path / "sink.toml"
    config.write_text('[sink]\nintended = ["mil"]\ndomains = { "examp1e.com" = "example.com" }\n', encoding="utf-8")
    out = run("check", "--config", str(config), "j.doe@army.ml", "x@examp1e.com", "x@gmail.com", "x@@army.ml")
    assert out.splitlines() == [
        "j.doe@army.ml",
        ("  550 5.1.2 army.ml is not army.mil -- your message was NOT delivered. Did you mean j.doe@army.mil? Check "
         "the address and send it again."),
        "x@examp1e.com",
        ("  550 5.1.2 examp1e.com is not example.com -- your message was NOT delivered. Did you mean x@example.com? "
         "Check the address and send it again."),
        "x@gmail.com",
        "  550 5.7.1 This server receives no mail for that domain; relaying denied",
        "x@@army.ml",
        "  553 5.1.3 The address is malformed: the address has more than one @.",
    ]
    assert not list(tmp_path.glob("*.db"))
