"""The scan's HTML report in headless Chromium: no console errors, no network requests, charts drawn, filters that
work, readable at phone width.

Screenshots go to $RCPTGUARD_ARTIFACTS/scan-report (default: artifacts/scan-report at the top of the repository).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rcptguard.audit.findings import read_findings
from rcptguard.audit.report import Totals, write_report
from rcptguard.audit.scan import ScanOptions, State, run_scan
from rcptguard.policy import load_policy
from tests.support.archives import Sent, mbox_bytes

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("RCPTGUARD_ARTIFACTS", Path(__file__).parents[2] / "artifacts")) / "scan-report"
T0 = dt.datetime(2024, 1, 15, 9, 0, tzinfo=dt.UTC)
BODIES = ["Lunch on Friday?\n", "Crew list: passport number P1234567, SSN 536-22-8726\n",
          "CUI\nThe schedule for the exercise.\n", "Flight AF 1234 departs 14 Mar 2024 from CDG, gate 32.\n"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scan of 18 months of mail with slips to several lookalikes, by several senders, of every severity."""
    root = tmp_path_factory.mktemp("archive")
    slips = ["army.ml", "navy.ml", "af.ml", "corp.exmaple", "usmc.ml"]
    messages = []
    for number in range(400):
        when = T0 + dt.timedelta(days=number * 1.4)
        to = f"p{number % 9}@{slips[number % 5]}" if number % 4 == 0 else f"p{number % 9}@army.mil"
        messages.append(Sent(f"sender{number % 3}.with.a.long.name@corp.example", (to,), when,
                             body=BODIES[(number // 4) % 4], message_id=f"{number}@corp.example").build())
    (root / "sent.mbox").write_bytes(mbox_bytes(messages))
    out = root / "out"
    policy = load_policy(None).with_domains(("mil", "corp.example"), ("partner.com",))
    result = run_scan([root / "sent.mbox"], policy, out, ScanOptions(jobs=1))
    assert len(result.findings) == 100
    state = State.load(out)
    totals = Totals(state.messages, dict(state.months), dict(result.sources), dict(result.problems))
    return write_report(out / "report.html", read_findings(out / "findings.jsonl"), totals)


@pytest.mark.parametrize("width", [1280, 390])
def test_report_in_chromium(report: Path, browser: Browser, width: int) -> None:
    """The report opens from the file with no console error and no request but itself; its four charts are drawn;
    the table's filters narrow it; at phone width nothing scrolls sideways. A screenshot is kept."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type in {"error", "warning"} else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    assert errors == []
    assert requests == [report.as_uri()]
    assert page.locator("svg.chart").count() == 2  # months and severity; the top lists are HTML bars
    assert page.locator("svg.chart rect").count() > 18
    assert page.locator(".bars .bar-row").count() == 5 + 3
    assert "army.ml → army.mil" in page.locator(".bars").first.inner_text()
    assert page.locator("#count").inner_text() == "100 of 100 findings"
    assert page.locator("#rows tr").count() == 100
    page.fill("#q", "navy.ml")
    assert page.locator("#count").inner_text() == "20 of 100 findings"
    page.select_option("#severity", "high")
    filtered = page.locator("#count").inner_text()
    assert filtered.endswith("of 100 findings")
    assert 0 < int(filtered.split()[0]) < 20
    assert all(cell == "high" for cell in page.locator("#rows .sev").all_inner_texts())
    page.fill("#q", "")
    page.select_option("#severity", "")
    scroll = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll[0] <= scroll[1], f"the report is {scroll[0]} px wide at {width} px"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"report-{width}.png"), full_page=True)
    assert errors == []
    context.close()
