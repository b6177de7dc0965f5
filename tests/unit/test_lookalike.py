"""Lookalikes a person can see: foreign characters named and marked on the page, in notices and in `check`."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest
from fastapi.testclient import TestClient

from rcptguard.guard import Guard
from rcptguard.lookalike import ascii_form, both, foreign, note, unicode_form
from rcptguard.notify import Flagged, Notifier
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Quarantine
from tests.support.processes import RCPTGUARD
from tests.support.sink import RecordingSink
from tests.unit.test_web import LOCAL, build_app, form, held, hold_message, issue, redirected_to_page

CYRILLIC = "gm\u0430il.com"  # the 'а' is U+0430 CYRILLIC SMALL LETTER A
PUNYCODE = "xn--gmil-63d.com"


def test_foreign_characters_are_named_with_their_script_and_what_they_pass_for() -> None:
    """A Cyrillic 'а' in a Latin name is found in either form of the domain, named, and matched to 'a'."""
    for domain in (CYRILLIC, PUNYCODE):
        (char,) = foreign(domain)
        assert (char.char, char.script, char.looks_like) == ("\u0430", "Cyrillic", "a")
    assert note(PUNYCODE) == f"In {CYRILLIC}, the '\u0430' is Cyrillic (it looks like the Latin 'a')."
    assert both(CYRILLIC) == both(PUNYCODE) == f"{CYRILLIC} ({PUNYCODE})"
    assert (unicode_form(PUNYCODE), ascii_form(CYRILLIC)) == (CYRILLIC, PUNYCODE)


@pytest.mark.parametrize("domain", ["gmail.com", "m\u00fcnchen.de", "xn--mnchen-3ya.de", "\u4f8b\u3048.jp"])
def test_honest_names_have_no_note(domain: str) -> None:
    """ASCII names and IDNs whose letters pass for no ASCII letter (ü, CJK) get no lookalike note."""
    assert foreign(domain) == []
    assert note(domain) is None


def test_the_page_marks_the_foreign_character_and_takes_either_form(quarantine: Quarantine, links: Links,
                                                                    guard: Guard, sink: RecordingSink) -> None:
    """The confirm page marks the Cyrillic letter, shows both forms on the send-anyway button (so it does not
    read like the correct-to button), says either form may be typed, and sending with the xn-- form works."""
    client = TestClient(build_app(quarantine, links, guard, sink.port), follow_redirects=False, client=LOCAL)
    holds = hold_message(quarantine, held(f"ivan@{CYRILLIC}", "ivan@gmail.com",
                                          reason=f"{CYRILLIC} ({PUNYCODE}) looks like gmail.com."))
    token = issue(links, holds)
    page = client.get(f"/confirm/{token}").text
    assert '<mark title="Cyrillic: cyrillic small letter a">\u0430</mark>' in page
    assert "Look closely:" in page
    assert '<p>gm<mark title="Cyrillic: cyrillic small letter a">\u0430</mark>il.com' in page  # the reason too
    assert f"({PUNYCODE})</span> anyway" in page
    assert f'or its other form, <span class="addr">{PUNYCODE}</span>: either is accepted' in page
    done = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "release", confirm_domain=PUNYCODE))
    redirected_to_page(done, token)
    assert sink.wait_for(1)[0].rcpt_tos == (f"ivan@{CYRILLIC}",)


def test_notices_name_the_foreign_character() -> None:
    """A warning notice says which character of the address is foreign, in its text and HTML parts."""
    notice = Notifier(host="mx.example.org").warned(
        "alice@example.org", [Flagged(f"ivan@{CYRILLIC}", "looks like gmail.com", "ivan@gmail.com")], "crew list",
        dt.timedelta(days=1)).decode("utf-8")
    assert notice.count("is Cyrillic (it looks like the Latin") == 2  # the text part and the HTML part


def test_check_reports_the_address_as_typed() -> None:
    """`rcptguard check` prints an xn-- address as it was typed (text and jsonl), while the domain fields keep
    both forms."""
    address = f"ivan@{PUNYCODE}"
    text = subprocess.run([RCPTGUARD, "check", "--known", "gmail.com", address], capture_output=True, text=True,
                          check=False, timeout=60)
    assert text.stdout.split()[1] == address
    jsonl = subprocess.run([RCPTGUARD, "check", "--format", "jsonl", "--known", "gmail.com", address],
                           capture_output=True, text=True, check=False, timeout=60)
    data = json.loads(jsonl.stdout)
    assert (data["address"], data["domain"], data["domain_ascii"]) == (address, CYRILLIC, PUNYCODE)
