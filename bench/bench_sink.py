"""Benchmark of `rcptguard sink` against Postfix's `smtp-sink -f rcpt` answering the same sessions.

Both servers run as their own processes on loopback. `smtp-sink -f rcpt` refuses every RCPT with a 5xx and does
nothing else: the floor of what answering costs. The sink decides (its map, then the engine over the intended
domains), stores one metadata row per refusal (SQLite, synchronous=FULL, rows of concurrent sessions committed
together) and says the plain words. The load comes from client processes here, each keeping many sessions open
at once with asyncio; a session is EHLO, MAIL FROM, its RCPTs pipelined (as Postfix's smtp client sends them),
QUIT. Rounds alternate between the two servers; the medians and their ratio are printed.

    python bench/bench_sink.py [--sessions 2000] [--recipients 1 10] [--concurrency 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RCPTGUARD = str(Path(sys.executable).parent / "rcptguard")
SMTP_SINK = "/usr/sbin/smtp-sink"
TYPOS = ("army.ml", "navy.ml", "af.ml", "marines.ml", "examp1e.com", "exmaple.com", "example.co", "uscg.ml")
CLIENTS = 2  # client processes (the machine has two cores; the servers get the rest of the time)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        else:
            return


async def session(port: int, index: int, recipients: int) -> int:
    """One session; how many of its recipients were refused with a 5xx."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        writer.write(b"EHLO bench.example\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
        rcpts = b"".join(f"RCPT TO:<u{index}.{n}@{TYPOS[(index + n) % len(TYPOS)]}>\r\n".encode()
                         for n in range(recipients))
        writer.write(b"MAIL FROM:<sender@partner.example>\r\n" + rcpts)
        await reader.readline()
        refused = 0
        for _ in range(recipients):
            refused += (await reader.readline()).startswith(b"5")
        writer.write(b"QUIT\r\n")
        await reader.readline()
        return refused
    finally:
        writer.close()


async def load(port: int, first: int, count: int, recipients: int, concurrency: int) -> int:
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int) -> int:
        async with limit:
            return await session(port, index, recipients)

    return sum(await asyncio.gather(*(one(first + i) for i in range(count))))


def client(args: tuple[int, int, int, int, int]) -> int:
    port, first, count, recipients, concurrency = args
    return asyncio.run(load(port, first, count, recipients, concurrency))


def run_round(port: int, sessions: int, recipients: int, concurrency: int) -> tuple[float, int]:
    """Refused recipients per second over `sessions` sessions, and how many were refused."""
    share = sessions // CLIENTS
    jobs = [(port, i * share, share, recipients, concurrency // CLIENTS) for i in range(CLIENTS)]
    with multiprocessing.Pool(CLIENTS) as pool:
        started = time.perf_counter()
        refused = sum(pool.map(client, jobs))
        elapsed = time.perf_counter() - started
    return refused / elapsed, refused


def start_sink(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = folder / "sink.toml"
    config.write_text(f'[db]\nurl = "sqlite:///{folder / "sink.db"}"\n\n[sink]\nintended = ["mil", "example.com"]\n'
                      'domains = { "uscg.ml" = "uscg.mil" }\nmax_connections = 5000\n'
                      "max_connections_per_client = 5000\nconnection_rate = 10000000\nrecipient_rate = 10000000\n",
                      encoding="utf-8")
    log = (folder / "sink.log").open("ab")
    proc = subprocess.Popen([RCPTGUARD, "sink", "--config", str(config), "--listen", f"127.0.0.1:{port}",
                             "--log-level", "warning"], stdout=log, stderr=log)
    wait_port(port)
    return proc, port


def start_smtp_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [SMTP_SINK, "-f", "rcpt", "-m", "5000", f"127.0.0.1:{port}", "1024"]
    if os.geteuid() == 0:  # smtp-sink refuses to run as root
        command[1:1] = ["-u", "nobody"]
    proc = subprocess.Popen(command)
    wait_port(port)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--recipients", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sink, sink_port = start_sink(Path(tmp))
        try:
            baseline, baseline_port = start_smtp_sink()
        except BaseException:
            sink.terminate()
            raise
        try:
            run_round(sink_port, 200, 1, options.concurrency)  # warm up both
            run_round(baseline_port, 200, 1, options.concurrency)
            print(f"{'recipients/session':>18} {'sink refusals/s':>16} {'smtp-sink refusals/s':>21} {'ratio':>6}")
            for recipients in options.recipients:
                ours, theirs = [], []
                for _ in range(options.rounds):
                    rate, refused = run_round(sink_port, options.sessions, recipients, options.concurrency)
                    assert refused == options.sessions // CLIENTS * CLIENTS * recipients, refused
                    ours.append(rate)
                    rate, _ = run_round(baseline_port, options.sessions, recipients, options.concurrency)
                    theirs.append(rate)
                a, b = statistics.median(ours), statistics.median(theirs)
                print(f"{recipients:>18} {a:>16,.0f} {b:>21,.0f} {a / b:>6.2f}")
        finally:
            for proc in (sink, baseline):
                proc.terminate()
                proc.wait(15)


if __name__ == "__main__":
    main()
