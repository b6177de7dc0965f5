"""The long-running commands, `policyd`, `relay`, `milter` and `web`, and `release` (of what the policy service put
on Postfix HOLD); what running a server takes is in `common`."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rcptguard.cli.common import (
    build_config,
    build_policy,
    detection_options,
    listen_address,
    listening_socket,
    metrics_served,
    open_gateway,
    serve_until_stopped,
)
from rcptguard.policy import ConfigError
from rcptguard.settings import overlay

if TYPE_CHECKING:
    from rcptguard.web.settings import WebSettings


@click.command()
@detection_options
@click.option("--listen", default="127.0.0.1:10040", show_default=True, help="HOST:PORT to listen on.")
@click.option("--stdio", is_flag=True, help="Serve one connection on stdin/stdout (Postfix spawn in master.cf).")
@click.option("--db", "db", metavar="URL", help="Store URL (sqlite:///path or postgresql://...); wins over the config.")
@click.option("--hold-mode", type=click.Choice(["reject", "hold"]), default=None,
              help="What a hold verdict does: REJECT with the explanation, or Postfix HOLD.")
@click.option("--log-level", default="info", show_default=True)
def policyd(config: Path | None, protect: tuple[str, ...], known: tuple[str, ...], known_files: tuple[Path, ...],
            listen: str, stdio: bool, db: str | None, hold_mode: str | None, log_level: str) -> None:
    """Postfix policy service: refuse mistyped recipients at RCPT time."""

    from rcptguard import logs  # noqa: PLC0415 - the servers' modules load only for the command that runs one
    from rcptguard.gateways.policyd import PolicyService, serve, serve_stdio  # noqa: PLC0415 - same
    from rcptguard.store import StoreError  # noqa: PLC0415 - same

    logs.setup(log_level)
    loaded = build_config(config)
    settings = loaded.policyd
    policy = build_policy(loaded, protect, known, known_files)
    host, port = listen_address(listen)
    if hold_mode:
        settings = overlay(settings, "policyd", hold_mode=hold_mode)
    store, factory = open_gateway(loaded, policy, db)
    try:
        service = PolicyService(factory, store, settings, dns=loaded.dns.for_door(default=True),
                                history=loaded.history)
    except (ConfigError, StoreError) as exc:
        raise click.UsageError(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt):
        if stdio:  # one process per connection: no metrics server (each would want the same port)
            serve_stdio(service, sys.stdin.buffer, sys.stdout.buffer)
            return
        with metrics_served("policyd", service.metrics, settings.metrics_listen):
            serve_until_stopped("policyd", host, port, lambda ready: serve(service, host, port, ready=ready))


@click.command()
@click.option("--postfix-config", type=click.Path(file_okay=False, path_type=Path),
              help="Postfix config directory of the instance (postsuper -c).")
@click.argument("queue_ids", nargs=-1, required=True)
def release(postfix_config: Path | None, queue_ids: tuple[str, ...]) -> None:
    """Release messages that the policy service put on Postfix HOLD (postsuper -H QUEUE_ID)."""
    import re  # noqa: PLC0415 - only this command runs postsuper
    import subprocess  # noqa: PLC0415 - same

    for queue_id in queue_ids:
        if not re.fullmatch(r"[0-9A-Za-z]{6,32}", queue_id):
            raise click.BadParameter(f"not a Postfix queue ID: {queue_id!r}")
    command = ["postsuper"]
    if postfix_config:
        command += ["-c", str(postfix_config)]
    for queue_id in queue_ids:
        command += ["-H", queue_id]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    output = (result.stdout + result.stderr).strip()
    if output:
        click.echo(output)
    sys.exit(0 if result.returncode == 0 else 1)


@click.command()
@detection_options
@click.option("--listen", default="127.0.0.1:10025", show_default=True, help="HOST:PORT to listen on.")
@click.option("--next-hop", "next_hop", metavar="HOST:PORT",
              help="Where accepted mail goes (default: [relay] next_hop, else 127.0.0.1:10026).")
@click.option("--db", "db", metavar="URL", help="Store URL (sqlite:///path or postgresql://...); wins over the config.")
@click.option("--allow", multiple=True, metavar="CIDR",
              help="Client network allowed to send through the relay; repeatable (default: loopback only).")
@click.option("--log-level", default="info", show_default=True)
def relay(config: Path | None, protect: tuple[str, ...], known: tuple[str, ...], known_files: tuple[Path, ...],
          listen: str, next_hop: str | None, db: str | None, allow: tuple[str, ...], log_level: str) -> None:
    """SMTP relay / Postfix content filter: forward what passes, hold mistyped recipients in the quarantine."""

    from rcptguard import logs  # noqa: PLC0415 - the servers' modules load only for the command that runs one
    from rcptguard.config import relay_with  # noqa: PLC0415 - same
    from rcptguard.gateways import relay as relay_mod  # noqa: PLC0415 - same
    from rcptguard.store import StoreError  # noqa: PLC0415 - same

    logs.setup(log_level)
    loaded = build_config(config)
    policy = build_policy(loaded, protect, known, known_files)
    host, port = listen_address(listen)
    try:
        settings = relay_with(loaded.relay, next_hop=next_hop, allow=allow or None)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if not loaded.links_configured and settings.notify:
        logs.event(logging.getLogger("rcptguard.relay"), "no public address for the page", logging.WARNING,
                   base_url=settings.base_url, fix="set [web] base_url to the address senders reach the page at")
    store, factory = open_gateway(loaded, policy, db)
    try:
        handler = relay_mod.build(factory, store, settings, dns=loaded.dns.for_door(default=True),
                                  content=loaded.content,
                                  history=loaded.history)
    except (ConfigError, StoreError) as exc:
        raise click.UsageError(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt), metrics_served("relay", handler.metrics, settings.metrics_listen):
        serve_until_stopped("relay", host, port,
                            lambda ready: relay_mod.serve(handler, host, port, ready=ready))


@click.group(invoke_without_command=True)
@detection_options
@click.option("--listen", metavar="unix:PATH | inet:HOST:PORT",
              help="Where the MTA connects (default: [milter] listen).")
@click.option("--next-hop", "next_hop", metavar="HOST:PORT",
              help="Where released mail goes (default: [relay] next_hop, else 127.0.0.1:10026).")
@click.option("--db", "db", metavar="URL", help="Store URL (sqlite:///path or postgresql://...); wins over the config.")
@click.option("--log-level", default="info", show_default=True)
def milter(config: Path | None, protect: tuple[str, ...], known: tuple[str, ...], known_files: tuple[Path, ...],
           listen: str | None, next_hop: str | None, db: str | None, log_level: str) -> None:
    """Milter for Postfix and Sendmail: refuse, hold (in the quarantine) or pass each recipient inside the MTA."""

    from rcptguard import logs  # noqa: PLC0415 - the servers' modules load only for the command that runs one
    from rcptguard.config import relay_with  # noqa: PLC0415 - same
    from rcptguard.gateways import milter as milter_mod  # noqa: PLC0415 - same
    from rcptguard.store import StoreError  # noqa: PLC0415 - same

    logs.setup(log_level)
    loaded = build_config(config)
    policy = build_policy(loaded, protect, known, known_files)
    try:
        address = milter_mod.libmilter_address(listen or loaded.milter.listen)
        settings = overlay(loaded.milter, "milter", listen=address)
        relay_settings = relay_with(loaded.relay, next_hop=next_hop)
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    milter_mod.leave_stop_signals_to_libmilter()  # before any thread starts (the DNS loop, the background rounds)
    store, factory = open_gateway(loaded, policy, db)
    try:
        service = milter_mod.build(factory, store, relay_settings, settings, dns=loaded.dns.for_door(default=True),
                                   content=loaded.content, history=loaded.history)
    except (ConfigError, StoreError) as exc:
        raise click.UsageError(str(exc)) from None
    try:
        with metrics_served("milter", service.metrics, settings.metrics_listen):
            milter_mod.run(service, address)
    except milter_mod.ListenError as exc:
        click.echo(f"rcptguard milter: cannot listen on {listen or loaded.milter.listen}: {exc}", err=True)
        sys.exit(2)


@click.group(invoke_without_command=True)
@detection_options
@click.option("--listen", default="127.0.0.1:8025", show_default=True, help="HOST:PORT to listen on.")
@click.option("--db", "db", metavar="URL", help="Store URL (sqlite:///path or postgresql://...); wins over the config.")
@click.option("--next-hop", "next_hop", metavar="HOST:PORT",
              help="Where released mail goes (default: [relay] next_hop, else 127.0.0.1:10026).")
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def web(ctx: click.Context, config: Path | None, protect: tuple[str, ...], known: tuple[str, ...],
        known_files: tuple[Path, ...], listen: str, db: str | None, next_hop: str | None, log_level: str) -> None:
    """The sender's confirmation page, the admin pages and the JSON API (POST /v1/check).

    `rcptguard web hash-password` makes the hash of an admin password for [web] admin_password_hash.
    """
    if ctx.invoked_subcommand is not None:
        return
    from rcptguard import logs  # noqa: PLC0415 - the web app and its modules load only for this command
    from rcptguard.delivery import NextHop  # noqa: PLC0415 - same
    from rcptguard.store import StoreError  # noqa: PLC0415 - same
    from rcptguard.store.links import Links  # noqa: PLC0415 - same
    from rcptguard.store.quarantine import Quarantine  # noqa: PLC0415 - same
    from rcptguard.web import create_app  # noqa: PLC0415 - same
    from rcptguard.web.server import serve  # noqa: PLC0415 - same
    from rcptguard.web.settings import NOT_HASHED  # noqa: PLC0415 - same
    from rcptguard.world import SyncWorld  # noqa: PLC0415 - same

    logs.setup(log_level)
    loaded = build_config(config)
    policy = build_policy(loaded, protect, known, known_files)
    host, port = listen_address(listen)
    settings, relay_settings = loaded.web, loaded.relay
    if settings.admin_password:
        raise click.UsageError(f"{policy.source or 'config'}: {NOT_HASHED}")
    try:
        hop = NextHop.parse(next_hop or relay_settings.next_hop, relay_settings.timeouts)
        secret = web_secret(settings, loaded.base)
    except (TypeError, ValueError, OSError) as exc:
        raise click.UsageError(f"{policy.source or 'config'}: {exc}") from None
    store, factory = open_gateway(loaded, policy, db)
    try:
        guard = factory(store.learned())  # as the relay sees it, so /v1/check agrees with it
    except (ConfigError, StoreError) as exc:
        raise click.UsageError(str(exc)) from None
    quarantine = Quarantine(store, stale_after=relay_settings.claim_window)
    notifier = relay_settings.notifier()
    dns = loaded.dns.for_door(default=True)
    with contextlib.ExitStack() as stack:
        world = stack.enter_context(SyncWorld(dns)) if dns.enabled else None
        app = create_app(quarantine=quarantine, links=Links(store), guard_provider=lambda: guard, next_hop=hop,
                         notifier=notifier, secret=secret,
                         template_dir=Path(settings.template_dir) if settings.template_dir else None,
                         settings=settings, world=world)
        serve(app, host, port, log_level=log_level, sock=listening_socket("web", host, port))


@web.command("hash-password")
def hash_password() -> None:
    """Print the argon2 hash of an admin password, for [web] admin_password_hash.

    The password is asked for twice at a terminal, or read from the first line of stdin (never an argument, which
    other users of the machine could see).
    """
    from rcptguard.web.admin import hash_password as make_hash  # noqa: PLC0415 - only this command hashes

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise click.UsageError("the password must have at least 8 characters")
    click.echo(make_hash(password))


def web_secret(settings: WebSettings, base: Path) -> bytes:
    """The key of the page's CSRF tokens: `[web] secret`, or the file `[web] secret_file` (created, 0600,
    with 32 random bytes when missing; default `rcptguard-web.secret` in `base`, the config's folder). The
    settings are load_config's: a relative secret_file there is already relative to the config's folder."""
    import secrets  # noqa: PLC0415 - only the web command makes a key

    if settings.secret:
        value = settings.secret.encode()
        if len(value) < 16:
            raise ValueError("web.secret: at least 16 characters")
        return value
    path = Path(settings.secret_file) if settings.secret_file else base / "rcptguard-web.secret"  # resolved already
    if not path.exists():
        # Written whole under another name, then linked into place: a second worker starting at the same
        # moment either sees no file (and loses the race to create it) or the complete one.
        fresh = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):
            os.link(fresh, path)
        fresh.unlink()
    value = path.read_text(encoding="ascii").strip().encode()
    if len(value) < 16:
        raise ValueError(f"web.secret_file: {path} holds fewer than 16 characters")
    return value
