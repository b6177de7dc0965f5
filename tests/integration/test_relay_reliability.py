"""The relay behind a real Postfix, in the failures an outside probe found: a next hop slower than a minute at
the final dot, more recipients than the next hop takes in one transaction, and a flood of idle connections."""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import MakePostfix
from tests.integration.test_relay_postfix import RelayProcess, held, send, wait_until
from tests.support.processes import RCPTGUARD, free_port
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration


def filter_to(port: int, **extra: str) -> dict[str, str]:
    """main.cf lines that send every message through the relay on `port` (an after-queue content filter)."""
    return {"content_filter": f"smtp:[127.0.0.1]:{port}", **extra}


def test_a_next_hop_slower_than_a_minute_at_the_final_dot_gets_one_copy(postfix: MakePostfix,
                                                                        tmp_path: Path) -> None:
    """The next hop answers the final dot after 75 s, both for a forwarded message and for a release from the
    command line: each is delivered exactly once (the relay waits as RFC 5321 says, and answers Postfix before
    Postfix's own 600 s; a release waits as long)."""
    with RecordingSink(delay_data=75.0) as slow:
        relay_port = free_port()
        instance = postfix(main_cf=filter_to(relay_port))
        relay = RelayProcess(tmp_path, relay_port, slow.port, relay_section="notify = false").start()
        try:
            assert send(instance, "y@army.ml") == {}
            wait_until(lambda: len(held(relay.db)) == 1, 30)
            (entry,) = held(relay.db)
            started = time.monotonic()
            assert send(instance, "x@army.mil") == {}
            release = subprocess.run(
                [RCPTGUARD, "quarantine", "release", str(entry["id"]), "--to", "y@army.mil", "--db", relay.db,
                 "--next-hop", f"127.0.0.1:{slow.port}"], capture_output=True, text=True, timeout=300, check=False)
            assert release.returncode == 0, release.stdout + release.stderr
            assert time.monotonic() - started >= 70
            instance.wait_queue_empty(120)
            time.sleep(8)  # Postfix retries within 2-4 s: a second copy would be here by now
        finally:
            relay.kill()
        assert sorted(m.rcpt_tos for m in slow.messages) == [("x@army.mil",), ("y@army.mil",)]
        assert "status=sent" in instance.log()
        assert "status=deferred" not in instance.log()


def test_more_recipients_than_the_next_hop_takes_are_all_delivered(postfix: MakePostfix, sink: RecordingSink,
                                                                   tmp_path: Path) -> None:
    """1,100 recipients in one message, Postfix -> relay -> Postfix's reinjection port (smtpd_recipient_limit
    1,000: 452 for the rest): the relay sends the rest in a second transaction and every recipient gets it once."""
    relay_port, reinject = free_port(), free_port()
    instance = postfix(
        main_cf=filter_to(relay_port, smtpd_recipient_limit="2000", smtp_destination_recipient_limit="2000",
                          default_destination_recipient_limit="2000"),
        master_cf_extra=(f"127.0.0.1:{reinject} inet n - n - 10 smtpd\n  -o content_filter=\n"
                         "  -o smtpd_recipient_limit=1000\n"))
    rcpts = [f"crew{n:04d}@army.mil" for n in range(1100)]
    relay = RelayProcess(tmp_path, relay_port, reinject).start()
    try:
        assert send(instance, *rcpts) == {}
        instance.wait_queue_empty(120)
    finally:
        relay.kill()
    assert sorted(sink.rcpts()) == rcpts  # each once: the old relay gave up at the 452, on every retry
    assert "status=bounced" not in instance.log()


def test_a_flood_of_idle_connections_leaves_room_for_postfix(postfix: MakePostfix, sink: RecordingSink,
                                                             tmp_path: Path) -> None:
    """With `ulimit -n 256`, 1,100 connections from an address outside the allow list get 554 at once, and
    idle ones from an allowed address are capped; meanwhile Postfix's mail goes through, and the limit is logged."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    relay_port = free_port()
    instance = postfix(main_cf=filter_to(relay_port))
    relay = RelayProcess(tmp_path, relay_port, sink.port, open_files=256,
                         relay_section='allow = ["127.0.0.1/32", "127.0.0.3/32"]').start()
    refused = 0
    with contextlib.ExitStack() as stack:
        try:
            for _ in range(1100):  # not allowed: refused at connect, so nothing piles up
                with socket.socket() as outsider:
                    outsider.settimeout(10)
                    outsider.bind(("127.0.0.2", 0))
                    outsider.connect(("127.0.0.1", relay_port))
                    if outsider.recv(100).startswith(b"554 5.7.1"):
                        refused += 1
            greeted = []
            for _ in range(300):  # allowed but idle: held open by the test
                idle = stack.enter_context(socket.socket())
                idle.settimeout(10)
                idle.bind(("127.0.0.3", 0))
                idle.connect(("127.0.0.1", relay_port))
                greeted.append(idle.recv(100)[:3])
            assert send(instance, "x@army.mil") == {}
            instance.wait_queue_empty(60)
            assert [m.rcpt_tos for m in sink.wait_for(1)] == [("x@army.mil",)]
        finally:
            relay.kill()
    assert refused == 1100
    assert greeted.count(b"220") < 150  # at most half the connections the open files leave room for
    assert greeted.count(b"421") == 300 - greeted.count(b"220")
    log = relay.log.read_text()
    assert "connection limits lowered" in log
    assert "limit hit" in log


def test_store_deleted_under_the_relay_defers_until_restart(postfix: MakePostfix, sink: RecordingSink,
                                                            tmp_path: Path) -> None:
    """`rm store.db store.db-wal store.db-shm` under a running relay: Postfix's next message with a held
    recipient is deferred (451), not answered 250 into an unlinked file; after a restart it is held, once."""
    relay_port = free_port()
    instance = postfix(main_cf=filter_to(relay_port))
    folder = tmp_path / "store"
    folder.mkdir()
    relay = RelayProcess(tmp_path, relay_port, sink.port, db=f"sqlite:///{folder / 'store.db'}",
                         relay_section="notify = false").start()
    try:
        assert send(instance, "first@army.ml") == {}
        wait_until(lambda: len(held(relay.db)) == 1, 30)
        for item in folder.iterdir():
            item.unlink()
        assert send(instance, "second@army.ml", subject="second") == {}
        wait_until(lambda: "Quarantine unavailable" in instance.log(), 30)
        assert len(instance.queue()) == 1
        relay.kill()
        relay.start()
        instance.flush()
        instance.wait_queue_empty(60)
        assert [e["recipient"] for e in held(relay.db)] == ["second@army.ml"]
    finally:
        relay.kill()
