"""Settings of the world's evidence: the `[dns]` section of the config file.

    key                 default  meaning
    ------------------  -------  ------------------------------------------------------------------------------
    enabled             (unset)  true/false; unset (None, the key left out) leaves it to the door: off in `check`
                                 (`--dns` turns it on), on in the servers (relay, policyd); see `for_door`
    nameservers         []       resolver addresses (IPv4/IPv6); empty: the system's /etc/resolv.conf
    port                53       the port of those nameservers (a local resolver or a test server elsewhere)
    budget_ms           150      the longest one check waits; then it decides with what it has (UNKNOWN)
    query_timeout_ms    2000     how long one look-up may run on after the budget, to fill the cache
    cache_size          10000    answers kept at most (least recently used out first)
    min_ttl             60       a positive answer is kept at least this long (seconds) ...
    max_ttl             86400    ... and at most this long
    negative_min_ttl    60       "no such domain" / "no such record" kept at least this long ...
    negative_max_ttl    3600     ... and at most (RFC 2308 negative caching, with a ceiling of our own)
    failure_ttl         30       a SERVFAIL or a look-up that ran out of time is not asked again for this long
    max_inflight        256      look-ups running at once; past it a check answers UNKNOWN at once
    shared_hosts        []       more MX hosts or suffixes that serve many tenants (`shared.py` has the list)

`DnsSettings()` is usable as it is; it is a `rcptguard.settings.Settings`, so `config.load_config` builds it
from the file like every other section (types from the annotations, no negative numbers). A value of the right
type that cannot be used raises `ConfigError` keyed by its name (`budget_ms: ...`); the loader puts the section
and the file's line in front (`rcptguard.toml:7: dns.budget_ms: ...`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

from rcptguard.errors import ConfigError
from rcptguard.settings import Settings

__all__ = ["DnsSettings"]


@dataclass(frozen=True, slots=True)
class DnsSettings(Settings):
    """How the world's evidence asks the DNS; see the module docstring for every key."""

    enabled: bool | None = None
    nameservers: tuple[str, ...] = ()
    port: int = 53
    budget_ms: int = 150
    query_timeout_ms: int = 2000
    cache_size: int = 10_000
    min_ttl: int = 60
    max_ttl: int = 86_400
    negative_min_ttl: int = 60
    negative_max_ttl: int = 3600
    failure_ttl: int = 30
    max_inflight: int = 256
    shared_hosts: tuple[str, ...] = ()

    def for_door(self, default: bool) -> DnsSettings:
        """These settings with `enabled` decided: the file's `true`/`false` if it says, else the door's `default`
        (False for `rcptguard check`, True for the relay and the policy service)."""
        if self.enabled is not None:
            return self
        return dataclasses.replace(self, enabled=default)

    def check(self) -> None:
        """ConfigError for a value of the right type that cannot be used."""
        for server in self.nameservers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise ConfigError(f"expected IP addresses, got {server!r}", key="nameservers") from None
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"expected a port from 1 to 65535, got {self.port}", key="port")
        if not 1 <= self.budget_ms <= 60_000:
            raise ConfigError(f"expected 1 to 60000 milliseconds, got {self.budget_ms}", key="budget_ms")
        if self.query_timeout_ms < self.budget_ms:
            raise ConfigError(f"expected at least budget_ms ({self.budget_ms}), got {self.query_timeout_ms}",
                              key="query_timeout_ms")
        for name in ("cache_size", "min_ttl", "negative_min_ttl", "failure_ttl"):
            if getattr(self, name) < 0:
                raise ConfigError(f"expected 0 or more, got {getattr(self, name)}", key=name)
        if self.max_ttl < self.min_ttl:
            raise ConfigError(f"expected at least min_ttl ({self.min_ttl}), got {self.max_ttl}", key="max_ttl")
        if self.negative_max_ttl < self.negative_min_ttl:
            raise ConfigError(f"expected at least negative_min_ttl ({self.negative_min_ttl}), got "
                              f"{self.negative_max_ttl}", key="negative_max_ttl")
        if self.max_inflight < 1:
            raise ConfigError(f"expected at least 1, got {self.max_inflight}", key="max_inflight")

    @property
    def budget(self) -> float:
        """The budget in seconds."""
        return self.budget_ms / 1000

    @property
    def query_timeout(self) -> float:
        """One look-up's lifetime in seconds."""
        return self.query_timeout_ms / 1000
