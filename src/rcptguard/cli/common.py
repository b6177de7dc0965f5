"""What the command modules share: the detection options, the config, policy and guard they build, the store
a command opens, and what running a server takes (the listen address, the event loop, and one clear line and exit
status 2 when it cannot listen). Every module of the package imports this one; it imports none of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from rcptguard.guard import Guard
from rcptguard.policy import ConfigError, Policy, load_policy

if TYPE_CHECKING:
    from rcptguard.config import Config
    from rcptguard.metrics import Metrics
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

    from rcptguard.store.history import StoreHistory  # noqa: PLC0415 - same

    history = StoreHistory(store)

    def factory(learned: dict[str, int]) -> Guard:
        """The guard, with the domains an administrator added (rcptguard known add) as known correspondents."""
        return Guard(policy.with_domains(known=tuple(history.added())), learned=learned)

    return store, factory


def run_async(main_coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a server on uvloop (libuv) when it is installed, else on asyncio's own loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional, and only for the commands that serve
    except ImportError:
        asyncio.run(main_coroutine)
    else:
        uvloop.run(main_coroutine)


def serve_until_stopped(command: str, host: str, port: int,
                        server: Callable[[Callable[[int], None]], Coroutine[Any, Any, None]]) -> None:
    """Run the server `server(ready)` makes; when it cannot listen (the port is taken, the address is not this
    host's), one line on stderr and exit status 2 instead of a traceback."""
    listening = False

    def ready(_port: int) -> None:
        nonlocal listening
        listening = True

    try:
        run_async(server(ready))
    except OSError as exc:
        if listening:  # failed while serving: not a listen error
            raise
        cannot_listen(command, host, port, exc)


@contextlib.contextmanager
def metrics_served(command: str, metrics: Metrics, listen: str) -> Iterator[None]:
    """The server's metrics served on `listen` (its `metrics_listen`; empty: not served) while the block runs; one
    line and exit status 2 when it cannot listen there."""
    from rcptguard.metrics import MetricsServer, check_listen  # noqa: PLC0415 - only the servers serve metrics

    server = None
    if listen:
        try:
            server = MetricsServer(metrics, listen)
        except OSError as exc:
            cannot_listen(f"{command} (metrics_listen)", *check_listen(listen), exc)
    try:
        yield
    finally:
        if server is not None:
            server.close()


def listening_socket(command: str, host: str, port: int) -> socket.socket:
    """A socket bound to host:port and listening, for a server that takes one; one line and exit 2 when it
    cannot be."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    backlog=1024)
    except OSError as exc:
        cannot_listen(command, host, port, exc)


def cannot_listen(command: str, host: str, port: int, exc: OSError) -> NoReturn:
    """`rcptguard relay: cannot listen on 127.0.0.1:2525: address already in use`, and exit status 2."""
    reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    click.echo(f"rcptguard {command}: cannot listen on {where}: {reason[:1].lower()}{reason[1:]}", err=True)
    sys.exit(2)


def listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def store_options(func: F) -> F:
    """--config and --db, which every command that only touches the store takes."""
    func = click.option("--db", "db", metavar="URL",
                        help="Store URL (sqlite:///path or postgresql://...); wins over [db] url in the config.")(func)
    return click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
                        help="TOML config file (see docs/configuration.md).")(func)


def open_store(loaded: Config, config: Path | None, db: str | None, *, create: bool = True) -> Store:
    """The store of --db, else of the config: closed with the command. With `create=False` (commands that only
    read, or name something a new store cannot have) a missing store is an error that says where it was looked
    for, never a new empty one."""
    from alembic.util import CommandError  # noqa: PLC0415 - Alembic, SQLAlchemy: only when a store is opened

    from rcptguard.store import DEFAULT_URL, Store, StoreError, StoreNotFound  # noqa: PLC0415 - same

    url = db_url(loaded, db)
    try:
        store = Store.open(url, create=create)
    except StoreNotFound as exc:
        source = "--db" if db else f"[db] url in {config}" if config and url != DEFAULT_URL else "the default"
        raise click.ClickException(f"{exc} (the URL is {source}); this command never creates a store: point it at "
                                   "yours with --db URL or --config FILE") from None
    except StoreError as exc:
        raise click.ClickException(first_line(exc)) from None
    except CommandError as exc:  # e.g. a database migrated by a newer rcptguard
        raise click.ClickException(f"cannot open the store at {url}: {first_line(exc)}") from None
    click.get_current_context().call_on_close(store.close)
    return store


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
