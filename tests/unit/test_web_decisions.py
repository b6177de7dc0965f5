"""What the pages say about decisions, the log line of each decision, and the sender's notice of an admin's one."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from rcptguard.delivery import NextHop
from rcptguard.guard import Guard
from rcptguard.logs import JsonFormatter
from rcptguard.notify import Notifier
from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Hold, Quarantine
from rcptguard.web import create_app
from rcptguard.web.settings import WebSettings
from tests.support.admin import ADMIN, ADMIN_HASH, sign_in
from tests.support.sink import Message, RecordingSink
from tests.unit import test_web as shared
from tests.unit.test_web import (
    BASE_URL,
    LOCAL,
    SECRET,
    SENDER,
    build_app,
    form,
    held,
    hold_message,
    issue,
    redirected_to_page,
    settled,
)

if TYPE_CHECKING:
    from fastapi import FastAPI



@pytest.fixture
def quarantine(store: Store) -> Quarantine:
    """A quarantine whose notices of an admin's decisions go out at once (no grace)."""
    return Quarantine(store, notice_grace=dt.timedelta(0))


@pytest.fixture
def client(quarantine: Quarantine, links: Links, guard: Guard, sink: RecordingSink) -> TestClient:
    return TestClient(build_app(quarantine, links, guard, sink.port), follow_redirects=False, client=LOCAL)


def notifying_app(quarantine: Quarantine, links: Links, guard: Guard, port: int) -> FastAPI:
    """The app with a notifier: it sends the notices an admin's decisions owe, in the background."""
    return create_app(quarantine=quarantine, links=links, guard_provider=lambda: guard,
                      next_hop=NextHop("127.0.0.1", port, timeout=10), secret=SECRET,
                      settings=WebSettings(base_url=BASE_URL, admin_user=ADMIN[0], admin_password_hash=ADMIN_HASH),
                      notifier=Notifier(host="mx.example.org"))


def admin_post(client: TestClient, hold: Hold, action: str) -> str:
    """Decide one hold from the admin list, as a browser does: signed in, the list's form and its CSRF token."""
    if client.get("/admin").status_code != 200:
        sign_in(client)
    page = client.get("/admin").text
    csrf = re.search(rf'action="/admin/holds/{hold.id}">\s*<input type="hidden" name="csrf" value="([^"]+)"',
                     page)
    assert csrf is not None, page
    done = client.post(f"/admin/holds/{hold.id}", data={"action": action, "csrf": csrf.group(1)})
    assert done.status_code == 200, done.text
    return done.text


def notices(sink: RecordingSink) -> list[Message]:
    return [m for m in sink.messages if m.rcpt_tos == (SENDER,)]


def text_of(message: Message) -> str:
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    return " ".join(str(body.get_content()).split())


def wait_notices(sink: RecordingSink, count: int, timeout: float = 15.0) -> list[Message]:
    deadline = time.monotonic() + timeout
    while len(notices(sink)) < count:
        assert time.monotonic() < deadline, sink.messages
        time.sleep(0.05)
    time.sleep(0.5)  # and no more than that
    return notices(sink)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog with rcptguard's INFO lines in it (also when logs.setup() stopped their propagation)."""
    logger = logging.getLogger("rcptguard")
    own = not logger.propagate  # else the records reach caplog's handler on the root logger
    if own:
        logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield caplog
    if own:
        logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def decision_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(record)) for record in caplog.records]
    return [line for line in lines if line["event"] == "decision"]


# -- what the pages say ---------------------------------------------------------------------------------------


def test_root_is_a_small_html_page_without_data(client: TestClient, quarantine: Quarantine) -> None:
    """`/` answers a short HTML page saying what this is, with nothing from the store in it."""
    holds = hold_message(quarantine)
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Checks where email goes</h1>" in page.text
    assert "the notice you were sent" in page.text
    for secret in (holds[0].id, "c@army.ml", SENDER, "Quarterly figures", "admin"):
        assert secret not in page.text
    assert client.head("/").status_code == 200


def test_arrival_is_labelled_received_not_sent(client: TestClient, quarantine: Quarantine, links: Links) -> None:
    """The message's arrival time is labelled "Received": it has not been sent."""
    token = issue(links, hold_message(quarantine))
    page = client.get(f"/confirm/{token}").text
    assert "<dt>Received</dt>" in page
    assert "<dt>Sent</dt>" not in page


def test_each_button_names_its_recipient(client: TestClient, quarantine: Quarantine, links: Links) -> None:
    """On a page with two held recipients, each button's accessible name includes its recipient, so no two
    buttons have the same name."""
    token = issue(links, hold_message(quarantine, held("c@army.ml"), held("d@army.ml", "d@army.mil")))
    page = client.get(f"/confirm/{token}").text
    names = [re.sub(r"<[^>]+>", "", label) for label in re.findall(r"<button[^>]*>(.*?)</button>", page)]
    assert "Don't send to c@army.ml" in names
    assert "Don't send to d@army.ml" in names
    assert len(names) == 6
    assert len(set(names)) == len(names)


def test_reload_and_replay_say_what_was_chosen_and_when(client: TestClient, quarantine: Quarantine,
                                                        links: Links) -> None:
    """After "Don't send", the page (reloaded) and a replayed form both say what was chosen and when, never that
    "someone" decided."""
    holds = hold_message(quarantine, held("c@army.ml"), held("d@army.ml", "d@army.mil"))
    token = issue(links, holds)
    redirected_to_page(client.post(f"/confirm/{token}", data=form(token, holds[0].id, "cancel")), token)
    decided_at = quarantine.require(holds[0].id).decided_at
    assert decided_at is not None
    when = decided_at.strftime("%d %B %Y, %H:%M UTC")
    chosen = f"\u201cDon&#39;t send\u201d was chosen on this page on {when}."
    page = client.get(f"/confirm/{token}").text
    assert chosen in page
    replay = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "cancel"))
    assert replay.status_code == 409
    assert chosen in replay.text
    assert "Someone" not in replay.text
    assert "Someone" not in page


def test_page_says_an_administrator_chose(client: TestClient, quarantine: Quarantine, links: Links) -> None:
    """A recipient an administrator cancelled reads "An administrator chose not to send it on …" on the sender's
    page."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    admin_post(client, holds[0], "cancel")
    page = client.get(f"/confirm/{token}").text
    assert "An administrator chose not to send it on " in page
    assert "was chosen on this page" not in page


# -- the log line of each decision --------------------------------------------------------------------------------


def test_every_decision_is_one_log_line(client: TestClient, quarantine: Quarantine, links: Links,
                                        captured: pytest.LogCaptureFixture) -> None:
    """A sender's choice and an admin's each log one "decision" line with the hold, actor, action and address."""
    holds = hold_message(quarantine, held("c@army.ml"), held("d@army.ml", "d@army.mil"))
    token = issue(links, holds)
    redirected_to_page(client.post(f"/confirm/{token}", data=form(token, holds[0].id, "correct")), token)
    settled(quarantine, holds[0].id)
    admin_post(client, holds[1], "cancel")
    lines = decision_lines(captured)
    assert [(line["hold"], line["actor"], line["action"], line["recipient"], line["deliver_to"]) for line in lines] \
        == [(holds[0].id, "sender via web", "corrected", "c@army.ml", "c@army.mil"),
            (holds[1].id, "ops via web admin", "cancelled", "d@army.ml", None)]
    assert [line["notice_owed"] for line in lines] == [False, True]
    assert [e.actor for e in quarantine.events(holds[1].id)] == ["ops via web admin"]  # the audit row as well


# -- the sender's notice of an admin's decision -------------------------------------------------------------------


def test_admin_cancel_sends_the_sender_one_notice(quarantine: Quarantine, links: Links, guard: Guard,
                                                  sink: RecordingSink) -> None:
    """An admin's cancel on the page sends the sender one notice, from the web process, saying an administrator
    chose not to send it to that recipient."""
    with TestClient(notifying_app(quarantine, links, guard, sink.port), client=LOCAL) as client:
        holds = hold_message(quarantine)
        admin_post(client, holds[0], "cancel")
        (notice,) = wait_notices(sink, 1)
    text = text_of(notice)
    assert "c@army.ml NOT sent: an administrator chose not to send it" in text
    assert "you no longer need to choose" in text
    assert quarantine.require(holds[0].id).notice == "sent"


def test_admin_release_sends_a_notice_that_it_was_delivered(quarantine: Quarantine, links: Links, guard: Guard,
                                                            sink: RecordingSink) -> None:
    """An admin's release on the page delivers the message, then tells the sender it was released and
    accepted for delivery."""
    with TestClient(notifying_app(quarantine, links, guard, sink.port), client=LOCAL) as client:
        holds = hold_message(quarantine)
        admin_post(client, holds[0], "release")
        (notice,) = wait_notices(sink, 1)
    text = text_of(notice)
    assert "Released by an administrator on " in text
    assert "mail server accepted it for delivery to c@army.ml on " in text
    assert [m.rcpt_tos for m in sink.messages if m.rcpt_tos != (SENDER,)] == [("c@army.ml",)]


def test_admin_burst_on_one_message_makes_one_notice(store: Store, links: Links, guard: Guard,
                                                     sink: RecordingSink) -> None:
    """An admin who cancels two recipients of one message in a row sends its sender one notice naming both."""
    quarantine = Quarantine(store, notice_grace=dt.timedelta(seconds=1))
    with TestClient(notifying_app(quarantine, links, guard, sink.port), client=LOCAL) as client:
        holds = hold_message(quarantine, held("c@army.ml"), held("d@army.ml", "d@army.mil"))
        admin_post(client, holds[0], "cancel")
        admin_post(client, holds[1], "cancel")
        (notice,) = wait_notices(sink, 1)
        time.sleep(1.5)
    text = text_of(notice)
    assert "c@army.ml NOT sent" in text
    assert "d@army.ml NOT sent" in text
    assert len(notices(sink)) == 1


def test_sender_choices_send_no_notice(quarantine: Quarantine, links: Links, guard: Guard,
                                       sink: RecordingSink) -> None:
    """The sender's own choices on the page owe no notice: they saw the outcome there."""
    with TestClient(notifying_app(quarantine, links, guard, sink.port), client=LOCAL,
                    follow_redirects=False) as client:
        holds = hold_message(quarantine, held("c@army.ml"), held("d@army.ml", "d@army.mil"))
        token = issue(links, holds)
        redirected_to_page(client.post(f"/confirm/{token}", data=form(token, holds[0].id, "cancel")), token)
        redirected_to_page(client.post(f"/confirm/{token}", data=form(token, holds[1].id, "correct")), token)
        assert settled(quarantine, holds[1].id).delivery == "delivered"
        time.sleep(1.0)
    assert notices(sink) == []
    assert quarantine.owed_notices() == {}
    assert [quarantine.require(h.id).notice for h in holds] == [None, None]


def test_a_correction_under_a_signature_says_replies_may_go_astray(client: TestClient, quarantine: Quarantine,
                                                                   links: Links, sink: RecordingSink) -> None:
    """When a DKIM signature covers To, the corrected copy keeps the typed address there, and the page says that
    replies may still go to it; an unsigned message is corrected and the page says nothing of the kind."""
    signed = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; h=from:to; bh=x; b=y\r\n" + \
        shared.message(marker="signed")
    for content, warned in ((signed, True), (shared.message(marker="plain"), False)):
        holds = hold_message(quarantine, content=content)
        token = issue(links, holds)
        redirected_to_page(client.post(f"/confirm/{token}", data=form(token, holds[0].id, "correct")), token)
        settled(quarantine, holds[0].id)
        page = client.get(f"/confirm/{token}").text
        assert ("Replies may still go to c@army.ml" in page) is warned
