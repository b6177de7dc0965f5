"""Notices to senders: what they say, what they never carry, and no header injection."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import html
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from rcptguard.notify import Flagged, Notifier, duration_words, header_safe, wants_notice


@dataclass(frozen=True)
class FakeHold:
    recipient: str = "j.doe@army.ml"
    reason: str = "army.ml looks like army.mil: .ml is Mali's country domain, one letter short of .mil."
    suggestion: str | None = "j.doe@army.mil"
    mail_from: str = "me@example-corp.com"
    subject: str = "crew list"
    message_id_header: str = "<m1@example-corp.com>"
    received_at: dt.datetime = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    about_person: bool = False


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def text_parts(message: email.message.EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): str(part.get_content()) for part in message.iter_parts()}


def test_held_notice_says_why_and_gives_one_link() -> None:
    """The held notice names the recipient, the reason and the suggestion, in text and HTML, with the link."""
    notice = parse(Notifier(host="mx.example-corp.com").held([FakeHold()], "https://g.example/confirm/abc",
                                                             dt.timedelta(days=7)))
    assert notice["To"] == "me@example-corp.com"
    assert notice["From"] == "MAILER-DAEMON@mx.example-corp.com"
    assert notice["Auto-Submitted"] == "auto-replied"
    assert notice["In-Reply-To"] == "<m1@example-corp.com>"
    assert notice["Subject"] == "Not sent yet: crew list"
    parts = text_parts(notice)
    for body in parts.values():
        assert "j.doe@army.ml" in body
        assert "Mali" in body
        assert "j.doe@army.mil" in body
        assert body.count("https://g.example/confirm/abc") == 1
        assert "1 week" in body
    assert set(parts) == {"text/plain", "text/html"}


def test_html_part_escapes_what_came_from_the_message() -> None:
    """A subject with HTML in it is escaped in the HTML part."""
    notice = parse(Notifier().held([FakeHold(subject="<script>alert(1)</script>")], "https://g/c/x",
                                   dt.timedelta(days=1)))
    html = text_parts(notice)["text/html"]
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize("subject", ["crew\r\nBcc: evil@example.org", "crew\nBcc: evil@example.org",
                                     "crew\rBcc: evil@example.org", "crew\u2028Bcc: evil@example.org"])
def test_no_header_injection_through_the_subject(subject: str) -> None:
    """A crafted subject cannot add a header to the notice."""
    data = Notifier().held([FakeHold(subject=subject)], "https://g/c/x", dt.timedelta(days=1))
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head
    assert b"\nBcc:" not in head
    assert parse(data)["Bcc"] is None


def test_expired_notice_says_not_sent_without_the_body() -> None:
    """The expiry notice says the message was not sent to whom, and why."""
    notice = parse(Notifier().expired([FakeHold()], dt.timedelta(days=7)))
    assert notice["Subject"] == "Not sent: crew list"
    body = text_parts(notice)["text/plain"]
    assert "was NOT sent to" in body
    assert "j.doe@army.ml" in body


def test_operator_templates_override_the_shipped_ones(tmp_path: Path) -> None:
    """A template in the operator's directory replaces the shipped one of the same name."""
    (tmp_path / "notice_hold.txt.j2").write_text("Custom: {{ holds[0].recipient }} {{ link }}\n", encoding="utf-8")
    notice = parse(Notifier(template_dir=tmp_path).held([FakeHold()], "https://g/c/x", dt.timedelta(days=1)))
    assert text_parts(notice)["text/plain"].strip() == "Custom: j.doe@army.ml https://g/c/x"
    assert "army.mil" in text_parts(notice)["text/html"]  # the HTML part still comes from the shipped template


def test_who_gets_a_notice() -> None:
    """No notice to the null sender, nor for an automatic message; a normal one gets it."""
    assert not wants_notice("", b"Subject: x\r\n\r\nbody")
    assert not wants_notice("a@b.com", b"Auto-Submitted: auto-replied\r\nSubject: x\r\n\r\nbody")
    assert wants_notice("a@b.com", b"Auto-Submitted: no\r\nSubject: x\r\n\r\nbody")
    assert wants_notice("a@b.com", b"Subject: x\r\n\r\nbody")
    assert not wants_notice("a@b.com", b"Subject: x\r\nAUTO-SUBMITTED: auto-generated\r\n\r\nbody")
    assert wants_notice("a@b.com", b"Subject: x\r\n\r\nAuto-Submitted: auto-replied (a body, not a header)")
    assert not wants_notice("a@b.com", b"Auto-Submitted: auto-replied\nSubject: bare line ends\n\nbody")


def test_helpers() -> None:
    """Durations read as words; header values lose line breaks."""
    assert duration_words(dt.timedelta(days=7)) == "1 week"
    assert duration_words(dt.timedelta(days=2)) == "2 days"
    assert duration_words(dt.timedelta(hours=5)) == "5 hours"
    assert header_safe("a\r\nb\tc") == "a b c"


@dataclass(frozen=True)
class UndeliveredHold(FakeHold):
    deliver_to: str | None = "j.doe@army.mil"
    last_error: str | None = "gave up after 5 days; last: 451 4.2.0 " + "mailbox busy " * 150


def test_undelivered_notice_names_the_address_and_reason_in_short_lines() -> None:
    """The next hop's last answer can be long: it is wrapped, so no line of the notice passes 998 bytes."""
    data = Notifier(host="mx.example-corp.com").undelivered([UndeliveredHold()])
    notice = parse(data)
    assert notice["Subject"] == "Not delivered: crew list"
    parts = text_parts(notice)
    assert "j.doe@army.mil" in parts["text/plain"]
    assert "gave up after 5 days; last: 451 4.2.0 mailbox busy" in parts["text/plain"]
    assert "could NOT be delivered" in parts["text/plain"]
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert max(len(line) for line in parts["text/plain"].splitlines()) <= 80


def test_held_notice_claims_nothing_about_other_recipients() -> None:
    """The held notice never says the other recipients "already have it" (they may have been refused, and are
    sent after the notice); it says only that no other recipient was held."""
    parts = text_parts(parse(Notifier().held([FakeHold()], "https://g/c/x", dt.timedelta(days=7))))
    for body in parts.values():
        assert "already have it" not in body
        assert "this check held no other recipient of the message" in " ".join(body.split())


@dataclass(frozen=True)
class DecidedHold(FakeHold):
    state: str = "cancelled"
    deliver_to: str | None = None
    decided_at: dt.datetime | None = dt.datetime(2026, 11, 27, 9, 30, tzinfo=dt.UTC)
    decided_by: str | None = "ops via web admin"
    delivery: str = "none"
    delivered_at: dt.datetime | None = None
    last_error: str | None = None
    created_at: dt.datetime = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def test_decided_notice_says_what_the_administrator_chose() -> None:
    """The notice of an admin's decision names each recipient, what was chosen and when, and how a release went;
    who decided only with name_deciders."""
    holds = [DecidedHold(),
             DecidedHold(recipient="k@army.ml", state="corrected", deliver_to="k@army.mil", delivery="delivered",
                         delivered_at=dt.datetime(2026, 11, 27, 9, 31, tzinfo=dt.UTC)),
             DecidedHold(recipient="m@army.ml", state="released", deliver_to="m@army.ml", delivery="pending")]
    notice = parse(Notifier().decided(holds))  # type: ignore[arg-type]
    assert notice["Subject"] == "Decided by an administrator: crew list"
    for body in text_parts(notice).values():
        words = " ".join(re.sub(r"<[^>]+>", "", body).split())
        assert "j.doe@army.ml" in words
        assert "chose not to send it, on 27 November 2026, 09:30 UTC" in words
        assert "to k@army.mil instead" in words
        assert "accepted it for delivery to k@army.mil on 27 November 2026, 09:31 UTC" in words
        assert "It is not delivered yet" in words
        assert "ops via web admin" not in words
    named = text_parts(parse(Notifier(name_deciders=True).decided(holds[:1])))  # type: ignore[arg-type]
    assert "an administrator (ops via web admin) chose not to send it" in " ".join(named["text/plain"].split())


TYPO = Flagged("a@ymail.com", "ymail.com looks like gmail.com", "a@gmail.com")
PERSON = Flagged("olga.smith@partner.com", "The message greets Nils, and nobody it goes to is Nils.",
                 "nils.martin@partner.com", about_person=True)


@pytest.mark.parametrize(("items", "title", "doubt", "quiet"), [
    ([TYPO], "Check the address: a@ymail.com", "was delivered to an address that looks mistyped:",
     "about this domain for 1 day"),
    ([PERSON], "Check the recipient: olga.smith@partner.com",
     "was delivered to a recipient who may not be the one you meant:", "about this address for 1 day"),
    ([PERSON, dataclasses.replace(PERSON, recipient="o.berg@partner.com")],
     "Check the recipient: olga.smith@partner.com, o.berg@partner.com",
     "was delivered to recipients who may not be the ones you meant:", "about these addresses for 1 day"),
    ([PERSON, TYPO], "Check the address: olga.smith@partner.com, a@ymail.com",
     "was delivered to addresses that look mistyped or may not be the ones you meant:",
     "about these domains and addresses for 1 day"),
])
def test_a_warning_says_whether_the_address_or_the_person_is_doubted(items: list[Flagged], title: str, doubt: str,
                                                                     quiet: str) -> None:
    """A mistyped-looking domain and a recipient who may be the wrong person at a right domain are told apart in
    the warning's subject, its first sentence and what it will not be told of again, in both parts."""
    notice = parse(Notifier(host="mx.example.org").warned("me@example-corp.com", items, "crew list",
                                                          dt.timedelta(days=1)))
    assert notice["Subject"] == title
    for kind, part in text_parts(notice).items():
        flat = " ".join(html.unescape(re.sub(r"<[^>]+>", "", part)).split())
        assert doubt in flat.replace("crew list was", "was"), kind
        assert quiet in flat, kind
        for item in items:
            assert item.reason in flat, kind
            assert f"Did you mean {item.suggestion}?" in flat, kind
    shown = text_parts(notice)["text/html"]
    assert ("Check the recipient</h1>" in shown) == all(item.about_person for item in items)


def test_a_warning_at_rcpt_says_what_is_doubted_before_the_message_is_sent() -> None:
    notice = parse(Notifier(host="mx.example.org").warned("me@example-corp.com", [PERSON], None, dt.timedelta(hours=2)))
    plain = " ".join(text_parts(notice)["text/plain"].split())
    assert "You are sending a message to a recipient who may not be the one you meant. It was not stopped:" in plain
    assert "about this address for 2 hours" in plain


def test_a_hold_of_a_person_doubted_says_so_in_the_held_and_the_expired_notice() -> None:
    """A hold raised by doubts of the person (a greeting of somebody else at a right domain) is not called a
    mistyped address; a mistyped one still is, and a notice of both says both."""
    person = FakeHold(recipient="olga.smith@partner.com", reason="The message greets Nils.",
                      suggestion="nils.martin@partner.com", about_person=True)
    notifier = Notifier(host="mx.example.org")
    for holds, held, expired in [
        ([person], "because the recipient may not be the one you meant:",
         "It was held because the recipient may not be the one you meant, and nobody released it"),
        ([FakeHold()], "because an address looks mistyped:",
         "It was held because an address looks mistyped, and nobody released it"),
        ([person, FakeHold()], "because addresses look mistyped or may not be the ones you meant:",
         "It was held because addresses look mistyped or may not be the ones you meant, and nobody"),
    ]:
        shown = text_parts(parse(notifier.held(holds, "https://g/c/x", dt.timedelta(days=7))))["text/html"]
        assert held in " ".join(shown.split())
        for part in text_parts(parse(notifier.expired(holds, dt.timedelta(days=7)))).values():
            assert expired in " ".join(re.sub(r"<[^>]+>", "", part).split())
