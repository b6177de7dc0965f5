"""The `[web]` section of the config file, checked: every key has a default, a type and a range.

    settings = WebSettings.from_section(section, "web").with_token_file(config_dir)

`secret`, `secret_file`, `admin_user`, `admin_password_hash` and `template_dir` are read here too, so that an
unknown or mistyped key is refused in one place; the CSRF key itself is made by `rcptguard web`
(cli.servers.web_secret). `admin_password`, a password in plain text, is read only to be refused by `rcptguard
web` (NOT_HASHED) and reported by `rcptguard doctor`, so that the other servers still start with it.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rcptguard.errors import ConfigError
from rcptguard.settings import Settings, invalid, overlay

__all__ = ["API_MODES", "NOT_HASHED", "WebSettings"]

API_MODES = ("loopback", "token", "open", "off")
ApiMode = Literal["loopback", "token", "open", "off"]
AccessLog = Literal["debug", "info", "warning", "off"]
_MIN_TOKEN = 16
NOT_HASHED = (
    "[web] admin_password is a password in plain text, which is no longer accepted: make its argon2 hash with "
    "`rcptguard web hash-password`, set admin_password_hash to it and delete admin_password")


@dataclass(frozen=True, slots=True)
class WebSettings(Settings):
    """What `rcptguard web` serves and how it limits its callers. Times are in seconds."""

    base_url: str = "http://127.0.0.1:8025"  # the public address of the page; the relay puts it in the links
    secret: str | None = None
    secret_file: str | None = None
    admin_user: str | None = None
    admin_password_hash: str | None = None  # argon2, from `rcptguard web hash-password`
    admin_password: str | None = None  # plain text: refused by `rcptguard web` (NOT_HASHED)
    admin_user_header: str | None = None  # a header naming the admin, set by a trusted proxy (single sign-on)
    template_dir: str | None = None
    # the reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (addresses or networks)
    trusted_proxies: tuple[str, ...] = ()
    access_log: AccessLog = "info"  # the level of the access log's lines (one a request), or "off"
    # /v1/check: who may call it, how much and how often
    api: ApiMode = "loopback"  # loopback: clients on 127.0.0.0/8 and ::1 without a token, others with it
    api_token: str | None = None  # the Bearer token (at least 16 characters)
    api_token_file: str | None = None  # or a file holding it (relative to the config file)
    api_max_body: int = 1024 * 1024  # bytes of request body, refused with 413 before it is read whole
    api_max_recipients: int = 1000
    api_rate: float = 10.0  # requests per second per client address (a token bucket); 0: no limit
    api_burst: int = 50  # requests a client may make at once before the rate applies
    # the admin login: lock out an address, or the admin user, after repeated wrong passwords
    admin_max_failures: int = 10  # wrong passwords within admin_failure_window that lock
    admin_failure_window: float = 900.0
    admin_lockout: float = 60.0  # the first lock; each further one doubles, up to admin_lockout_max
    admin_lockout_max: float = 3600.0
    # a signed-in admin's session: ends after this long without a request, and this long after signing in
    admin_session_idle: float = 1800.0
    admin_session_max: float = 43200.0
    # releases from the page are sent in the background by this many threads
    release_workers: int = 4
    # GET /metrics (Prometheus): to clients on this machine only, to anyone, or not at all
    metrics: Literal["loopback", "open", "off"] = "loopback"

    def with_token_file(self, base: Path) -> WebSettings:
        """These settings with `api_token` read from `api_token_file` (relative to `base`) when only the file is
        given; ConfigError keyed web.api_token_file when it cannot be read."""
        if not self.api_token_file or self.api_token:
            return self
        path = base / self.api_token_file
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}", key="web.api_token_file") from None
        return overlay(self, "web", api_token=token)

    def check(self) -> None:
        for name in ("api_token", "secret", "admin_password", "admin_password_hash", "admin_user_header"):
            # an empty one counts as not set
            if getattr(self, name) == "":
                self.derive(name, None)
        parsed = urllib.parse.urlsplit(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment:
            raise invalid("base_url", f"expected http(s)://host[:port][/path], got {self.base_url!r}")
        if self.api not in API_MODES:
            raise invalid("api", f"expected one of {', '.join(API_MODES)}, got {self.api!r}")
        if self.api_token is not None and len(self.api_token) < _MIN_TOKEN:
            raise invalid("api_token", f"at least {_MIN_TOKEN} characters")
        if self.api == "token" and not (self.api_token or self.api_token_file):
            raise invalid("api", '"token" needs api_token or api_token_file')
        for name in ("api_max_body", "api_max_recipients", "api_burst", "admin_max_failures", "release_workers"):
            if getattr(self, name) < 1:
                raise invalid(name, "at least 1")
        for name in ("admin_failure_window", "admin_lockout", "admin_lockout_max", "admin_session_idle",
                     "admin_session_max"):
            if not getattr(self, name) > 0:
                raise invalid(name, "a number of seconds above 0")
        if self.admin_lockout_max < self.admin_lockout:
            raise invalid("admin_lockout_max", "at least admin_lockout")
        if self.admin_password_hash is not None and not _is_argon2(self.admin_password_hash):
            raise invalid("admin_password_hash", "expected an argon2 hash ($argon2id$...), as `rcptguard web "
                          "hash-password` prints it")
        if self.admin_user_header is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", self.admin_user_header):
            raise invalid("admin_user_header", f"expected a header name, got {self.admin_user_header!r}")
        if self.admin_user_header is not None and not self.trusted_proxies:
            raise invalid("admin_user_header", "needs trusted_proxies: the header is believed only from them")
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise invalid("trusted_proxies", f"expected an address or network (CIDR), got {entry!r}") from None

    @property
    def proxies(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """trusted_proxies as networks."""
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies)

    @property
    def public_url(self) -> str:
        """base_url without a trailing slash: prefix of every absolute URL the page makes."""
        return self.base_url.rstrip("/")


def _is_argon2(value: str) -> bool:
    from argon2 import extract_parameters  # noqa: PLC0415 - only when a hash is configured
    from argon2.exceptions import InvalidHashError  # noqa: PLC0415 - same

    try:
        extract_parameters(value)
    except InvalidHashError:
        return False
    return True
