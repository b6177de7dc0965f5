"""The relay behind a real Postfix, as its after-queue content filter or smart host: nothing is ever lost."""

from __future__ import annotations

import base64
import contextlib
import json
import resource
import signal
import smtplib
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import dkim
import psutil
import pytest

from tests.integration.conftest import MakePostfix
from tests.integration.postfix import PostfixInstance
from tests.support.processes import RCPTGUARD, free_port, wait_port
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration

DOCS = Path(__file__).parents[2] / "docs" / "postfix"


def documented(relay_port: int, reinject_port: int) -> tuple[dict[str, str], str]:
    """main.cf parameters and master.cf lines from docs/postfix/relay.*.cf, with the test's ports."""
    main: dict[str, str] = {}
    for line in (DOCS / "relay.main.cf").read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            main[name.strip()] = value.strip().replace("127.0.0.1]:10025", f"127.0.0.1]:{relay_port}")
    master = "\n".join(line for line in (DOCS / "relay.master.cf").read_text("utf-8").splitlines()
                       if not line.startswith("#")).replace("127.0.0.1:10026", f"127.0.0.1:{reinject_port}")
    assert main["content_filter"] == f"scan:[127.0.0.1]:{relay_port}"
    return main, master


class RelayProcess:
    """`rcptguard relay` as its own process."""

    def __init__(self, tmp_path: Path, port: int, next_hop: int, db: str | None = None, *,
                 relay_section: str = "", open_files: int | None = None) -> None:
        self.port = port
        self.next_hop = next_hop
        self.db = db or f"sqlite:///{tmp_path / 'store.db'}"
        self.log = tmp_path / f"relay-{port}.log"
        self.config = tmp_path / f"relay-{port}.toml"
        self.config.write_text(f"[relay]\n{relay_section}\n", encoding="utf-8")
        self.open_files = open_files  # a hard limit on the relay's open files (`ulimit -n`)
        self.proc: subprocess.Popen[bytes] | None = None

    def _limit_files(self) -> None:
        if self.open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def start(self) -> RelayProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [RCPTGUARD, "relay", "--config", str(self.config), "--protect", "mil", "--known", "gmail.com",
                 "--listen", f"127.0.0.1:{self.port}", "--next-hop", f"127.0.0.1:{self.next_hop}", "--db", self.db],
                stderr=log, preexec_fn=self._limit_files if self.open_files else None)  # noqa: PLW1509
        wait_port(self.port, self.proc, self.log)
        return self

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(10)

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)


@contextlib.contextmanager
def relay_process(tmp_path: Path, port: int, next_hop: int, db: str | None = None) -> Iterator[RelayProcess]:
    relay = RelayProcess(tmp_path, port, next_hop, db).start()
    try:
        yield relay
    finally:
        relay.kill(signal.SIGTERM)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RCPTGUARD, *args], capture_output=True, text=True, timeout=60, check=False)


def held(db: str) -> list[dict[str, object]]:
    result = cli("quarantine", "list", "--db", db, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def release_once(db: str, hold_id: str, to: str, next_hop: int) -> None:
    """`quarantine release ID --to ADDRESS`, twice: the first delivers, the second is told it was decided."""
    command = ("quarantine", "release", hold_id, "--to", to, "--db", db, "--next-hop", f"127.0.0.1:{next_hop}")
    result = cli(*command)
    assert result.returncode == 0, result.stdout + result.stderr
    assert cli(*command).returncode == 1


def send(instance: PostfixInstance, *to: str, subject: str = "crew list") -> dict[str, tuple[int, bytes]]:
    msg = EmailMessage()
    msg["From"] = "me@example-corp.com"
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content("Passport numbers attached.\n")
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        return smtp.send_message(msg, from_addr="me@example-corp.com", to_addrs=list(to))


def wait_until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


@pytest.fixture
def filtered(postfix: MakePostfix, tmp_path: Path) -> Iterator[tuple[PostfixInstance, RelayProcess]]:
    """Postfix with the relay as its content filter (the documented lines), reinjecting into Postfix."""
    relay_port, reinject = free_port(), free_port()
    main, master = documented(relay_port, reinject)
    instance = postfix(main_cf=main, master_cf_extra=master)
    with relay_process(tmp_path, relay_port, reinject) as relay:
        yield instance, relay


def test_good_delivered_mistyped_held_then_released_to_the_suggestion(
        filtered: tuple[PostfixInstance, RelayProcess], sink: RecordingSink) -> None:
    """One good and one mistyped recipient: the good one arrives at once, the other waits in the quarantine,
    and `release --to` the suggested address delivers it there exactly once."""
    instance, relay = filtered
    assert send(instance, "x@army.mil", "y@army.ml") == {}
    got = sink.wait_for(2)
    assert sorted(m.rcpt_tos for m in got) == [("me@example-corp.com",), ("x@army.mil",)]  # mail and notice
    instance.wait_queue_empty()
    (entry,) = held(relay.db)
    assert entry["recipient"] == "y@army.ml"
    assert entry["suggestion"] == "y@army.mil"
    release_once(relay.db, str(entry["id"]), "y@army.mil", relay.next_hop)
    messages = sink.wait_for(3)
    instance.wait_queue_empty()
    time.sleep(1)
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == ["me@example-corp.com", "x@army.mil",
                                                                    "y@army.mil"]
    assert b"Passport numbers" in messages[2].data
    assert held(relay.db) == []


def test_dkim_signature_still_verifies_after_release(filtered: tuple[PostfixInstance, RelayProcess],
                                                     sink: RecordingSink, tmp_path: Path) -> None:
    """A DKIM-signed message (simple/simple, 8-bit UTF-8 body, a line starting with a dot, a bare LF-free
    CRLF body) goes Postfix -> relay -> quarantine -> release -> Postfix -> sink, and its signature verifies
    where it arrives: the quarantine kept it byte for byte."""
    instance, relay = filtered
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                            capture_output=True).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    body = ("Pässe und Crew-Liste.\r\n.Eine Zeile mit Punkt.\r\n\r\nGrüße\r\n").encode()
    headers = (b"From: me@example-corp.com\r\nTo: y@army.ml\r\nSubject: =?utf-8?q?Crew_f=C3=BCr_Mali?=\r\n"
               b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <dkim1@example-corp.com>\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")
    signature = dkim.sign(headers + b"\r\n" + body, b"sel", b"example-corp.com", key.read_bytes(),
                          canonicalize=(b"simple", b"simple"),
                          include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"content-type"])
    signed = signature + headers + b"\r\n" + body
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.sendmail("me@example-corp.com", ["y@army.ml"], signed, mail_options=["BODY=8BITMIME"]) == {}
    sink.wait_for(1)  # the notice to the sender
    instance.wait_queue_empty()
    (entry,) = held(relay.db)
    result = cli("quarantine", "release", str(entry["id"]), "--to", "y@army.mil", "--db", relay.db,
                 "--next-hop", f"127.0.0.1:{relay.next_hop}")
    assert result.returncode == 0, result.stdout + result.stderr
    (arrived,) = [m for m in sink.wait_for(2) if m.rcpt_tos == ("y@army.mil",)]
    assert body in arrived.data  # 8-bit and the dot line as sent
    assert dkim.verify(arrived.data, dnsfunc=lambda name, timeout=5: record if name == b"sel._domainkey."
                       b"example-corp.com." else None)


def test_relay_killed_in_the_middle_of_data(postfix: MakePostfix, tmp_path: Path) -> None:
    """SIGKILL while the relay handles DATA: Postfix keeps the message and redelivers it; nothing is lost,
    at most one copy is repeated, and the held recipient is in the quarantine once."""
    with RecordingSink(delay_data=5.0) as slow:
        relay_port = free_port()
        instance = postfix(main_cf={"content_filter": f"smtp:[127.0.0.1]:{relay_port}"})
        relay = RelayProcess(tmp_path, relay_port, slow.port).start()
        try:
            assert send(instance, "x@army.mil", "y@army.ml") == {}
            slow.wait_for(1)  # the relay is now waiting for the next hop's reply to DATA
            relay.kill(signal.SIGKILL)
            wait_until(lambda: "lost connection" in instance.log() or "Connection reset" in instance.log())
            assert len(instance.queue()) == 1
            slow.delay_data = 0.0
            relay.start()
            instance.flush()
            instance.wait_queue_empty(60)
        finally:
            relay.kill(signal.SIGTERM)
        copies = [m for m in slow.messages if m.rcpt_tos == ("x@army.mil",)]
        assert 1 <= len(copies) <= 2
        assert [e["recipient"] for e in held(relay.db)] == ["y@army.ml"]


@pytest.mark.parametrize("fault", ["down", "421", "4xx-data"])
def test_next_hop_trouble_keeps_the_message_in_postfix(postfix: MakePostfix, tmp_path: Path, fault: str) -> None:
    """Next hop down, 421, or 4xx at DATA: the relay answers 4xx and the message stays in Postfix's queue
    until the next hop is back."""
    reply = {"421": "421 4.3.2 shutting down", "4xx-data": "451 4.3.0 try again"}.get(fault)
    with RecordingSink(reply_data=reply) as hop:
        if fault == "down":
            hop.stop()
        relay_port = free_port()
        instance = postfix(main_cf={"content_filter": f"smtp:[127.0.0.1]:{relay_port}"})
        with relay_process(tmp_path, relay_port, hop.port):
            assert send(instance, "x@army.mil") == {}
            wait_until(lambda: "status=deferred" in instance.log())
            assert len(instance.queue()) == 1
            assert hop.messages == []
            hop.reply_data = None
            hop.start()
            instance.flush()
            instance.wait_queue_empty(60)
            assert [m.rcpt_tos for m in hop.wait_for(1)] == [("x@army.mil",)]


def test_database_locked_defers_and_holds_once(postfix: MakePostfix, sink: RecordingSink, tmp_path: Path) -> None:
    """With the store locked, a message with a held recipient is deferred, then held exactly once."""
    relay_port = free_port()
    instance = postfix(main_cf={"content_filter": f"smtp:[127.0.0.1]:{relay_port}"})
    db_path = tmp_path / "locked.db"
    with relay_process(tmp_path, relay_port, sink.port, db=f"sqlite:///{db_path}") as relay:
        blocker = sqlite3.connect(db_path, timeout=0)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            assert send(instance, "x@army.mil", "y@army.ml") == {}
            wait_until(lambda: "status=deferred" in instance.log(), 60)
            assert "Quarantine unavailable" in instance.log()
        finally:
            blocker.rollback()
            blocker.close()
        instance.flush()
        instance.wait_queue_empty(60)
        assert [e["recipient"] for e in held(relay.db)] == ["y@army.ml"]
        assert sorted(sink.rcpts()) == ["me@example-corp.com", "x@army.mil"]  # the mail, and one notice


def test_disk_full_defers_with_no_half_written_entry(postfix: MakePostfix, sink: RecordingSink,
                                                     tmp_path: Path) -> None:
    """The store on a full tmpfs: 4xx, the message stays queued, no entry is half written; with room it is held."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        relay_port = free_port()
        instance = postfix(main_cf={"content_filter": f"smtp:[127.0.0.1]:{relay_port}",
                                    "message_size_limit": "20480000"})
        db = f"sqlite:///{mount / 'store.db'}"
        with relay_process(tmp_path, relay_port, sink.port, db=db) as relay:
            filler = mount / "filler"
            free = psutil.disk_usage(str(mount)).free
            filler.write_bytes(b"x" * max(0, free - 64 * 1024))
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "me@example-corp.com", "y@army.ml", "big"
            msg.set_content("A" * 400_000)
            with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
                smtp.send_message(msg, from_addr="me@example-corp.com", to_addrs=["y@army.ml"])
            wait_until(lambda: "status=deferred" in instance.log(), 60)
            assert len(instance.queue()) == 1
            assert held(relay.db) == []  # read while the disk is still full: Postfix retries every 2 s
            filler.unlink()
            instance.flush()
            instance.wait_queue_empty(60)
            (entry,) = held(relay.db)
            assert entry["recipient"] == "y@army.ml"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("count", [3000, pytest.param(10_000, id="10000", marks=pytest.mark.soak)])
def test_soak_many_messages(count: int, postfix: MakePostfix, sink: RecordingSink, tmp_path: Path) -> None:
    """`count` messages (3,000 in the default run, 10,000 in the soak) through Postfix -> relay -> sink: every one
    arrives or is held, the queue empties, and the relay's memory stays flat after the first fifth."""
    relay_port = free_port()
    instance = postfix(main_cf={"content_filter": f"smtp:[127.0.0.1]:{relay_port}",
                                "default_destination_concurrency_limit": "20"})
    warm, held_count = count // 5, count // 100
    with relay_process(tmp_path, relay_port, sink.port) as relay:
        def source(number: int, to: str) -> None:
            subprocess.run(["smtp-source", "-s", "20", "-m", str(number), "-l", "2048", "-d", "-f",
                            "me@example-corp.com", "-t", to, f"127.0.0.1:{instance.smtpd_port}"],
                           check=True, timeout=600)

        source(warm, "x@army.mil")
        sink.wait_for(warm, 300)
        early = relay.rss()
        source(count - warm - held_count, "x@army.mil")
        source(held_count, "y@army.ml")
        sink.wait_for(count, 600)  # the clean messages and a notice for each held one
        instance.wait_queue_empty(300)
        late = relay.rss()
        assert len([m for m in sink.messages if m.rcpt_tos == ("x@army.mil",)]) == count - held_count
        assert len([m for m in sink.messages if m.rcpt_tos == ("me@example-corp.com",)]) == held_count
        assert len(held(relay.db)) == held_count
        assert instance.queue() == []
        assert late - early < 40 * 1024 * 1024, (early, late)
