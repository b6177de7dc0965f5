"""The policy service in front of a real Postfix: refused at RCPT time with the reason, never lost."""

from __future__ import annotations

import contextlib
import smtplib
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.integration.conftest import MakePostfix
from tests.integration.postfix import PostfixInstance
from tests.support.processes import RCPTGUARD, free_port, running
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration

DOCS = Path(__file__).parents[2] / "docs" / "postfix" / "policyd.main.cf"


def documented_main_cf(port: int) -> dict[str, str]:
    """The main.cf lines printed in docs/postfix/policyd.main.cf, with the service's test port."""
    params: dict[str, str] = {}
    name = ""
    for line in DOCS.read_text("utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            params[name] += " " + line.strip()
            continue
        name, _, value = line.partition("=")
        name = name.strip()
        params[name] = value.strip()
    assert "check_policy_service inet:127.0.0.1:10040" in params["smtpd_recipient_restrictions"]
    assert "check_policy_service inet:127.0.0.1:10040" in params["smtpd_end_of_data_restrictions"]
    return {k: v.replace("127.0.0.1:10040", f"127.0.0.1:{port}") for k, v in params.items()}


@contextlib.contextmanager
def policyd(tmp_path: Path, port: int, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`rcptguard policyd` as its own process, protecting mil, knowing gmail.com."""
    with running([RCPTGUARD, "policyd", "--protect", "mil", "--known", "gmail.com", "--listen", f"127.0.0.1:{port}",
                  "--db", f"sqlite:///{tmp_path / 'store.db'}", *args], port, tmp_path / f"policyd-{port}.log") as proc:
        yield proc


def message(*to: str, subject: str = "crew list") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "me@example-corp.com"
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content("Passport numbers attached.\n")
    return msg


def send(instance: PostfixInstance, msg: EmailMessage, *to: str) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        return smtp.send_message(msg, from_addr="me@example-corp.com", to_addrs=list(to))


@pytest.fixture
def guarded(postfix: MakePostfix, tmp_path: Path) -> Iterator[tuple[PostfixInstance, int]]:
    port = free_port()
    with policyd(tmp_path, port):
        yield postfix(main_cf=documented_main_cf(port)), port


def test_mistyped_recipient_refused_with_the_reason(guarded: tuple[PostfixInstance, int]) -> None:
    """x@army.ml is refused with a 5xx whose text says what it looks like and what was meant."""
    instance, _ = guarded
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(instance, message("x@army.ml"), "x@army.ml")
    code, text = refused.value.recipients["x@army.ml"]
    assert 500 <= code < 600
    assert b"5.7.1" in text
    assert b"army.ml looks like army.mil" in text
    assert b"Mali" in text
    assert b"Did you mean x@army.mil?" in text


def test_right_recipient_is_delivered(guarded: tuple[PostfixInstance, int], sink: RecordingSink) -> None:
    """x@army.mil passes the guard and reaches the next hop."""
    instance, _ = guarded
    assert send(instance, message("x@army.mil"), "x@army.mil") == {}
    (got,) = sink.wait_for(1)
    assert got.rcpt_tos == ("x@army.mil",)
    assert b"X-Rcptguard-Warning" not in got.data


def test_mixed_recipients(guarded: tuple[PostfixInstance, int], sink: RecordingSink) -> None:
    """One good and one mistyped recipient: the good one is delivered, the bad one refused."""
    instance, _ = guarded
    refused = send(instance, message("x@navy.mil", "y@navy.ml"), "x@navy.mil", "y@navy.ml")
    assert set(refused) == {"y@navy.ml"}
    assert refused["y@navy.ml"][0] >= 500
    (got,) = sink.wait_for(1)
    assert got.rcpt_tos == ("x@navy.mil",)
    instance.wait_queue_empty()
    assert sink.rcpts() == ["x@navy.mil"]


def test_a_warned_recipient_gets_the_message_as_sent(guarded: tuple[PostfixInstance, int],
                                                     sink: RecordingSink) -> None:
    """A warned recipient is delivered, with nothing of the guard's in the message (the warning is the
    sender's business: a notice when notify_smtp is set)."""
    instance, _ = guarded
    assert send(instance, message("a@ymail.com"), "a@ymail.com") == {}
    (got,) = sink.wait_for(1)
    assert got.rcpt_tos == ("a@ymail.com",)
    assert b"X-Rcptguard" not in got.data


def test_guard_down_defers_and_nothing_is_lost(postfix: MakePostfix, sink: RecordingSink, tmp_path: Path) -> None:
    """With the guard stopped Postfix answers 4xx (the client keeps the mail); once it is back, it is delivered."""
    port = free_port()
    instance = postfix(main_cf=documented_main_cf(port))
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(instance, message("x@army.mil"), "x@army.mil")
    code, text = refused.value.recipients["x@army.mil"]
    assert 400 <= code < 500, text
    assert b"4.3.5" in text
    assert sink.messages == []
    assert instance.queue() == []
    with policyd(tmp_path, port):
        assert send(instance, message("x@army.mil"), "x@army.mil") == {}
        sink.wait_for(1)
    assert sink.rcpts() == ["x@army.mil"]


def test_hold_mode_holds_notifies_and_releases(postfix: MakePostfix, sink: RecordingSink, tmp_path: Path) -> None:
    """hold_mode = hold: Postfix holds the message, the sender gets a notice, and `rcptguard release` sends it."""
    port = free_port()
    instance = postfix(main_cf=documented_main_cf(port))
    config = tmp_path / "hold.toml"
    config.write_text(f'[policyd]\nhold_mode = "hold"\nnotify_smtp = "127.0.0.1:{instance.smtpd_port}"\n'
                      'notify_from = "postmaster@example-corp.com"\n', encoding="utf-8")
    with policyd(tmp_path, port, "--config", str(config)):
        with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as abandoned:  # never reaches DATA
            abandoned.ehlo()
            abandoned.mail("me@example-corp.com")
            assert abandoned.rcpt("y@army.ml")[0] == 250
        assert send(instance, message("x@army.ml", "z@navy.ml"), "x@army.ml", "z@navy.ml") == {}
        (notice,) = sink.wait_for(1)
        assert notice.rcpt_tos == ("me@example-corp.com",)
        assert b"army.ml looks like army.mil" in notice.data
        assert b"z@navy.ml" in notice.data  # one notice for the message, naming each held recipient
        assert b"y@army.ml" not in notice.data  # the abandoned transaction held nothing and is not mentioned
        assert b"Passport numbers" not in notice.data  # a notice never carries the held message
        held = [entry for entry in instance.queue() if entry["queue_name"] == "hold"]
        assert len(held) == 1
        assert sorted(r["address"] for r in held[0]["recipients"]) == ["x@army.ml", "z@navy.ml"]
        assert f"queue id {held[0]['queue_id']}".encode() in notice.data
        result = subprocess.run([RCPTGUARD, "release", "--postfix-config", str(instance.config_dir),
                                 held[0]["queue_id"]], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        instance.flush()
        messages = sink.wait_for(2)
    assert sorted(messages[1].rcpt_tos) == ["x@army.ml", "z@navy.ml"]
    time.sleep(0.5)
    assert len(sink.messages) == 2  # no notice for the abandoned transaction, nor a second one
