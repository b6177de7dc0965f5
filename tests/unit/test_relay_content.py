"""The relay with the sensitivity scanner: a sensitive message to a suspect recipient is held more firmly, and the
notice and the hold say what it carries; ordinary mail is untouched."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest

from rcptguard.content import scan_light
from rcptguard.content.settings import ContentSettings
from rcptguard.errors import ConfigError
from tests.support.archives import MRZ, PDF, Sent, pdf_bytes
from tests.support.sink import RecordingSink
from tests.unit.relays import Relay, make_relay, send

SENSITIVE = (b"From: me@example-corp.com\r\nTo: crew\r\nSubject: travel\r\nMessage-ID: <m2@example-corp.com>\r\n\r\n"
             + MRZ.replace("\n", "\r\n").encode() + b"Employee SSN: 536-22-8726\r\n")
T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
LUNCH = (b"From: me@example-corp.com\r\nTo: a\r\nSubject: lunch\r\nMessage-ID: <m3@example-corp.com>\r\n\r\n"
         b"Lunch on Friday?\r\n")


def _notice_text(sink: RecordingSink) -> str:
    (notice,) = [m for m in sink.wait_for(1) if m.rcpt_tos == ("me@example-corp.com",)]
    parsed = email.message_from_bytes(notice.data, policy=email.policy.default)
    parts = parsed.iter_parts() if parsed.is_multipart() else [parsed]
    return " ".join(" ".join(str(p.get_content()).split()) for p in parts)  # type: ignore[union-attr]


def test_a_warned_recipient_of_a_sensitive_message_is_held(relay: Relay, sink: RecordingSink) -> None:
    """A recipient the guard only warns about is held when the message carries identity numbers; the hold's
    reason and the sender's notice say why; nothing leaves for the recipient."""
    code, text, _ = send(relay, ["a@ymail.com"], SENSITIVE)
    assert code == 250
    assert b"held 1" in text
    (held,) = relay.quarantine.list()
    assert held.recipient == "a@ymail.com"
    assert "ymail.com looks like gmail.com" in held.reason
    assert ("It contains what looks like a national identity number and what looks like a passport number, so it "
            "is held until you confirm the address.") in held.reason
    assert relay.quarantine.content(held.id) == SENSITIVE
    notice = _notice_text(sink)
    assert "It contains what looks like a national identity number" in notice
    assert "536-22-8726" not in notice
    assert all(m.rcpt_tos != ("a@ymail.com",) for m in sink.messages)


def test_an_ordinary_message_to_a_warned_recipient_still_goes(relay: Relay, sink: RecordingSink) -> None:
    """The same recipient with a lunch invitation is forwarded with a warning, as without the scanner."""
    code, text, _ = send(relay, ["a@ymail.com"], LUNCH)
    assert code == 250
    assert b"held" not in text
    got = sink.wait_for(2)
    assert [m.data for m in got if m.rcpt_tos == ("a@ymail.com",)] == [LUNCH]
    assert relay.quarantine.list() == []


def test_a_message_scanned_off_the_event_loop_is_weighed_the_same(relay: Relay, sink: RecordingSink) -> None:
    """A message the relay hands to a thread to scan (anything but a short plain text: here an identity number in
    an attached PDF) holds the warned recipient as well."""
    raw = Sent("me@example-corp.com", ("a@ymail.com",), T0, body="Crew list attached.\n",
               attachments=[("crew.pdf", PDF, pdf_bytes(["SSN 536-22-8726"]))]).build().replace(b"\n", b"\r\n")
    assert scan_light(raw) is None
    code, text, _ = send(relay, ["a@ymail.com"], raw)
    assert code == 250
    assert b"held 1" in text
    (held,) = relay.quarantine.list()
    assert "It contains what looks like a national identity number" in held.reason
    assert all(m.rcpt_tos != ("a@ymail.com",) for m in sink.messages)


def test_a_held_message_says_what_it_carries(relay: Relay, sink: RecordingSink) -> None:
    """A recipient held anyway gets the content's severity in its signals and reason (the admin list and the page
    show both); a pass recipient of the same message is forwarded untouched."""
    code, _, _ = send(relay, ["j.doe@army.ml", "ok@army.mil"], SENSITIVE)
    assert code == 250
    (held,) = relay.quarantine.list()
    assert held.recipient == "j.doe@army.ml"
    signal = next(s for s in held.signals if s["name"] == "SENSITIVE_CONTENT")
    assert signal["evidence"]["severity"] == "high"
    assert signal["evidence"]["raised"] == ""
    assert held.reason.endswith("It contains what looks like a national identity number and what looks like a "
                                "passport number.")
    got = sink.wait_for(2)
    assert [m.data for m in got if m.rcpt_tos == ("ok@army.mil",)] == [SENSITIVE]


def test_scanner_off_leaves_the_warning(tmp_path: Path, sink: RecordingSink) -> None:
    """With [content] enabled = false the warned recipient of the same message is forwarded."""
    relay = make_relay(tmp_path, sink)
    try:
        relay.handler.content = ContentSettings(enabled=False)
        code, text, _ = send(relay, ["a@ymail.com"], SENSITIVE)
        assert code == 250
        assert b"held" not in text
        assert relay.quarantine.list() == []
    finally:
        relay.close()


def test_raise_at_is_checked() -> None:
    """raise_at must name a severity, and not 'none'."""
    assert ContentSettings.from_section({"raise_at": "high"}, "content").threshold.name == "HIGH"
    with pytest.raises(ConfigError, match=r"content\.raise_at"):
        ContentSettings.from_section({"raise_at": "none"}, "content")
    with pytest.raises(ConfigError, match=r"content\.raise_at"):
        ContentSettings.from_section({"raise_at": "extreme"}, "content")
