"""Benchmark of scale-out: two relays on one PostgreSQL against one relay on SQLite, behind the same Postfix.

One private Postfix (as in the integration tests) listens on two ports; smtp-source sends half the messages
(10 KB, 10 sessions each) to each port at once. Its content filter is the list of relays (Postfix tries them in
order: one port names relay A first, the other relay B first), which forward to Postfix's smtp-sink. The
baseline is the same Postfix with one relay on SQLite; the candidate, two relays (two processes) on one
PostgreSQL database. The clock runs from the first message submitted to the last handed to a relay (counted in
Postfix's log). Every recipient passes the guard; each relay decides each one and learns each message.

    python bench/bench_scale.py [--messages 4000] [--rounds 3]

The machine is noisy: each path runs `--rounds` times, alternating, and the medians are compared (`compare` of
bench_relay.py). On a machine of two cores, two relays share the cores with Postfix, smtp-source and PostgreSQL:
the figure says what a second instance costs or gains here, not what it gains on a host of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.bench_relay import compare, wait_delivered
from tests.integration.conftest import make_traversable
from tests.integration.pg import PostgresServer
from tests.integration.postfix import PostfixInstance
from tests.support.processes import free_port, running

SESSIONS = "10"
TO = "someone@partner.example"
_databases = itertools.count()


def run(work: Path, messages: int, urls: list[str]) -> float:
    """msgs/s through Postfix and one relay per store URL in `urls` (the same URL twice: two instances)."""
    sink_port, second = free_port(), free_port()
    relay_ports = [free_port() for _ in urls]
    hops = [f"[127.0.0.1]:{port}" for port in relay_ports]
    main = {"default_destination_concurrency_limit": "20", "smtp_connection_cache_on_demand": "yes",
            "content_filter": "smtp:" + ", ".join(hops)}
    master = (f"127.0.0.1:{second} inet  n       -       n       -       -       smtpd\n"
              f"  -o content_filter=smtp:{','.join(reversed(hops))}\n")
    work.mkdir(parents=True, exist_ok=True)
    instance = PostfixInstance(work / "postfix", smtpd_port=free_port(), relay_port=sink_port, main_cf=main,
                               master_cf_extra=master)
    relay = str(Path(sys.executable).parent / "rcptguard")
    with contextlib.ExitStack() as stack:
        stack.enter_context(running(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "1024"], sink_port,
                                    work / "sink.log"))
        stack.enter_context(instance)
        for n, (url, port) in enumerate(zip(urls, relay_ports, strict=True)):
            stack.enter_context(running([relay, "relay", "--protect", "example-corp.com", "--listen",
                                         f"127.0.0.1:{port}", "--next-hop", f"127.0.0.1:{sink_port}", "--db", url,
                                         "--log-level", "warning"], port, work / f"relay{n}.log"))
        start = time.perf_counter()
        sources = [subprocess.Popen(["smtp-source", "-s", SESSIONS, "-m", str(share), "-l", "10240", "-d",
                                     "-f", "me@example-corp.com", "-t", TO, f"127.0.0.1:{port}"])
                   for share, port in ((messages // 2, instance.smtpd_port), (messages - messages // 2, second))]
        for source in sources:
            if source.wait(timeout=1800) != 0:
                raise RuntimeError(f"smtp-source ended with {source.returncode}")
        wait_delivered(instance.log_file, messages)
        elapsed = time.perf_counter() - start
    if len(urls) > 1:  # that both relays had a share
        log = instance.log_file.read_text(errors="replace")
        shares = [log.count(f"relay=127.0.0.1[127.0.0.1]:{port},") for port in relay_ports]
        print(f"messages each relay took: {shares}", file=sys.stderr)
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3, help="Alternating runs of each path; medians are kept.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    make_traversable(work)
    with PostgresServer() as server:
        def on_postgres(where: Path) -> float:
            url = server.create_database(f"bench_{next(_databases)}")
            return run(where, args.messages, [url, url])

        compare(work, args.rounds, args.messages,
                ("Postfix -> one relay on SQLite -> sink",
                 lambda where: run(where, args.messages, [f"sqlite:///{where / 'store.db'}"])),
                ("Postfix -> two relays on one PostgreSQL -> sink", on_postgres))


if __name__ == "__main__":
    main()
