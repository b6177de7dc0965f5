"""Who the administrator is: an argon2-checked password and a session, or a trusted proxy's word.

    auth = AdminAuth(secret=key, settings=web_settings, clock=time.monotonic)
    auth.user(request)            # the admin's name; SignInNeededError, or PageError 404 (admin pages off)
    auth.form(request, csrf)      # the same for a POST, which must carry the session's CSRF token (else 403)

    hash_password(password)       # the line for [web] admin_password_hash (`rcptguard web hash-password`)

Signing in (`sign_in`) checks the password against `[web] admin_password_hash` (argon2id; a few at once at
most, since each takes 64 MiB), counts wrong ones in the LoginThrottle, and starts a session: a random id in a
cookie signed with the page's key, HttpOnly, SameSite=Strict, Secure when the request came over HTTPS (directly
or from a trusted proxy). Sessions live in this process's memory: signing out ends one at once, a restart ends
them all. Each session has its CSRF token, which every admin form carries. With `[web] admin_user_header`, a
trusted reverse proxy that signs the admin in (single sign-on) names them in that header instead; the header
is believed only from `trusted_proxies` (web.proxy drops it from anyone else).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rcptguard import logs
from rcptguard.web.answers import PageError
from rcptguard.web.limits import Clock, LoginThrottle, client_address

if TYPE_CHECKING:
    from fastapi import Request, Response

    from rcptguard.web.settings import WebSettings

__all__ = ["COOKIE", "LOGIN_COOKIE", "AdminAuth", "SignInNeededError", "hash_password"]

log = logging.getLogger("rcptguard.web")

COOKIE = "rcptguard_admin"
LOGIN_COOKIE = "rcptguard_signin"  # ties the sign-in form to the browser that loaded it (login CSRF)
MAX_SESSIONS = 1000
_VERIFYING = threading.BoundedSemaphore(2)  # argon2 checks at once (each takes 64 MiB for a moment)
_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash of `password` (RFC 9106's low-memory profile: 3 passes over 64 MiB)."""
    return _HASHER.hash(password)


@cache
def _dummy() -> str:
    """A hash checked when the user name is wrong, so that a wrong name takes as long as a wrong password."""
    return _HASHER.hash(secrets.token_hex(16))


def _verify(stored: str, password: str) -> bool:
    with _VERIFYING:
        try:
            return _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


class SignInNeededError(PageError):
    """No session (or an ended one): a page read goes to the sign-in form, a form post is refused (401)."""

    def __init__(self) -> None:
        super().__init__(401, "Sign in to see the quarantine", "Your session has ended or you have not signed in.")


@dataclass(slots=True)
class Session:
    user: str
    started: float
    seen: float
    csrf: str


class Sessions:
    """Signed-in admins, by session id, in memory; at most `max_sessions` (the oldest goes first)."""

    def __init__(self, secret: bytes, *, idle: float, lifetime: float, clock: Clock,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self.secret = secret
        self.idle = idle
        self.lifetime = lifetime
        self.clock = clock
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def sign(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 of `value` for one `purpose`, under the page's key."""
        return hmac.new(self.secret, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def start(self, user: str) -> str:
        """A new session for `user`; the cookie's value."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._sessions[session_id] = Session(user, now, now, self.sign("admin-csrf", session_id))
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return f"{session_id}.{self.sign('admin-session', session_id)}"

    def _id(self, cookie: str | None) -> str | None:
        session_id, _, signature = (cookie or "").partition(".")
        if not session_id or not hmac.compare_digest(signature.encode(),
                                                      self.sign("admin-session", session_id).encode()):
            return None
        return session_id

    def find(self, cookie: str | None) -> Session | None:
        """The live session of this cookie (and it is seen now), or None: unsigned, unknown, idle or too old."""
        session_id = self._id(cookie)
        if session_id is None:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > self.idle or now - session.started > self.lifetime:
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def end(self, cookie: str | None) -> Session | None:
        session_id = self._id(cookie)
        with self._lock:
            return self._sessions.pop(session_id, None) if session_id else None

    def login_token(self, nonce: str) -> str:
        """The sign-in form's CSRF token for the browser whose LOGIN_COOKIE is `nonce`."""
        return self.sign("admin-sign-in", nonce)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _digest_equal(given: str, expected: str) -> bool:
    """Equal, compared as digests: the time does not depend on where they differ or on their lengths."""
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest(),
                               hashlib.sha256(expected.encode()).digest())


class AdminAuth:
    """The admin pages' gate: sessions signed in with the argon2-checked password, or a trusted proxy's header."""

    def __init__(self, *, secret: bytes, settings: WebSettings, clock: Clock) -> None:
        self.user_name = settings.admin_user
        self.password_hash = settings.admin_password_hash
        self.header = settings.admin_user_header.lower() if settings.admin_user_header else None
        self.enabled = bool(self.header or (self.user_name and self.password_hash))
        self.sessions = Sessions(secret, idle=settings.admin_session_idle, lifetime=settings.admin_session_max,
                                 clock=clock)
        self.logins = LoginThrottle(max_failures=settings.admin_max_failures, window=settings.admin_failure_window,
                                    lockout=settings.admin_lockout, lockout_max=settings.admin_lockout_max,
                                    clock=clock)

    def _require_enabled(self) -> None:
        if not self.enabled:
            raise PageError(404, "Not found", "There is no page at this address.")

    def _proxy_user(self, request: Request) -> str | None:
        if self.header is None:
            return None
        value = request.headers.get(self.header, "").strip()
        return value[:128] or None

    def user(self, request: Request) -> str:
        """The signed-in admin's name (also put in the request's state for the access log); PageError 404 when
        the admin pages are off, SignInNeededError without a live session."""
        self._require_enabled()
        user = self._proxy_user(request)
        if user is None:
            session = self.sessions.find(request.cookies.get(COOKIE))
            if session is None:
                raise SignInNeededError
            user = session.user
        request.state.admin = user
        return user

    def csrf(self, request: Request) -> str:
        """The CSRF token of this admin's forms: the session's, or for a proxy's user one bound to the name."""
        user = self._proxy_user(request)
        if user is not None:
            return self.sessions.sign("admin-proxy-csrf", user)
        session = self.sessions.find(request.cookies.get(COOKIE))
        if session is None:
            raise SignInNeededError
        return session.csrf

    def form(self, request: Request, csrf: str) -> str:
        """`user` for a form post, which must carry this admin's CSRF token (PageError 403 if not)."""
        user = self.user(request)
        if not csrf or not _same(csrf, self.csrf(request)):
            raise PageError(403, "This form could not be accepted", "Reload the page and try again. Nothing was "
                             "changed.")
        return user

    # -- signing in and out ---------------------------------------------------------------------------------------

    def sign_in_form(self, request: Request) -> tuple[str, str]:
        """(the LOGIN_COOKIE value to set, the form's CSRF token): the cookie the browser already has, if any."""
        self._require_enabled()
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
        return nonce, self.sessions.login_token(nonce)

    def sign_in(self, request: Request, user: str, password: str, csrf: str) -> str:
        """Check the sign-in form and the password: the new session's cookie value. PageError 403 (the form did
        not come from this browser's sign-in page), 429 (locked after wrong passwords), 401 (wrong)."""
        self._require_enabled()
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not csrf or not _same(csrf, self.sessions.login_token(nonce)):
            raise PageError(403, "This form could not be accepted", "Load the sign-in page again and sign in.")
        if self.user_name is None or self.password_hash is None:  # only a proxy signs admins in
            raise PageError(404, "Not found", "Signing in is done by the single sign-on in front of this page.")
        address = client_address(request.scope)
        keys = self.logins.keys(address, user, self.user_name)
        wait = self.logins.locked(keys)
        if wait > 0:
            raise PageError(429, "Too many wrong passwords",
                             "Signing in is locked for a while after repeated wrong passwords. Try again later.",
                             {"Retry-After": str(max(1, math.ceil(wait)))})
        user_ok = _digest_equal(user, self.user_name)
        password_ok = _verify(self.password_hash if user_ok else _dummy(), password)
        if not (user_ok and password_ok):
            self.logins.failed(keys)
            logs.event(log, "admin_sign_in_failed", logging.WARNING, user=user[:128], client=address)
            raise PageError(401, "Sign in to see the quarantine", "The user name or password is wrong.")
        self.logins.succeeded(keys)
        self.sessions.end(request.cookies.get(COOKIE))  # the session this one replaces, if any
        logs.event(log, "admin_signed_in", user=self.user_name, client=address)
        request.state.admin = self.user_name
        return self.sessions.start(self.user_name)

    def sign_out(self, request: Request, csrf: str) -> None:
        """End this admin's session (a form post with its CSRF token)."""
        user = self.form(request, csrf)
        self.sessions.end(request.cookies.get(COOKIE))
        logs.event(log, "admin_signed_out", user=user, client=client_address(request.scope))

    @staticmethod
    def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
        """A cookie for the admin pages only: HttpOnly, SameSite=Strict, Secure over HTTPS."""
        response.set_cookie(name, value, max_age=max_age, path=_cookie_path(request),
                            secure=request.url.scheme == "https", httponly=True, samesite="strict")

    @staticmethod
    def clear_cookie(request: Request, response: Response, name: str) -> None:
        response.delete_cookie(name, path=_cookie_path(request), secure=request.url.scheme == "https",
                               httponly=True, samesite="strict")


def _cookie_path(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}/admin"
