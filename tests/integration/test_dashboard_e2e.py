"""The admin dashboard and the holds table in headless Chromium, at desktop and phone width: the charts drawn,
nothing wider than the screen, a bulk cancel of what a filter shows and a bulk release of ticked holds, each
through its confirmation. Screenshots go to $RCPTGUARD_ARTIFACTS/dashboard (default: artifacts/dashboard)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rcptguard.store import Store
from rcptguard.store.quarantine import Quarantine
from tests.integration.test_page_widths import ARTIFACTS, admin_site, check, long_address, recipient
from tests.support.admin import browser_sign_in
from tests.support.sink import RecordingSink
from tests.unit.test_web_dashboard import fill

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.integration

FOLDER = ARTIFACTS.parent / "dashboard"
WIDTHS = (1280, 390)


@pytest.fixture
def site(sink: RecordingSink, tmp_path: Path) -> Iterator[str]:
    """`rcptguard web` on a store of 120 holds over three weeks, and two more with 90-character addresses."""
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store.open(db)
    quarantine = Quarantine(store)
    fill(quarantine)
    quarantine.hold(mail_from="me@example-corp.com", content=b"Subject: long\r\n\r\nbody\r\n", client="mua",
                    recipients=[recipient(long_address("first")), recipient(long_address("second"))])
    store.close()
    with admin_site(tmp_path, sink, db) as url:
        yield url


def count_held(page: Page, url: str, query: str = "") -> int:
    page.goto(f"{url}/admin?{query}")
    if "Nothing is held." in page.inner_text("main"):
        return 0
    found = re.search(r"([\d,]+) recipients? held", page.inner_text("#count"))
    assert found, page.inner_text("main")
    return int(found[1].replace(",", ""))


def review_cancel_of_army_ml(page: Page, url: str) -> None:
    """On the list filtered to army.ml: cancel every held recipient it shows, up to the review page."""
    page.goto(f"{url}/admin?domain=army.ml")
    page.get_by_label("Cancel (never send)", exact=True).check()
    page.get_by_label(re.compile("every held recipient this list shows")).check()
    page.get_by_role("button", name="Review before anything is done").click()


def test_dashboard_and_bulk_actions_at_desktop_and_phone_width(site: str, browser: Browser) -> None:
    """At 1280 and 390 px: the dashboard shows its charts and tables without sideways scrolling; the list
    filtered by domain; a bulk cancel of every held army.ml recipient (desktop) and a bulk release of two
    ticked ones (phone) change nothing until confirmed, then change exactly those."""
    print(f"screenshots in {FOLDER}")
    pages = {width: browser.new_context(viewport={"width": width, "height": 900}).new_page() for width in WIDTHS}
    for width, page in pages.items():
        browser_sign_in(page, site)
        page.goto(f"{site}/admin/dashboard")
        assert page.locator("svg[role=img]").count() >= 5
        assert "Lookalike domains held most often" in page.inner_text("main")
        check(page, "dashboard", width, FOLDER)
        page.goto(f"{site}/admin?state=all&domain=gmial.com&order=newest&size=20")
        check(page, "admin-filtered", width, FOLDER)

    desktop = pages[1280]
    before = count_held(desktop, site)
    army = count_held(desktop, site, "domain=army.ml")
    assert army > 0
    review_cancel_of_army_ml(desktop, site)
    assert f"these {army} held recipients" in desktop.inner_text("#summary")
    check(desktop, "bulk-review", 1280, FOLDER)
    assert count_held(desktop, site) == before  # reviewing changed nothing
    review_cancel_of_army_ml(desktop, site)  # again, not by the back button: a no-store answer to a POST
    desktop.get_by_role("button", name=re.compile(f"Yes: cancel \\(never send\\) {army}")).click()
    assert f"{army} recipients cancelled." in desktop.inner_text("main")
    check(desktop, "bulk-done", 1280, FOLDER)
    assert count_held(desktop, site, "domain=army.ml") == 0
    assert count_held(desktop, site) == before - army

    phone = pages[390]
    phone.goto(f"{site}/admin?domain=gmial.com")
    boxes = phone.get_by_role("checkbox")
    boxes.nth(0).check()
    boxes.nth(1).check()
    phone.get_by_label("Release", exact=True).check()
    phone.get_by_role("button", name="Review before anything is done").click()
    assert "these 2 held recipients" in phone.inner_text("#summary")
    check(phone, "bulk-review", 390, FOLDER)
    phone.get_by_role("button", name=re.compile("Yes: release 2")).click()
    assert "2 recipients released." in phone.inner_text("main")
    assert count_held(phone, site) == before - army - 2
    for page in pages.values():
        page.context.close()
