"""Benchmark of the milter in the mail path: Postfix with `rcptguard milter` (smtpd_milters, unix socket) next to
Postfix alone, in one run.

A private Postfix (as in the integration tests) receives N messages of 10 KB from Postfix's smtp-source (20
sessions, connections reused) and relays them to Postfix's smtp-sink, with or without the milter (the documented
main.cf lines: docs/postfix/milter.main.cf). The clock runs from the first message submitted to the last one
delivered (counted in Postfix's log). Every recipient passes the guard: the milter decides each one at RCPT,
judges the message with the sender's history at DATA, and accepts it there (headers and body need not cross the
socket when nothing at the end of the message would act on them).

    python bench/bench_milter.py [--messages 5000] [--rounds 5] [--reference]

With `--reference`, a third path runs in each round: Postfix with a milter that does nothing
(bench/trivial_milter.py, pymilter, asked about each recipient and at the end of each message): what any Python
milter costs Postfix on this machine.

The machine is noisy: the two paths run `--rounds` times, alternating, and the medians are compared.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.bench_relay import CONCURRENCY, compare, wait_delivered
from tests.integration.conftest import make_traversable
from tests.integration.postfix import PostfixInstance
from tests.support.processes import free_port, running

MILTER_LINES = {"smtpd_milters": "unix:rcptguard/milter.sock", "milter_default_action": "tempfail",
                "milter_protocol": "6"}


@contextlib.contextmanager
def milter(instance: PostfixInstance, work: Path, *, trivial: bool = False) -> Iterator[None]:
    """`rcptguard milter` (or the milter that does nothing) on the socket the documented line names, in the
    instance's queue folder."""
    path = instance.queue_dir / "rcptguard" / "milter.sock"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = work / "milter.toml"
    config.write_text('protect = ["example-corp.com"]\n\n[milter]\nsocket_mode = "0666"\n', encoding="utf-8")
    command = [str(Path(sys.executable).parent / "rcptguard"), "milter", "--config", str(config),
               "--listen", f"unix:{path}", "--db", f"sqlite:///{work / 'store.db'}", "--log-level", "warning"]
    if trivial:
        command = [sys.executable, str(Path(__file__).with_name("trivial_milter.py")), f"unix:{path}"]
    with (work / "milter.log").open("ab") as log:
        proc = subprocess.Popen(command, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not _answers(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((work / "milter.log").read_text(errors="replace"))
            time.sleep(0.1)
        path.chmod(0o666)  # for Postfix's user (rcptguard milter does it itself: socket_mode)
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
    except OSError:
        return False
    return True


def run(work: Path, messages: int, with_milter: bool, *, trivial: bool = False) -> float:
    sink_port = free_port()
    main = {"default_destination_concurrency_limit": CONCURRENCY, "smtp_connection_cache_on_demand": "yes"}
    if with_milter:
        main |= MILTER_LINES
    work.mkdir(parents=True, exist_ok=True)
    instance = PostfixInstance(work / "postfix", smtpd_port=free_port(), relay_port=sink_port, main_cf=main)
    sink = ["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "1024"]
    with running(sink, sink_port, work / "sink.log"), instance, \
            (milter(instance, work, trivial=trivial) if with_milter else contextlib.nullcontext()):
        start = time.perf_counter()
        subprocess.run(["smtp-source", "-s", CONCURRENCY, "-m", str(messages), "-l", "10240", "-d",
                        "-f", "me@example-corp.com", "-t", "someone@partner.example",
                        f"127.0.0.1:{instance.smtpd_port}"], check=True, timeout=1800)
        wait_delivered(instance.log_file, messages)
        return messages / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5, help="Alternating runs of each path; medians are kept.")
    parser.add_argument("--reference", action="store_true", help="Also Postfix with a milter that does nothing.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-milter-"))
    make_traversable(work)
    paths = [("Postfix + rcptguard milter -> sink", lambda w: run(w, args.messages, with_milter=True))]
    if args.reference:
        paths.append(("Postfix + a milter that does nothing -> sink",
                      lambda w: run(w, args.messages, with_milter=True, trivial=True)))
    compare(work, args.rounds, args.messages, ("Postfix -> sink", lambda w: run(w, args.messages, with_milter=False)),
            *paths)

if __name__ == "__main__":
    main()
