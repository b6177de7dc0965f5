"""The shipped list of real mailbox providers (data/providers.toml): real domains, grouped by owner.

Each `[[provider]]` group has an `owner`, a `source` (where its domains come from: "manual", or
"ISPDB <commit>/<file>" for the part that scripts/refresh_providers.py generates from Thunderbird's ISP
database) and its `domains`. Several groups may share an owner; all of an owner's domains are siblings.

The data is checked once, when first read: every domain an ASCII lower-case host name with at least two
labels, none listed twice. A subdomain is judged like the listed domain it lies under
(`mail.verizon.com` like `verizon.com`), never past its registrable domain.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from rcptguard.domains import DomainError, normalize_domain, public_suffix

_HOST = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))+\Z")


class ProviderDataError(ValueError):
    """providers.toml breaks one of its rules; the message names the group and the domain."""


@dataclass(frozen=True, slots=True)
class Provider:
    """One listed domain: who owns it and where the listing comes from."""

    domain: str
    owner: str
    source: str


@dataclass(frozen=True, slots=True)
class Providers:
    """The loaded list: each domain's entry, and each owner's domains (sorted)."""

    by_domain: dict[str, Provider]
    by_owner: dict[str, tuple[str, ...]]


def load(text: str) -> Providers:
    """Parse and check the text of a providers.toml; raise ProviderDataError on the first broken rule."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProviderDataError(f"providers.toml: {exc}") from None
    groups = raw.get("provider")
    if not isinstance(groups, list):
        raise ProviderDataError("providers.toml: no [[provider]] groups")
    by_domain: dict[str, Provider] = {}
    for number, group in enumerate(groups, 1):
        owner, source, domains = group.get("owner"), group.get("source"), group.get("domains")
        where = f"providers.toml, group {number} ({owner!r})"
        if not isinstance(owner, str) or not owner.strip():
            raise ProviderDataError(f"{where}: `owner` must be a non-empty string")
        if not isinstance(source, str) or not source.strip():
            raise ProviderDataError(f"{where}: `source` must say where the domains come from")
        if not isinstance(domains, list) or not domains:
            raise ProviderDataError(f"{where}: `domains` must be a non-empty list")
        for domain in domains:
            if not isinstance(domain, str) or not _HOST.match(domain):
                raise ProviderDataError(f"{where}: {domain!r} is not an ASCII lower-case domain")
            earlier = by_domain.get(domain)
            if earlier is not None:
                raise ProviderDataError(f"{where}: {domain} is already listed for {earlier.owner!r} "
                                        f"({earlier.source})")
            by_domain[domain] = Provider(domain, owner, source)
    by_owner: dict[str, list[str]] = {}
    for entry in by_domain.values():
        by_owner.setdefault(entry.owner, []).append(entry.domain)
    return Providers(by_domain, {owner: tuple(sorted(names)) for owner, names in by_owner.items()})


@cache
def _shipped() -> Providers:
    return load(resources.files("rcptguard.data").joinpath("providers.toml").read_text("utf-8"))


def providers() -> dict[str, str]:
    """Each provider domain (ASCII, lower case) with the name of the company that owns it."""
    return _owners()


@cache
def _owners() -> dict[str, str]:
    return {domain: entry.owner for domain, entry in _shipped().by_domain.items()}


def lookup(domain: str) -> Provider | None:
    """The listed domain that `domain` is or lies under (up to its registrable domain), or None.

    Accepts either form of an internationalised domain, any case, with or without the final dot.
    """
    try:
        name = normalize_domain(domain).ascii
    except DomainError:
        return None
    table = _shipped().by_domain
    suffix = public_suffix(name)
    while len(name) > len(suffix):
        found = table.get(name)
        if found is not None:
            return found
        name = name.partition(".")[2]
    return None


def owner_of(domain: str) -> str | None:
    """The owner of `domain`, or of the listed provider domain it is a subdomain of."""
    found = lookup(domain)
    return found.owner if found else None


def source_of(domain: str) -> str | None:
    """Where the listing of `domain` (or of the provider domain it lies under) comes from."""
    found = lookup(domain)
    return found.source if found else None


def siblings(domain: str) -> tuple[str, ...]:
    """The other domains of the owner of `domain`, sorted; empty when `domain` is not a provider's."""
    found = lookup(domain)
    if found is None:
        return ()
    return tuple(d for d in _shipped().by_owner[found.owner] if d != found.domain)
