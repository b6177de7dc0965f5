"""The deciding commands: `check`, `explain`, `detectors` and `eval`.

Exit status of `check` and `eval`: 0 if every verdict is pass (every gate is met), 1 if not, 2 for a usage or
config error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from rcptguard.cli.common import build_config, build_guard, build_policy, detection_options
from rcptguard.domains import MAX_ADDRESS, MAX_INPUT, DomainError, normalize_domain
from rcptguard.guard import malformed_verdict
from rcptguard.model import Action, Malformed, Verdict
from rcptguard.policy import Policy, load_policy

if TYPE_CHECKING:
    from rcptguard.config import Config
    from rcptguard.guard import Guard
    from rcptguard.world import SyncWorld

_COLOURS = {Action.PASS: "green", Action.WARN: "yellow", Action.HOLD: "red", Action.REJECT: "red"}


CHUNK = 1 << 16  # bytes read from stdin at a time


def read_lines(stream: IO[bytes], waiting: Callable[[], None] = lambda: None) -> Iterator[str | Malformed]:
    """Lines of a byte stream, read a chunk at a time; a line longer than MAX_INPUT bytes is skipped in bounded
    memory and reported. `waiting` is called before each read that may wait for more input (the caller
    flushes its answers there, so a program writing one address and reading its answer is never stuck)."""
    read = getattr(stream, "read1", stream.read)  # read1: what is there, waiting only when nothing is
    pending = b""
    skipped = 0  # bytes of a line too long, dropped so far
    head = ""
    while True:
        waiting()
        chunk = read(CHUNK)
        if not chunk:
            break
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            if skipped or end - start >= MAX_INPUT + 1:
                head = head if skipped else pending[start : start + 60].decode("utf-8", errors="replace")
                yield _too_long(head, skipped + end - start + 1)
                skipped = 0
            else:
                yield _decoded(pending[start:end])
            start = end + 1
        pending = pending[start:]
        if skipped or len(pending) > MAX_INPUT:
            if not skipped:
                head = pending[:60].decode("utf-8", errors="replace")
            skipped += len(pending)
            pending = b""
    if skipped:
        yield _too_long(head, skipped)
    elif pending:
        yield _decoded(pending)


def _decoded(line: bytes) -> str | Malformed:
    line = line.rstrip(b"\r\n")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return Malformed(line[:60].decode("utf-8", errors="replace"), "the line is not valid UTF-8")


def _too_long(head: str, size: int) -> Malformed:
    return Malformed(head + "...", f"the line is {size} bytes long; an address has at most {MAX_ADDRESS}")


def _addresses(addresses: tuple[str, ...], waiting: Callable[[], None]) -> Iterator[str | Malformed]:
    for item in addresses:
        if item == "-":
            for line in read_lines(sys.stdin.buffer, waiting):
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
    elif "DNS_SAME_OPERATOR" in found:
        why = "the DNS shows the same operator"
    else:
        return ""
    return f"{by_score} by score, capped at {verdict.action}: {why}"


def format_text(verdict: Verdict, colour: bool, policy: Policy | None = None, typed: str | None = None) -> str:
    """A verdict in a few lines: the address as it was typed (`typed`), the suggestion, the reason, the score."""
    label = click.style(f"{verdict.action!s:<6}", fg=_COLOURS[verdict.action], bold=True) if colour \
        else f"{verdict.action!s:<6}"
    head = f"{label} {typed or verdict.address}"
    if verdict.suggestion:
        head += f"  ->  {verdict.suggestion}"
    lines = [head, f"       {verdict.reason}"]
    scored = [s for s in verdict.signals if s.score]
    if scored:
        parts = ", ".join(f"{s.name} {s.score:+.1f}" for s in scored)
        note = lowered(verdict, policy) if policy is not None else ""
        lines.append(f"       score {verdict.score:.1f}: {parts}" + (f"; {note}" if note else ""))
    return "\n".join(lines)


@click.command()
@detection_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "jsonl"]), default="text", show_default=True)
@click.option("--dns/--no-dns", "dns", default=None,
              help="Ask the DNS about a likely slip (docs/world.md); default: [dns] enabled, else off.")
@click.argument("addresses", nargs=-1, required=True)
def check(config: Path | None, protect: tuple[str, ...], known: tuple[str, ...], known_files: tuple[Path, ...],
          fmt: str, dns: bool | None, addresses: tuple[str, ...]) -> None:
    """Check recipient ADDRESSES ('-' reads them from stdin, one a line)."""
    loaded = build_config(config) if config is not None else None
    guard = build_guard(build_policy(loaded, protect, known, known_files))
    with contextlib.ExitStack() as stack:
        world = _sync_world(loaded, dns, stack)
        worst = _check_all(guard, world, fmt, addresses)
    sys.exit(0 if worst is Action.PASS else 1)


def _sync_world(loaded: Config | None, flag: bool | None, stack: contextlib.ExitStack) -> SyncWorld | None:
    """A SyncWorld when DNS is on for `check`: `--dns/--no-dns`, else `[dns] enabled`, else off (the door's
    default: a batch of addresses should not become a burst of queries unless asked)."""
    from rcptguard.world import DnsSettings, SyncWorld  # noqa: PLC0415 - the resolver loads only when asked

    settings = loaded.dns if loaded is not None else DnsSettings()
    if flag is not None:
        settings = dataclasses.replace(settings, enabled=flag)
    settings = settings.for_door(default=False)
    return stack.enter_context(SyncWorld(settings)) if settings.enabled else None


def _check_all(guard: Guard, world: SyncWorld | None, fmt: str, addresses: tuple[str, ...]) -> Action:
    """Print each address's verdict in `fmt`; the worst action."""
    from rcptguard.world.weigh import consult_sync  # noqa: PLC0415 - same

    worst = Action.PASS
    collected = []
    out = _Answers(sys.stdout)
    colour = sys.stdout.isatty()
    encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps makes a new encoder for every call
    for raw in _addresses(addresses, out.flush):
        verdict = malformed_verdict(raw) if isinstance(raw, Malformed) else guard.check(raw)
        if world is not None:
            verdict = consult_sync(world, verdict)
        worst = max(worst, verdict.action)
        data = verdict.to_json()
        if isinstance(raw, str):
            data["address"] = raw.strip()  # as typed: an xn-- address stays xn--
        if fmt == "jsonl":
            out.write(encode(data))
        elif fmt == "json":
            collected.append(data)
        else:
            out.write(format_text(verdict, colour, guard.policy, data["address"]))
    if fmt == "json":
        out.write(json.dumps(collected, ensure_ascii=False, indent=2))
    out.flush()
    return worst


class _Answers:
    """Lines of output kept and written together: when the input may make `check` wait (so that a program
    writing one address and reading its answer is never stuck), every BATCH lines, and at the end."""

    BATCH = 1024

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lines: list[str] = []

    def write(self, text: str) -> None:
        self._lines.append(text)
        if len(self._lines) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._stream.write("\n".join(self._lines) + "\n")
            self._lines.clear()
        self._stream.flush()


@click.command()
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
    ("SECOND_SLIP", "second_slip", "a candidate with two slips (outlok.co, micorsfot.com): once per extra slip"),
    ("LIKELY_SIBLING", None, "the typed domain is probably a real sibling (cox.com, hotmail.ch, gmx.com.ar): warn"),
    ("POPULAR_PROVIDER", None, "the typed domain is itself a major provider: capped at warn (pass if both are)"),
    ("SAME_OWNER", None, "the typed provider has the same owner as the intended one: pass"),
    ("RESTRICTED_SUFFIX", None, "the typed domain is under a vetted suffix (restricted_suffixes): capped at warn"),
    ("FORCE_RULE", None, "a [[force]] rule decided the action"),
    ("PROTECTED_DOMAIN", None, "the typed domain is protected: pass, nothing else checked"),
    ("KNOWN_CORRESPONDENT", None, "the typed domain is known: pass"),
    ("MALFORMED_ADDRESS", None, "the address cannot be parsed: reject"),
    # The world's evidence (world/weigh.py, docs/world.md), when a door asks the DNS: scored 0.
    ("DNS_NO_DOMAIN", None, "DNS: the typed domain does not exist, the mail would bounce (said in the reason)"),
    ("DNS_NO_MAIL", None, "DNS: the typed domain has no mail server, the mail would bounce (said in the reason)"),
    ("DNS_SAME_OPERATOR", None, "DNS: its mail goes to the intended domain's own servers: capped at warn"),
    ("DNS_SHARED_HOSTING", None, "DNS: its mail is hosted where many tenants are: nothing proven"),
    ("DNS_DIFFERENT_OPERATOR", None, "DNS: its mail goes to servers not the intended domain's: nothing proven"),
    ("DNS_UNKNOWN", None, "DNS: no answer in the budget, or a failure: decided without it"),
)


@click.command("detectors")
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


@click.command("eval")
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
    from rcptguard.evaluate import EvalError, evaluate, render_text  # noqa: PLC0415 - only this command evaluates

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
