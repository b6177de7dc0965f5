"""What keeps load and guessing out: request body limits, the check API's access and rate, admin login lockout.

    BodyLimit        ASGI middleware: a body over its path's limit is answered 413 before it is read whole
                     (Content-Length checked first; a chunked body is counted as it arrives and cut off)
    ApiAccess        ASGI middleware for POST /v1/check: off (404), token or loopback access (401/403), and a
                     token bucket per client address (429 with Retry-After), all before the body is read
    TokenBuckets     the per-address buckets, bounded in number (the least recently seen address goes first)
    LoginThrottle    wrong admin passwords counted per address and for the admin user; past the limit within
                     the window, every attempt (even the right password) gets 429 for a lock that doubles

Every piece keeps a bounded amount of state in memory, per process: with several workers each counts alone.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rcptguard import logs

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FORM_MAX_BODY", "ApiAccess", "BodyLimit", "Clock", "LoginThrottle", "TokenBuckets", "is_loopback"]

log = logging.getLogger("rcptguard.web")

Clock = Callable[[], float]
FORM_MAX_BODY = 64 * 1024  # the pages' forms carry a few short fields
MAX_TRACKED = 10_000  # addresses remembered by a bucket table or the login throttle


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def send_json(send: Send, status: int, body: Mapping[str, object],
                    headers: Mapping[str, str] | None = None) -> None:
    """A short JSON answer, sent straight from a middleware; the connection closes after it (the rest of an
    unread body is never read)."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
           (b"connection", b"close")]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class BodyLimit:
    """ASGI middleware: request bodies up to `limit_for(path)` bytes; beyond, 413 and the application sees the
    client leave. A declared Content-Length over the limit is refused before any of the body is read."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await too_large(send, limit)
            return
        received = 0
        refused = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await too_large(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:  # the 413 went out; what the application answers to the "disconnect" goes nowhere
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)


async def too_large(send: Send, limit: int) -> None:
    await send_json(send, 413, {"detail": f"The request body is larger than {limit} bytes."})


class TokenBuckets:
    """A token bucket per key: `burst` requests at once, refilled at `rate` a second; at most MAX_TRACKED keys
    (an address not seen for longest is forgotten first, which only ever gives it a full bucket again)."""

    def __init__(self, rate: float, burst: int, clock: Clock, max_keys: int = MAX_TRACKED) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if a request by `key` may go now (and count it), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait


class ApiAccess:
    """ASGI middleware for the check API at `path`: who may call it, and how often, before its body is read.

    mode "off": 404. "open": anyone. "token": a Bearer `token` from everyone. "loopback": clients on loopback
    without a token, others with it (403 when no token is configured). Then the client's bucket: 429 with
    Retry-After when it is empty.
    """

    def __init__(self, app: ASGIApp, *, path: str, mode: str, token: str | None, buckets: TokenBuckets) -> None:
        self.app = app
        self.path = path
        self.mode = mode
        self.token = token.encode() if token else None
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        if self.mode == "off":
            await send_json(send, 404, {"detail": "Not Found"})
            return
        address = client_address(scope)
        refusal = self.refusal(scope, address)
        if refusal is not None:
            status, detail = refusal
            await send_json(send, status, {"detail": detail},
                            {"WWW-Authenticate": 'Bearer realm="rcptguard api"'} if status == 401 else None)
            return
        wait = self.buckets.take(address)
        if wait > 0:
            await send_json(send, 429, {"detail": "Too many requests; try again later."},
                            {"Retry-After": str(max(1, math.ceil(wait)))})
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope, address: str) -> tuple[int, str] | None:
        if self.mode == "open" or (self.mode == "loopback" and is_loopback(address)):
            return None
        if self.token is None:
            return 403, "The check API answers only clients on this machine."
        scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            return 401, "A valid API token is needed (Authorization: Bearer ...)."
        return None


@dataclass(slots=True)
class _Record:
    failures: deque[float]
    locks: int = 0  # locks so far: the next lasts admin_lockout * 2**locks
    locked_until: float = 0.0


class LoginThrottle:
    """Wrong admin passwords, counted per client address and for the admin user (other user names count only
    against the address). `max_failures` within `window` seconds lock the key for `lockout` seconds, doubling
    with each further lock up to `lockout_max`; a right password resets the key's count."""

    def __init__(self, *, max_failures: int, window: float, lockout: float, lockout_max: float, clock: Clock,
                 max_keys: int = MAX_TRACKED) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.lockout_max = lockout_max
        self.clock = clock
        self.max_keys = max_keys
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def keys(address: str, user: str, admin_user: str) -> list[tuple[str, str]]:
        keys = [("address", address)]
        if hmac.compare_digest(user.encode(), admin_user.encode()):
            keys.append(("user", admin_user))
        return keys

    def locked(self, keys: list[tuple[str, str]]) -> float:
        """0 if a login by these keys may be tried, else the seconds until it may."""
        now = self.clock()
        with self._lock:
            return max((record.locked_until - now for key in keys
                        if (record := self._records.get(key)) is not None), default=0.0)

    def failed(self, keys: list[tuple[str, str]]) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                record = self._records.pop(key, None) or _Record(deque())
                self._records[key] = record
                while record.failures and record.failures[0] <= now - self.window:
                    record.failures.popleft()
                record.failures.append(now)
                if len(record.failures) >= self.max_failures:
                    seconds = min(self.lockout_max, self.lockout * 2 ** min(record.locks, 32))
                    record.locked_until = now + seconds
                    record.locks += 1
                    logs.event(log, "admin_login_locked", logging.WARNING, key=key[0], value=key[1],
                               failures=len(record.failures), locked_seconds=seconds, lock=record.locks)
                    record.failures.clear()
            while len(self._records) > self.max_keys:
                self._records.popitem(last=False)

    def succeeded(self, keys: list[tuple[str, str]]) -> None:
        with self._lock:
            for key in keys:
                self._records.pop(key, None)
