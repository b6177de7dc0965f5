"""Benchmark of the policy service in HOLD mode with many transactions that never end (no END-OF-MESSAGE).

In one process, on the service's decide() (no sockets, no notices sent: the cost measured is the service's own).
What is timed is a message with a held recipient: its RCPT and its END-OF-MESSAGE. The baseline runs with
nothing pending; then `--pending` held RCPTs of messages that never end are sent, and the same is timed again.
The ratio of the two is what unfinished transactions cost each message; RSS before and after, what they cost in
memory.

    python bench/bench_policyd_pending.py [--pending 200000] [--requests 20000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parents[1] / "src"))


def held(instance: str) -> dict[str, str]:
    return {"request": "smtpd_access_policy", "protocol_state": "RCPT", "sender": "alice@example-corp.com",
            "recipient": "j.doe@army.ml", "instance": instance, "client_address": "10.0.0.5"}


def end(instance: str) -> dict[str, str]:
    return {"request": "smtpd_access_policy", "protocol_state": "END-OF-MESSAGE", "instance": instance,
            "queue_id": "4XyZ1", "sender": "alice@example-corp.com"}


def timed(service: object, requests: list[dict[str, str]], rounds: int = 5) -> float:
    """The median over `rounds` of the mean seconds per request (each round on fresh instances)."""
    decide = service.decide  # type: ignore[attr-defined]
    means = []
    for number in range(rounds):
        batch = [dict(r, instance=f"{r['instance']}.{number}") for r in requests]
        start = time.perf_counter()
        for attrs in batch:
            decide(attrs)
        means.append((time.perf_counter() - start) / len(batch))
    return statistics.median(means)


def main() -> None:
    from rcptguard.gateways import policyd
    from rcptguard.gateways.policyd import PolicyService, PolicySettings
    from rcptguard.guard import Guard
    from rcptguard.policy import load_policy

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the decision log lines are not what is measured

    policy = load_policy().with_domains(("mil",), ("gmail.com",))
    service = PolicyService(lambda learned: Guard(policy, learned=learned), None,
                            PolicySettings(hold_mode="hold", notify_smtp="127.0.0.1:9"))
    service._notify = lambda *_args: None  # type: ignore[method-assign] # noqa: SLF001 - no mail is sent
    process = psutil.Process()

    messages = []  # a held RCPT and its END-OF-MESSAGE
    for number in range(args.requests):
        messages += [held(f"m{number}"), end(f"m{number}")]
    timed(service, messages[:2000], rounds=1)  # warm the guard's cache
    baseline = timed(service, messages) * 2  # per message
    rss_before = process.memory_info().rss

    start = time.perf_counter()
    for number in range(args.pending):
        service.decide(held(f"p{number}"))
    fill = time.perf_counter() - start
    rss_after = process.memory_info().rss
    remembered = len(getattr(service, "pending", None) or getattr(service, "_held", {}))  # (_held: before 2026-12)
    loaded = timed(service, messages) * 2

    print(f"policy service: {policyd.__file__}")
    print(f"unfinished held transactions sent: {args.pending:,} in {fill:.1f} s; remembered: {remembered:,}")
    print(f"RSS: {rss_before / 2**20:.0f} MB before, {rss_after / 2**20:.0f} MB after")
    print(f"a held message (RCPT + END-OF-MESSAGE), nothing pending (baseline): {baseline * 1e6:.1f} µs")
    print(f"the same after {args.pending:,} unfinished: {loaded * 1e6:.1f} µs ({loaded / baseline:.2f}× the baseline)")


if __name__ == "__main__":
    main()
