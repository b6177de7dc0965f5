"""The pages in headless Chromium with 90-character addresses: no sideways scrolling, every button's label inside it.

Screenshots go to $RCPTGUARD_ARTIFACTS/widths (default: artifacts/widths at the top of the repository).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.quarantine import HeldRecipient, Quarantine
from tests.support.admin import ADMIN, ADMIN_HASH, browser_sign_in
from tests.support.processes import RCPTGUARD, free_port, running
from tests.support.sink import RecordingSink

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("RCPTGUARD_ARTIFACTS", Path(__file__).parents[2] / "artifacts")) / "widths"
WIDTHS = (320, 390, 1280)
DOMAIN = "procurementandlogisticsdirectorateofthejointstaff.army.ml"  # no hyphen or space to wrap at


def long_address(name: str) -> str:
    """A 90-character address on DOMAIN."""
    local = f"{name}.quartermastergeneraloffice"
    local = (local + "x" * 90)[:90 - len(DOMAIN) - 1]
    address = f"{local}@{DOMAIN}"
    assert len(address) == 90
    return address


def recipient(address: str) -> HeldRecipient:
    local, _, domain = address.rpartition("@")
    intended = domain.removesuffix(".ml") + ".mil"
    reason = f"{domain} looks like {intended}: .ml is Mali's country domain, one letter short of .mil."
    return HeldRecipient(address=address, intended=intended, suggestion=f"{local}@{intended}", reason=reason,
                         signals=[{"name": "TLD_SLIP", "score": 7.0, "evidence": {}}], score=11.0)


def content(subject: str) -> bytes:
    return (f"From: me@example-corp.com\r\nSubject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@x>\r\n"
            f"\r\nbody\r\n").encode()


@dataclass
class Site:
    url: str
    confirm: str  # the sender's page of a message with two held recipients, one of them 90 characters long
    admin_cancel: list[str]  # a held 90-character recipient for the admin to cancel at each width


@pytest.fixture
def site(sink: RecordingSink, tmp_path: Path) -> Iterator[Site]:
    """`rcptguard web` on a store holding 90-character addresses, with the admin pages on."""
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store.open(db)
    quarantine, links = Quarantine(store), Links(store)
    sender_holds = quarantine.hold(mail_from="me@example-corp.com", content=content("crew list"),
                                   recipients=[recipient(long_address("first")), recipient("c@army.ml")])
    token = links.issue(sender_holds[0].message_id, dt.timedelta(days=7))
    admin_holds = quarantine.hold(mail_from="me@example-corp.com", content=content("for the admin"),
                                  recipients=[recipient(long_address(f"admin{width}")) for width in WIDTHS])
    store.close()
    with admin_site(tmp_path, sink, db) as url:
        yield Site(url, f"{url}/confirm/{token}", [hold.id for hold in admin_holds])


@contextlib.contextmanager
def admin_site(tmp_path: Path, sink: RecordingSink, db: str) -> Iterator[str]:
    """`rcptguard web` as its own process on the store at `db`, with the admin pages on for ADMIN; its URL."""
    port = free_port()
    config = tmp_path / "rcptguard.toml"
    config.write_text(f'protect = ["mil"]\n\n[relay]\nnext_hop = "127.0.0.1:{sink.port}"\n\n[web]\n'
                      f'base_url = "http://127.0.0.1:{port}"\nsecret = "a widths test secret of enough length"\n'
                      f'admin_user = "{ADMIN[0]}"\nadmin_password_hash = "{ADMIN_HASH}"\n', encoding="utf-8")
    web = [RCPTGUARD, "web", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--db", db]
    with running(web, port, tmp_path / "web.log"):
        yield f"http://127.0.0.1:{port}"


# The page's width, and each button whose label (its visible text, not the visually hidden part) leaves it.
MEASURE = """() => {
  const spill = [];
  for (const button of document.querySelectorAll('button')) {
    const box = button.getBoundingClientRect();
    const walker = document.createTreeWalker(button, NodeFilter.SHOW_TEXT);
    let left = Infinity, right = -Infinity;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.textContent.trim() || node.parentElement.closest('.vh')) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const rect of range.getClientRects()) {
        left = Math.min(left, rect.left);
        right = Math.max(right, rect.right);
      }
    }
    if (left < box.left - 0.5 || right > box.right + 0.5 || box.right > window.innerWidth + 0.5
        || button.scrollWidth > button.clientWidth) {
      spill.push({label: button.innerText, box: [box.left, box.right], text: [left, right]});
    }
  }
  return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, spill: spill};
}"""


def check(page: Page, name: str, width: int, folder: Path = ARTIFACTS) -> None:
    """No sideways scroll and no button label outside its button on this page; a screenshot as an artifact."""
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)
    measured: dict[str, Any] = page.evaluate(MEASURE)
    assert measured["scroll"] <= measured["inner"], f"{name} at {width} px is {measured['scroll']} px wide"
    assert measured["spill"] == [], f"{name} at {width} px: button labels outside their buttons"


def test_pages_fit_320_390_1280_with_90_character_addresses(site: Site, browser: Browser) -> None:
    """The sender's page (before and after a choice), the admin list and the admin's answer page have no
    horizontal scroll and keep every button's label inside the button at 320, 390 and 1280 px."""
    print(f"screenshots in {ARTIFACTS}")
    contexts = {width: browser.new_context(viewport={"width": width, "height": 800}) for width in WIDTHS}
    pages = {width: context.new_page() for width, context in contexts.items()}
    for page in pages.values():
        browser_sign_in(page, site.url)
    for width, page in pages.items():
        page.goto(site.confirm)
        assert long_address("first") in page.content()
        check(page, "confirm-before", width)
        page.goto(f"{site.url}/admin?state=held&order=newest")
        check(page, "admin-list", width)
    first = pages[WIDTHS[0]]
    first.goto(site.confirm)
    first.get_by_role("button", name=f"Don't send to {long_address('first')}").click()
    first.wait_for_load_state()
    for width, page in pages.items():
        page.goto(site.confirm)
        assert "was not sent to" in page.content()
        check(page, "confirm-after", width)
    for (width, page), hold_id in zip(pages.items(), site.admin_cancel, strict=True):
        page.goto(f"{site.url}/admin?state=held&order=newest")
        page.locator(f'section[aria-labelledby="hold-{hold_id}"] button.danger').click()
        page.wait_for_load_state()
        assert "Not sent" in page.content()
        check(page, "admin-done", width)
        page.goto(f"{site.url}/admin?state=all&order=newest")
        check(page, "admin-all", width)
        page.goto(f"{site.url}/admin/login")
        check(page, "admin-sign-in", width)
    for context in contexts.values():
        context.close()
