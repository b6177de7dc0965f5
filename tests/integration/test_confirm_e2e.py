"""End to end with real parts: Postfix -> relay -> quarantine -> notice -> Chromium on the page -> delivery."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import re
import smtplib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.conftest import MakePostfix
from tests.integration.postfix import PostfixInstance
from tests.integration.test_relay_postfix import documented, send
from tests.support.admin import ADMIN, ADMIN_HASH, browser_sign_in
from tests.support.processes import RCPTGUARD, free_port, running
from tests.support.sink import Message, RecordingSink

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("RCPTGUARD_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))


@dataclass
class Stack:
    postfix: PostfixInstance
    sink: RecordingSink
    db: str
    reinject: int
    config: Path

    def notice(self, count: int = 1) -> Message:
        """The latest notice to the sender among the first `count` ones."""
        notices = []
        deadline = time.monotonic() + 60
        while len(notices) < count:
            notices = [m for m in self.sink.messages if m.rcpt_tos == ("me@example-corp.com",)]
            if time.monotonic() > deadline:
                raise AssertionError(f"no notice: {self.sink.messages}")
            time.sleep(0.1)
        return notices[count - 1]

    def delivered_to(self, address: str) -> list[Message]:
        return [m for m in self.sink.messages if address in m.rcpt_tos]


def text_of(message: Message) -> str:
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    return "".join(str(part.get_content()) for part in parsed.walk() if part.get_content_maintype() == "text")


def link_in(message: Message) -> str:
    links = set(re.findall(r"http://127\.0\.0\.1:\d+/confirm/[A-Za-z0-9_-]+", text_of(message)))
    assert len(links) == 1, links
    return links.pop()


@contextlib.contextmanager
def started(postfix: MakePostfix, sink: RecordingSink, tmp_path: Path, extra: str = "") -> Iterator[Stack]:
    """Postfix with the relay as content filter, the web page, one store; the sink gets mail and notices. `extra`:
    more of the config file."""
    relay_port, reinject, web_port = free_port(), free_port(), free_port()
    main, master = documented(relay_port, reinject)
    instance = postfix(main_cf=main, master_cf_extra=master)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    config = tmp_path / "rcptguard.toml"
    config.write_text(f'protect = ["mil", "example-corp.com"]\nknown = ["gmail.com"]\n\n[relay]\n'
                      f'next_hop = "127.0.0.1:{reinject}"\n\n[web]\nbase_url = "http://127.0.0.1:{web_port}"\n'
                      f'secret = "an e2e test secret of enough length"\n{extra}', encoding="utf-8")
    relay = [RCPTGUARD, "relay", "--config", str(config), "--listen", f"127.0.0.1:{relay_port}", "--db", db]
    web = [RCPTGUARD, "web", "--config", str(config), "--listen", f"127.0.0.1:{web_port}", "--db", db]
    with running(relay, relay_port, tmp_path / "relay.log"), running(web, web_port, tmp_path / "web.log"):
        yield Stack(instance, sink, db, reinject, config)


@pytest.fixture
def stack(postfix: MakePostfix, sink: RecordingSink, tmp_path: Path) -> Iterator[Stack]:
    with started(postfix, sink, tmp_path) as made:
        yield made


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_send_to_the_suggestion_instead(stack: Stack, browser: Browser) -> None:
    """The sender follows the notice's link, chooses "Send to army.mil instead", and the message reaches
    x@army.mil exactly once; x@army.ml never gets it."""
    assert send(stack.postfix, "x@army.ml", subject="crew list") == {}
    notice = stack.notice()
    body = text_of(notice)
    assert "army.ml looks like army.mil" in body
    assert "Passport numbers" not in body
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.goto(link_in(notice))
    assert page.get_by_role("heading").first.is_visible()
    assert "crew list" in page.content()
    shot(page, "confirm-page-phone")
    page.get_by_role("button", name="Send to army.mil instead").click()
    page.wait_for_load_state()
    assert page.url == link_in(notice)  # redirect-after-POST, back to the link's own page
    # The page reloads itself (no script) until the delivery has ended, then says when it was accepted.
    page.get_by_text("Sent to x@army.mil.").wait_for(timeout=30_000)
    shot(page, "outcome-sent")
    assert "Your organisation's mail server accepted it for delivery on " in page.text_content("main")
    deadline = time.monotonic() + 60
    while not stack.delivered_to("x@army.mil"):
        assert time.monotonic() < deadline, stack.sink.messages
        time.sleep(0.1)
    stack.postfix.wait_queue_empty()
    time.sleep(1)
    (delivered,) = stack.delivered_to("x@army.mil")
    assert b"Passport numbers" in delivered.data
    assert stack.delivered_to("x@army.ml") == []
    page.go_back()
    page.reload()
    page.close()
    time.sleep(0.5)
    assert len(stack.delivered_to("x@army.mil")) == 1


def test_the_wrong_person_at_a_partner_sent_to_the_one_meant(postfix: MakePostfix, sink: RecordingSink,
                                                             tmp_path: Path, browser: Browser) -> None:
    """The sender writes to nils.martin@partner.com; a message that greets Nils goes to olga.smith@partner.com
    (an operator's `odd_greeting = 8`: held). The notice and the page say the recipient may not be the one meant,
    not that an address looks mistyped; "Send to nils.martin@partner.com instead" in Chromium delivers it there
    exactly once, and Olga never gets it."""
    with started(postfix, sink, tmp_path, "\n[history]\nodd_greeting = 8.0\n") as stack:
        wrong_person_sent_to_the_one_meant(stack, browser)


def wrong_person_sent_to_the_one_meant(stack: Stack, browser: Browser) -> None:
    for n in range(3):
        assert greet(stack.postfix, "nils.martin@partner.com", "Nils", subject=f"figures {n}") == {}
    deadline = time.monotonic() + 60
    while len(stack.delivered_to("nils.martin@partner.com")) < 3 or not _learned(stack, "nils.martin@partner.com"):
        assert time.monotonic() < deadline, stack.sink.messages
        time.sleep(0.2)
    assert greet(stack.postfix, "olga.smith@partner.com", "Nils", subject="Q3 figures") == {}
    notice = stack.notice()
    body = " ".join(text_of(notice).split())
    assert "The message greets Nils, and nobody it goes to is Nils." in body
    assert "because the recipient may not be the one you meant" in body
    assert "mistyped" not in body
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(link_in(notice))
    assert "waiting because the recipient may not be the one you meant" in " ".join(page.text_content("main").split())
    shot(page, "confirm-page-wrong-person")
    field = page.get_by_label(re.compile(r"anyway, type olga\.smith \(the part before the @\)"))
    field.fill("partner.com")  # the domain is right: typing it again says nothing of the person; refused
    page.get_by_role("button", name="Send to olga.smith@partner.com anyway").click()
    page.wait_for_load_state()
    assert page.get_by_role("alert").text_content() == "To send it anyway, type olga.smith exactly. Nothing was sent."
    page.get_by_role("button", name="Send to nils.martin@partner.com instead").click()
    page.wait_for_load_state()
    page.get_by_text("Sent to nils.martin@partner.com.").wait_for(timeout=30_000)
    page.close()
    deadline = time.monotonic() + 60
    while len(stack.delivered_to("nils.martin@partner.com")) < 4:
        assert time.monotonic() < deadline, stack.sink.messages
        time.sleep(0.1)
    stack.postfix.wait_queue_empty()
    time.sleep(1)
    held = [m for m in stack.delivered_to("nils.martin@partner.com") if b"Q3 figures" in m.data]
    assert len(held) == 1
    assert stack.delivered_to("olga.smith@partner.com") == []


def greet(instance: PostfixInstance, to: str, name: str, *, subject: str) -> dict[str, tuple[int, bytes]]:
    """A message through Postfix whose opening greets `name`."""
    msg = EmailMessage()
    msg["From"] = "me@example-corp.com"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(f"Hi {name},\n\nthe figures you asked for.\n")
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        return smtp.send_message(msg, from_addr="me@example-corp.com", to_addrs=[to])


def _learned(stack: Stack, address: str) -> bool:
    """Whether the store (so the relay's history, which wrote it) has the sender's messages to `address`."""
    shown = subprocess.run([RCPTGUARD, "known", "show", address.rpartition("@")[2], "--db", stack.db],
                           capture_output=True, text=True, check=False)
    return address in shown.stdout


def test_page_and_admin_fit_320_to_1280_px(stack: Stack, browser: Browser, tmp_path: Path) -> None:
    """The confirmation page and the paged admin list fit widths from 320 to 1280 px without sideways
    scrolling; the list's filter is labelled."""
    assert send(stack.postfix, "x@army.ml", subject="a subject long enough to wrap on a narrow phone screen") == {}
    link = link_in(stack.notice())
    admin_port = free_port()
    config = tmp_path / "admin.toml"
    shared = re.sub(r'base_url = "[^"]*"', f'base_url = "http://127.0.0.1:{admin_port}"',
                    stack.config.read_text(encoding="utf-8"))  # its redirects (after signing in) come back to it
    config.write_text(shared + f'admin_user = "{ADMIN[0]}"\nadmin_password_hash = "{ADMIN_HASH}"\n', encoding="utf-8")
    admin = [RCPTGUARD, "web", "--config", str(config), "--listen", f"127.0.0.1:{admin_port}", "--db", stack.db]
    with running(admin, admin_port, tmp_path / "admin.log"):
        for width in (320, 768, 1280):
            context = browser.new_context(viewport={"width": width, "height": 800})
            page = context.new_page()
            browser_sign_in(page, f"http://127.0.0.1:{admin_port}")
            page.goto(link)
            assert page.evaluate("document.scrollingElement.scrollWidth") <= width
            shot(page, f"confirm-page-{width}")
            page.goto(f"http://127.0.0.1:{admin_port}/admin?order=newest")
            assert page.get_by_label("State").is_visible()
            assert page.get_by_text("1 recipient held; showing 1–1, newest first").is_visible()
            assert page.evaluate("document.scrollingElement.scrollWidth") <= width
            shot(page, f"admin-list-{width}")
            context.close()


def test_dont_send(stack: Stack, browser: Browser) -> None:
    """"Don't send" on the page: the message is never delivered to anyone."""
    assert send(stack.postfix, "x@army.ml", subject="do not send") == {}
    page = browser.new_page()
    page.goto(link_in(stack.notice()))
    page.get_by_role("button", name="Don't send").click()
    page.wait_for_load_state()
    shot(page, "outcome-not-sent")
    assert "not" in page.content().lower()
    time.sleep(3)
    assert stack.delivered_to("x@army.ml") == stack.delivered_to("x@army.mil") == []
    result = subprocess.run([RCPTGUARD, "quarantine", "list", "--state", "cancelled", "--db", stack.db,
                             "--format", "jsonl"], capture_output=True, text=True, check=True)
    assert '"recipient": "x@army.ml"' in result.stdout
    page.close()


def test_left_to_expire_tells_the_sender(stack: Stack) -> None:
    """Nobody chooses: on expiry the sender gets a notice that the message was not sent, without its body."""
    assert send(stack.postfix, "x@army.ml", subject="forgotten") == {}
    stack.notice()
    result = subprocess.run([RCPTGUARD, "quarantine", "expire", "--retention", "0", "--db", stack.db,
                             "--next-hop", f"127.0.0.1:{stack.reinject}"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    expired = stack.notice(2)
    text = text_of(expired)
    assert "was NOT sent" in text or "was not sent" in text.lower()
    assert "x@army.ml" in text
    assert "Passport numbers" not in text
    assert stack.delivered_to("x@army.ml") == stack.delivered_to("x@army.mil") == []


def test_send_anyway_teaches(stack: Stack, browser: Browser) -> None:
    """"Send to gmial.com anyway" on the page records the sender's decision: the same sender's next message to
    gmial.com goes through Postfix and the relay without a hold or a notice; `known show` names the confirmation."""
    assert send(stack.postfix, "j@gmial.com", subject="first") == {}
    page = browser.new_page()
    page.goto(link_in(stack.notice()))
    page.get_by_label(re.compile("anyway, type")).fill("gmial.com")  # the page asks for the domain, typed again
    page.get_by_role("button", name="Send to gmial.com anyway").click()
    page.wait_for_load_state()
    page.get_by_text("Sent to j@gmial.com.").wait_for(timeout=30_000)
    shot(page, "outcome-sent-anyway")
    page.close()
    assert send(stack.postfix, "k@gmial.com", subject="second") == {}
    deadline = time.monotonic() + 60
    while not stack.delivered_to("k@gmial.com"):
        assert time.monotonic() < deadline, stack.sink.messages
        time.sleep(0.1)
    notices = [m for m in stack.sink.messages if m.rcpt_tos == ("me@example-corp.com",)]
    assert len(notices) == 1  # the first hold's only
    shown = subprocess.run([RCPTGUARD, "known", "show", "gmial.com", "--db", stack.db, "--format", "jsonl"],
                           capture_output=True, text=True, check=True)
    [sender] = json.loads(shown.stdout)["top_senders"]
    assert sender["sender"] == "me@example-corp.com"
    assert sender["confirmed_at"] is not None
