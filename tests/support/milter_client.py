"""The MTA's side of the milter protocol, as Sendmail speaks it (libmilter's mfdef.h, protocol version 6): for tests
that drive a milter the way an MTA that is not Postfix would, packet by packet.

    with MilterClient.connect(path) as mta:
        negotiated = mta.negotiate()                     # version 6, every action and step offered
        mta.macros("C", {"j": "mx.example", "_": "client [192.0.2.1]"})
        mta.command("C", b"client\\0" + b"4" + ...)      # a reply unless the milter asked for none
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Self

# What an MTA offers (Sendmail 8.14+): every action (add/change headers and body, add/delete recipients, quarantine,
# change the sender, set the macro list) and every protocol step and its no-reply variant.
ALL_ACTIONS = 0x1FF
ALL_STEPS = 0x1FFFFF
DELRCPT, CHGHDRS, ADDHDRS = 0x08, 0x10, 0x01
# Protocol bits a milter sets to have the MTA skip a step (NO*) or not wait for its reply (NR*).
NO_REPLY = {"C": 0x1000, "H": 0x2000, "M": 0x4000, "R": 0x8000, "T": 0x10000, "L": 0x80, "N": 0x40000,
            "B": 0x80000, "U": 0x20000}
SKIPPED = {"C": 0x1, "H": 0x2, "M": 0x4, "R": 0x8, "B": 0x10, "L": 0x20, "N": 0x40, "U": 0x100, "T": 0x200}
HDR_LEADSPC = 0x100000
# The replies that end a step (the others — delete recipient, add or change a header... — come before one).
FINAL = set("cratdy")


@dataclass(frozen=True, slots=True)
class Packet:
    code: str
    data: bytes

    @property
    def text(self) -> str:
        return self.data.rstrip(b"\0").decode("utf-8", "replace")

    @property
    def strings(self) -> list[str]:
        return [part.decode("utf-8", "replace") for part in self.data.split(b"\0")[:-1]]


@dataclass(frozen=True, slots=True)
class Negotiated:
    version: int
    actions: int
    protocol: int

    def replies(self, step: str) -> bool:
        """Whether the milter answers this step (it may have asked the MTA to skip it, or not to wait)."""
        return not self.protocol & (NO_REPLY.get(step, 0) | SKIPPED.get(step, 0))


class MilterClient:
    """One MTA connection to a milter."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.negotiated = Negotiated(6, ALL_ACTIONS, 0)

    @classmethod
    def connect(cls, path: str, timeout: float = 10.0) -> Self:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        sock.connect(path)
        return cls(sock)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def send(self, code: str, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack("!I", len(data) + 1) + code.encode() + data)

    def read(self) -> Packet:
        size = struct.unpack("!I", self._exactly(4))[0]
        body = self._exactly(size)
        return Packet(chr(body[0]), body[1:])

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the milter closed the connection")
            data += chunk
        return data

    def negotiate(self, version: int = 6, actions: int = ALL_ACTIONS, protocol: int = ALL_STEPS) -> Negotiated:
        self.send("O", struct.pack("!III", version, actions, protocol))
        reply = self.read()
        assert reply.code == "O", reply
        self.negotiated = Negotiated(*struct.unpack("!III", reply.data[:12]))
        return self.negotiated

    def macros(self, step: str, values: dict[str, str]) -> None:
        self.send("D", step.encode() + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in values.items()))

    def step(self, code: str, data: bytes = b"") -> list[Packet]:
        """Send one step; the milter's replies to it (none when it asked for none), the final one last."""
        self.send(code, data)
        if not self.negotiated.replies(code):
            return []
        replies = [self.read()]
        while replies[-1].code not in FINAL:
            replies.append(self.read())
        return replies


def strings(*parts: str | bytes) -> bytes:
    """NUL-terminated strings, as the protocol's MAIL, RCPT, HELO and header packets carry them."""
    return b"".join((p if isinstance(p, bytes) else p.encode()) + b"\0" for p in parts)


def connect_data(hostname: str, address: str, port: int) -> bytes:
    return strings(hostname) + b"4" + struct.pack("!H", port) + strings(address)
