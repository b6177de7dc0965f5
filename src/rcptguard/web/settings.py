"""The `[web]` section of the config file, checked: every key has a default, a type and a range.

    settings = WebSettings.from_section(policy.sections.get("web", {}), base=config_dir)

`secret`, `secret_file`, `admin_user`, `admin_password` and `template_dir` are read here too, so that an unknown
or mistyped key is refused in one place; the CSRF key itself is made by `rcptguard web` (cli.servers.web_secret).
"""

from __future__ import annotations

import dataclasses
import math
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["API_MODES", "WebSettings"]

API_MODES = ("loopback", "token", "open", "off")
ApiMode = Literal["loopback", "token", "open", "off"]
_MIN_TOKEN = 16


@dataclass(frozen=True, slots=True)
class WebSettings:
    """What `rcptguard web` serves and how it limits its callers. Times are in seconds."""

    base_url: str = "http://127.0.0.1:8025"  # the public address of the page; the relay puts it in the links
    secret: str | None = None
    secret_file: str | None = None
    admin_user: str | None = None
    admin_password: str | None = None
    template_dir: str | None = None
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
    # releases from the page are sent in the background by this many threads
    release_workers: int = 4

    @classmethod
    def from_section(cls, section: dict[str, Any], base: Path | None = None) -> WebSettings:
        """The settings from a `[web]` table; TypeError or ValueError names the key (web.KEY) and what is wrong."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in section.items():
            if key not in fields:
                raise ValueError(f"web.{key}: unknown key (expected one of: {', '.join(sorted(fields))})")
            values[key] = _checked(key, value, fields[key].default)
        token_file = values.get("api_token_file")
        if token_file and not values.get("api_token"):
            path = (base or Path()) / token_file
            try:
                values["api_token"] = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"web.api_token_file: cannot read {path}: {exc}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """ValueError for values of the right type but outside their range."""
        parsed = urllib.parse.urlsplit(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment:
            raise ValueError(f"web.base_url: expected http(s)://host[:port][/path], got {self.base_url!r}")
        if self.api not in API_MODES:
            raise ValueError(f"web.api: expected one of {', '.join(API_MODES)}, got {self.api!r}")
        if self.api_token is not None and len(self.api_token) < _MIN_TOKEN:
            raise ValueError(f"web.api_token: at least {_MIN_TOKEN} characters")
        if self.api == "token" and not self.api_token:
            raise ValueError('web.api: "token" needs api_token or api_token_file')
        for name in ("api_max_body", "api_max_recipients", "api_burst", "admin_max_failures", "release_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"web.{name}: at least 1")
        for name in ("admin_failure_window", "admin_lockout", "admin_lockout_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"web.{name}: a number of seconds above 0")
        if self.api_rate < 0:
            raise ValueError("web.api_rate: 0 (no limit) or more requests per second")
        if self.admin_lockout_max < self.admin_lockout:
            raise ValueError("web.admin_lockout_max: at least admin_lockout")

    @property
    def public_url(self) -> str:
        """base_url without a trailing slash: prefix of every absolute URL the page makes."""
        return self.base_url.rstrip("/")


def _checked(key: str, value: object, default: object) -> object:
    """The value if it has the type of the key's default (an int is a float too; no bool is a number);
    TypeError if not. An empty secret, password or token counts as not set."""
    if key in ("api_token", "secret", "admin_password") and value == "":
        return None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise TypeError(f"web.{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"web.{key}: expected a whole number, got {value!r}")
        return value
    if not isinstance(value, str):
        raise TypeError(f"web.{key}: expected a string, got {value!r}")
    return value
