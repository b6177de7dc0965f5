"""Pin down the integration harness itself: a private Postfix relaying to a recording sink, with real parts."""

from __future__ import annotations

import smtplib
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import MakePostfix
from tests.integration.postfix import PostfixInstance, find_tool
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration

SENDER = "sender@example.org"


def send(instance: PostfixInstance, rcpts: list[str], message: bytes, mail_from: str = SENDER) -> None:
    options = ["SMTPUTF8", "BODY=8BITMIME"] if not message.isascii() or not all(r.isascii() for r in rcpts) else []
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as client:
        refused = client.sendmail(mail_from, rcpts, message, mail_options=options)
    assert refused == {}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def body_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


def test_8bit_body_and_smtputf8_address_arrive_intact(postfix: MakePostfix, sink: RecordingSink) -> None:
    """An 8-bit body sent to an SMTPUTF8 address reaches the sink through Postfix byte-for-byte."""
    instance = postfix()
    rcpt = "jürgen@bücher.example"
    body = "Grüße aus Köln — ½ € ✓\r\nzweite Zeile: ÄÖÜß\r\n.leading dot line\r\n\r\nend\r\n".encode()
    headers = (
        "From: sender@example.org\r\n"
        f"To: {rcpt}\r\n"
        "Subject: Grüße\r\n"
        "Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
        "Message-ID: <harness-8bit@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
    ).encode()
    send(instance, [rcpt], headers + b"\r\n" + body)
    [message] = sink.wait_for(1)
    assert message.mail_from == SENDER
    assert message.rcpt_tos == (rcpt,)
    assert body_of(message.data) == body
    assert headers in message.data  # Postfix only prepends its Received: header


def test_two_recipients_arrive(postfix: MakePostfix, sink: RecordingSink) -> None:
    """Both recipients of one message reach the sink."""
    instance = postfix()
    rcpts = ["one@example.com", "two@example.net"]
    send(instance, rcpts, b"Subject: two\r\n\r\nhello both\r\n")
    sink.wait_for(1)
    wait_until(lambda: sorted(sink.rcpts()) == sorted(rcpts), 20, f"both recipients, got {sink.rcpts()}")
    instance.wait_queue_empty(20)


def test_refused_recipient_bounces_and_the_other_arrives(postfix: MakePostfix, sink: RecordingSink) -> None:
    """When the next hop refuses one recipient, the other is delivered and Postfix bounces the refused one."""
    sink.reply_rcpt = {"nobody@example.net": "550 5.1.1 no such user"}
    instance = postfix()
    send(instance, ["somebody@example.com", "nobody@example.net"], b"Subject: one refused\r\n\r\nhi\r\n")
    messages = sink.wait_for(2)
    delivered = [m for m in messages if m.mail_from == SENDER]
    bounces = [m for m in messages if m.mail_from == ""]
    assert [m.rcpt_tos for m in delivered] == [("somebody@example.com",)]
    assert [m.rcpt_tos for m in bounces] == [(SENDER,)]
    assert b"nobody@example.net" in bounces[0].data
    assert b"550 5.1.1 no such user" in bounces[0].data
    wait_until(lambda: "to=<nobody@example.net>" in instance.log(), 10, "the bounce in the mail log")
    assert "status=bounced" in instance.log()
    instance.wait_queue_empty(20)


def test_mail_waits_in_queue_while_sink_is_down(postfix: MakePostfix, sink: RecordingSink) -> None:
    """With the next hop down the message stays queued, and a flush delivers it once the sink is back."""
    instance = postfix()
    sink.stop()
    send(instance, ["later@example.com"], b"Subject: deferred\r\n\r\nwait for it\r\n")
    wait_until(
        lambda: any(entry["queue_name"] == "deferred" for entry in instance.queue()), 20, "the message to be deferred"
    )
    [entry] = instance.queue()
    assert entry["sender"] == SENDER
    assert [r["address"] for r in entry["recipients"]] == ["later@example.com"]
    assert "connect to 127.0.0.1" in instance.log()
    assert sink.messages == []

    sink.start()
    instance.flush()
    [message] = sink.wait_for(1, timeout=20)
    assert message.rcpt_tos == ("later@example.com",)
    instance.wait_queue_empty(20)


def test_smtp_source_pushes_50_messages(postfix: MakePostfix, sink: RecordingSink) -> None:
    """Postfix's smtp-source load generator gets 50 messages through Postfix to the sink."""
    instance = postfix()
    cmd = [
        find_tool("smtp-source"),
        "-s", "5",
        "-m", "50",
        "-l", "2048",
        "-d",
        "-f", "load@example.org",
        "-t", "sink@example.com",
        f"127.0.0.1:{instance.smtpd_port}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    messages = sink.wait_for(50, timeout=30)
    assert len(messages) == 50
    assert {m.mail_from for m in messages} == {"load@example.org"}
    assert {m.rcpt_tos for m in messages} == {("sink@example.com",)}
    instance.wait_queue_empty(20)
