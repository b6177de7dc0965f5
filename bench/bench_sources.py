"""Benchmark of the archive readers (`rcptguard.sources`) on a large Postfix log and a large mbox.

Postfix log: a generated 1,000,000-line log (realistic mix: smtpd, cleanup, qmgr, smtp, removed lines, and 20%
of other daemons' lines), read by `PostfixLog.records()` on one core. Baseline, same process, same file: a plain
pass that counts the lines (`for line in handle: n += 1`, text mode, UTF-8), the least any reader must do.

mbox: a generated mbox of 20 KB messages read by `Mbox.records()` (header blocks only: bodies stay on disk).
Baseline: the standard library's header-block parse plus address extraction on the same messages, already
split and in memory (`email.parser.BytesHeaderParser(policy=compat32)` on each message's octets, then
`getaddresses` over To/Cc); the split and the file read are not timed, which favours the baseline.

Peak RSS is printed after each reader: it must not grow with the file.

    python bench/bench_sources.py [--lines 1000000] [--messages 50000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.parser
import email.policy
import email.utils
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.support.archives import Sent, mbox_bytes

from rcptguard.sources.mailbox import Mbox
from rcptguard.sources.postfix import PostfixLog


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_log(path: Path, lines: int) -> None:
    rng = random.Random(7)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    domains = ["army.mil", "gmail.com", "example.com", "navy.mil", "army.ml", "outlook.com"] + [
        f"corp{i}.com" for i in range(2000)]
    written = 0
    number = 0
    with path.open("w") as out:
        while written < lines:
            number += 1
            qid = f"4Q{number:09X}"
            stamp = f"{when:%b} {when.day:2d} {when:%H:%M:%S}"
            rcpts = [f"user{rng.randrange(5000)}@{rng.choice(domains)}" for _ in range(rng.choice((1, 1, 1, 2, 3)))]
            client = f"ws{number % 300}.corp.example[10.0.0.{number % 250}]"
            sender = f"user{rng.randrange(800)}@corp.example"
            block = [f"{stamp} mx1 postfix/smtpd[101]: {qid}: client={client}",
                     f"{stamp} mx1 postfix/cleanup[102]: {qid}: message-id=<{number}@corp.example>",
                     (f"{stamp} mx1 postfix/qmgr[103]: {qid}: from=<{sender}>, size=2345, nrcpt={len(rcpts)} "
                      "(queue active)")]
            block += [(f"{stamp} mx1 postfix/smtp[104]: {qid}: to=<{r}>, relay=mx.example[192.0.2.1]:25, delay=0.52, "
                       "delays=0.1/0.01/0.2/0.21, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 8A1B2C)")
                      for r in rcpts]
            block.append(f"{stamp} mx1 postfix/qmgr[103]: {qid}: removed")
            block += [f"{stamp} mx1 dovecot: imap(user{i}): Logged out in=120 out=3400" for i in range(len(block) // 4)]
            out.write("\n".join(block) + "\n")
            written += len(block)
            when += dt.timedelta(seconds=rng.randrange(1, 20))


def bench_log(lines: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mail.log"
        write_log(path, lines)
        total = sum(1 for _ in path.open())
        start = time.perf_counter()
        with path.open(encoding="utf-8", errors="replace") as handle:
            counted = sum(1 for _ in handle)
        baseline = time.perf_counter() - start
        start = time.perf_counter()
        source = PostfixLog(path)
        records = sum(1 for _ in source.records())
        ours = time.perf_counter() - start
        print(f"postfix log: {total:,} lines, {records:,} deliveries, problems {dict(source.problems)}")
        print(f"  line count (baseline): {counted / baseline:,.0f} lines/s")
        print(f"  PostfixLog.records():  {total / ours:,.0f} lines/s  ({ours / baseline:.1f}x the baseline's time)")
        print(f"  peak RSS {_rss_mb():.0f} MB")


def write_mbox(path: Path, messages: int) -> None:
    body = ("Please find the figures for the quarter below, and tell me what you think. " * 3 + "\n") * 80
    rng = random.Random(3)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with path.open("wb") as out:
        batch = []
        for number in range(messages):
            to = tuple(f"user{rng.randrange(900)}@corp{rng.randrange(300)}.com" for _ in range(rng.choice((1, 2, 3))))
            batch.append(Sent(f"Sender {number % 40} <s{number % 40}@example.com>", to, when,
                              message_id=f"{number}@example.com", body=body,
                              cc=("team@example.com",) if number % 3 == 0 else ()).build())
            if len(batch) == 1000:
                out.write(mbox_bytes(batch))
                batch = []
        out.write(mbox_bytes(batch))


def bench_mbox(messages: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sent.mbox"
        write_mbox(path, messages)
        size = path.stat().st_size
        start = time.perf_counter()
        ours_found = sum(len(r.recipients) for r in Mbox(path).records())
        ours = time.perf_counter() - start
        rss = _rss_mb()
        parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
        split = path.read_bytes().split(b"\nFrom ")
        start = time.perf_counter()
        found = 0
        for raw in split:
            headers = parser.parsebytes(raw[raw.find(b"\n") + 1 :])
            found += len(email.utils.getaddresses(headers.get_all("to", []) + headers.get_all("cc", [])))
        baseline = time.perf_counter() - start
        print(f"mbox: {messages:,} messages, {size / messages / 1000:.0f} KB each, {size / 1e6:.0f} MB; "
              f"{ours_found:,} recipients (baseline found {found:,})")
        print(f"  stdlib header parse + addresses (baseline, in memory): {messages / baseline:,.0f} messages/s")
        print(f"  Mbox.records() (from the file):                     {messages / ours:,.0f} messages/s  "
              f"({baseline / ours:.2f}x the baseline's speed)")
        print(f"  peak RSS after Mbox.records() {rss:.0f} MB (before the baseline loads the file)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    bench_log(args.lines)
    bench_mbox(args.messages)


if __name__ == "__main__":
    main()
