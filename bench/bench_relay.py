"""Benchmark of the relay in the mail path: Postfix -> relay -> sink next to Postfix -> sink, in one run.

A private Postfix (as in the integration tests) receives N messages of 10 KB from Postfix's smtp-source
(20 sessions, connections reused) and relays them to Postfix's smtp-sink, either directly (the baseline)
or through `rcptguard relay` as its content filter / smart host. The clock runs from the first message
submitted to the last one delivered (counted in Postfix's log). Every recipient passes the guard; the
relay still decides each one.

    python bench/bench_relay.py [--messages 5000] [--rounds 5]
    python bench/bench_relay.py --alone      # the relay without Postfix: smtp-source -> relay -> smtp-sink
    python bench/bench_relay.py --to someone@example-corp.net   # a warned recipient: the content scanner runs
    python bench/bench_relay.py --warned-share 0.05             # 5% of the messages to the warned recipient

With `--to` a recipient the guard warns about (example-corp.net, a slip of the protected example-corp.com), the
relay gives every message to the sensitivity scanner (rcptguard.content) before forwarding it: the scanner's
worst case in the mail path (the sender's warning notice goes out once a day per domain). The relay scans only
messages with a warned or held recipient; `--warned-share` sends that share of the messages to the warned
recipient and the rest to `--to`, from two smtp-source processes at once (sessions shared out in proportion, one
at least), in both paths alike: traffic with the scanner on as an organisation's mail would give it.

With `--alone`, smtp-source sends straight to the relay (the baseline: straight to smtp-sink), and the relay's
CPU time per message is read from /proc: what the relay itself costs, without Postfix's share of the cores (behind
Postfix it is printed too). `--bare` adds bench/bare_relay.py, the relay's parts without the guard, as a third path.

The machine is noisy: each path runs `--rounds` times, alternating, and the medians are compared.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.integration.conftest import make_traversable
from tests.integration.postfix import PostfixInstance
from tests.support.processes import free_port, running

CONCURRENCY = "20"


TO = "someone@partner.example"
WARNED = "someone@example-corp.net"  # one slip from the protected example-corp.com: warned, so scanned
SESSIONS = 20


def sources(port: int, messages: int, to: str, warned_share: float) -> list[list[str]]:
    """The smtp-source commands that send `messages` to `port`: all to `to`, or `warned_share` of them to the
    warned recipient from sessions of their own (in proportion, one at least) and the rest to `to`."""
    def source(sessions: int, count: int, recipient: str) -> list[str]:
        return ["smtp-source", "-s", str(sessions), "-m", str(count), "-l", "10240", "-d",
                "-f", "me@example-corp.com", "-t", recipient, f"127.0.0.1:{port}"]
    warned = round(messages * warned_share)
    if not warned_share or not warned:
        return [source(SESSIONS, messages, to)]
    if warned == messages:
        return [source(SESSIONS, messages, WARNED)]
    sessions = min(max(1, round(SESSIONS * warned_share)), SESSIONS - 1)
    return [source(SESSIONS - sessions, messages - warned, to), source(sessions, warned, WARNED)]


def send(commands: list[list[str]]) -> None:
    """Run the smtp-source commands at once; each must succeed."""
    procs = [subprocess.Popen(command) for command in commands]
    try:
        for proc in procs:
            if proc.wait(timeout=1800):
                raise subprocess.CalledProcessError(proc.returncode, proc.args)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def relay_command(work: Path, relay_port: int, sink_port: int, *, bare: bool = False) -> list[str]:
    """`rcptguard relay` in front of the sink, or (`bare`) bench/bare_relay.py: the relay's parts without the guard."""
    if bare:
        return [sys.executable, str(Path(__file__).with_name("bare_relay.py")),
                "--listen", f"127.0.0.1:{relay_port}", "--next-hop", f"127.0.0.1:{sink_port}"]
    return [str(Path(sys.executable).parent / "rcptguard"), "relay", "--protect", "example-corp.com",
            "--listen", f"127.0.0.1:{relay_port}", "--next-hop", f"127.0.0.1:{sink_port}",
            "--db", f"sqlite:///{work / 'store.db'}", "--log-level", "warning"]


def run(work: Path, messages: int, through_relay: bool, to: str = TO, *, bare: bool = False,
        own_cpu: list[float] | None = None, warned_share: float = 0.0) -> float:
    """msgs/s of smtp-source -> Postfix -> [relay ->] smtp-sink; the relay process's CPU seconds per message are
    appended to `own_cpu`."""
    sink_port, relay_port = free_port(), free_port()
    main = {"default_destination_concurrency_limit": CONCURRENCY, "smtp_connection_cache_on_demand": "yes"}
    if through_relay:
        main["content_filter"] = f"smtp:[127.0.0.1]:{relay_port}"
    instance = PostfixInstance(work / ("relay" if through_relay else "direct"), smtpd_port=free_port(),
                               relay_port=sink_port, main_cf=main)
    sink = ["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "1024"]
    relay = relay_command(work, relay_port, sink_port, bare=bare)
    logs = work / ("relay" if through_relay else "direct")
    logs.mkdir(parents=True, exist_ok=True)
    relaying = running(relay, relay_port, logs / "relay.log") if through_relay else contextlib.nullcontext()
    with running(sink, sink_port, logs / "sink.log"), instance, relaying as proc:
        start, busy = time.perf_counter(), busy_seconds()
        own = cpu_seconds(proc.pid) if proc else 0.0
        send(sources(instance.smtpd_port, messages, to, warned_share))
        wait_delivered(instance.log_file, messages)
        elapsed, busy = time.perf_counter() - start, busy_seconds() - busy
        if proc and own_cpu is not None:
            own_cpu.append((cpu_seconds(proc.pid) - own) / messages)
    MACHINE_CPU.append(busy / messages)
    return messages / elapsed


MACHINE_CPU: list[float] = []  # the machine's busy CPU seconds per message of each `run`, in order


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat: user, nice, system, irq and softirq;
    not idle, I/O wait, nor steal (time the virtual machine's host gave to others)."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run_alone(work: Path, messages: int, through_relay: bool, to: str = TO, *,
              bare: bool = False, warned_share: float = 0.0) -> tuple[float, float]:
    """msgs/s of smtp-source -> [relay ->] smtp-sink, and the relay's CPU seconds per message (`bare`: the relay's
    parts without the guard, bench/bare_relay.py)."""
    sink_port, relay_port = free_port(), free_port()
    relay = relay_command(work, relay_port, sink_port, bare=bare)
    work.mkdir(parents=True, exist_ok=True)
    with running(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "1024"], sink_port, work / "sink.log"), \
            (running(relay, relay_port, work / "relay.log") if through_relay else contextlib.nullcontext()) as proc:
        cpu = cpu_seconds(proc.pid) if proc else 0.0
        start = time.perf_counter()
        send(sources(relay_port if through_relay else sink_port, messages, to, warned_share))
        elapsed = time.perf_counter() - start
        cpu = (cpu_seconds(proc.pid) - cpu) if proc else 0.0
    return messages / elapsed, cpu / messages


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


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
    parser.add_argument("--alone", action="store_true", help="Without Postfix: smtp-source -> relay -> smtp-sink.")
    parser.add_argument("--bare", action="store_true",
                        help="Also the relay's parts without the guard (bench/bare_relay.py), as a third path.")
    parser.add_argument("--to", default=TO, help="The recipient (a warned one makes the relay scan every message).")
    parser.add_argument("--warned-share", type=float, default=0.0,
                        help=f"This share of the messages goes to a warned recipient ({WARNED}), the rest to --to.")
    args = parser.parse_args()
    if not 0 <= args.warned_share <= 1:
        parser.error("--warned-share is a share: from 0 to 1")
    share = args.warned_share
    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    make_traversable(work)
    if args.alone:
        try:
            sink = statistics.median(run_alone(work / f"s{r}", args.messages, through_relay=False, to=args.to,
                                               warned_share=share)[0]
                                     for r in range(args.rounds))
            runs, bare = [], []
            for r in range(args.rounds):  # in turn, so that the machine's drift touches both alike
                runs.append(run_alone(work / f"r{r}", args.messages, through_relay=True, to=args.to,
                                      warned_share=share))
                if args.bare:
                    bare.append(run_alone(work / f"b{r}", args.messages, through_relay=True, to=args.to, bare=True,
                                          warned_share=share))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print("| path | messages | msgs/s (median) | vs smtp-sink alone | relay CPU per message (median; rounds) |")
        print("|---|---:|---:|---:|---:|")
        print(f"| smtp-source -> smtp-sink | {args.messages} | {sink:,.0f} | 1.00× | |")
        for name, measured in (("rcptguard relay", runs), ("the relay's parts without the guard", bare)):
            if not measured:
                continue
            rate, cpu = statistics.median(r[0] for r in measured), statistics.median(r[1] for r in measured)
            print(f"| smtp-source -> {name} -> smtp-sink | {args.messages} | {rate:,.0f} | {rate / sink:.2f}× "
                  f"| {cpu * 1000:.2f} ms; {', '.join(f'{r[1] * 1000:.2f}' for r in measured)} |")
        return
    relays = [("rcptguard relay", False), *([("the relay's parts without the guard", True)] if args.bare else [])]
    own: dict[str, list[float]] = {name: [] for name, _ in relays}  # each relay's CPU seconds per message, by round
    compare(work, args.rounds, args.messages,
            ("Postfix -> sink", lambda w: run(w, args.messages, through_relay=False, to=args.to, warned_share=share)),
            *((f"Postfix -> {name} -> sink",
               lambda w, name=name, bare=bare: run(w, args.messages, through_relay=True, to=args.to, bare=bare,
                                                   own_cpu=own[name], warned_share=share)) for name, bare in relays))
    for name, per_message in own.items():
        print(f"{name}, its own CPU per message: {[round(x * 1000, 2) for x in per_message]} ms, median "
              f"{statistics.median(per_message) * 1000:.2f} ms")


def compare(work: Path, rounds: int, messages: int, baseline: tuple[str, Callable[[Path], float]],
            *candidates: tuple[str, Callable[[Path], float]]) -> None:
    """Run the baseline and each candidate in turn, `rounds` times (in folders of `work`, removed after), and print
    each round, each candidate's ratio to the baseline of the same round, and the table of medians."""
    paths = [baseline, *candidates]
    runs: list[list[float]] = [[] for _ in paths]
    cpu: list[list[float]] = [[] for _ in paths]
    try:
        for round_ in range(rounds):
            for n, (_, measure) in enumerate(paths):
                measured = len(MACHINE_CPU)
                runs[n].append(measure(work / f"p{n}r{round_}"))
                cpu[n].append(MACHINE_CPU[-1] if len(MACHINE_CPU) > measured else float("nan"))  # `run` measured it
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(runs[0])
    for (name, _), values, used in zip(paths, runs, cpu, strict=True):
        print(f"rounds: {name} {[round(x) for x in values]} msgs/s; machine CPU {[round(x * 1000, 2) for x in used]} "
              f"ms/msg" if not any(math.isnan(x) for x in used) else f"rounds: {name} {[round(x) for x in values]}")
    for (name, _), values, used in zip(paths[1:], runs[1:], cpu[1:], strict=True):
        paired = [c / b for b, c in zip(runs[0], values, strict=True)]
        print(f"ratio of each round, {name}: {[round(x, 2) for x in paired]}, median {statistics.median(paired):.2f}")
        by_cpu = [b / c for b, c in zip(cpu[0], used, strict=True)]
        if any(math.isnan(x) for x in by_cpu):
            continue
        print(f"  the same in messages per CPU second (the machine's busy CPU per message, baseline / this): "
              f"{[round(x, 2) for x in by_cpu]}, median {statistics.median(by_cpu):.2f}")
    print("| path | messages | msgs/s (median) | vs baseline |")
    print("|---|---:|---:|---:|")
    for (name, _), values in zip(paths, runs, strict=True):
        print(f"| {name} | {messages} | {statistics.median(values):,.0f} | {statistics.median(values) / base:.2f}× |")


if __name__ == "__main__":
    main()
