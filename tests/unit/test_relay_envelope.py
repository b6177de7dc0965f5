"""What the envelope asks for survives the relay: DSN (RFC 3461), BODY, XFORWARD; malformed parameters get 501."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import smtplib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcptguard.dsn import DsnError, MailParams, RcptParams, split_params, xtext_decode, xtext_encode
from rcptguard.notify import send_owed
from rcptguard.outbox import Outbox
from tests.support.sink import RecordingSink
from tests.unit.relays import BODY, Relay, make_relay


@pytest.fixture
def extended() -> Iterator[RecordingSink]:
    """A next hop that offers DSN and XFORWARD (like Postfix's reinjection port) and records what it was told."""
    with RecordingSink(extensions=True) as sink:
        yield sink


@pytest.fixture
def relay_to_extended(tmp_path: Path, extended: RecordingSink) -> Iterator[Relay]:
    running = make_relay(tmp_path, extended)
    yield running
    running.close()


def session(relay: Relay) -> smtplib.SMTP:
    client = relay.smtp()
    client.ehlo("mx.example-corp.com")
    return client


def test_the_relay_offers_dsn_and_xforward(relay_to_extended: Relay) -> None:
    """EHLO names DSN and XFORWARD (with the attributes Postfix sends), beside PIPELINING, SMTPUTF8, 8BITMIME."""
    with session(relay_to_extended) as client:
        features = client.esmtp_features
    assert {"dsn", "xforward", "pipelining", "smtputf8", "8bitmime"} <= set(features)
    assert features["xforward"].split() == ["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"]


def test_dsn_parameters_are_carried_to_the_next_hop(relay_to_extended: Relay, extended: RecordingSink) -> None:
    """RET, ENVID (its case kept), NOTIFY, ORCPT and XFORWARD reach a next hop that offers DSN and XFORWARD as
    they were sent; the relay's log names the original client."""
    with session(relay_to_extended) as client:
        assert client.docmd("XFORWARD", "NAME=mail.example-corp.com ADDR=192.0.2.7 PROTO=ESMTP")[0] == 250
        assert client.docmd("XFORWARD", "HELO=laptop.example-corp.com SOURCE=REMOTE")[0] == 250
        client.mail("me@example-corp.com", ["RET=HDRS", "ENVID=QQ314159+2Bx"])
        assert client.rcpt("a@army.mil", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;A@army.mil"])[0] == 250
        assert client.rcpt("b@army.mil", ["NOTIFY=NEVER"])[0] == 250
        assert client.data(BODY)[0] == 250
    (got,) = extended.wait_for(1)
    assert got.mail_params.split() == ["BODY=8BITMIME", "RET=HDRS", "ENVID=QQ314159+2Bx"]
    assert got.rcpt_params == ("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A@army.mil", "NOTIFY=NEVER")
    assert got.xforward.split() == ["NAME=mail.example-corp.com", "ADDR=192.0.2.7", "PROTO=ESMTP",
                                    "HELO=laptop.example-corp.com", "SOURCE=REMOTE"]  # the sink asks no IDENT


def test_a_plain_next_hop_gets_no_dsn_parameters(relay: Relay, sink: RecordingSink) -> None:
    """A next hop that does not offer DSN is not sent its parameters (it would refuse them), and the mail goes on;
    an ASCII body is not declared 8-bit."""
    with session(relay) as client:
        client.mail("me@example-corp.com", ["RET=FULL"])
        assert client.rcpt("a@army.mil", ["NOTIFY=FAILURE"])[0] == 250
        assert client.data(b"Subject: plain\r\n\r\nascii only\r\n")[0] == 250
    (got,) = sink.wait_for(1)
    assert got.rcpt_tos == ("a@army.mil",)


@pytest.mark.parametrize(("command", "args"), [
    ("MAIL", ["RET=PARTIAL"]),
    ("MAIL", ["ENVID=bad=xtext"]),
    ("MAIL", ["ENVID=" + "x" * 101]),
    ("MAIL", ["RET=HDRS", "RET=FULL"]),
    ("MAIL", ["BODY=BINARYMIME"]),
    ("RCPT", ["NOTIFY=SOMETIMES"]),
    ("RCPT", ["NOTIFY=NEVER,SUCCESS"]),
    ("RCPT", ["ORCPT=a@army.mil"]),
    ("RCPT", ["ORCPT=rfc822;a+2@army.mil"]),
])
def test_malformed_parameters_are_refused_with_501(relay_to_extended: Relay, extended: RecordingSink,
                                                     command: str, args: list[str]) -> None:
    """A malformed DSN or BODY parameter is refused with 501 (not 555, not a crash); the session goes on and the
    same message sent right is delivered once."""
    with session(relay_to_extended) as client:
        if command == "MAIL":
            code, text = client.mail("me@example-corp.com", args)
        else:
            client.mail("me@example-corp.com")
            code, text = client.rcpt("a@army.mil", args)
        assert code == 501, text
        assert text.startswith(b"5.5.4 ")
        client.rset()
        assert client.sendmail("me@example-corp.com", ["a@army.mil"], BODY) == {}
    (got,) = extended.wait_for(1)
    assert got.rcpt_tos == ("a@army.mil",)


def test_unknown_parameters_are_refused_not_dropped(relay_to_extended: Relay) -> None:
    """REQUIRETLS and MT-PRIORITY, which the relay does not carry on, are refused (555), never silently lost."""
    with session(relay_to_extended) as client:
        assert client.mail("me@example-corp.com", ["REQUIRETLS"])[0] == 555
        client.rset()
        assert client.mail("me@example-corp.com", ["MT-PRIORITY=3"])[0] == 555


def test_xforward_is_refused_inside_a_transaction_and_when_malformed(relay_to_extended: Relay) -> None:
    """XFORWARD after MAIL is 503; an attribute it does not have or a value that is not xtext is 501."""
    with session(relay_to_extended) as client:
        assert client.docmd("XFORWARD", "COLOR=blue")[0] == 501
        assert client.docmd("XFORWARD", "NAME=a=b")[0] == 501
        client.mail("me@example-corp.com")
        assert client.docmd("XFORWARD", "ADDR=192.0.2.7")[0] == 503


def test_a_corrected_release_keeps_the_original_recipient(relay_to_extended: Relay,
                                                          extended: RecordingSink) -> None:
    """A held recipient released to the suggestion goes out with the sender's NOTIFY, RET and ENVID, and ORCPT
    naming the address the sender typed (what ORCPT is for)."""
    with session(relay_to_extended) as client:
        client.mail("me@example-corp.com", ["RET=HDRS", "ENVID=id42"])
        assert client.rcpt("j.doe@army.ml", ["NOTIFY=SUCCESS,FAILURE"])[0] == 250
        assert client.data(BODY)[0] == 250
    extended.wait_for(1)  # the held notice
    (hold,) = relay_to_extended.quarantine.list()
    extended.clear()
    Outbox(relay_to_extended.quarantine).release(hold.id, "alice", extended.hop, to="j.doe@army.mil")
    (got,) = extended.wait_for(1)
    assert got.rcpt_tos == ("j.doe@army.mil",)
    assert got.mail_params.split() == ["BODY=8BITMIME", "RET=HDRS", "ENVID=id42"]
    assert got.rcpt_params == ("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;j.doe@army.ml",)


def test_notify_never_gets_no_report_of_a_refusal(tmp_path: Path) -> None:
    """A recipient the next hop refuses for good gets the sender a report unless its NOTIFY says NEVER."""
    with RecordingSink(reply_rcpt={"gone@army.mil": "550 5.1.1 no such user",
                                   "gone2@army.mil": "550 5.1.1 no such user"}) as sink:
        relay = make_relay(tmp_path, sink)
        try:
            with session(relay) as client:
                client.mail("me@example-corp.com")
                client.rcpt("a@army.mil")
                client.rcpt("gone@army.mil", ["NOTIFY=NEVER"])
                client.rcpt("gone2@army.mil", ["NOTIFY=FAILURE"])
                assert client.data(BODY)[0] == 250
            got = sink.wait_for(2)
            time.sleep(0.5)
        finally:
            relay.close()
    (report,) = [m for m in got if m.mail_from == ""]
    assert b"gone2@army.mil" in report.data
    assert b"gone@army.mil:" not in report.data
    assert len(sink.messages) == 2
    parsed = email.message_from_bytes(report.data, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"


def test_xtext_round_trips_and_refuses_what_is_not_xtext() -> None:
    """xtext encodes "+", "=", spaces and non-ASCII as +HH and decodes back; a lower-case or short escape is
    not xtext."""
    for text in ("plain", "a+b=c d", "Jörg <j@x>"):
        assert xtext_decode(xtext_encode(text)) == text
    for bad in ("a+2b", "a+2", "a=b", "tab\there"):
        with pytest.raises(DsnError):
            xtext_decode(bad)


def test_parameters_keep_their_case_and_refuse_repeats() -> None:
    """Keywords are case-insensitive, values keep the sender's case; a parameter given twice is refused."""
    params = split_params("ret=hdrs EnvId=AbC")
    assert MailParams.take(params) == MailParams("HDRS", "AbC", None)
    with pytest.raises(DsnError, match="twice"):
        split_params("NOTIFY=NEVER notify=NEVER")
    rcpt = RcptParams.take({"NOTIFY": "failure,delay"})
    assert rcpt.notify == ("FAILURE", "DELAY")
    assert rcpt.wants("FAILURE")
    assert not rcpt.wants("SUCCESS")
    assert RcptParams().wants("FAILURE")
    assert not RcptParams().wants("SUCCESS")


def held_with(relay: Relay, notify: list[str]) -> str:
    """A message held for j.doe@army.ml, sent with ENVID, RET=HDRS and these NOTIFY/ORCPT parameters."""
    with session(relay) as client:
        client.mail("me@example-corp.com", ["RET=HDRS", "ENVID=env+2B42"])
        assert client.rcpt("j.doe@army.ml", notify)[0] == 250
        assert client.data(BODY)[0] == 250
    (hold,) = relay.quarantine.list()
    return hold.id


def test_a_cancelled_hold_is_reported_as_a_dsn(relay_to_extended: Relay, extended: RecordingSink) -> None:
    """An administrator's cancel tells the sender in a multipart/report whose message/delivery-status part names
    the recipient (Action: failed), the original recipient and the envelope id; the body is not returned."""
    hold_id = held_with(relay_to_extended, ["NOTIFY=FAILURE", "ORCPT=rfc822;J.Doe@army.ml"])
    extended.wait_for(1)  # the held notice
    extended.clear()
    quarantine = relay_to_extended.quarantine
    quarantine.cancel(hold_id, "admin", notify_sender=True)
    counts = send_owed(quarantine, relay_to_extended.handler.notifier, extended.hop, warn=print,
                       grace=dt.timedelta(0))
    assert counts == Counter(sent=1)
    (notice,) = extended.messages
    parsed = email.message_from_bytes(notice.data, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    readable, status, returned = parsed.iter_parts()
    assert readable.get_content_type() == "multipart/alternative"
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Original-Envelope-Id"] == "env+2B42"
    assert per_recipient["Final-Recipient"] == "rfc822; j.doe@army.ml"
    assert per_recipient["Original-Recipient"] == "rfc822;J.Doe@army.ml"
    assert (per_recipient["Action"], per_recipient["Status"]) == ("failed", "5.7.1")
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"Passport" not in notice.data


def test_notify_never_silences_the_report_not_the_held_notice(relay_to_extended: Relay,
                                                             extended: RecordingSink) -> None:
    """NOTIFY=NEVER: the sender still gets the held notice (a choice to make, not a report), but no report when
    the hold is cancelled."""
    hold_id = held_with(relay_to_extended, ["NOTIFY=NEVER"])
    extended.wait_for(1)
    quarantine = relay_to_extended.quarantine
    quarantine.cancel(hold_id, "admin", notify_sender=True)
    counts = send_owed(quarantine, relay_to_extended.handler.notifier, extended.hop, warn=print,
                       grace=dt.timedelta(0))
    assert counts == Counter(skipped=1)
    assert len(extended.messages) == 1


def test_notify_success_to_a_next_hop_without_dsn_gets_a_relayed_report(relay: Relay, sink: RecordingSink) -> None:
    """A sender who asks NOTIFY=SUCCESS, forwarded to a next hop that sends no reports, gets `Action: relayed`
    from the relay (RFC 3461 section 4.1); one who did not ask gets nothing."""
    with session(relay) as client:
        client.mail("me@example-corp.com", ["ENVID=e1"])
        assert client.rcpt("a@army.mil", ["NOTIFY=SUCCESS", "ORCPT=rfc822;A@army.mil"])[0] == 250
        assert client.rcpt("b@army.mil")[0] == 250
        assert client.data(BODY)[0] == 250
    got = sink.wait_for(2)
    time.sleep(0.5)
    assert len(sink.messages) == 2
    (report,) = [m for m in got if m.mail_from == ""]
    parsed = email.message_from_bytes(report.data, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    status = next(p for p in parsed.iter_parts() if p.get_content_type() == "message/delivery-status")
    per_message, *per_recipient = status.get_payload()
    assert per_message["Original-Envelope-Id"] == "e1"
    assert [(r["Final-Recipient"], r["Action"], r["Status"], r["Original-Recipient"]) for r in per_recipient] == [
        ("rfc822; a@army.mil", "relayed", "2.0.0", "rfc822;A@army.mil")]


def test_a_released_hold_gets_its_success_report(relay: Relay, sink: RecordingSink) -> None:
    """NOTIFY=SUCCESS on a held recipient: once released and handed to a next hop without DSN, the sender gets
    the relayed report for it (the held notice came first)."""
    with session(relay) as client:
        client.mail("me@example-corp.com")
        assert client.rcpt("j.doe@army.ml", ["NOTIFY=SUCCESS,FAILURE"])[0] == 250
        assert client.data(BODY)[0] == 250
    sink.wait_for(1)  # the held notice
    (hold,) = relay.quarantine.list()
    sink.clear()
    Outbox(relay.quarantine, notifier=relay.handler.notifier).release(hold.id, "me", sink.hop, to="j.doe@army.mil")
    got = sink.wait_for(2)
    assert sorted((m.mail_from, m.rcpt_tos) for m in got) == [("", ("me@example-corp.com",)),
                                                               ("me@example-corp.com", ("j.doe@army.mil",))]
    (report,) = [m for m in got if m.mail_from == ""]
    assert b"Action: relayed" in report.data
    assert b"Original-Recipient: rfc822;j.doe@army.ml" in report.data
