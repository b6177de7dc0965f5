"""Policy as data: protected and known domains, signal weights, thresholds and force rules from TOML.

The built-in policy is `data/default-policy.toml`; a config file overrides any key of it. Every mistake in
a config file is reported with the file, the line and the key:

    policy.toml:7: thresholds.hold: expected a number, got 'high'
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from rcptguard.domains import DomainError, normalize_domain
from rcptguard.errors import ConfigError as ConfigError  # noqa: PLC0414 - re-exported: the same class under its old home
from rcptguard.model import Action
from rcptguard.settings import file_fields, key_of
from rcptguard.web.settings import WebSettings

_TOP_KEYS = {"protect", "known", "known_files", "providers", "restricted_suffixes", "learn_min_count",
             "psl_file", "thresholds", "weights", "priors", "force", "no_such_tld", "db", "policyd", "relay", "web",
             "notify", "retention", "dns", "sink", "milter", "content", "history", "mode"}
_PRIOR_KEYS = {"protected", "known", "known_per_doubling", "popular", "first_contact", "short_name",
               "short_name_4", "second_slip"}
_NO_SUCH_TLD_KEYS = {"action", "private"}
_SECTION_KEYS = {  # the gateways' sections; [policyd] and [relay] are checked by their own settings
    "db": {"url"},
    "web": {key_of(f) for f in file_fields(WebSettings)},  # every key its settings class reads
    "notify": {"from", "template_dir", "name_deciders"},
}
MODES = ("enforce", "observe")
_FORCE_KEYS = {"suffixes", "domains", "unless_known", "action", "message"}


Fail = Callable[[str, str], "ConfigError"]


@dataclass(frozen=True, slots=True)
class ForceRule:
    """Decide the action outright for recipients under some suffixes or domains (the Pentagon's `.ml` rule)."""

    action: Action
    suffixes: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    unless_known: bool = True
    message: str = ""

    def matches(self, ascii_domain: str) -> bool:
        name = "." + ascii_domain
        return any(name.endswith("." + s) for s in self.suffixes) or any(
            name.endswith("." + d) for d in self.domains)


@dataclass(frozen=True, slots=True)
class Policy:
    protect: tuple[str, ...] = ()
    known: tuple[str, ...] = ()
    known_files: tuple[Path, ...] = ()
    providers: bool = True
    restricted_suffixes: tuple[str, ...] = ()
    learn_min_count: int = 3
    psl_file: Path | None = None
    thresholds: dict[Action, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    priors: dict[str, float] = field(default_factory=dict)
    force: tuple[ForceRule, ...] = ()
    no_such_tld: Action = Action.HOLD  # for a domain whose top-level label does not exist: the mail would bounce
    private_suffixes: tuple[str, ...] = ()  # top-level labels of internal networks, never called non-existent
    mode: str = "enforce"  # observe: every door lets mail pass, logs and records the verdict it would have given
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # gateway sections, read by each door
    source: Path | None = None
    text: str = field(default="", repr=False, compare=False)  # the file as read, to locate a key's line

    def action_for(self, score: float) -> Action:
        action = Action.PASS
        for candidate in (Action.WARN, Action.HOLD, Action.REJECT):
            threshold = self.thresholds.get(candidate)
            if threshold is not None and score >= threshold:
                action = candidate
        return action

    def weight(self, signal: str) -> float:
        return self.weights.get(signal, 0.0)

    def with_domains(self, protect: tuple[str, ...] = (), known: tuple[str, ...] = (),
                     known_files: tuple[Path, ...] = ()) -> Policy:
        """This policy with more protected or known domains (from command-line options)."""
        return replace(self, protect=self.protect + _domains(protect, "--protect", _option_error),
                       known=self.known + _domains(known, "--known", _option_error),
                       known_files=self.known_files + known_files)


def _option_error(key: str, message: str) -> ConfigError:
    return ConfigError(message, key=key)


def _default_text() -> str:
    return resources.files("rcptguard.data").joinpath("default-policy.toml").read_text("utf-8")


def load_policy(path: Path | None = None) -> Policy:
    """The built-in policy, overridden by the config file at `path` if given."""
    base = tomllib.loads(_default_text())
    if path is None:
        return _build(base, {}, None, "")
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc.strerror})", path=path) from None
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text", path=path) from None
    try:
        user = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        raise ConfigError(f"not valid TOML: {exc}", path=path, line=int(match[1]) if match else None) from None
    return _build(base, user, path, text)


def locate(text: str, key: str) -> int | None:
    """The line where a dotted key is set, found by scanning table headers and `key =` lines."""
    *tables, last = key.split(".")
    table = ".".join(tables)
    current = ""
    first_in_table: int | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.match(r"\[\[?\s*([^\]]+?)\s*\]\]?", stripped)
        if header:
            current = header[1]
            if current == key:
                return number
            if current == table and first_in_table is None:
                first_in_table = number
            continue
        if current == table and re.match(rf"(\"?){re.escape(last)}\1\s*=", stripped):
            return number
    return first_in_table


def _build(base: dict[str, Any], user: dict[str, Any], path: Path | None, text: str) -> Policy:
    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, path=path, key=key, line=locate(text, key) if text else None)

    for key in user:
        if key not in _TOP_KEYS:
            raise fail(key, f"unknown key (expected one of: {', '.join(sorted(_TOP_KEYS))})")
    merged = {**base, **{k: v for k, v in user.items() if k not in ("thresholds", "weights", "priors")}}
    for table in ("thresholds", "weights", "priors"):
        value = user.get(table, {})
        if not isinstance(value, dict):
            raise fail(table, "expected a table")
        merged[table] = {**base.get(table, {}), **value}

    for name, allowed in _SECTION_KEYS.items():
        section = user.get(name, {})
        if not isinstance(section, dict):
            raise fail(name, "expected a table")
        for key in section:
            if key not in allowed:
                raise fail(f"{name}.{key}", f"unknown key (expected one of: {', '.join(sorted(allowed))})")
    thresholds: dict[Action, float] = {}
    for name, value in merged["thresholds"].items():
        try:
            action = Action.parse(name)
        except ValueError as exc:
            raise fail(f"thresholds.{name}", str(exc)) from None
        thresholds[action] = _number(value, f"thresholds.{name}", fail)
    if Action.PASS in thresholds:
        raise fail("thresholds.pass", "pass has no threshold: it is what stays below warn")
    order = [thresholds[a] for a in (Action.WARN, Action.HOLD, Action.REJECT) if a in thresholds]
    if order != sorted(order):
        raise fail("thresholds", "thresholds must rise from warn to hold to reject")

    from rcptguard.detect import catalogue  # noqa: PLC0415 - detectors import the index, which imports nothing here

    signal_names = {d.name for d in catalogue()}
    weights = {}
    for name, value in merged["weights"].items():
        if name not in signal_names:
            raise fail(f"weights.{name}", f"no detector emits this signal (known: {', '.join(sorted(signal_names))})")
        weights[name] = _number(value, f"weights.{name}", fail)
    priors = {}
    for name, value in merged["priors"].items():
        if name not in _PRIOR_KEYS:
            raise fail(f"priors.{name}", f"unknown prior (expected one of: {', '.join(sorted(_PRIOR_KEYS))})")
        priors[name] = _number(value, f"priors.{name}", fail)

    no_such_tld, private = _no_such_tld(base.get("no_such_tld", {}), user.get("no_such_tld", {}), fail)
    base_dir = path.parent if path else Path()
    force = tuple(_force(rule, i, fail) for i, rule in enumerate(_list(merged.get("force", []), "force", fail)))
    psl = merged.get("psl_file")
    if psl is not None and not isinstance(psl, str):
        raise fail("psl_file", "expected a path")
    learn = merged["learn_min_count"]
    if not isinstance(learn, int) or isinstance(learn, bool) or learn < 1:
        raise fail("learn_min_count", "expected a whole number of at least 1")
    if not isinstance(merged["providers"], bool):
        raise fail("providers", "expected true or false")
    mode = merged.get("mode", "enforce")
    if mode not in MODES:
        raise fail("mode", f"expected one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
    return Policy(
        protect=_domains(_strings(merged["protect"], "protect", fail), "protect", fail),
        known=_domains(_strings(merged["known"], "known", fail), "known", fail),
        known_files=tuple(base_dir / p for p in _strings(merged["known_files"], "known_files", fail)),
        providers=merged["providers"],
        restricted_suffixes=_domains(
            _strings(merged["restricted_suffixes"], "restricted_suffixes", fail), "restricted_suffixes", fail),
        learn_min_count=learn,
        psl_file=base_dir / psl if psl else None,
        thresholds=thresholds,
        weights=weights,
        priors=priors,
        force=force,
        no_such_tld=no_such_tld,
        private_suffixes=private,
        mode=mode,
        sections={k: v for k, v in user.items()
                  if k in ("db", "policyd", "relay", "web", "notify", "retention", "dns", "sink", "milter",
                           "content", "history")},
        source=path,
        text=text,
    )


def _no_such_tld(base: dict[str, Any], user: object, fail: Fail) -> tuple[Action, tuple[str, ...]]:
    """[no_such_tld]: the action for a domain under a top-level label that does not exist, and the private
    labels (internal networks: local, lan, ...) that are never called that."""
    if not isinstance(user, dict):
        raise fail("no_such_tld", "expected a table")
    for key in user:
        if key not in _NO_SUCH_TLD_KEYS:
            raise fail(f"no_such_tld.{key}",
                       f"unknown key (expected one of: {', '.join(sorted(_NO_SUCH_TLD_KEYS))})")
    merged = {**base, **user}
    try:
        action = Action.parse(str(merged.get("action", "hold"))) if isinstance(merged.get("action"), str) else None
    except ValueError as exc:
        raise fail("no_such_tld.action", str(exc)) from None
    if action is None:
        raise fail("no_such_tld.action", f"expected an action name, got {merged.get('action')!r}")
    private = _strings(merged.get("private", []), "no_such_tld.private", fail)
    labels = []
    for label in private:
        text = label.strip().lstrip(".").lower()
        if not text or "." in text:
            raise fail("no_such_tld.private", f"{label!r}: expected a top-level label such as 'local'")
        labels.append(text)
    return action, tuple(labels)


def _number(value: object, key: str, fail: Fail) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(key, f"expected a number, got {value!r}")
    return float(value)


def _list(value: object, key: str, fail: Fail) -> list[Any]:
    if not isinstance(value, list):
        raise fail(key, f"expected a list, got {value!r}")
    return value


def _strings(value: object, key: str, fail: Fail) -> tuple[str, ...]:
    items = _list(value, key, fail)
    for item in items:
        if not isinstance(item, str):
            raise fail(key, f"expected a list of strings, got {item!r}")
    return tuple(items)


def _domains(names: tuple[str, ...], key: str, fail: Fail) -> tuple[str, ...]:
    out = []
    for name in names:
        try:
            out.append(normalize_domain(name.strip().lstrip("*").lstrip(".")).ascii)
        except DomainError as exc:
            raise fail(key, f"{name!r}: {exc}") from None
    return tuple(out)


def _force(rule: object, index: int, fail: Fail) -> ForceRule:
    key = "force"
    if not isinstance(rule, dict):
        raise fail(key, "each [[force]] entry must be a table")
    for name in rule:
        if name not in _FORCE_KEYS:
            raise fail(f"force.{name}", f"unknown key in [[force]] #{index + 1} "
                                         f"(expected one of: {', '.join(sorted(_FORCE_KEYS))})")
    try:
        action = Action.parse(str(rule.get("action", "")))
    except ValueError as exc:
        raise fail("force.action", str(exc)) from None
    suffixes = _domains(_strings(rule.get("suffixes", []), "force.suffixes", fail), "force.suffixes", fail)
    domains = _domains(_strings(rule.get("domains", []), "force.domains", fail), "force.domains", fail)
    if not suffixes and not domains:
        raise fail("force", f"[[force]] #{index + 1} needs suffixes or domains")
    unless_known = rule.get("unless_known", True)
    if not isinstance(unless_known, bool):
        raise fail("force.unless_known", "expected true or false")
    message = rule.get("message", "")
    if not isinstance(message, str):
        raise fail("force.message", "expected a string")
    return ForceRule(action, suffixes, domains, unless_known, message)
