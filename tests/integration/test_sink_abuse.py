"""`rcptguard sink` as its own process against real clients (swaks, smtplib, raw sockets) and against abuse: garbage,
pipelined floods, 1,000 recipients in a session, 500 sessions at once, DATA sent anyway, a 1 MB line. No crash,
every limit holds, and the server's memory stays flat."""

from __future__ import annotations

import asyncio
import os
import shutil
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.processes import RCPTGUARD, free_port
from tests.support.typosink import SinkProcess

pytestmark = pytest.mark.integration

GENEROUS = ("max_connections = 2000\nmax_connections_per_client = 1000\nconnection_rate = 100000\n"
            "recipient_rate = 1000000\n")


def swaks(port: int, *args: str) -> str:
    assert shutil.which("swaks"), "swaks is missing: scripts/setup installs it"
    result = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--from", "alice@partner.example",
                             "--helo", "mx.partner.example", *args], capture_output=True, text=True, timeout=60,
                            check=False)
    return result.stdout + result.stderr


def raw(port: int, data: bytes, wait: float = 10.0) -> bytes:
    """Send `data` at once (pipelined, not reading), then read until the server closes or `wait` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        conn.sendall(data)
        received = bytearray()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(1 << 16)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
        return bytes(received)


def test_swaks_gets_each_recipient_refused_in_plain_words_on_the_socket_systemd_passes(tmp_path: Path) -> None:
    """swaks against the sink started as rcptguard-sink.socket starts it (`--listen systemd`, here through
    systemd-socket-activate: the server itself never binds): each recipient refused on its own, in plain words,
    and DATA never reached."""
    assert shutil.which("systemd-socket-activate"), "systemd-socket-activate is missing (the systemd package)"
    port = free_port()
    command = ("systemd-socket-activate", "-l", f"127.0.0.1:{port}",
               "-E", f"PYTHONPATH={os.environ.get('PYTHONPATH', '')}", RCPTGUARD, "sink", "--listen", "systemd")
    with SinkProcess(tmp_path, port, f"sqlite:///{tmp_path / 'sink.db'}", command=command) as typo_sink:
        said = swaks(port, "--to", "j.doe@army.ml,bob@gmail.com,k.roe@navy.ml")
        assert ("<** 550 5.1.2 army.ml is not army.mil -- your message was NOT delivered. Did you mean "
                "j.doe@army.mil? Check the address and send it again.") in said
        assert "<** 550 5.7.1 This server receives no mail for that domain; relaying denied" in said
        assert "Did you mean k.roe@navy.mil?" in said
        assert "354" not in said  # swaks never got to DATA: no recipient was taken
        rows = typo_sink.cli("report", "--format", "jsonl").stdout.splitlines()
        assert len(rows) == 2


async def one_session(port: int, index: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        await asyncio.sleep(0.5)  # all of them open at once
        writer.write(f"EHLO c{index}\r\nMAIL FROM:<a{index}@partner.example>\r\nRCPT TO:<u{index}@army.ml>\r\n"
                     "QUIT\r\n".encode())
        return await asyncio.wait_for(reader.read(), 60)
    finally:
        writer.close()


async def many_sessions(port: int, count: int) -> list[bytes | BaseException]:
    return await asyncio.gather(*(one_session(port, i) for i in range(count)), return_exceptions=True)


def abuse_round(port: int) -> None:
    """One round of everything: garbage, a pipelined flood, 1,000 recipients, DATA anyway, a 1 MB line, and 500
    sessions at once; each answered as the limits say."""
    garbage = raw(port, bytes(range(256)) * 40 + b"\r\n" + b"\x00\xff GARBAGE\r\n" * 50)
    assert garbage.endswith(b"421 4.7.0 Too many errors; closing\r\n") or b"502 5.5.1 Too many unrecognized" in garbage

    flood = raw(port, b"EHLO flood\r\nMAIL FROM:<a@partner.example>\r\n" + b"RCPT TO:<x@army.ml>\r\n" * 5000)
    replies = flood.split(b"\r\n")
    assert sum(r.startswith(b"550 5.1.2") for r in replies) == 100  # max_recipients
    assert replies[-2] == b"421 4.7.0 Too many errors; closing"  # then error_limit: the rest is never read

    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo("mx.partner.example")
        smtp.mail("alice@partner.example")
        codes = []
        for i in range(1000):
            try:
                codes.append(smtp.rcpt(f"u{i}@navy.ml")[0])
            except smtplib.SMTPServerDisconnected:
                break
    assert codes[:100] == [550] * 100
    assert set(codes[100:]) <= {452, 421}
    assert codes[-1] == 421

    data = raw(port, b"EHLO d\r\nMAIL FROM:<a@partner.example>\r\nRCPT TO:<j.doe@army.ml>\r\nDATA\r\n"
               b"Subject: Passport numbers\r\n\r\nX1234567\r\n.\r\nQUIT\r\n")
    assert b"554 5.5.1 No valid recipients: this server accepts no mail" in data
    assert b"354" not in data

    long_line = raw(port, b"EHLO l\r\nMAIL FROM:<a@partner.example>\r\nRCPT TO:<" + b"a" * 1_000_000 + b"@army.ml>\r\n"
                    b"RCPT TO:<j.doe@army.ml>\r\nQUIT\r\n")
    assert b"500 Command line too long" in long_line
    assert long_line.endswith(b"221 Bye\r\n")

    answers = asyncio.run(many_sessions(port, 500))
    failed = [a for a in answers if isinstance(a, BaseException) or b"550 5.1.2 army.ml is not army.mil" not in a]
    assert not failed, failed[:3]


def test_abuse_does_not_crash_it_limits_hold_and_memory_stays_flat(tmp_path: Path) -> None:
    port = free_port()
    with SinkProcess(tmp_path, port, f"sqlite:///{tmp_path / 'sink.db'}", GENEROUS) as typo_sink:
        abuse_round(port)  # the first round warms up (the engine's caches, the store's pages, the buffers)
        before = typo_sink.rss()
        abuse_round(port)
        after = typo_sink.rss()
        print(f"sink RSS after the first round {before / 2**20:.1f} MB, after the second {after / 2**20:.1f} MB")
        assert typo_sink.alive()
        log = typo_sink.log.read_text()
        assert "Traceback" not in log
        assert after - before < 8 * 2**20, f"RSS grew from {before / 2**20:.1f} MB to {after / 2**20:.1f} MB"
        # every refusal said is recorded, and nothing of any message: the DATA round's secret is nowhere
        refused = sum(int(line.rsplit(",", 1)[1]) for line in typo_sink.cli("report", "--format", "csv")
                      .stdout.splitlines()[1:])
        assert refused == 2 * (100 + 100 + 1 + 1 + 500)
        files = b"".join(p.read_bytes() for p in tmp_path.glob("sink.db*"))
        assert b"X1234567" not in files
        assert b"Passport" not in files
