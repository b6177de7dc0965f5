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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.integration.conftest import make_traversable
from tests.integration.postfix import PostfixInstance, free_port
from tests.processes import running

CONCURRENCY = "20"


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
    logs = work / ("relay" if through_relay else "direct")
    logs.mkdir(parents=True, exist_ok=True)
    relaying = running(relay, relay_port, logs / "relay.log") if through_relay else contextlib.nullcontext()
    with running(sink, sink_port, logs / "sink.log"), instance, relaying:
        start = time.perf_counter()
        subprocess.run(["smtp-source", "-s", "20", "-m", str(messages), "-l", "10240", "-d",
                        "-f", "me@example-corp.com", "-t", "someone@partner.example",
                        f"127.0.0.1:{instance.smtpd_port}"], check=True, timeout=1800)
        wait_delivered(instance.log_file, messages)
        elapsed = time.perf_counter() - start
    return messages / elapsed


def wait_delivered(log: Path, messages: int) -> None:
    """Until Postfix has logged `messages` deliveries; reads only what the log gained since the last look."""
    seen, offset, tail = 0, 0, b""
    while seen < messages:
        time.sleep(0.05)
        with log.open("rb") as file:
            file.seek(offset)
            chunk = tail + file.read()
        offset += len(chunk) - len(tail)
        complete, _, tail = chunk.rpartition(b"\n")
        seen += complete.count(b"status=sent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5, help="Alternating runs of each path; medians are kept.")
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
    paired = [r / d for d, r in zip(direct, relayed, strict=True)]
    print(f"rounds: Postfix -> sink {[round(x) for x in direct]}, through the relay {[round(x) for x in relayed]}")
    print(f"ratio of each round: {[round(x, 2) for x in paired]}, median {statistics.median(paired):.2f}")
    print("| path | messages | msgs/s (median) | vs Postfix alone |")
    print("|---|---:|---:|---:|")
    print(f"| Postfix -> sink | {args.messages} | {base:,.0f} | 1.00× |")
    print(f"| Postfix -> rcptguard relay -> sink | {args.messages} | {ours:,.0f} | {ours / base:.2f}× |")


if __name__ == "__main__":
    main()
