"""The web front on SQLite with a real SMTP next hop on loopback: confirmation page, admin pages and the check API."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import markupsafe
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, select, update

from rcptguard.delivery import NextHop
from rcptguard.guard import Guard
from rcptguard.store import Store, StoreError
from rcptguard.store.links import LinkExpired, LinkInvalid, Links, token_hash
from rcptguard.store.quarantine import HeldRecipient, Hold, Quarantine
from rcptguard.store.schema import links as links_table
from rcptguard.web import create_app, csrf_token
from rcptguard.web.app import marked
from rcptguard.web.settings import WebSettings
from tests.conftest import make_guard
from tests.support.admin import ADMIN, ADMIN_HASH, sign_in, signed_in
from tests.support.processes import free_port
from tests.support.sink import RecordingSink

if TYPE_CHECKING:
    from fastapi import FastAPI

SECRET = b"0123456789abcdef-test-secret"
LOCAL = ("127.0.0.1", 50123)  # a client on loopback: the check API's default access lets it in
BASE_URL = "https://mailguard.example.com/guard"
SENDER = "alice@example.org"
REASON = "army.ml looks like army.mil: .ml is Mali's country domain, one letter short of .mil."


def message(subject: str = "Quarterly figures", marker: str = "1") -> bytes:
    return (f"From: Alice <{SENDER}>\r\nTo: c@army.ml\r\nSubject: {subject}\r\n"
            f"Message-ID: <m{marker}@example.org>\r\n\r\nThe body {marker}.\r\n").encode()


def held(address: str = "c@army.ml", suggestion: str | None = "c@army.mil", reason: str = REASON) -> HeldRecipient:
    return HeldRecipient(address=address, intended=suggestion.rpartition("@")[2] if suggestion else None,
                         suggestion=suggestion, reason=reason,
                         signals=[{"name": "TLD_SLIP", "score": 7.0, "evidence": {}}], score=11.0)


def build_app(quarantine: Quarantine, links: Links, guard: Guard, port: int, *, admin: bool = True,
              template_dir: Path | None = None, settings: WebSettings | None = None,
              clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """The app on this store and next hop; with `admin`, ADMIN may sign in (unless `settings` say who may)."""
    settings = settings or WebSettings(base_url=BASE_URL)
    if admin and settings.admin_user is None and settings.admin_user_header is None:
        settings = dataclasses.replace(settings, admin_user=ADMIN[0], admin_password_hash=ADMIN_HASH)
    return create_app(quarantine=quarantine, links=links, guard_provider=lambda: guard,
                      next_hop=NextHop("127.0.0.1", port, timeout=10), secret=SECRET,
                      template_dir=template_dir, settings=settings, clock=clock)


@pytest.fixture
def app(quarantine: Quarantine, links: Links, guard: Guard, sink: RecordingSink) -> FastAPI:
    return build_app(quarantine, links, guard, sink.port)


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app, follow_redirects=False, client=LOCAL)


def hold_message(quarantine: Quarantine, *recipients: HeldRecipient, content: bytes | None = None,
                 mail_from: str = SENDER) -> list[Hold]:
    return quarantine.hold(mail_from=mail_from, recipients=list(recipients or [held()]),
                           content=content or message(), client="mua.example")


def issue(links: Links, holds: list[Hold], ttl: dt.timedelta = dt.timedelta(days=7)) -> str:
    return links.issue(holds[0].message_id, ttl)


def form(token: str, hold_id: str, action: str, **extra: str) -> dict[str, str]:
    return {"hold": hold_id, "action": action, "csrf": csrf_token(SECRET, token_hash(token), hold_id), **extra}


def link_row(links: Links, token: str) -> dict[str, object]:
    with links.engine.connect() as connection:
        row = connection.execute(select(links_table).where(links_table.c.id == token_hash(token))).mappings().one()
        return dict(row)


def settled(quarantine: Quarantine, hold_id: str, timeout: float = 15.0) -> Hold:
    """The hold once its background delivery has come to an end: delivered, failed, or deferred after a try."""
    deadline = time.monotonic() + timeout
    while True:
        hold = quarantine.require(hold_id)
        if hold.delivery in ("delivered", "failed", "none") or (hold.delivery == "pending" and hold.delivery_attempts):
            return hold
        assert time.monotonic() < deadline, hold
        time.sleep(0.05)


def redirected_to_page(response: httpx2.Response, token: str) -> None:
    """The answer to a decision: 303 to the link's page under base_url."""
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{BASE_URL}/confirm/{token}"


# -- the links store ----------------------------------------------------------------------------------------------


def test_links_store_only_the_hash_and_resolve(quarantine: Quarantine, links: Links) -> None:
    """Issuing stores the sha256 of the token, never the token, and resolving finds the message again."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    row = link_row(links, token)
    assert row["id"] == token_hash(token) != token
    assert token not in str(row)
    info = links.resolve(token)
    assert (info.message_id, info.used_at) == (holds[0].message_id, None)
    assert info.expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(days=6)
    for bad in ("", "x" * 43 + "y", token[:-1], token + "A", "../" + token[3:]):
        with pytest.raises(LinkInvalid):
            links.resolve(bad)


def test_links_mark_used_only_when_every_hold_is_decided(quarantine: Quarantine, links: Links) -> None:
    """mark_used_if_done leaves the link unused while a hold of its message is still held."""
    first, second = hold_message(quarantine, held("c@army.ml"), held("d@navy.ml", "d@navy.mil"))
    token = issue(links, [first])
    quarantine.cancel(first.id, "test")
    assert links.mark_used_if_done(token) is False
    quarantine.cancel(second.id, "test")
    assert links.mark_used_if_done(token) is True
    assert links.mark_used_if_done(token) is False
    assert links.resolve(token).used_at is not None


# -- the confirmation page --------------------------------------------------------------------------------------


def test_page_shows_reason_suggestion_and_the_three_actions(client: TestClient, quarantine: Quarantine,
                                                            links: Links) -> None:
    """The page names the message, the reason and the suggestion, with one form per action and its CSRF token."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert '<html lang="en">' in text
    assert 'name="viewport"' in text
    assert "Quarterly figures" in text
    assert SENDER in text
    assert "Mali&#39;s country domain" in text  # the reason, HTML-escaped
    assert "c@army.mil" in text
    assert "Send to army.mil instead" in text
    assert "Send to army.ml anyway" in text
    assert "Don't send<span class=\"vh\"> to c@army.ml</span></button>" in text
    assert f'<label for="confirm-{holds[0].id}">' in text
    assert csrf_token(SECRET, token_hash(token), holds[0].id) in text
    assert "<script" not in text
    assert "http://" not in text  # no external assets
    assert "https://" not in text


def test_page_of_a_person_doubted_does_not_call_the_address_mistyped(client: TestClient, quarantine: Quarantine,
                                                                      links: Links) -> None:
    """A hold raised by history's doubts of the person at a domain the guard passed (marked so) says the recipient
    may not be the one meant and offers the address meant, not its domain; the usual hold says the address looks
    mistyped. The sentence is about the holds still waiting, in the singular or the plural."""
    def person(address: str = "olga.smith@partner.com") -> HeldRecipient:
        return HeldRecipient(address=address, intended="partner.com", suggestion="nils.martin@partner.com",
                             reason="The message greets Nils.",
                             signals=[{"name": "KNOWN_CORRESPONDENT", "score": 0.0, "evidence": {}},
                                      {"name": "ODD_GREETING", "score": 4.0, "evidence": {"doubt": "person"}}],
                             score=4.0)

    cases = [((person(),), "waiting because the recipient may not be the one you meant. Nothing is sent to that"),
             ((held(),), "waiting because an address looks mistyped. Nothing is sent to that address"),
             ((person(), person("o.berg@partner.com")),
              "waiting because the recipients may not be the ones you meant. Nothing is sent to those addresses"),
             ((person(), held()), "waiting because addresses look mistyped or may not be the ones you meant.")]
    text = ""
    for n, (recipients, said) in enumerate(cases):
        holds = hold_message(quarantine, *recipients, content=message(marker=f"p{n}"))
        assert [h.about_person for h in holds] == [r.address.endswith("partner.com") for r in recipients]
        text = " ".join(client.get(f"/confirm/{issue(links, holds)}").text.split())
        assert said in text
    assert "Send to nils.martin@partner.com instead" in text
    assert "Send to partner.com instead" not in text
    assert "Send to olga.smith@partner.com anyway" in text
    assert "Send to army.mil instead" in text  # the typo beside it: as before
    assert "Send to army.ml anyway" in text
    both = hold_message(quarantine, person(), held(), content=message(marker="decided"))
    quarantine.cancel(both[1].id, "alice")  # the typo decided: only the person waits
    text = " ".join(client.get(f"/confirm/{issue(links, both)}").text.split())
    assert "waiting because the recipient may not be the one you meant. Nothing is sent to that address" in text


def test_security_headers_on_pages_and_api(client: TestClient, quarantine: Quarantine, links: Links) -> None:
    """Every response carries the CSP, nosniff, no-referrer and no-store headers."""
    token = issue(links, hold_message(quarantine))
    for response in (client.get(f"/confirm/{token}"), client.get("/confirm/nope"), client.get("/healthz")):
        assert response.headers["content-security-policy"] == (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"


def test_internal_error_has_the_headers_and_no_detail(quarantine: Quarantine, links: Links,
                                                       sink: RecordingSink) -> None:
    """An unexpected exception: a plain 500 that still carries the security headers and shows nothing of it."""

    def broken_guard() -> Guard:
        raise RuntimeError("secret internal detail")

    app = create_app(quarantine=quarantine, links=links, guard_provider=broken_guard,
                     next_hop=NextHop("127.0.0.1", sink.port, timeout=10), secret=SECRET)
    response = TestClient(app, raise_server_exceptions=False, client=LOCAL).post(
        "/v1/check", json={"recipients": ["a@army.ml"]})
    assert response.status_code == 500
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_get_and_head_change_nothing(client: TestClient, quarantine: Quarantine, links: Links,
                                     sink: RecordingSink) -> None:
    """Following the link with GET or HEAD, as mail scanners do, decides nothing and sends nothing."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    for _ in range(3):
        assert client.get(f"/confirm/{token}").status_code == 200
        assert client.head(f"/confirm/{token}").status_code == 200
    assert client.get(f"/confirm/{token}", params={"action": "correct", "hold": holds[0].id}).status_code == 200
    hold = quarantine.require(holds[0].id)
    assert (hold.state, hold.delivery) == ("held", "none")
    assert quarantine.events(hold.id) == []
    assert link_row(links, token)["used_at"] is None
    time.sleep(0.2)
    assert sink.messages == []


class FailsAfterSending(Quarantine):
    """The store breaks right after the next hop accepted the message (a disk fills up, the database goes)."""

    def mark_delivered(self, hold_id: str) -> Hold:
        raise StoreError(f"cannot record the delivery of {hold_id}: disk I/O error")


def test_store_failing_after_the_send_does_not_say_nothing_changed(store: Store, links: Links, guard: Guard,
                                                                    sink: RecordingSink) -> None:
    """The choice was recorded and the message went, but not its outcome: the page says it is being sent (the
    truth as far as anyone knows), never "nothing was changed" nor that it arrived."""
    quarantine = FailsAfterSending(store, record_retries=())
    holds = hold_message(quarantine)
    token = issue(links, holds)
    client = TestClient(build_app(quarantine, links, guard, sink.port), follow_redirects=False)
    redirected_to_page(client.post(f"/confirm/{token}", data=form(token, holds[0].id, "correct")), token)
    assert [m.rcpt_tos for m in sink.wait_for(1)] == [("c@army.mil",)]
    time.sleep(0.3)
    page = client.get(f"/confirm/{token}")
    assert "Nothing was changed" not in page.text
    assert "Sending to c@army.mil" in page.text
    assert "Sent to" not in page.text
    assert quarantine.require(holds[0].id).state == "corrected"


def test_correct_delivers_to_the_suggestion_exactly_once(client: TestClient, quarantine: Quarantine,
                                                         links: Links, sink: RecordingSink) -> None:
    """Send-instead delivers the stored bytes to the suggestion once, says so, and a replay is refused with 409."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    redirected_to_page(client.post(f"/confirm/{token}", data=form(token, holds[0].id, "correct")), token)
    got = sink.wait_for(1)
    assert got[0].rcpt_tos == ("c@army.mil",)
    corrected = message().replace(b"To: c@army.ml\r\n", b"To: c@army.mil\r\n")  # Reply-All goes to the right one
    assert got[0].data.replace(b"\r\n", b"\n") == corrected.replace(b"\r\n", b"\n")
    hold = settled(quarantine, holds[0].id)
    assert (hold.state, hold.delivery, hold.decided_by) == ("corrected", "delivered", "sender via web")
    replay = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "correct"))
    assert replay.status_code == 409
    assert "already done" in replay.text
    assert "Sent to c@army.mil" in replay.text
    assert link_row(links, token)["used_at"] is not None
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 200
    assert "Sent to c@army.mil" in page.text
    assert "Send to army.mil instead</button>" not in page.text
    assert "\u201cSend to army.mil instead\u201d was chosen on this page on " in page.text
    time.sleep(0.2)
    assert len(sink.messages) == 1


def test_release_requires_typing_the_typed_domain(client: TestClient, quarantine: Quarantine, links: Links,
                                                  sink: RecordingSink) -> None:
    """Send-anyway with a missing or different domain re-renders with an error; the typed domain sends it."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    for typed in ("", "army.mil", "army.m1"):
        again = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "release", confirm_domain=typed))
        assert again.status_code == 422
        assert 'role="alert"' in again.text
        assert "type army.ml exactly" in again.text
        assert 'aria-invalid="true"' in again.text
        assert quarantine.require(holds[0].id).state == "held"
    assert client.post(f"/confirm/{token}", data=form(token, holds[0].id, "release")).status_code == 422
    time.sleep(0.2)
    assert sink.messages == []
    done = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "release", confirm_domain=" ARMY.ML "))
    redirected_to_page(done, token)
    assert sink.wait_for(1)[0].rcpt_tos == ("c@army.ml",)
    assert settled(quarantine, holds[0].id).delivery == "delivered"
    assert "Sent to c@army.ml" in client.get(f"/confirm/{token}").text
    assert quarantine.require(holds[0].id).state == "released"


def test_release_of_a_person_doubted_asks_for_the_person_not_the_domain(client: TestClient, quarantine: Quarantine,
                                                                        links: Links, sink: RecordingSink) -> None:
    """The domain of a person doubted is right: typing it again says nothing of whom the sender meant. Send-anyway
    asks for the recipient's local part (or the whole address, case aside); the domain, or somebody else, is refused
    and nothing is sent. A typo's hold beside it still asks for its domain."""
    person = HeldRecipient(address="Olga.Smith@partner.com", intended="partner.com",
                           suggestion="nils.martin@partner.com", reason="The message greets Nils.",
                           signals=[{"name": "ODD_GREETING", "score": 4.0, "evidence": {"doubt": "person"}}],
                           score=4.0)
    holds = hold_message(quarantine, person, held())
    assert [h.about_person for h in holds] == [True, False]
    token = issue(links, holds)
    page = " ".join(client.get(f"/confirm/{token}").text.split())
    assert 'anyway, type <span class="addr">Olga.Smith</span> (the part before the @) here' in page
    assert 'anyway, type <span class="addr">army.ml</span> here' in page
    for typed in ("", "partner.com", "nils.martin", "olga.smith@partner.co", "olga", "@partner.com"):
        again = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "release", confirm_domain=typed))
        assert again.status_code == 422, typed
        assert "type Olga.Smith exactly" in again.text
        assert quarantine.require(holds[0].id).state == "held"
    wrong = client.post(f"/confirm/{token}", data=form(token, holds[1].id, "release", confirm_domain="c"))
    assert wrong.status_code == 422
    assert "type army.ml exactly" in wrong.text
    time.sleep(0.2)
    assert sink.messages == []
    done = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "release", confirm_domain=" olga.smith "))
    redirected_to_page(done, token)
    assert sink.wait_for(1)[0].rcpt_tos == ("Olga.Smith@partner.com",)
    assert quarantine.require(holds[0].id).state == "released"
    again = hold_message(quarantine, person, content=message(marker="whole"))
    token = issue(links, again)
    done = client.post(f"/confirm/{token}", data=form(token, again[0].id, "release",
                                                      confirm_domain="OLGA.SMITH@Partner.com."))
    redirected_to_page(done, token)
    assert quarantine.require(again[0].id).state == "released"
    # what the page shows can be typed: a quoted local part without its quotes, a character that shows nothing (a
    # bidi control, a zero-width space, a variation selector: shown marked) left out
    for n, (address, typed) in enumerate([('"olga smith"@partner.com', "olga smith"),
                                          ('"olga smith"@partner.com', '"Olga Smith"@partner.com'),
                                          ("olga\u202e.smith@partner.com", "olga.smith"),
                                          ("olga\u200b.smith@partner.com", "olga.smith@partner.com"),
                                          ("olga\ufe0f.smith@partner.com", "olga.smith"),
                                          ("olga\U000e0100.smith@partner.com", "Olga.Smith"),
                                          ("stra\u00dfe@partner.com", "STRASSE".lower().replace("ss", "\u00df"))]):
        odd = hold_message(quarantine, dataclasses.replace(person, address=address), content=message(marker=f"o{n}"))
        token = issue(links, odd)
        if "\u200b" in address or "\ufe0f" in address:
            shown = client.get(f"/confirm/{token}").text
            name = "zero width space" if "\u200b" in address else "variation selector-16"
            assert f'olga<mark title="an invisible character ({name}), not typed">\ufffd</mark>.smith' in shown
        refused = client.post(f"/confirm/{token}", data=form(token, odd[0].id, "release", confirm_domain="olga"))
        assert refused.status_code == 422
        done = client.post(f"/confirm/{token}", data=form(token, odd[0].id, "release", confirm_domain=typed))
        redirected_to_page(done, token)
        assert quarantine.require(odd[0].id).state == "released", address
    # what is typed must name the local part itself: not another mailbox that folds to it, nor nothing at all
    for n, (address, typed) in enumerate([("stra\u00dfe@partner.com", "strasse"),
                                          ('""@partner.com', "@partner.com"),
                                          ("\u200b@partner.com", "@partner.com")]):
        odd = hold_message(quarantine, dataclasses.replace(person, address=address), content=message(marker=f"r{n}"))
        token = issue(links, odd)
        refused = client.post(f"/confirm/{token}", data=form(token, odd[0].id, "release", confirm_domain=typed))
        assert refused.status_code == 422, address
        assert quarantine.require(odd[0].id).state == "held"


def test_what_shows_nothing_is_marked_and_never_confirms_a_lookalike(client: TestClient, quarantine: Quarantine,
                                                                     links: Links, sink: RecordingSink) -> None:
    """Every character that shows nothing (Unicode's default-ignorables: a bidi control, a Hangul filler) is marked
    and named on the page, and one that shows (an Arabic number sign) is not. Typing the marks as copied from the
    page, or a letter that NFC writes otherwise, confirms; but when the address held and the one suggested differ
    only by what shows nothing, typing cannot tell them apart, and only "instead" sends."""
    assert str(marked("olga\u202e.smith")) == ('olga<mark title="an invisible character (right-to-left override), '
                                               'not typed">\ufffd</mark>.smith')
    assert "hangul filler" in str(marked("olga\u3164.smith"))
    assert "<mark" not in str(marked("\u0600123"))
    base = HeldRecipient(address="x@partner.com", intended="partner.com", suggestion="nils.martin@partner.com",
                         reason="The message greets Nils.", score=4.0,
                         signals=[{"name": "ODD_GREETING", "score": 4.0, "evidence": {"doubt": "person"}}])
    for n, (address, typed) in enumerate([("olga\u200b.smith@partner.com", "olga\ufffd.smith"),
                                          ("\u0394\u03aa\u0301@partner.com", "\u03b4\u0390")]):
        odd = hold_message(quarantine, dataclasses.replace(base, address=address), content=message(marker=f"c{n}"))
        token = issue(links, odd)
        done = client.post(f"/confirm/{token}", data=form(token, odd[0].id, "release", confirm_domain=typed))
        redirected_to_page(done, token)
        assert quarantine.require(odd[0].id).state == "released", address
    twin = dataclasses.replace(base, address="olga\ufe0f.smith@partner.com", suggestion="olga.smith@partner.com")
    held = hold_message(quarantine, twin, content=message(marker="twin"))
    token = issue(links, held)
    for typed in ("olga.smith", "olga\ufe0f.smith@partner.com", "olga.smith@partner.com"):
        refused = client.post(f"/confirm/{token}", data=form(token, held[0].id, "release", confirm_domain=typed))
        assert refused.status_code == 422
        assert "look the same: typing it cannot tell them apart. Send it to olga.smith@partner.com instead" in (
            " ".join(refused.text.split()))
        assert quarantine.require(held[0].id).state == "held"
    done = client.post(f"/confirm/{token}", data=form(token, held[0].id, "correct"))
    redirected_to_page(done, token)
    assert sink.wait_for(3)[-1].rcpt_tos == ("olga.smith@partner.com",)


def test_cancel_never_delivers(client: TestClient, quarantine: Quarantine, links: Links,
                               sink: RecordingSink) -> None:
    """Don't-send cancels the hold, says "Not sent", and nothing afterwards can deliver it."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    redirected_to_page(client.post(f"/confirm/{token}", data=form(token, holds[0].id, "cancel")), token)
    assert "<strong>Not sent.</strong>" in client.get(f"/confirm/{token}").text
    assert quarantine.require(holds[0].id).state == "cancelled"
    assert client.post(f"/confirm/{token}", data=form(token, holds[0].id, "correct")).status_code == 409
    later = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "release", confirm_domain="army.ml"))
    assert later.status_code == 409
    mistyped = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "release", confirm_domain="x"))
    assert mistyped.status_code == 409
    time.sleep(0.3)
    assert sink.messages == []


def test_next_hop_down_says_sending_is_put_off(quarantine: Quarantine, links: Links, guard: Guard) -> None:
    """With the next hop unreachable the page says it was not sent yet, is retried, and gives the last answer."""
    client = TestClient(build_app(quarantine, links, guard, free_port()), follow_redirects=False)
    holds = hold_message(quarantine)
    token = issue(links, holds)
    redirected_to_page(client.post(f"/confirm/{token}", data=form(token, holds[0].id, "correct")), token)
    hold = settled(quarantine, holds[0].id)
    assert (hold.delivery, hold.delivery_attempts) == ("pending", 1)
    page = client.get(f"/confirm/{token}").text
    assert "Not sent yet to c@army.mil: your organisation&#39;s mail server put it off" in page
    assert "tried again automatically" in page
    assert "do not need to do anything" not in page
    assert f"The server&#39;s last answer: {markupsafe.escape(hold.last_error or '')}" in page


@pytest.mark.parametrize("csrf", [None, "", "0" * 64, "not-hex", "é" * 10])
def test_post_without_or_with_a_wrong_csrf_is_forbidden(client: TestClient, quarantine: Quarantine, links: Links,
                                                        csrf: str | None) -> None:
    """A POST whose CSRF token is missing or wrong gets 403 and changes nothing."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    data = form(token, holds[0].id, "cancel")
    if csrf is None:
        del data["csrf"]
    else:
        data["csrf"] = csrf
    response = client.post(f"/confirm/{token}", data=data)
    assert response.status_code == 403
    assert quarantine.require(holds[0].id).state == "held"


def test_csrf_of_another_link_is_forbidden(client: TestClient, quarantine: Quarantine, links: Links) -> None:
    """A CSRF token is bound to its link: the same hold's token from a second link of the message is refused."""
    holds = hold_message(quarantine)
    token, other = issue(links, holds), issue(links, holds)
    data = form(other, holds[0].id, "cancel")
    assert client.post(f"/confirm/{token}", data=data).status_code == 403
    assert quarantine.require(holds[0].id).state == "held"


def test_tampered_token_is_forbidden(client: TestClient, quarantine: Quarantine, links: Links) -> None:
    """The token with one character changed gets the 403 page for GET, HEAD and POST."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    tampered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for response in (client.get(f"/confirm/{tampered}"), client.head(f"/confirm/{tampered}"),
                     client.post(f"/confirm/{tampered}", data=form(tampered, holds[0].id, "cancel")),
                     client.post(f"/confirm/{tampered}", data=form(token, holds[0].id, "cancel"))):
        assert response.status_code == 403
    page = client.get(f"/confirm/{tampered}")
    assert "This link is not valid" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert quarantine.require(holds[0].id).state == "held"


def test_expired_link_is_gone(client: TestClient, quarantine: Quarantine, links: Links) -> None:
    """A link past its expiry gets the 410 page for GET and POST and decides nothing."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    with links.engine.begin() as connection:
        connection.execute(update(links_table).where(links_table.c.id == token_hash(token))
                           .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    with pytest.raises(LinkExpired):
        links.resolve(token)
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 410
    assert "expired" in page.text
    assert client.post(f"/confirm/{token}", data=form(token, holds[0].id, "correct")).status_code == 410
    assert quarantine.require(holds[0].id).state == "held"


def test_token_of_one_message_cannot_act_on_another(client: TestClient, quarantine: Quarantine, links: Links,
                                                    sink: RecordingSink) -> None:
    """Message A's token with a hold of message B is refused with 403, even with a CSRF token computed for it."""
    hold_a = hold_message(quarantine, content=message(marker="a"))[0]
    hold_b = hold_message(quarantine, content=message(marker="b"))[0]
    token_a = issue(links, [hold_a])
    response = client.post(f"/confirm/{token_a}", data=form(token_a, hold_b.id, "correct"))
    assert response.status_code == 403
    assert quarantine.require(hold_b.id).state == "held"
    time.sleep(0.2)
    assert sink.messages == []


def test_two_posts_at_once_and_a_replay_deliver_once(app: FastAPI, quarantine: Quarantine, links: Links,
                                                     sink: RecordingSink) -> None:
    """Two simultaneous send-instead POSTs (threads) and a replay afterwards deliver exactly one message."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    data = form(token, holds[0].id, "correct")
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    lock = threading.Lock()

    def post() -> None:
        client = TestClient(app, follow_redirects=False)
        barrier.wait()
        status = client.post(f"/confirm/{token}", data=data).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [303, 409]
    assert TestClient(app).post(f"/confirm/{token}", data=data).status_code == 409
    sink.wait_for(1)
    time.sleep(0.3)
    assert [m.rcpt_tos for m in sink.messages] == [("c@army.mil",)]


def test_hostile_subject_and_addresses_are_escaped(client: TestClient, quarantine: Quarantine,
                                                   links: Links) -> None:
    """HTML and CR/LF in the subject, the sender and a recipient are shown escaped, never as markup."""
    subject = "=?utf-8?b?" + base64.b64encode(b"<script>alert(1)</script>\r\nBcc: x@evil").decode() + "?="
    recipient = '"<script>alert(2)</script>\r\nX-Evil: 1"@army.ml'
    sender = "<img src=x onerror=alert(3)>\r\n@example.org"
    holds = hold_message(quarantine, held(recipient, 'x"><b>@army.mil', reason="<i>why</i>\r\n"),
                         content=message(subject), mail_from=sender)
    token = issue(links, holds)
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 200
    text = page.text
    assert "<script" not in text
    assert "<img" not in text
    assert "<i>why" not in text
    assert '"><b>' not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;\u240d\u240aX-Evil" in text
    assert "&lt;img src=x onerror=alert(3)&gt;\u240d\u240a@example.org" in text
    assert "\r" not in text
    assert "X-Evil" not in "".join(page.headers.keys())


def test_template_dir_overrides_a_template(quarantine: Quarantine, links: Links, guard: Guard,
                                           sink: RecordingSink, tmp_path: Path) -> None:
    """A template in the operator's template_dir replaces the shipped one of the same name."""
    (tmp_path / "message.html").write_text('{% extends "base.html" %}{% block content %}<p>Custom: {{ title }}</p>'
                                           "{% endblock %}")
    client = TestClient(build_app(quarantine, links, guard, sink.port, template_dir=tmp_path))
    page = client.get("/confirm/" + "A" * 43)
    assert page.status_code == 403
    assert "<p>Custom: This link is not valid</p>" in page.text


# -- the admin pages ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("user", "password"), [("ops", "wrong"), ("nobody", ADMIN[1]), ("ops", ""), ("", ""),
                                              ("OPS", ADMIN[1]), ("ops", ADMIN[1] + " ")])
def test_admin_with_wrong_credentials_is_refused(client: TestClient, user: str, password: str) -> None:
    """A wrong user name or password gets the form again with 401, and no session cookie."""
    answer = sign_in(client, user, password)
    assert answer.status_code == 401
    assert "The user name or password is wrong." in answer.text
    assert "rcptguard_admin" not in answer.headers.get("set-cookie", "")
    assert client.get("/admin").status_code == 303


def test_admin_without_a_session_goes_to_the_sign_in_form(client: TestClient) -> None:
    """Reading an admin page without a session redirects to the sign-in form (under base_url); a form post
    without one is refused with 401, and so is a forged session cookie."""
    response = client.get("/admin")
    assert response.status_code == 303
    assert response.headers["location"] == f"{BASE_URL}/admin/login"
    assert client.post("/admin/holds/abcdefghij", data={"action": "cancel", "csrf": "x"}).status_code == 401
    client.cookies.set("rcptguard_admin", "made-up.0123456789abcdef", path="/admin")
    assert client.get("/admin").status_code == 303
    form = client.get("/admin/login")
    assert form.status_code == 200
    assert 'type="password"' in form.text


def test_admin_with_right_credentials_lists_and_acts(client: TestClient, quarantine: Quarantine,
                                                     sink: RecordingSink) -> None:
    """Signed in, the list shows held mail, and its release form (with CSRF) delivers once; the audit log names
    the admin and the address they acted from."""
    holds = hold_message(quarantine)
    csrf = signed_in(client)
    page = client.get("/admin")
    assert page.status_code == 200
    assert holds[0].id in page.text
    assert "c@army.ml" in page.text
    assert "Signed in as" in page.text
    no_csrf = client.post(f"/admin/holds/{holds[0].id}", data={"action": "release"})
    assert no_csrf.status_code == 403
    done = client.post(f"/admin/holds/{holds[0].id}", data={"action": "release", "csrf": csrf})
    assert done.status_code == 200
    assert "to c@army.ml" in done.text
    assert sink.wait_for(1)[0].rcpt_tos == ("c@army.ml",)
    assert settled(quarantine, holds[0].id).delivery == "delivered"
    again = client.post(f"/admin/holds/{holds[0].id}", data={"action": "release", "csrf": csrf})
    assert again.status_code == 409
    assert quarantine.require(holds[0].id).decided_by == "ops via web admin"
    (event,) = [e for e in quarantine.events(holds[0].id) if e.to_state == "released"]
    assert (event.actor, event.detail) == ("ops via web admin", f"from {LOCAL[0]}")
    time.sleep(0.2)
    assert len(sink.messages) == 1


def test_admin_release_with_the_store_failing_after_the_send(store: Store, links: Links, guard: Guard,
                                                              sink: RecordingSink) -> None:
    """The admin's release went through but its outcome could not be recorded: the page says it is being sent,
    not "nothing was changed"."""
    quarantine = FailsAfterSending(store, record_retries=())
    holds = hold_message(quarantine)
    client = TestClient(build_app(quarantine, links, guard, sink.port), follow_redirects=False)
    csrf = signed_in(client)
    done = client.post(f"/admin/holds/{holds[0].id}", data={"action": "release", "csrf": csrf})
    assert done.status_code == 200
    assert "Nothing was changed" not in done.text
    assert "Sending to c@army.ml" in done.text
    assert quarantine.require(holds[0].id).state == "released"
    assert [m.rcpt_tos for m in sink.wait_for(1)] == [("c@army.ml",)]


def test_admin_not_configured_is_404(quarantine: Quarantine, links: Links, guard: Guard,
                                     sink: RecordingSink) -> None:
    """Without an admin configured, every admin page answers 404 whatever is sent."""
    client = TestClient(build_app(quarantine, links, guard, sink.port, admin=False), follow_redirects=False)
    assert client.get("/admin").status_code == 404
    assert client.get("/admin/login").status_code == 404
    assert client.post("/admin/login", data={"user": ADMIN[0], "password": ADMIN[1]}).status_code == 404
    assert client.post("/admin/holds/abcdefghij").status_code == 404
    assert client.post("/admin/logout").status_code == 404


# -- the JSON API ------------------------------------------------------------------------------------------------


def test_check_api_answers_in_the_jsonl_shape(client: TestClient, guard: Guard) -> None:
    """/v1/check returns one verdict per recipient, each exactly Verdict.to_json() (the jsonl shape)."""
    recipients = ["c@army.ml", "d@army.mil", "not an address", "e@example.com"]
    response = client.post("/v1/check", json={"recipients": recipients})
    assert response.status_code == 200
    verdicts = response.json()["verdicts"]
    assert verdicts == [guard.check(raw).to_json() for raw in recipients]
    first = verdicts[0]
    assert (first["verdict"], first["suggestion"], first["intended"]) == ("hold", "c@army.mil", "army.mil")
    assert list(first) == list(guard.check("c@army.ml").to_json())
    assert [v["verdict"] for v in verdicts[1:]] == ["pass", "reject", "pass"]


@pytest.mark.parametrize("body", [{}, {"recipients": []}, {"recipients": ["a@b.c"] * 1001},
                                  {"recipients": ["a" * 4097]}, {"recipients": [1]}, {"recipients": "a@b.c"},
                                  {"recipients": ["a@b.c"], "extra": 1}])
def test_check_api_refuses_bad_bodies(client: TestClient, body: object) -> None:
    """Bodies outside the declared schema get 422, never a 500."""
    assert client.post("/v1/check", json=body).status_code == 422


@pytest.mark.parametrize("raw", [b'{"recipients": ["\\ud800@army.ml"]}', b'{"\\udfff": 1, "recipients": ["a@b.c"]}'])
def test_check_api_lone_surrogates_are_422_not_500(client: TestClient, raw: bytes) -> None:
    """A lone surrogate, which UTF-8 cannot carry, is refused with a readable 422 instead of crashing the handler."""
    response = client.post("/v1/check", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "ud800" not in response.text
    assert "udfff" not in response.text


def test_openapi_describes_the_api(client: TestClient) -> None:
    """/openapi.json describes /v1/check and /healthz and leaves the HTML pages out; /healthz says ok."""
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/v1/check", "/healthz"}
    request = schema["components"]["schemas"]["CheckRequest"]["properties"]["recipients"]
    assert (request["minItems"], request["maxItems"], request["items"]["maxLength"]) == (1, 1000, 4096)
    assert client.get("/healthz").json() == {"status": "ok"}


def _schema_app() -> FastAPI:
    """An app for the schema test, built at import as schemathesis's pytest integration needs: the API under test
    touches neither the store (an engine that never connects) nor the next hop."""
    store = Store(create_engine("sqlite://"))
    return create_app(quarantine=Quarantine(store), links=Links(store), guard_provider=_schema_guard,
                      next_hop=NextHop("127.0.0.1", 9), secret=SECRET,
                      settings=WebSettings(api="open", api_rate=0, api_max_body=64 << 20))  # limits: test_web_limits


@functools.cache
def _schema_guard() -> Guard:
    return make_guard(("mil",))


api = schemathesis.openapi.from_asgi("/openapi.json", _schema_app()).include(path_regex=r"^/(v1/check|healthz)$")


@api.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    """Generated requests to /v1/check and /healthz never get a 500 and always match the OpenAPI schema."""
    case.call_and_validate()


# -- serving -----------------------------------------------------------------------------------------------------

_SERVE = """
import sys
from rcptguard.delivery import NextHop
from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Quarantine
from rcptguard.web import create_app, serve
store = Store.open(sys.argv[1])
app = create_app(quarantine=Quarantine(store), links=Links(store), guard_provider=lambda: None,
                 next_hop=NextHop("127.0.0.1", 9), secret=b"x" * 32)
serve(app, "127.0.0.1", int(sys.argv[2]), log_level="warning")
print("stopped cleanly", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_and_stops_on_a_signal(tmp_path: Path, signum: int) -> None:
    """serve() answers HTTP on its port and returns normally on SIGTERM or SIGINT."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _SERVE, f"sqlite:///{tmp_path / 's.db'}", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.json() == {"status": "ok"}
        assert "server" not in response.headers
        process.send_signal(signum)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped cleanly" in out
