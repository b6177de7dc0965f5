"""What the command modules share: the detection options, the config, policy and guard they build, and the store
a command opens. Every module of the package imports this one; it imports none of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rcptguard.guard import Guard
from rcptguard.policy import ConfigError, Policy, load_policy

if TYPE_CHECKING:
    from rcptguard.config import Config
    from rcptguard.store import Store

F = TypeVar("F", bound=Callable[..., Any])


def detection_options(func: F) -> F:
    """The options every deciding command takes: --config, --protect, --known, --known-file."""
    options = [
        click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
                     help="TOML policy file (see docs/configuration.md)."),
        click.option("--protect", multiple=True, metavar="DOMAIN",
                     help="A protected domain or whole suffix (mil); repeatable."),
        click.option("--known", multiple=True, metavar="DOMAIN", help="A domain you write to; repeatable."),
        click.option("--known-file", "known_files", multiple=True,
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="File of known domains, one a line ('domain' or 'domain count')."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_config(config: Path | None) -> Config:
    """Every section of the config file, checked (rcptguard.config); a config error exits with status 2."""
    from rcptguard.config import load_config  # noqa: PLC0415 - the gateways' settings are imported only here

    try:
        return load_config(config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def build_policy(config: Path | Config | None, protect: tuple[str, ...], known: tuple[str, ...],
                 known_files: tuple[Path, ...]) -> Policy:
    """The policy from the config file (or a config already loaded) and command-line options; a config error
    anywhere in the file (not only in the policy) exits with status 2."""
    try:
        if config is None:
            return load_policy(None).with_domains(protect, known, known_files)
        loaded = config if not isinstance(config, Path) else build_config(config)
        return loaded.policy.with_domains(protect, known, known_files)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def build_guard(policy: Policy) -> Guard:
    try:
        return Guard(policy)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def db_url(config: Config, flag: str | None) -> str:
    """The store URL: --db wins over [db] url in the config file (a relative SQLite path there is relative to the
    file), which wins over the default."""
    return flag or config.db.url


def open_gateway(config: Config, policy: Policy, db: str | None) -> tuple[Store, Callable[[dict[str, int]], Guard]]:
    """The store a gateway learns into, and how it builds its guard (with `policy`: the config's policy with the
    command line's domains) from what was learned."""
    from rcptguard.store import Store, StoreError  # noqa: PLC0415 - SQLAlchemy only for the commands that open a store

    try:
        store = Store.open(db_url(config, db))
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None

    def factory(learned: dict[str, int]) -> Guard:
        return Guard(policy, learned=learned)

    return store, factory
