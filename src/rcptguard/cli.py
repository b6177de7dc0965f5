"""The `rcptguard` command line.

Exit status of deciding commands: 0 if every verdict is pass, 1 if any is not, 2 for a usage or config error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from rcptguard import __version__
from rcptguard.domains import MAX_ADDRESS, MAX_INPUT, DomainError, normalize_domain
from rcptguard.guard import Guard, malformed_verdict
from rcptguard.model import Action, Malformed, Verdict
from rcptguard.policy import ConfigError, Policy, load_policy

if TYPE_CHECKING:
    from rcptguard.config import Config
    from rcptguard.store import Store

F = TypeVar("F", bound=Callable[..., Any])

_COLOURS = {Action.PASS: "green", Action.WARN: "yellow", Action.HOLD: "red", Action.REJECT: "red"}


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


def build_policy(config: Path | None, protect: tuple[str, ...], known: tuple[str, ...],
                 known_files: tuple[Path, ...]) -> Policy:
    """The policy from the config file and command-line options; a config error anywhere in the file (not
    only in the policy) exits with status 2."""
    try:
        if config is None:
            return load_policy(None).with_domains(protect, known, known_files)
        return build_config(config).policy.with_domains(protect, known, known_files)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def build_guard(policy: Policy) -> Guard:
    try:
        return Guard(policy)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rcptguard")
def main() -> None:
    """Stops email from leaving for the wrong recipient: typo and lookalike domains, caught in the mail path."""


def read_lines(stream: IO[bytes]) -> Iterator[str | Malformed]:
    """Lines of a byte stream; a line longer than MAX_INPUT bytes is skipped in bounded memory and reported."""
    while True:
        chunk = stream.readline(MAX_INPUT + 1)
        if not chunk:
            return
        if len(chunk) > MAX_INPUT and not chunk.endswith(b"\n"):
            size = len(chunk)
            head = chunk[:60].decode("utf-8", errors="replace")
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(1 << 16)
                size += len(chunk)
            yield Malformed(head + "...", f"the line is {size} bytes long; an address has at most {MAX_ADDRESS}")
            continue
        line = chunk.rstrip(b"\r\n")
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            yield Malformed(line[:60].decode("utf-8", errors="replace"), "the line is not valid UTF-8")


def _addresses(addresses: tuple[str, ...]) -> Iterator[str | Malformed]:
    for item in addresses:
        if item == "-":
            for line in read_lines(sys.stdin.buffer):
                if isinstance(line, Malformed) or line.strip():
                    yield line
        else:
            yield item


def lowered(verdict: Verdict, policy: Policy) -> str:
    """Why the action is not the one the score alone gives, for the score line: a cap of the guard (a real domain
    is never held for resembling another) or a [[force]] rule; empty when the score decided."""
    by_score = policy.action_for(verdict.score)
    found = {s.name: s.evidence for s in verdict.signals}
    if "FORCE_RULE" in found:
        if verdict.action is by_score:
            return ""
        return f"{by_score} by score, forced to {verdict.action} by [[force]] {found['FORCE_RULE'].get('rule', '')}"
    if verdict.action >= by_score:
        return ""
    if "SAME_OWNER" in found:
        why = f"both belong to {found['SAME_OWNER'].get('owner', 'one owner')}"
    elif "POPULAR_PROVIDER" in found:
        why = "both are major mail providers" if verdict.action is Action.PASS \
            else f"{verdict.domain} is itself a major mail provider"
    elif "RESTRICTED_SUFFIX" in found:
        why = f"real domain under .{found['RESTRICTED_SUFFIX'].get('suffix', '')}"
    else:
        return ""
    return f"{by_score} by score, capped at {verdict.action}: {why}"


def format_text(verdict: Verdict, colour: bool, policy: Policy | None = None) -> str:
    label = click.style(f"{verdict.action!s:<6}", fg=_COLOURS[verdict.action], bold=True) if colour \
        else f"{verdict.action!s:<6}"
    head = f"{label} {verdict.address}"
    if verdict.suggestion:
        head += f"  ->  {verdict.suggestion}"
    lines = [head, f"       {verdict.reason}"]
    scored = [s for s in verdict.signals if s.score]
    if scored:
        parts = ", ".join(f"{s.name} {s.score:+.1f}" for s in scored)
        note = lowered(verdict, policy) if policy is not None else ""
        lines.append(f"       score {verdict.score:.1f}: {parts}" + (f"; {note}" if note else ""))
    return "\n".join(lines)


@main.command()
@detection_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "jsonl"]), default="text", show_default=True)
@click.argument("addresses", nargs=-1, required=True)
def check(config: Path | None, protect: tuple[str, ...], known: tuple[str, ...], known_files: tuple[Path, ...],
          fmt: str, addresses: tuple[str, ...]) -> None:
    """Check recipient ADDRESSES ('-' reads them from stdin, one a line)."""
    guard = build_guard(build_policy(config, protect, known, known_files))
    worst = Action.PASS
    collected = []
    colour = sys.stdout.isatty()
    for raw in _addresses(addresses):
        verdict = malformed_verdict(raw) if isinstance(raw, Malformed) else guard.check(raw)
        worst = max(worst, verdict.action)
        if fmt == "jsonl":
            click.echo(json.dumps(verdict.to_json(), ensure_ascii=False))
        elif fmt == "json":
            collected.append(verdict.to_json())
        else:
            click.echo(format_text(verdict, colour, guard.policy))
    if fmt == "json":
        click.echo(json.dumps(collected, ensure_ascii=False, indent=2))
    sys.exit(0 if worst is Action.PASS else 1)


@main.command()
@detection_options
@click.argument("domain")
def explain(config: Path | None, protect: tuple[str, ...], known: tuple[str, ...], known_files: tuple[Path, ...],
            domain: str) -> None:
    """Show every domain DOMAIN could be a slip of, with each candidate's score, and the verdict."""
    guard = build_guard(build_policy(config, protect, known, known_files))
    try:
        parsed = normalize_domain(domain.rsplit("@", 1)[-1])
    except DomainError as exc:
        raise click.UsageError(f"{domain!r}: {exc}") from None
    click.echo(f"{parsed.display()}  suffix .{parsed.suffix}")
    ranked = guard.rank(parsed)
    if not ranked:
        click.echo("  no candidates")
    for item in ranked:
        c = item.candidate
        parts = ", ".join(f"{s.name} {s.score:+.1f}" for s in item.signals)
        click.echo(f"  {item.score:5.1f}  {c.intended:<40} {c.family.value:<8} {c.target.role!s:<9} {parts}")
        detail = item.slip.evidence.get("detail")
        if detail:
            click.echo(f"         {detail}")
    verdict = guard.check(f"postmaster@{parsed.ascii}")
    click.echo(f"verdict: {verdict.action}" + (f" (intended {verdict.intended})" if verdict.intended else ""))
    click.echo(f"  {verdict.reason}")


# The signals the guard adds itself (guard.py), besides the detectors': name, the [priors] key that scores it
# (None: scored 0, it records why a decision was capped, forced or short-circuited), and when (docs/detectors.md).
CONTEXT_SIGNALS: tuple[tuple[str, str | None, str], ...] = (
    ("PROTECTED_TARGET", "protected", "the intended domain is protected, or under a protected suffix"),
    ("KNOWN_TARGET", "known", "the intended domain is known (+ known_per_doubling x log2(count), at most +1.5)"),
    ("POPULAR_TARGET", "popular", "the intended domain is a major mail provider"),
    ("FIRST_CONTACT", "first_contact", "the typed domain was never written to"),
    ("SHORT_NAME", "short_name", "a name slip of a name of 3 letters or fewer (4 letters: short_name_4)"),
    ("POPULAR_PROVIDER", None, "the typed domain is itself a major provider: capped at warn (pass if both are)"),
    ("SAME_OWNER", None, "the typed provider has the same owner as the intended one: pass"),
    ("RESTRICTED_SUFFIX", None, "the typed domain is under a vetted suffix (restricted_suffixes): capped at warn"),
    ("FORCE_RULE", None, "a [[force]] rule decided the action"),
    ("PROTECTED_DOMAIN", None, "the typed domain is protected: pass, nothing else checked"),
    ("KNOWN_CORRESPONDENT", None, "the typed domain is known: pass"),
    ("MALFORMED_ADDRESS", None, "the address cannot be parsed: reject"),
)


@main.command("detectors")
def detectors_command() -> None:
    """List the detectors, the signal each emits, and its default weight; then the context signals the guard
    adds (family "context"), with their default prior."""
    from rcptguard.detect import catalogue  # noqa: PLC0415 - only this command needs the catalogue

    policy = load_policy()
    rows = [(item.name, item.family.value, policy.weight(item.name), item.description) for item in catalogue()]
    rows += [(name, "context", policy.priors.get(prior, 0.0) if prior else 0.0, when)
             for name, prior, when in CONTEXT_SIGNALS]
    width = max(len(name) for name, *_ in rows)
    for name, family, weight, description in rows:
        click.echo(f"{name:<{width}} {family:<8} {weight:5.1f}  {description}")


@main.command("eval")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="Policy file applied under every profile.")
@click.option("--profiles", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="JSON: profile name -> {protect: [...], known: [...]}.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--min-recall", type=float, default=None, help="Exit 1 if recall is below this.")
@click.option("--max-hard-fp", type=int, default=None, help="Exit 1 if more hard false positives than this.")
@click.option("--max-soft-fp-rate", type=float, default=None, help="Exit 1 if the soft false-positive rate is above.")
@click.argument("cases", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def eval_command(config: Path | None, profiles: Path, fmt: str, min_recall: float | None,
                 max_hard_fp: int | None, max_soft_fp_rate: float | None, cases: Path) -> None:
    """Measure the engine on a labelled CASES.csv (case,profile,recipient,expected,category)."""
    from rcptguard.evaluate import EvalError, evaluate, render_text  # noqa: PLC0415

    policy = build_policy(config, (), (), ())
    try:
        report = evaluate(cases, profiles, policy)
    except EvalError as exc:
        raise click.UsageError(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(render_text(report))
    failed = (
        (min_recall is not None and report.recall < min_recall)
        or (max_hard_fp is not None and len(report.hard_fp) > max_hard_fp)
        or (max_soft_fp_rate is not None and report.soft_fp_rate > max_soft_fp_rate)
    )
    sys.exit(1 if failed else 0)


def open_gateway(policy: Policy, db: str | None) -> tuple[Store, Callable[[dict[str, int]], Guard]]:
    """The store a gateway learns into, and how it builds its guard from what was learned."""
    from rcptguard.store import Store, StoreError  # noqa: PLC0415

    try:
        store = Store.open(db_url(policy, db))
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None

    def factory(learned: dict[str, int]) -> Guard:
        return Guard(policy, learned=learned)

    return store, factory


def run_async(main_coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a server on uvloop (libuv) when it is installed, else on asyncio's own loop."""
    try:
        import uvloop  # noqa: PLC0415
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


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def db_url(policy: Policy, flag: str | None) -> str:
    """The store URL: --db wins over [db] url in the config file, which wins over the default."""
    from rcptguard.config import resolve_db_url  # noqa: PLC0415
    from rcptguard.store import DEFAULT_URL  # noqa: PLC0415

    if flag:
        return flag
    section = policy.sections.get("db", {})
    url = section.get("url") if isinstance(section, dict) else None
    if url is not None and not isinstance(url, str):
        raise click.UsageError(f"{policy.source}: db.url: expected a string")
    if url and policy.source is not None:  # a relative SQLite path is relative to the config file, like every path
        return resolve_db_url(url, policy.source.parent)
    return url or DEFAULT_URL


@main.command()
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

    from rcptguard import logs  # noqa: PLC0415
    from rcptguard.gateways.policyd import PolicyService, serve, serve_stdio  # noqa: PLC0415
    from rcptguard.store import StoreError  # noqa: PLC0415

    logs.setup(log_level)
    settings = build_config(config).policyd
    policy = build_policy(config, protect, known, known_files)
    host, port = _listen(listen)
    if hold_mode:
        settings = dataclasses.replace(settings, hold_mode=hold_mode)  # type: ignore[arg-type] # a click.Choice
    store, factory = open_gateway(policy, db)
    try:
        service = PolicyService(factory, store, settings)
    except (ConfigError, StoreError) as exc:
        raise click.UsageError(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt):
        if stdio:
            serve_stdio(service, sys.stdin.buffer, sys.stdout.buffer)
        else:
            serve_until_stopped("policyd", host, port, lambda ready: serve(service, host, port, ready=ready))


@main.command()
@click.option("--postfix-config", type=click.Path(file_okay=False, path_type=Path),
              help="Postfix config directory of the instance (postsuper -c).")
@click.argument("queue_ids", nargs=-1, required=True)
def release(postfix_config: Path | None, queue_ids: tuple[str, ...]) -> None:
    """Release messages that the policy service put on Postfix HOLD (postsuper -H QUEUE_ID)."""
    import re  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

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


@main.command()
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

    from rcptguard import logs  # noqa: PLC0415
    from rcptguard.config import relay_with  # noqa: PLC0415
    from rcptguard.gateways import relay as relay_mod  # noqa: PLC0415
    from rcptguard.store import StoreError  # noqa: PLC0415

    logs.setup(log_level)
    loaded = build_config(config)
    policy = build_policy(config, protect, known, known_files)
    host, port = _listen(listen)
    try:
        settings = relay_with(loaded.relay, next_hop=next_hop, allow=list(allow) or None)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    if not loaded.links_configured and settings.notify:
        logs.event(logging.getLogger("rcptguard.relay"), "no public address for the page", logging.WARNING,
                   base_url=settings.base_url, fix="set [web] base_url to the address senders reach the page at")
    store, factory = open_gateway(policy, db)
    try:
        handler, quarantine = relay_mod.build(factory, store, settings)
    except (ConfigError, StoreError) as exc:
        raise click.UsageError(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt):
        serve_until_stopped("relay", host, port,
                            lambda ready: relay_mod.serve(handler, host, port, ready=ready, quarantine=quarantine))


@main.command()
@detection_options
@click.option("--listen", default="127.0.0.1:8025", show_default=True, help="HOST:PORT to listen on.")
@click.option("--db", "db", metavar="URL", help="Store URL (sqlite:///path or postgresql://...); wins over the config.")
@click.option("--next-hop", "next_hop", metavar="HOST:PORT",
              help="Where released mail goes (default: [relay] next_hop, else 127.0.0.1:10026).")
@click.option("--log-level", default="info", show_default=True)
def web(config: Path | None, protect: tuple[str, ...], known: tuple[str, ...], known_files: tuple[Path, ...],
        listen: str, db: str | None, next_hop: str | None, log_level: str) -> None:
    """The sender's confirmation page, the admin pages and the JSON API (POST /v1/check)."""
    from rcptguard import logs  # noqa: PLC0415
    from rcptguard.delivery import NextHop  # noqa: PLC0415
    from rcptguard.notify import Notifier  # noqa: PLC0415
    from rcptguard.store import StoreError  # noqa: PLC0415
    from rcptguard.store.links import Links  # noqa: PLC0415
    from rcptguard.store.quarantine import Quarantine  # noqa: PLC0415
    from rcptguard.web import create_app  # noqa: PLC0415
    from rcptguard.web.server import serve  # noqa: PLC0415

    logs.setup(log_level)
    loaded = build_config(config)
    policy = build_policy(config, protect, known, known_files)
    host, port = _listen(listen)
    section = policy.sections.get("web", {})
    base = loaded.base
    settings, relay_settings = loaded.web, loaded.relay
    try:
        hop = NextHop.parse(next_hop or relay_settings.next_hop, relay_settings.timeouts)
        secret = web_secret(section, base)
    except (TypeError, ValueError, OSError) as exc:
        raise click.UsageError(f"{policy.source or 'config'}: {exc}") from None
    store, factory = open_gateway(policy, db)
    try:
        guard = factory(store.learned())  # as the relay sees it, so /v1/check agrees with it
    except (ConfigError, StoreError) as exc:
        raise click.UsageError(str(exc)) from None
    quarantine = Quarantine(store, stale_after=relay_settings.claim_window)
    notifier = Notifier(sender=loaded.notify.sender, name_deciders=loaded.notify.name_deciders,
                        template_dir=Path(loaded.notify.template_dir) if loaded.notify.template_dir else None)
    app = create_app(quarantine=quarantine, links=Links(store), guard_provider=lambda: guard, next_hop=hop,
                     notifier=notifier,
                     secret=secret, admin_user=settings.admin_user, admin_password=settings.admin_password,
                     template_dir=base / settings.template_dir if settings.template_dir else None, settings=settings)
    serve(app, host, port, log_level=log_level, sock=listening_socket("web", host, port))


def web_secret(section: dict[str, Any], base: Path) -> bytes:
    """The key of the page's CSRF tokens: `[web] secret`, or the file `[web] secret_file` (created, 0600,
    with 32 random bytes when missing; default `rcptguard-web.secret` next to the config)."""
    import secrets  # noqa: PLC0415

    if section.get("secret"):
        value = str(section["secret"]).encode()
        if len(value) < 16:
            raise ValueError("web.secret: at least 16 characters")
        return value
    path = base / str(section.get("secret_file", "rcptguard-web.secret"))
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


@main.group("config")
def config_group() -> None:
    """The configuration file."""


@config_group.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def config_check(path: Path) -> None:
    """Check every section of a config file: unknown keys, wrong types and bad values are reported with the
    file, the line and the key (exit 2); a good file is summed up (exit 0)."""
    loaded = build_config(path)
    build_guard(loaded.policy)  # builds the index too: known_files and psl_file are read
    policy = loaded.policy
    click.echo(f"{path}: ok")
    click.echo(f"  protect {len(policy.protect)} domains or suffixes, know {len(policy.known)} "
               f"(+ {len(policy.known_files)} files), {len(policy.force)} force rules")
    click.echo(f"  store {loaded.db.url}")
    click.echo(f"  relay next hop {loaded.relay.next_hop}, links to {loaded.relay.base_url}"
               + ("" if loaded.links_configured else " (the default: set [web] base_url)"))
    click.echo(f"  policy service hold_mode {loaded.policyd.hold_mode}; web page api {loaded.web.api}, "
               f"admin pages {'on' if loaded.web.admin_user and loaded.web.admin_password else 'off'}")


def _register() -> None:
    from rcptguard.cli_quarantine import quarantine  # noqa: PLC0415 - the group imports helpers from here

    main.add_command(quarantine)


_register()
