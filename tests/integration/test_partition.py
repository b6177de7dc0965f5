"""A network partition between the relay and its PostgreSQL store, made by a proxy between them (tests/support/
proxy.py): the database's connections cut, then stalled. A message that needs the store (a held recipient) gets a
4xx while the store is out of reach, never a 5xx; mail that needs nothing stored goes on; once the store is back
the relay recovers by itself, and the client's retry of each message ends with exactly one hold."""

from __future__ import annotations

import smtplib
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from rcptguard.store import Store
from rcptguard.store.quarantine import Quarantine
from tests.integration.pg import PostgresServer
from tests.support.processes import RCPTGUARD, free_port, running
from tests.support.proxy import Proxy
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration

REPLY_WITHIN = 6.0  # the relay answers the final dot within this, whatever the store is doing


def message(subject: str, to: str) -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "me@example-corp.com", to, subject
    mail["Message-ID"] = f"<{subject.replace(' ', '-')}@example-corp.com>"
    mail.set_content(f"{subject}\n")
    return mail.as_bytes()


def send(port: int, subject: str, to: str) -> tuple[int, bytes]:
    """The final dot's answer (the client's view: a 4xx is kept and tried again)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo()
        smtp.mail("me@example-corp.com")
        code, text = smtp.rcpt(to)
        assert code == 250, text
        try:
            return smtp.data(message(subject, to))
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error


def holds(url: str) -> list[str]:
    store = Store.open(url)
    try:
        return sorted(hold.subject for hold in Quarantine(store).list())
    finally:
        store.close()


def test_a_partition_from_the_store_loses_nothing_and_heals(postgres_server: PostgresServer,
                                                             postgres_url: str, sink: RecordingSink,
                                                             tmp_path: Path) -> None:
    """Cut: the held message gets 451 at once, a clean one is forwarded. Stalled: the held message gets 451 within
    reply_within, and its work goes on. Healed: the retries get 250, every held message is held once, the clean
    message arrived once, and the relay was never restarted."""
    Store.open(postgres_url).close()  # migrated directly, before the proxy is in the way
    database = postgres_url.rsplit("/", 1)[1]
    port = free_port()
    config = tmp_path / "rcptguard.toml"
    with Proxy(postgres_server.port) as proxy:
        through = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{database}"
        config.write_text(f'protect = ["mil"]\n\n[relay]\nnext_hop = "127.0.0.1:{sink.port}"\n'
                          f"reply_within = {REPLY_WITHIN}\nflush_interval = 0.5\n\n[dns]\nenabled = false\n",
                          encoding="utf-8")
        relay = [RCPTGUARD, "relay", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--db", through]
        with running(relay, port, tmp_path / "relay.log") as process:
            assert send(port, "before", "x@army.ml")[0] == 250

            proxy.drop()
            started = time.monotonic()
            code, text = send(port, "cut", "x@army.ml")
            assert 400 <= code < 500, text
            assert time.monotonic() - started < REPLY_WITHIN
            assert send(port, "clean while cut", "bob@partner.example")[0] == 250

            proxy.restore()
            deadline = time.monotonic() + 60
            while (answer := send(port, "cut", "x@army.ml"))[0] != 250:  # the client's retry
                assert 400 <= answer[0] < 500, answer
                assert time.monotonic() < deadline, answer
                time.sleep(1)

            proxy.stall()
            answers: list[tuple[int, bytes]] = []
            stalled = threading.Thread(target=lambda: answers.append(send(port, "stalled", "y@army.ml")))
            started = time.monotonic()
            stalled.start()
            stalled.join(REPLY_WITHIN + 30)
            assert answers, "no answer while the store was stalled"
            assert 400 <= answers[0][0] < 500, answers
            assert time.monotonic() - started < REPLY_WITHIN + 10
            proxy.restore()
            deadline = time.monotonic() + 60
            while (answer := send(port, "stalled", "y@army.ml"))[0] != 250:
                assert 400 <= answer[0] < 500, answer
                assert time.monotonic() < deadline, answer
                time.sleep(1)
            assert process.poll() is None  # never restarted
    assert holds(postgres_url) == ["before", "cut", "stalled"]
    delivered = [m for m in sink.messages if "bob@partner.example" in m.rcpt_tos]
    assert len(delivered) == 1
    assert not [m for m in sink.messages if any(r.endswith("@army.ml") for r in m.rcpt_tos)]
