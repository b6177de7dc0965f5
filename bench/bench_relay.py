"""Benchmark of the relay in the mail path: Postfix -> relay -> sink next to Postfix -> sink, in one run.

A private Postfix (as in the integration tests) receives N messages of 10 KB from Postfix's smtp-source
(20 sessions, connections reused) and relays them to Postfix's smtp-sink, either directly (the baseline)
or through `rcptguard relay` as its content filter / smart host. The clock runs from the first message
submitted to the last one delivered (counted in Postfix's log). Every recipient passes the guard; the
relay still decides each one.

    python bench/bench_relay.py [--messages 5000] [--rounds 3]

The machine is noisy: each path runs `--rounds` times, alternating, and the medians are compared.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.integration.conftest import make_traversable
from tests.integration.postfix import PostfixInstance, free_port

CONCURRENCY = "20"


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


@contextlib.contextmanager
def process(command: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def run(work: Path, messages: int, through_relay: bool) -> float:
    sink_port, relay_port = free_port(), free_port()
    main = {"default_destination_concurrency_limit": CONCURRENCY, "smtp_connection_cache_on_demand": "yes"}
    if through_relay:
        main["content_filter"] = f"smtp:[127.0.0.1]:{relay_port}"
    instance = PostfixInstance(work / ("relay" if through_relay else "direct"), smtpd_port=free_port(),
                               relay_port=sink_port, main_cf=main)
    sink = ["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "1024"]
    relay = [str(Path(sys.executable).parent / "rcptguard"), "relay", "--protect", "example-corp.com",
             "--listen", f"127.0.0.1:{relay_port}", "--next-hop", f"127.0.0.1:{sink_port}",
             "--db", f"sqlite:///{work / 'store.db'}", "--log-level", "warning"]
    relaying = process(relay, relay_port) if through_relay else contextlib.nullcontext()
    with process(sink, sink_port), instance, relaying:
        start = time.perf_counter()
        subprocess.run(["smtp-source", "-s", "20", "-m", str(messages), "-l", "10240", "-d",
                        "-f", "me@example-corp.com", "-t", "someone@partner.example",
                        f"127.0.0.1:{instance.smtpd_port}"], check=True, timeout=1800)
        while instance.log().count("status=sent") < messages:
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="Alternating runs of each path; medians are kept.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    make_traversable(work)
    direct: list[float] = []
    relayed: list[float] = []
    try:
        for round_ in range(args.rounds):
            direct.append(run(work / f"r{round_}", args.messages, through_relay=False))
            relayed.append(run(work / f"r{round_}", args.messages, through_relay=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base, ours = statistics.median(direct), statistics.median(relayed)
    print(f"rounds: Postfix -> sink {[round(x) for x in direct]}, through the relay {[round(x) for x in relayed]}")
    print("| path | messages | msgs/s (median) | vs Postfix alone |")
    print("|---|---:|---:|---:|")
    print(f"| Postfix -> sink | {args.messages} | {base:,.0f} | 1.00× |")
    print(f"| Postfix -> rcptguard relay -> sink | {args.messages} | {ours:,.0f} | {ours / base:.2f}× |")


if __name__ == "__main__":
    main()
