"""Benchmark of `rcptguard policyd` against a trivial policy server, on 1 and 4 connections.

Both servers run as their own processes on loopback; the load comes from this process, which keeps N
persistent connections and sends one request at a time on each, as Postfix's smtpd does, timing every
request. The trivial server answers DUNNO to everything, reading requests the same way with asyncio, so the ratio
between the two is the cost of deciding (and logging each decision). Each connection's client runs in its
own process with blocking sockets.

Realistic config: 10 protected and 90 known domains, 10,000 learned correspondents in the store, and a
stream of recipients drawn like outbound mail (60% known, 25% unknown, 15% slips, Zipf-skewed repeats), three
recipients to a transaction (so that two in three are judged with those before them and the sender's history).
The DNS step is off unless `--dns`: with no resolver that answers on this machine, it measures the resolver.

    python bench/bench_policyd.py [--requests 20000] [--connections 1 4] [--dns]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

TRIVIAL = r"""
import asyncio, sys
async def handle(reader, writer):
    try:
        while True:
            block = await reader.readuntil(b"\n\n")
            attrs = dict(line.partition(b"=")[::2] for line in block.split(b"\n")[:-2])
            writer.write(b"action=DUNNO\n\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def _client(port: int, chunk: list[bytes]) -> list[float]:
    """One persistent connection, one request at a time (as smtpd does); the latency of each."""
    latencies = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for payload in chunk:
            start = time.perf_counter()
            sock.sendall(payload)
            data = b""
            while not data.endswith(b"\n\n"):
                data += sock.recv(4096)
            latencies.append(time.perf_counter() - start)
    return latencies


def load(port: int, requests: list[bytes], connections: int) -> tuple[float, list[float]]:
    """Each connection in its own client process, so the client is never the bottleneck's hidden part."""
    per = len(requests) // connections
    chunks = [requests[i * per : (i + 1) * per] for i in range(connections)]
    with multiprocessing.get_context("fork").Pool(connections) as pool:
        start = time.perf_counter()
        results = pool.starmap(_client, [(port, chunk) for chunk in chunks])
        elapsed = time.perf_counter() - start
    return elapsed, [x for r in results for x in r]


def payloads(addresses: list[str]) -> list[bytes]:
    """One request per address; three recipients to a transaction (Postfix's `instance`), as messages have."""
    return [(f"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
             f"client_address=10.0.0.5\nclient_name=ws5.example-corp.com\nhelo_name=ws5\n"
             f"sender=alice@example-corp.com\nrecipient={a}\nrecipient_count={n % 3}\nqueue_id=\n"
             f"instance=1a2b.3c4d.{n // 3:x}.0\nsize=10240\nsasl_username=alice\n\n").encode()
            for n, a in enumerate(addresses)]


def main() -> None:
    from tests.support.processes import free_port, wait_port

    import corpus
    from rcptguard.store import Store

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--dns", action="store_true",
                        help="Leave the DNS step on (the machine's resolver is asked about the rare near misses).")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-policyd-"))
    domains = corpus.domains(10_100, seed=7)
    protected, known, learned = domains[:10], domains[10:100], domains[100:]
    store_url = f"sqlite:///{work / 'store.db'}"
    Store.open(store_url).add_counts(dict.fromkeys(learned, 5))
    config = work / "policy.toml"
    dns = "" if args.dns else "\n[dns]\nenabled = false\n"
    config.write_text(f"protect = {protected!r}\nknown = {known!r}\n".replace("'", '"') + dns, encoding="utf-8")
    addresses = corpus.stream(domains, args.requests + 2000, seed=11)
    warm, measured = payloads(addresses[:2000]), payloads(addresses[2000:])

    exe = str(Path(sys.executable).parent / "rcptguard")
    servers = {
        "trivial (DUNNO)": lambda port: [sys.executable, "-c", TRIVIAL, str(port)],
        "rcptguard policyd": lambda port: [exe, "policyd", "--config", str(config), "--listen", f"127.0.0.1:{port}",
                                           "--db", store_url, "--log-level", "warning"],
    }
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    for name, command in servers.items():
        port = free_port()
        proc = subprocess.Popen(command(port), stderr=subprocess.DEVNULL)
        try:
            wait_port(port, proc)
            for connections in args.connections:
                load(port, warm, connections)
                elapsed, latencies = load(port, measured, connections)
                latencies.sort()
                results[(name, connections)] = (
                    len(latencies) / elapsed,
                    statistics.median(latencies) * 1e3,
                    latencies[int(len(latencies) * 0.99)] * 1e3,
                )
        finally:
            proc.terminate()
            proc.wait(10)

    print("| server | connections | requests/s | p50 (ms) | p99 (ms) | vs trivial |")
    print("|---|---:|---:|---:|---:|---:|")
    for (name, connections), (rate, p50, p99) in results.items():
        base = results[("trivial (DUNNO)", connections)][0]
        print(f"| {name} | {connections} | {rate:,.0f} | {p50:.3f} | {p99:.3f} | {rate / base:.2f}× |")


if __name__ == "__main__":
    main()
