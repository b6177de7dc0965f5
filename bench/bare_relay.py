"""The relay's parts without the guard: the reference for what the SMTP server and the next-hop client cost
(bench_relay.py --alone --bare). The relay's own server (`GuardedSMTP`: DATA read in chunks, replies batched) and
its own client (`AsyncPool`: pipelined, connections reused) on uvloop, forwarding every message as it is: no
verdict, no history, no scanner, no store.

    python bench/bare_relay.py --listen 127.0.0.1:10025 --next-hop 127.0.0.1:10026
"""

from __future__ import annotations

import argparse
import asyncio
from types import SimpleNamespace
from typing import TYPE_CHECKING

import uvloop

from rcptguard.delivery import AsyncPool, NextHop
from rcptguard.gateways.relay import GuardedSMTP

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session


class Forward:
    """What GuardedSMTP asks of its handler (see rcptguard.gateways.relay.Door), and DATA forwarded as it is."""

    settings = SimpleNamespace(junk_command_limit=100, data_time_limit=600.0)

    def __init__(self, hop: NextHop) -> None:
        self.pool = AsyncPool(hop)

    def admit(self, _peer: object) -> str | None:
        return None

    def left(self, _peer: object) -> None:
        return None

    def limit_hit(self, _limit: str, _peer: object) -> None:
        return None

    def malformed(self, _address: str) -> str | None:
        return None

    async def handle_EHLO(self, _server: SMTP, session: Session, _envelope: Envelope,  # noqa: N802 - aiosmtpd hook
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content
        assert isinstance(content, bytes)
        result = await self.pool.deliver(envelope.mail_from or "", envelope.rcpt_tos, content)
        return "250 2.0.0 OK" if result.accepted and not result.temporary else "451 4.4.0 not forwarded"


async def serve(listen: str, hop: NextHop) -> None:
    host, _, port = listen.rpartition(":")
    handler = Forward(hop)
    server = await asyncio.get_running_loop().create_server(
        lambda: GuardedSMTP(handler, decode_data=False, enable_SMTPUTF8=False), host, int(port))
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--next-hop", required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.listen, NextHop.parse(args.next_hop)))


if __name__ == "__main__":
    main()
