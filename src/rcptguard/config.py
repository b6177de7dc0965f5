"""The configuration file, parsed once: every section into typed, frozen settings, with file:line:key errors.

    config = load_config(Path("rcptguard.toml"))   # ConfigError: "rcptguard.toml:12: relay.workers: ..."
    config.policy.protect, config.db.url, config.relay.next_hop, config.web.base_url

    (top level)  Policy          policy.py: what is protected and known, weights, thresholds, force rules
    [db]         DbSettings      the store's URL
    [notify]     NotifySettings  the From: and the template folder of notices to senders
    [policyd]    PolicySettings  gateways/policyd.py
    [relay]      RelaySettings   gateways/relay.py, with [relay.timeouts] (delivery.SmtpTimeouts)
    [web]        WebSettings     web/settings.py

The type of every key comes from its settings class's annotations (`check_types`): a key added to a class is
checked with no code here, and a value of the wrong type or an unknown key stops every command that reads the
file, naming the file, the line and the key. Defaults that one section takes from another are resolved here
only (the relay's links use `[web] base_url`; its notices `[notify] from` and `template_dir`), and so are
relative paths: every path in the file (a SQLite store, known_files, psl_file, template_dir, secret_file,
api_token_file) is relative to the directory of the file, never to where the command was started.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rcptguard.gateways.policyd import PolicySettings
from rcptguard.gateways.relay import RelaySettings
from rcptguard.policy import ConfigError, Policy, load_policy, locate
from rcptguard.store import DEFAULT_URL
from rcptguard.web.settings import WebSettings

__all__ = ["SECTIONS", "Config", "DbSettings", "NotifySettings", "check_types", "load_config", "relay_with",
           "resolve_db_url"]


@dataclass(frozen=True, slots=True)
class DbSettings:
    """The `[db]` section: where the store is (SQLite file or PostgreSQL)."""

    url: str = DEFAULT_URL  # sqlite:///relative/path is relative to the config file


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """The `[notify]` section: how notices to senders look."""

    sender: str = dataclasses.field(default="", metadata={"key": "from"})  # From: (default MAILER-DAEMON@host)
    template_dir: str | None = None  # the operator's notice templates, relative to the config file
    name_deciders: bool = False  # a notice of an administrator's decision names the administrator


SECTIONS: dict[str, type] = {"db": DbSettings, "notify": NotifySettings, "policyd": PolicySettings,
                             "relay": RelaySettings, "web": WebSettings}
_INTERNAL = {"networks"}  # fields derived from others, never written in a file


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a config file says, checked."""

    policy: Policy
    db: DbSettings
    notify: NotifySettings
    policyd: PolicySettings
    relay: RelaySettings
    web: WebSettings
    source: Path | None = None
    links_configured: bool = False  # the file says where the page is ([web] or [relay] base_url)

    @property
    def base(self) -> Path:
        """The directory relative paths in the file are relative to."""
        return self.source.parent if self.source else Path()


def key_of(field: dataclasses.Field[Any]) -> str:
    """The name of a settings field in the file (`[notify] from` is the field `sender`)."""
    return str(field.metadata.get("key", field.name))


def file_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of a settings class that a file may set."""
    return [f for f in dataclasses.fields(cls) if f.name not in _INTERNAL]


def check_types(cls: type, values: object, where: str) -> None:
    """ValueError ("where.key: ...") for an unknown key or a value whose type is not the field's annotation."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a table, got {values!r}")  # noqa: TRY004 - a config error
    fields = {key_of(f): f for f in file_fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in fields:
            raise ValueError(f"{where}.{key}: unknown key (expected one of: {', '.join(sorted(fields))})")
        expected = hints[fields[key].name]
        if dataclasses.is_dataclass(expected) and isinstance(expected, type):
            check_types(expected, value, f"{where}.{key}")
        elif not _fits(value, expected):
            raise ValueError(f"{where}.{key}: expected {_describe(expected)}, got {value!r}")


def _fits(value: object, expected: Any) -> bool:  # noqa: ANN401 - a type annotation
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(expected) if arm is not type(None))
    if origin is Literal:
        return value in typing.get_args(expected)
    if origin is tuple:
        item = typing.get_args(expected)[0]
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, expected)


def _describe(expected: Any) -> str:  # noqa: ANN401 - a type annotation
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(expected) if arm is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(expected))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(expected)[0]).removeprefix('a ')}s"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(
        expected, f"a {getattr(expected, '__name__', expected)}")


def resolve_db_url(url: str, base: Path) -> str:
    """A SQLite URL with a relative path made relative to `base` (the config file's directory)."""
    match = re.fullmatch(r"(sqlite(?:\+\w+)?:///)(?!/)(.+)", url)
    if match is None or match[2] == ":memory:" or match[2].startswith("file:"):
        return url
    return f"{match[1]}{(base / match[2]).resolve()}"


def load_config(path: Path | None) -> Config:
    """Every section of the file at `path` (None: the built-in defaults), checked; ConfigError on any mistake."""
    policy = load_policy(path)
    text = path.read_text("utf-8") if path else ""
    base = path.parent if path else Path()

    def fail(exc: Exception) -> ConfigError:
        message = str(exc)
        key, sep, rest = message.partition(": ")
        if not sep or not re.fullmatch(r"[\w.]+", key):
            return ConfigError(message, path=path)
        return ConfigError(rest, path=path, key=key, line=locate(text, key) if text else None)

    sections = policy.sections
    try:
        for name, cls in SECTIONS.items():
            check_types(cls, sections.get(name, {}), name)
        db = DbSettings(url=resolve_db_url(sections.get("db", {}).get("url", DEFAULT_URL), base))
        notify_section = sections.get("notify", {})
        notify = NotifySettings(sender=notify_section.get("from", ""),
                                template_dir=_path(notify_section.get("template_dir"), base),
                                name_deciders=notify_section.get("name_deciders", False))
        policyd = PolicySettings.from_section(dict(sections.get("policyd", {})))
        web = WebSettings.from_section(dict(sections.get("web", {})), base)
        relay_section = {"base_url": web.base_url, "notice_from": notify.sender, "template_dir": notify.template_dir,
                         "name_deciders": notify.name_deciders, **sections.get("relay", {})}
        if "template_dir" in sections.get("relay", {}):
            relay_section["template_dir"] = _path(relay_section["template_dir"], base)
        relay = RelaySettings.from_section({k: v for k, v in relay_section.items() if v is not None})
    except (TypeError, ValueError) as exc:
        raise fail(exc) from None
    links = "base_url" in sections.get("web", {}) or "base_url" in sections.get("relay", {})
    return Config(policy=policy, db=db, notify=notify, policyd=policyd, relay=relay, web=web, source=path,
                  links_configured=links)


def relay_with(settings: RelaySettings, **flags: object) -> RelaySettings:
    """The relay's settings with command-line flags laid over them, checked again."""
    values: dict[str, Any] = {key_of(f): getattr(settings, f.name) for f in file_fields(RelaySettings)}
    values["timeouts"] = dataclasses.asdict(settings.timeouts)
    values.update({k: v for k, v in flags.items() if v is not None})
    return RelaySettings.from_section({k: v for k, v in values.items() if v is not None})


def _path(value: str | None, base: Path) -> str | None:
    return None if value is None else str(base / value)

