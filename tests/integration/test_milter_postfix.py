"""The milter inside a real Postfix (the documented main.cf and master.cf lines), on a unix socket: each recipient
passed, refused at RCPT or held, nothing lost when the milter dies, garbage on its socket survived."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import MakePostfix
from tests.integration.milters import SENDER, MilterProcess, cli, cli_content, held
from tests.integration.postfix import PostfixInstance, find_tool
from tests.integration.test_relay_postfix import release_once
from tests.support.processes import free_port
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration

DOCS = Path(__file__).parents[2] / "docs" / "postfix"


def documented(reinject_port: int) -> tuple[dict[str, str], str]:
    """main.cf parameters and master.cf lines from docs/postfix/milter.*.cf, with the test's reinjection port."""
    main: dict[str, str] = {}
    for line in (DOCS / "milter.main.cf").read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            main[name.strip()] = value.strip()
    master = "\n".join(line for line in (DOCS / "milter.master.cf").read_text("utf-8").splitlines()
                       if not line.startswith("#")).replace("127.0.0.1:10026", f"127.0.0.1:{reinject_port}")
    assert main["smtpd_milters"] == "unix:rcptguard/milter.sock"
    assert main["milter_default_action"] == "tempfail"
    return main, master


@pytest.fixture
def miltered(postfix: MakePostfix, tmp_path: Path) -> Iterator[tuple[PostfixInstance, MilterProcess]]:
    reinject = free_port()
    main, master = documented(reinject)
    instance = postfix(main_cf=main, master_cf_extra=master)
    milter = MilterProcess(tmp_path, instance.queue_dir / "rcptguard" / "milter.sock", reinject).start()
    try:
        yield instance, milter
    finally:
        milter.kill()


def message(*to: str, subject: str = "crew list") -> bytes:
    return (f"From: {SENDER}\r\nTo: {', '.join(to)}\r\nSubject: {subject}\r\n"
            "Message-ID: <crew-1@example-corp.com>\r\n\r\nPassport numbers attached.\r\n").encode()


def mail_to(sink: RecordingSink, rcpt: str) -> list[bytes]:
    return [m.data for m in sink.messages if rcpt in m.rcpt_tos]


def test_one_of_each_passed_refused_held_then_released_once(
        miltered: tuple[PostfixInstance, MilterProcess], sink: RecordingSink) -> None:
    """x@army.mil is delivered; y@army.ml is refused at RCPT with the reason in the client's reply; j@gmial.com is
    removed from the delivery and held byte for byte as Postfix delivers the message; released with --to, it
    arrives once. A message whose only recipient is held is delivered to nobody."""
    instance, milter = miltered
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        refused = smtp.sendmail(SENDER, ["x@army.mil", "y@army.ml", "j@gmial.com"],
                                message("x@army.mil", "y@army.ml", "j@gmial.com"))
    code, reason = refused["y@army.ml"]
    assert code == 550
    assert b"5.7.1" in reason
    assert b"blocked" in reason
    assert b"army.mil" in reason
    sink.wait_for(2)  # the message to x@army.mil and the held notice to the sender
    instance.wait_queue_empty()
    (delivered,) = mail_to(sink, "x@army.mil")
    assert [m.rcpt_tos for m in sink.messages if m.data == delivered] == [("x@army.mil",)]
    (notice,) = mail_to(sink, SENDER)
    assert b"gmial.com" in notice
    assert b"/confirm/" in notice
    (entry,) = held(milter.db)
    assert entry["recipient"] == "j@gmial.com"
    assert entry["suggestion"] == "j@gmail.com"
    stored = cli_content(milter.db, str(entry["id"]))
    assert stored == delivered, (stored, delivered)  # the headers Postfix added included, byte for byte
    release_once(milter.db, str(entry["id"]), "j@gmail.com", milter.next_hop)
    sink.wait_for(3)
    instance.wait_queue_empty()
    time.sleep(1)
    assert [m.rcpt_tos for m in sink.messages if "j@gmail.com" in m.rcpt_tos] == [("j@gmail.com",)]
    assert not mail_to(sink, "j@gmial.com")

    # Every recipient held: the quarantine keeps the message, the MTA delivers it to nobody.
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        assert smtp.sendmail(SENDER, ["k@gmial.com"], message("k@gmial.com")) == {}
    sink.wait_for(4)
    instance.wait_queue_empty()
    time.sleep(1)
    assert [m.rcpt_tos for m in sink.messages[3:]] == [(SENDER,)]  # the notice only
    (only,) = [e for e in held(milter.db) if e["recipient"] == "k@gmial.com"]
    stored = cli_content(milter.db, str(only["id"]))
    assert stored.startswith(b"Received: from ")
    assert b"\tfor <k@gmial.com>; " in stored.split(b"\r\n\r\n")[0]
    assert stored.endswith(b"\r\n\r\nPassport numbers attached.\r\n")


def test_milter_killed_mid_message_tempfails_then_delivered_after_restart(
        miltered: tuple[PostfixInstance, MilterProcess], sink: RecordingSink) -> None:
    """The milter dies while it reads a message (one with a held recipient: read to its end): the client gets 4xx
    (milter_default_action = tempfail), and so does the next message while it is down; nothing is queued. After a
    restart the client's retry is delivered once and held once. (A message whose recipients all pass is accepted at
    DATA: the milter's death after that does not concern it.) Then the store is taken away: 451, nothing queued."""
    instance, milter = miltered
    body = b"From: me@example-corp.com\r\nSubject: half\r\n\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        smtp.ehlo("client.example")
        assert smtp.mail(SENDER)[0] == 250
        assert smtp.rcpt("x@army.mil")[0] == 250
        assert smtp.rcpt("j@gmial.com")[0] == 250
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(body[:30])
        time.sleep(0.5)
        milter.kill()
        smtp.send(body[30:] + b".\r\n")
        code, text = smtp.getreply()
    assert 400 <= code < 500, (code, text)
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:  # down: every message deferred
        assert smtp.ehlo()[0] == 250
        code = smtp.mail(SENDER)[0]  # Postfix defers at MAIL or at RCPT, as the milter connection failed
        assert 400 <= (smtp.rcpt("x@army.mil")[0] if code == 250 else code) < 500
    time.sleep(1)
    assert not instance.queue()
    assert not sink.messages
    assert held(milter.db) == []
    milter.start()
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        assert smtp.sendmail(SENDER, ["x@army.mil", "j@gmial.com"], body) == {}
    sink.wait_for(2)  # the message and the held notice
    instance.wait_queue_empty()
    time.sleep(1)
    assert sorted(m.rcpt_tos for m in sink.messages) == [(SENDER,), ("x@army.mil",)]
    assert [e["recipient"] for e in held(milter.db)] == ["j@gmial.com"]

    # The store gone under the running milter: a message with a held recipient is tempfailed whole (its good
    # recipient is not delivered either: the client sends it again, all of it, once the store is back).
    Path(milter.db.removeprefix("sqlite:///")).unlink()
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp, pytest.raises(
            smtplib.SMTPDataError) as refused:
        smtp.sendmail(SENDER, ["x@army.mil", "k@gmial.com"], body)
    assert refused.value.smtp_code == 451
    assert b"4.3.0 Quarantine unavailable" in refused.value.smtp_error
    time.sleep(1)
    assert not instance.queue()
    assert len(sink.messages) == 2


def test_many_concurrent_sessions_all_accounted_for(miltered: tuple[PostfixInstance, MilterProcess],
                                                    sink: RecordingSink) -> None:
    """smtp-source: 20 sessions at once, 500 messages of 10 KB: every one delivered, none twice."""
    instance, _milter = miltered
    subprocess.run([find_tool("smtp-source"), "-s", "20", "-m", "500", "-l", "10240", "-d", "-f", SENDER,
                    "-t", "crew@army.mil", f"127.0.0.1:{instance.smtpd_port}"], check=True, timeout=300)
    sink.wait_for(500, timeout=120)
    instance.wait_queue_empty(60)
    time.sleep(1)
    assert len(sink.messages) == 500
    assert {m.rcpt_tos for m in sink.messages} == {("crew@army.mil",)}


def test_hard_input_is_held_byte_for_byte_or_refused_cleanly(miltered: tuple[PostfixInstance, MilterProcess],
                                                             sink: RecordingSink) -> None:
    """Broken MIME with 8-bit bytes and a 60 KB header: the held copy, released, arrives as Postfix delivered the
    message to the other recipient, byte for byte, under the reinjection's Received header (Postfix folds the long
    line as it sends, both times). IDN: the Cyrillic lookalike held in both its forms (SMTPUTF8). CR/LF inside an
    address never reaches a recipient: Postfix refuses the line, and the milter serves the next message. A warned
    recipient gets the message unchanged; its sender gets the warning."""
    instance, milter = miltered
    broken = (b"From: me@example-corp.com\r\nTo: x@army.mil, j@gmial.com\r\nSubject: =?utf-8?q?broken?=\r\n"
              b"X-Long: " + b"a" * 60_000 + b"\r\n"
              b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
              b"--never-closed\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64\xff\xfe\r\n")
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        assert smtp.sendmail(SENDER, ["x@army.mil", "j@gmial.com"], broken) == {}
        assert smtp.sendmail(SENDER, ["a@gmаil.com", "b@xn--gmil-63d.com"], message("a@gmаil.com"),
                             mail_options=["SMTPUTF8"]) == {}
    with socket.create_connection(("127.0.0.1", instance.smtpd_port), timeout=30) as raw, \
            raw.makefile("rb") as reader:
        replies = []
        for line in (b"EHLO client.example", b"MAIL FROM:<me@example-corp.com>", b"RCPT TO:<a@arm\ny.mil>",
                     b"RCPT TO:<b@arm\ry.mil>", b"QUIT"):
            if not replies:
                reader.readline()  # the greeting
            raw.sendall(line + b"\r\n")
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            replies.append(reply)
    assert replies[1].startswith(b"250")
    assert all(not r.startswith(b"250") for r in replies[2:4]), replies
    sink.wait_for(3)  # the broken message to x@army.mil and two held notices
    instance.wait_queue_empty()
    time.sleep(1)
    (delivered,) = mail_to(sink, "x@army.mil")
    entries = {str(e["recipient"]): str(e["id"]) for e in held(milter.db)}
    assert sorted(entries) == ["a@gmаil.com", "b@xn--gmil-63d.com", "j@gmial.com"]
    released = cli("quarantine", "release", entries["j@gmial.com"], "--db", milter.db,
                   "--next-hop", f"127.0.0.1:{milter.next_hop}")
    assert released.returncode == 0, released.stdout + released.stderr
    sink.wait_for(4)
    instance.wait_queue_empty()
    (again,) = mail_to(sink, "j@gmial.com")
    received, rest = first_field(again)
    assert received.startswith(b"Received: from ")  # the reinjection's own, in front of the copy as it was delivered
    assert rest == delivered
    assert delivered.count(b"a" * 900) >= 60  # the 60 KB field is there, however Postfix folded it
    assert {r for m in sink.messages for r in m.rcpt_tos} == {"x@army.mil", "j@gmial.com", SENDER}
    assert milter.alive()

    # A warned recipient: delivered as it is, and the sender (never the recipient) is told why.
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        assert smtp.sendmail(SENDER, ["w@mail.com"], message("w@mail.com", subject="warned")) == {}
    sink.wait_for(6)
    (warned,) = mail_to(sink, "w@mail.com")
    assert b"Rcptguard" not in warned
    notices = [m.data for m in sink.messages[-2:] if m.rcpt_tos == (SENDER,)]
    assert len(notices) == 1
    assert b"mail.com" in notices[0]
    assert b"gmail.com" in notices[0]


def first_field(message: bytes) -> tuple[bytes, bytes]:
    """The first header field of a message (with its continuation lines) and the rest."""
    end = message.index(b"\r\n")
    while message[end + 2:end + 3] in (b" ", b"\t"):
        end = message.index(b"\r\n", end + 2)
    return message[:end + 2], message[end + 2:]


def test_observe_mode_at_the_milter_holds_nothing_and_records_everything(
        postfix: MakePostfix, sink: RecordingSink, tmp_path: Path) -> None:
    """`mode = "observe"` at the milter: a recipient it would refuse (.ml, a force rule) and one it would hold
    (gmial.com) are delivered with the good one, once each; nobody is told, nothing is held; both verdicts are in
    `rcptguard report observe`; a malformed address is still refused (it cannot be delivered anyway)."""
    reinject = free_port()
    main, master = documented(reinject)
    instance = postfix(main_cf=main, master_cf_extra=master)
    milter = MilterProcess(tmp_path, instance.queue_dir / "rcptguard" / "milter.sock", reinject)
    milter.config.write_text('mode = "observe"\n' + milter.config.read_text("utf-8"), encoding="utf-8")
    milter.start()
    try:
        with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
            refused = smtp.sendmail(SENDER, ["x@army.mil", "y@army.ml", "j@gmial.com"],
                                    message("x@army.mil", "y@army.ml", "j@gmial.com"))
            assert refused == {}
            smtp.ehlo()
            code, _ = smtp.docmd("MAIL FROM:<me@example-corp.com>")
            assert code == 250
            code, _ = smtp.docmd("RCPT TO:<a@@army.mil>")
            assert code >= 500
        got = sink.wait_for(1)
        instance.wait_queue_empty()
        time.sleep(3)  # a notice, had one been sent, would have arrived; the observations are written (flush: 2 s)
    finally:
        milter.kill(signal.SIGTERM)  # a clean stop writes what is still pending
    assert sorted(r for m in got for r in m.rcpt_tos) == ["j@gmial.com", "x@army.mil", "y@army.ml"]
    assert mail_to(sink, SENDER) == []
    assert held(milter.db) == []
    report = cli("report", "observe", "--db", milter.db)
    assert report.returncode == 0, report.stderr
    assert "2 recipients would not have simply passed" in report.stdout
    assert "1 hold" in report.stdout
    assert "1 reject" in report.stdout
