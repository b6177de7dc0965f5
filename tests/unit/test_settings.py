"""One way to build settings from a config table: types from annotations, shared checks, each class's own check."""

from __future__ import annotations

import dataclasses

import pytest

from rcptguard.config import SECTIONS
from rcptguard.delivery import SmtpTimeouts
from rcptguard.gateways.relay import RelaySettings
from rcptguard.policy import ConfigError
from rcptguard.settings import Settings, build, overlay
from rcptguard.web.settings import WebSettings


def test_every_section_is_a_settings_class() -> None:
    """Every section of the config file is built by `build` (a Settings subclass), so none has checks of its own
    kind that the others lack."""
    assert all(issubclass(cls, Settings) and dataclasses.is_dataclass(cls) for cls in SECTIONS.values())


def test_a_class_built_in_code_is_checked_too() -> None:
    """The range checks run however a settings object is made, not only from a file."""
    with pytest.raises(ConfigError, match="workers: at least 1"):
        RelaySettings(workers=0)
    with pytest.raises(ConfigError, match="data_done: expected a positive number of seconds"):
        SmtpTimeouts(data_done=0)


def test_no_number_is_negative_in_any_section() -> None:
    """A negative number is refused for every numeric key, by the check every section shares."""
    for name, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            if isinstance(field.default, int | float) and not isinstance(field.default, bool):
                with pytest.raises(ConfigError, match=rf"{name}\.{field.name}: expected 0 or more"):
                    build(cls, {field.name: -1}, name)


def test_tables_become_their_class_and_whole_numbers_floats() -> None:
    """A nested table is built into its settings class, a list into a tuple, 900 into 900.0."""
    settings = build(RelaySettings, {"timeouts": {"data_done": 900}, "allow": ["10.0.0.0/8"]}, "relay")
    assert settings.timeouts == SmtpTimeouts(data_done=900.0)
    assert isinstance(settings.timeouts.data_done, float)
    assert settings.allow == ("10.0.0.0/8",)
    assert [str(n) for n in settings.networks] == ["10.0.0.0/8"]


def test_overlay_checks_again_and_names_the_section() -> None:
    """Command-line flags laid over settings are checked like the file's values, with the section in the key."""
    settings = build(RelaySettings, {}, "relay")
    assert overlay(settings, "relay", next_hop="[::1]:25", allow=None).next_hop == "[::1]:25"
    with pytest.raises(ConfigError, match=r"relay\.next_hop: expected HOST:PORT"):
        overlay(settings, "relay", next_hop="nowhere")


def test_an_empty_secret_is_not_set() -> None:
    """An empty token, secret or password in [web] counts as not set (not as a 0-character secret)."""
    settings = build(WebSettings, {"api_token": "", "secret": "", "admin_password": ""}, "web")
    assert (settings.api_token, settings.secret, settings.admin_password) == (None, None, None)
