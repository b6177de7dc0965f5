"""The demo's next hop (`bash scripts/run`): an SMTP server that accepts every message and prints it, envelope first.

    python scripts/demo_next_hop.py [HOST:PORT]        # default 127.0.0.1:2526

The envelope is where the mail really goes, whatever To: says: a corrected recipient shows as
`RCPT TO:<j.doe@gmail.com>` above the message, even when its header (signed, say) still names the typo.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TextIO

from aiosmtpd.smtp import SMTP, Envelope, Session

RULE = "-" * 72


class EnvelopePrinter:
    """aiosmtpd handler: each message as the envelope (MAIL FROM, each RCPT TO), then the message as received."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802, ARG002
        self.count += 1
        peer = session.peer[0] if isinstance(session.peer, tuple) else session.peer
        sender = "" if envelope.mail_from in (None, "<>") else envelope.mail_from  # aiosmtpd keeps <> as is
        lines = [RULE, f"message {self.count} from {peer}", f"MAIL FROM:<{sender}>"]
        lines += [f"RCPT TO:<{rcpt}>" for rcpt in envelope.rcpt_tos]
        lines.append("")
        content = envelope.original_content or b""
        lines += content.decode("utf-8", errors="replace").splitlines()
        lines.append(RULE)
        print("\n".join(lines), file=self.out, flush=True)
        return "250 2.0.0 OK: printed"


def parse(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = EnvelopePrinter(sys.stdout)
    server = await loop.create_server(lambda: SMTP(handler, enable_SMTPUTF8=True, decode_data=False,
                                                   ident="rcptguard demo next hop"), host, port)
    print(f"demo next hop: listening on {host}:{port}; every message is printed with its envelope", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(*parse(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:2526")))
