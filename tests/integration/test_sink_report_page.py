"""The sink's HTML report in headless Chromium at a phone's width and a desktop's: the page never scrolls sideways
(wide tables scroll inside their card), and the chart is drawn. Screenshots go to artifacts/."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rcptguard.sink_report import Summary, html, tally
from rcptguard.store.sink import Refusal

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).parents[2] / "artifacts"
LONG = "procurementandlogisticsdirectorateofthejointstaffheadquarters"  # 62 letters, nowhere to wrap


def test_the_report_reads_on_a_phone(browser: Browser, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [Refusal(now - dt.timedelta(days=d % 30, minutes=d), f"192.0.2.{d % 250}", f"mx{d}.{LONG}.example",
                    f"{LONG}{d % 7}.example", None, f"{LONG}.ml" if d % 2 else "army.ml",
                    f"{LONG}.mil" if d % 2 else "army.mil") for d in range(300)]
    page_file = tmp_path / "report.html"
    summary = Summary.of(tally(rows))
    page_file.write_text(html(summary), encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (320, 1280):
        context = browser.new_context(viewport={"width": width, "height": 800})
        try:
            page = context.new_page()
            page.goto(page_file.as_uri())
            sizes = page.evaluate("({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,"
                                  " bars: document.querySelectorAll('svg rect').length,"
                                  " chart: document.querySelector('svg').getBoundingClientRect().width})")
            page.screenshot(path=str(ARTIFACTS / f"sink-report-{width}.png"), full_page=True)
        finally:
            context.close()
        assert sizes["scroll"] <= sizes["inner"], (width, sizes)
        assert sizes["bars"] == len(summary.days) >= 30
        assert 0 < sizes["chart"] <= width
