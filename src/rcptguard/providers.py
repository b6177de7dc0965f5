"""The shipped list of major mailbox providers (data/providers.toml): real domains, grouped by owner."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources


@cache
def providers() -> dict[str, str]:
    """Each provider domain (ASCII, lower case) with the name of the company that owns it."""
    raw = tomllib.loads(resources.files("rcptguard.data").joinpath("providers.toml").read_text("utf-8"))
    return {domain: group["owner"] for group in raw["provider"] for domain in group["domains"]}
