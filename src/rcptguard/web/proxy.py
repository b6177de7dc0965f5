"""Who is asking, behind a reverse proxy, and one access log line for each request.

    ForwardedHeaders  ASGI middleware: from a trusted proxy (`[web] trusted_proxies`), the client address is the
                      last one in X-Forwarded-For that is not itself a trusted proxy, and the scheme is
                      X-Forwarded-Proto; from anyone else, those headers (and the single sign-on header) are
                      removed before anything reads them
    AccessLog         ASGI middleware: one JSON line a request (method, path, status, bytes, time, client); the
                      path of a sender's page is logged without its token, and no query string, header or body

Everything after ForwardedHeaders (the rate limits, the login lockout, the audit log, the access log and whether
the admin's cookie is Secure) sees the address and scheme it settled on, through the ASGI scope.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rcptguard import logs

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog", "ForwardedHeaders", "logged_path"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

access_log = logging.getLogger("rcptguard.web.access")

_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip", b"forwarded")
# Routes whose path carries a secret: the path logged is the route's own, without the secret.
_SECRET_PATHS = {"confirm": "/confirm/{token}"}


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


class ForwardedHeaders:
    """ASGI middleware: believe X-Forwarded-For and X-Forwarded-Proto from the `trusted` networks only.

    X-Forwarded-For is read from its right end, where each proxy appends the address it saw: the first address
    that is not a trusted proxy is the client (an entry that is not an address ends the walk: the client is then
    the last proxy that spoke). From a peer that is not trusted, every forwarding header and the `user_header`
    (the single sign-on one) are dropped, so nothing downstream can read them by mistake.
    """

    def __init__(self, app: ASGIApp, *, trusted: Sequence[Network], user_header: str | None = None) -> None:
        self.app = app
        self.trusted = tuple(trusted)
        self.dropped = (*_FORWARDED, *((user_header.lower().encode(),) if user_header else ()))

    def is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = _address(str(client[0])) if client else None
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if not self.is_trusted(peer):
            if any(name in self.dropped for name, _ in headers):
                scope = {**scope, "headers": [(n, v) for n, v in headers if n not in self.dropped]}
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        forwarded_for = [entry for name, value in headers if name == b"x-forwarded-for"
                         for entry in value.decode("latin-1").split(",")]
        if forwarded_for:
            scope["client"] = (str(self.client_of(forwarded_for, peer)), 0)
            scope["proxy"] = str(peer)
        proto = [value.decode("latin-1") for name, value in headers if name == b"x-forwarded-proto"]
        scheme = proto[-1].split(",")[-1].strip().lower() if proto else ""
        if scheme in ("http", "https"):
            scope["scheme"] = scheme
        await self.app(scope, receive, send)

    def client_of(self, forwarded_for: list[str], peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
                  ) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        client = peer
        for entry in reversed(forwarded_for):
            address = _address(entry)
            if address is None:
                break
            client = address
            if not self.is_trusted(address):
                break
        return client


def logged_path(path: str, matched: bool) -> str:
    """The path as the access log shows it: a sender's page as /confirm/{token}; a path no route answers, by its
    first segment only (a mistyped link may hold a token)."""
    segments = path.split("/")  # "", "confirm", the token, ...
    if len(segments) > 2 and segments[1] in _SECRET_PATHS:
        return _SECRET_PATHS[segments[1]] + ("/…" if len(segments) > 3 else "")
    if matched:
        return path[:200]
    return f"/{segments[1][:64]}" + ("/…" if len(segments) > 2 else "")


class AccessLog:
    """ASGI middleware: one line at `level` for each request, once its answer has been sent (an unhandled error
    is logged as 500 before it goes on)."""

    def __init__(self, app: ASGIApp, *, level: int) -> None:
        self.app = app
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_log.isEnabledFor(self.level):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        size = 0

        async def counted_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            client = scope.get("client")
            fields: dict[str, object] = {
                "method": scope["method"], "path": logged_path(scope["path"], "endpoint" in scope),
                "status": status, "bytes": size, "ms": round((time.perf_counter() - started) * 1000, 1),
                "client": str(client[0]) if client else "unknown", "scheme": scope.get("scheme", "http"),
            }
            if "proxy" in scope:
                fields["proxy"] = scope["proxy"]
            admin = scope.get("state", {}).get("admin")
            if admin:
                fields["admin"] = admin
            logs.event(access_log, "request", self.level, **fields)
