"""The configuration file, parsed once: every section into typed, frozen settings, with file:line:key errors.

    config = load_config(Path("rcptguard.toml"))   # ConfigError: "rcptguard.toml:12: relay.workers: ..."
    config.policy.protect, config.db.url, config.relay.next_hop, config.web.base_url

    (top level)  Policy          policy.py: what is protected and known, weights, thresholds, force rules
    [db]         DbSettings      the store's URL
    [dns]        DnsSettings     world/settings.py: the world's evidence (DNS look-ups of a typed domain)
    [history]    HistorySettings history/settings.py: how the organisation's own mail is weighed
    [notify]     NotifySettings  the From: and the template folder of notices to senders
    [policyd]    PolicySettings  gateways/policyd.py
    [relay]      RelaySettings   gateways/relay.py, with [relay.timeouts] (delivery.SmtpTimeouts)
    [milter]     MilterSettings  gateways/milter.py (its releases, notices and links are the relay's)
    [retention]  RetentionSettings  how long stored messages and their records are kept (quarantine purge)
    [sink]       SinkSettings    gateways/sink.py: the typo domains' sink
    [content]    ContentSettings content/settings.py: the sensitivity scanner in the mail path
    [web]        WebSettings     web/settings.py

The type of every key comes from its settings class's annotations (`check_types`): a key added to a class is
checked with no code here, and a value of the wrong type or an unknown key stops every command that reads the
file, naming the file, the line and the key. Defaults that one section takes from another are resolved here
only (the relay's links use `[web] base_url`; its notices `[notify] from` and `template_dir`), and so are
relative paths: every path in the file (a SQLite store, known_files, psl_file, template_dir, secret_file,
api_token_file, the sink's tls_cert and tls_key) is relative to the directory of the file, never to where the
command was started.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcptguard.content.settings import ContentSettings
from rcptguard.gateways.milter import MilterSettings
from rcptguard.gateways.policyd import PolicySettings
from rcptguard.gateways.relay import RelaySettings
from rcptguard.gateways.sink import SinkSettings
from rcptguard.history.settings import HistorySettings
from rcptguard.policy import ConfigError, Policy, load_policy, locate
from rcptguard.settings import Settings, build, file_fields, invalid, key_of, overlay
from rcptguard.store import DEFAULT_URL
from rcptguard.web.settings import WebSettings
from rcptguard.world.settings import DnsSettings

__all__ = ["SECTIONS", "Config", "DbSettings", "NotifySettings", "RetentionSettings", "file_fields", "key_of",
           "load_config", "relay_with", "resolve_db_url"]


@dataclass(frozen=True, slots=True)
class DbSettings(Settings):
    """The `[db]` section: where the store is (SQLite file or PostgreSQL)."""

    url: str = DEFAULT_URL  # sqlite:///relative/path is relative to the config file


@dataclass(frozen=True, slots=True)
class NotifySettings(Settings):
    """The `[notify]` section: how notices to senders look."""

    sender: str = dataclasses.field(default="", metadata={"key": "from"})  # From: (default MAILER-DAEMON@host)
    template_dir: str | None = None  # the operator's notice templates, relative to the config file
    name_deciders: bool = False  # a notice of an administrator's decision names the administrator


@dataclass(frozen=True, slots=True)
class RetentionSettings(Settings):
    """The `[retention]` section: how long a held message is kept once nothing needs it any more (every recipient
    decided, its delivery and notices settled), counted from its last decision or delivery. `rcptguard quarantine
    purge` (a daily timer) deletes the bytes after `bodies_days` and every record of it after `metadata_days`."""

    bodies_days: float = 30.0  # the message itself: headers, body, attachments
    metadata_days: float = 365.0  # what was held, why, who decided what and when: holds, events, sender, subject

    def check(self) -> None:
        if self.metadata_days < self.bodies_days:
            raise invalid("metadata_days", f"must be at least bodies_days ({self.bodies_days:g}): the records of a "
                          "message outlive its bytes")

    @property
    def bodies(self) -> dt.timedelta:
        return dt.timedelta(days=self.bodies_days)

    @property
    def metadata(self) -> dt.timedelta:
        return dt.timedelta(days=self.metadata_days)


SECTIONS: dict[str, type[Settings]] = {"db": DbSettings, "notify": NotifySettings, "policyd": PolicySettings,
                                       "relay": RelaySettings, "web": WebSettings, "retention": RetentionSettings,
                                       "dns": DnsSettings, "sink": SinkSettings, "milter": MilterSettings,
                                       "content": ContentSettings, "history": HistorySettings}


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a config file says, checked."""

    policy: Policy
    db: DbSettings
    notify: NotifySettings
    policyd: PolicySettings
    relay: RelaySettings
    web: WebSettings
    retention: RetentionSettings = dataclasses.field(default_factory=RetentionSettings)
    dns: DnsSettings = dataclasses.field(default_factory=DnsSettings)  # enabled None: each door's default
    sink: SinkSettings = dataclasses.field(default_factory=SinkSettings)
    milter: MilterSettings = dataclasses.field(default_factory=MilterSettings)
    content: ContentSettings = dataclasses.field(default_factory=ContentSettings)
    history: HistorySettings = dataclasses.field(default_factory=HistorySettings)
    source: Path | None = None
    links_configured: bool = False  # the file says where the page is ([web] or [relay] base_url)

    @property
    def base(self) -> Path:
        """The directory relative paths in the file are relative to."""
        return self.source.parent if self.source else Path()


def resolve_db_url(url: str, base: Path) -> str:
    """A SQLite URL with a relative path made relative to `base` (the config file's directory)."""
    match = re.fullmatch(r"(sqlite(?:\+\w+)?:///)(?!/)(.+)", url)
    if match is None or match[2] == ":memory:" or match[2].startswith("file:"):
        return url
    return f"{match[1]}{(base / match[2]).resolve()}"


def load_config(path: Path | None) -> Config:
    """Every section of the file at `path` (None: the built-in defaults), checked; ConfigError on any mistake."""
    policy = load_policy(path)
    base = path.parent if path else Path()
    sections = {name: policy.sections.get(name, {}) for name in SECTIONS}
    try:
        built = {name: build(cls, sections[name], name) for name, cls in SECTIONS.items()}
        config = _resolved(policy, path, base, sections, built)
    except ConfigError as exc:
        if exc.path is not None or exc.key is None:
            raise
        text = policy.text
        raise ConfigError(exc.message, path=path, key=exc.key, line=locate(text, exc.key) if text else None) from None
    return config


def _resolved(policy: Policy, path: Path | None, base: Path, sections: dict[str, Any],
              built: dict[str, Any]) -> Config:
    """The sections with what one takes from another filled in, and every relative path made relative to `base`:
    the relay's links use `[web] base_url`, its notices `[notify]` unless `[relay]` says otherwise."""
    db: DbSettings = built["db"]
    notify: NotifySettings = overlay(built["notify"], "notify", template_dir=_path(built["notify"].template_dir, base))
    web: WebSettings = built["web"].with_token_file(base)
    web = overlay(web, "web", template_dir=_path(web.template_dir, base), secret_file=_path(web.secret_file, base))
    relay_own = sections["relay"]
    inherited = {"base_url": web.base_url, "notice_from": notify.sender, "template_dir": notify.template_dir,
                 "name_deciders": notify.name_deciders}
    changes = {k: v for k, v in inherited.items() if k not in relay_own}
    if "template_dir" in relay_own:  # the relay's own, relative to the config file like every path
        changes["template_dir"] = _path(relay_own["template_dir"], base)
    relay: RelaySettings = overlay(built["relay"], "relay", **changes)
    links = "base_url" in sections["web"] or "base_url" in relay_own
    sink: SinkSettings = overlay(built["sink"], "sink", tls_cert=_path(built["sink"].tls_cert, base),
                                 tls_key=_path(built["sink"].tls_key, base))
    return Config(policy=policy, db=overlay(db, "db", url=resolve_db_url(db.url, base)), notify=notify,
                  policyd=built["policyd"], relay=relay, web=web, retention=built["retention"], dns=built["dns"],
                  sink=sink, milter=built["milter"], content=built["content"], history=built["history"],
                  source=path, links_configured=links)


def relay_with(settings: RelaySettings, **flags: object) -> RelaySettings:
    """The relay's settings with command-line flags laid over them, checked again."""
    return overlay(settings, "relay", **flags)


def _path(value: str | None, base: Path) -> str | None:
    return None if value is None else str(base / value)
