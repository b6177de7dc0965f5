"""A real Postfix as the sending server, its transport map sending the typo domains to `rcptguard sink`: the sender
gets a bounce from its own Postfix at once, with what was meant; the sink keeps metadata and nothing of the
message; `sink report` shows it. The same against PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
import smtplib
import sqlite3
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.integration.conftest import MakePostfix
from tests.integration.postfix import PostfixInstance
from tests.support.processes import free_port
from tests.support.sink import Message, RecordingSink
from tests.support.typosink import SinkProcess

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).parents[2] / "artifacts"
SECRET = "Passport numbers: X1234567 (do not forward)"


@pytest.fixture
def sending(postfix: MakePostfix, tmp_path: Path) -> Iterator[tuple[PostfixInstance, SinkProcess]]:
    """A sink on its own port, and a Postfix whose transport map sends army.ml, navy.ml and example.net to it (the
    rest, bounces to the sender included, goes to the recording next hop)."""
    port = free_port()
    routes = ", ".join(f"{domain}=smtp:[127.0.0.1]:{port}" for domain in ("army.ml", "navy.ml", "example.net"))
    instance = postfix(main_cf={"transport_maps": f"inline:{{{routes}}}", "smtp_helo_name": "mx.partner.example"})
    with SinkProcess(tmp_path, port, f"sqlite:///{tmp_path / 'sink.db'}") as running:
        yield instance, running


def send(instance: PostfixInstance, to: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"] = "alice@partner.example"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(SECRET + "\n")
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        assert smtp.send_message(msg, from_addr="alice@partner.example", to_addrs=[to]) == {}


def bounce_text(message: Message) -> str:
    """The human-readable part of a Postfix bounce, its folded lines joined."""
    parsed = message_from_bytes(message.data, policy=policy.default)
    part = next(p for p in parsed.walk() if p.get_content_type() == "text/plain")
    return " ".join(str(part.get_content()).split())


def test_a_typo_domain_bounces_at_once_with_what_was_meant(sending: tuple[PostfixInstance, SinkProcess],
                                                           sink: RecordingSink, tmp_path: Path) -> None:
    """Mail to j.doe@army.ml: the sender's own Postfix bounces it at once with the sink's words; the sink's store
    holds one row of metadata and no trace of the message; mail to a domain the sink does not serve bounces as
    refused; `sink report` adds up what was refused."""
    instance, typo_sink = sending
    send(instance, "j.doe@army.ml", "crew list")
    [bounce] = sink.wait_for(1)
    assert bounce.mail_from == ""
    assert bounce.rcpt_tos == ("alice@partner.example",)
    text = bounce_text(bounce)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "sink-bounce.txt").write_text(text + "\n", encoding="utf-8")
    assert ("<j.doe@army.ml>: host 127.0.0.1[127.0.0.1] said: 550 5.1.2 army.ml is not army.mil -- your message "
            "was NOT delivered. Did you mean j.doe@army.mil? Check the address and send it again. (in reply to "
            "RCPT TO command)") in text
    instance.wait_queue_empty()
    assert re.search(r"to=<j\.doe@army\.ml>.*status=bounced", instance.log())
    # metadata only: one row, and nothing of the message anywhere in the store's files
    [row] = typo_sink.cli("report", "--format", "jsonl").stdout.splitlines()
    assert ('"intended": "army.mil", "typo": "army.ml", "sender_domain": "partner.example", "client_ip": '
            '"127.0.0.1", "helo": "mx.partner.example", "count": 1') in row
    with sqlite3.connect(tmp_path / "sink.db") as db:
        [stored] = db.execute("SELECT * FROM sink_refusals").fetchall()
    assert set(stored[2:]) == {"127.0.0.1", "mx.partner.example", "partner.example", None, "army.ml", "army.mil"}
    files = b"".join(p.read_bytes() for p in tmp_path.glob("sink.db*"))
    for trace in (b"crew list", b"X1234567", b"alice", b"j.doe"):
        assert trace not in files
    report = typo_sink.cli("report").stdout
    assert f"1 misdirected recipients refused, {dt.datetime.now(dt.UTC).date()}" in report
    assert re.search(r"army\.mil\s+1  typed as army\.ml", report)

    # a domain the sink does not serve (routed there by mistake, or a prober's): refused, no open relay, no row
    sink.clear()
    send(instance, "bob@example.net", "hello")
    [bounce] = sink.wait_for(1)
    assert "550 5.7.1 This server receives no mail for that domain; relaying denied" in bounce_text(bounce)
    assert len(typo_sink.cli("report", "--format", "jsonl").stdout.splitlines()) == 1

    # several messages: each bounces with its own suggestion, and the report adds them up
    sink.clear()
    for to in ("k.roe@navy.ml", "l.moe@army.ml"):
        send(instance, to, "orders")
    texts = [bounce_text(b) for b in sink.wait_for(2)]
    assert sum("Did you mean k.roe@navy.mil?" in t for t in texts) == 1
    assert sum("Did you mean l.moe@army.mil?" in t for t in texts) == 1
    report = typo_sink.cli("report").stdout
    assert re.search(r"army\.mil\s+2  typed as army\.ml", report), report
    assert re.search(r"127\.0\.0\.1 \(mx\.partner\.example\)\s+3  for partner\.example", report), report


def test_the_sink_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """The same rows, report and purge with the store on PostgreSQL; with the database refusing connections the
    sink answers 451 (the sender's server tries again), and the refusal is said once the database is back."""
    import psycopg
    from sqlalchemy.engine import make_url

    port = free_port()
    with SinkProcess(tmp_path, port, postgres_url, "write_timeout = 2") as typo_sink:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo("mx.partner.example")
            smtp.mail("alice@partner.example")
            assert smtp.rcpt("j.doe@army.ml")[0] == 550
            assert smtp.rcpt("x@af.ml")[0] == 550
        rows = typo_sink.cli("report", "--format", "csv").stdout.splitlines()
        today = dt.datetime.now(dt.UTC).date()
        assert rows[1:] == [f"{today},af.mil,af.ml,partner.example,127.0.0.1,mx.partner.example,1",
                            f"{today},army.mil,army.ml,partner.example,127.0.0.1,mx.partner.example,1"]
        url = make_url(postgres_url)
        admin = url.set(database="postgres").render_as_string(hide_password=False).replace("+psycopg", "")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (url.database,))
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                    smtp.ehlo("mx.partner.example")
                    smtp.mail("alice@partner.example")
                    assert smtp.rcpt("j.doe@army.ml") == (451, b"4.3.0 Temporary failure; try again later")
            finally:
                conn.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true')
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo("mx.partner.example")
            smtp.mail("alice@partner.example")
            assert smtp.rcpt("j.doe@army.ml")[0] == 550
        assert typo_sink.alive()
        assert "Traceback" not in typo_sink.log.read_text()
        assert typo_sink.cli("purge").stdout == "deleted 0 refusal records older than 30 days\n"
