"""DNS servers on loopback for the world's evidence: NSD serving test zones, and a small UDP server that is slow.

    with NsdServer(tmp_path, {"mil": "army MX 10 mx1.army.mil."}, broken=("cm",)) as nsd:
        DnsSettings(nameservers=("127.0.0.1",), port=nsd.port)

`NsdServer` is Debian's NSD (`apt-get install nsd`, scripts/setup), run privately: its own config, zones, pid
and log in a temp folder, `-d` in the foreground as a child of the test, listening on 127.0.0.1 only, no
control socket, no privilege drop, no response rate limiting (it would drop the flood tests' answers). Each
zone gets an SOA whose negative TTL is `negative_ttl`. A zone named in `broken` is configured without a zone
file: NSD answers SERVFAIL for every name in it. NSD is authoritative and answers queries with RD set, so
dnspython's stub resolver can use it as its nameserver.

`LaggingServer` answers a .mil name's MX with one host and every other query with NXDOMAIN after `delay`
seconds, or never (`delay=None`), and counts the queries it got: the slow server of the budget tests and the
witness of coalescing.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self, cast

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.support.processes import ServedInThread, free_port, wait_port

NSD = shutil.which("nsd") or shutil.which("nsd", path="/usr/sbin:/sbin")
INSTALL_HINT = "the DNS tests need Debian's NSD: `apt-get install -y nsd` (scripts/setup installs it)"


class NsdServer:
    """A private NSD on 127.0.0.1:`port` serving `zones` ({origin: records in zone-file syntax})."""

    def __init__(self, workdir: Path, zones: dict[str, str], broken: tuple[str, ...] = (),
                 negative_ttl: int = 60) -> None:
        if NSD is None:
            raise AssertionError(INSTALL_HINT)
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = workdir / "nsd.log"
        config = [
            "server:",
            "    ip-address: 127.0.0.1",
            f"    port: {self.port}",
            '    username: ""',
            '    chroot: ""',
            f'    zonesdir: "{workdir}"',
            f'    pidfile: "{workdir / "nsd.pid"}"',
            '    database: ""',
            f'    zonelistfile: "{workdir / "zone.list"}"',
            f'    xfrdfile: "{workdir / "xfrd.state"}"',
            f'    xfrdir: "{workdir}"',
            f'    logfile: "{self.log}"',
            "    server-count: 1",
            "    hide-version: yes",
            "    rrl-ratelimit: 0",  # response rate limiting would drop the flood tests' answers
            "remote-control:",
            "    control-enable: no",
        ]
        for origin, records in zones.items():
            (workdir / f"{origin}.zone").write_text(_zone(origin, records, negative_ttl), encoding="utf-8")
            config += ["zone:", f'    name: "{origin}."', f'    zonefile: "{origin}.zone"']
        for origin in broken:
            config += ["zone:", f'    name: "{origin}."', f'    zonefile: "{origin}.missing"']
        self.config = workdir / "nsd.conf"
        self.config.write_text("\n".join(config) + "\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.first_zone = next(iter(zones))

    def start(self) -> Self:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(NSD), "-d", "-c", str(self.config)], stdout=out, stderr=out)
        try:
            wait_port(self.port, self.proc, self.log)
            self._wait_udp()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_udp(self, timeout: float = 10.0) -> None:
        """Until a UDP query for the first zone's SOA is answered (TCP may be up a moment before)."""
        query = dns.message.make_query(f"{self.first_zone}.", "SOA")
        deadline = time.monotonic() + timeout
        while True:
            try:
                dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
            except (dns.exception.Timeout, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"NSD does not answer on UDP {self.port}: {self.log.read_text()}") from None
            else:
                return

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _zone(origin: str, records: str, negative_ttl: int) -> str:
    return (f"$ORIGIN {origin}.\n$TTL 300\n"
            f"@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 900 604800 {negative_ttl}\n"
            f"@ IN NS ns.{origin}.\nns IN A 127.0.0.1\n{records}\n")


class _Lagging(asyncio.DatagramProtocol):
    def __init__(self, delay: float | None, count: Callable[[], None]) -> None:
        self.delay = delay
        self.count = count
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.DatagramTransport", transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.count()
        if self.delay is None:
            return
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        name = query.question[0].name if query.question else None
        if name is not None and name.to_text().endswith(".mil.") and query.question[0].rdtype == dns.rdatatype.MX:
            reply.answer.append(dns.rrset.from_text(name, 300, "IN", "MX", f"10 mx1.{name.to_text()}"))
        else:  # the intended .mil domains exist (so that a bounce is believed), every other name does not
            reply.set_rcode(dns.rcode.NXDOMAIN)
        asyncio.get_running_loop().call_later(self.delay, self._send, reply.to_wire(), addr)

    def _send(self, wire: bytes, addr: tuple[str | object, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(wire, addr)


class LaggingServer:
    """A UDP DNS server on 127.0.0.1 that answers after `delay` seconds (a .mil MX, else NXDOMAIN), or never."""

    def __init__(self, delay: float | None) -> None:
        self.queries = 0
        self.delay = delay

        def count() -> None:
            self.queries += 1

        async def serve(ready: Callable[[int], None], stop: asyncio.Event) -> None:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Lagging(delay, count), local_addr=("127.0.0.1", 0))
            ready(transport.get_extra_info("sockname")[1])
            try:
                await stop.wait()
            finally:
                transport.close()

        self._served = ServedInThread(serve)
        self.port = self._served.port

    def close(self) -> None:
        self._served.close()


@contextlib.contextmanager
def lagging(delay: float | None) -> Iterator[LaggingServer]:
    server = LaggingServer(delay)
    try:
        yield server
    finally:
        server.close()
