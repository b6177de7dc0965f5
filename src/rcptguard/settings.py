"""Settings classes: frozen dataclasses whose annotations are the types a config file must give.

    @dataclass(frozen=True, slots=True)
    class RelaySettings(Settings):
        workers: int = 32                     # a whole number, 0 or more (no bool, no string)
        retry_interval: float = 30.0          # a number (a whole number will do)
        allow: tuple[str, ...] = (...)        # a list of strings in the file
        domains: dict[str, str] = ...         # a table of strings in the file (an inline table will do)
        timeouts: SmtpTimeouts = ...          # a table, itself a Settings class
        api: Literal["loopback", "token"]     # one of these strings

        def check(self) -> None:              # what the types cannot say: ranges, values that must parse
            if self.workers < 1:
                raise invalid("workers", "at least 1")

    RelaySettings.from_section({"workers": "many"}, "relay")
        # ConfigError: "config: relay.workers: expected a whole number, got 'many'"

Every settings class of every section is built by `build` and nothing else: the type of each key comes from the
annotation, so a key added to a class is checked with no code anywhere; no number in any section is negative;
whatever is left (ranges, addresses that must parse) is the class's `check`, which also runs when code builds
the class directly. Errors are `ConfigError`s keyed `section.key`; `config.load_config` adds the file and line.
A field with `metadata={"key": "from"}` is written `from` in the file; one with `metadata={"derived": True}` is
computed by `check` and never read from a file.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Self, TypeVar

from rcptguard.errors import ConfigError

__all__ = ["Settings", "build", "check_types", "file_fields", "invalid", "key_of", "overlay"]

S = TypeVar("S", bound="Settings")


class Settings:
    """The base of every settings class: the checks every section shares, then the class's own `check`."""

    __slots__ = ()

    def __post_init__(self) -> None:
        for field in file_fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise invalid(key_of(field), f"expected 0 or more, got {value!r}")
        self.check()

    def check(self) -> None:
        """ConfigError (see `invalid`) for a value of the right type that cannot be used."""

    def derive(self, name: str, value: object) -> None:
        """Set a derived field (frozen classes: only from `check`)."""
        object.__setattr__(self, name, value)

    @classmethod
    def from_section(cls, values: object, where: str) -> Self:
        """The settings from a config table; ConfigError keyed `where.key` for any mistake."""
        return build(cls, values, where)


def invalid(key: str, message: str) -> ConfigError:
    """The error a settings class's `check` raises for its key; `build` puts the section in front of the key."""
    return ConfigError(message, key=key)


def key_of(field: dataclasses.Field[Any]) -> str:
    """The name of a settings field in the file (`[notify] from` is the field `sender`)."""
    return str(field.metadata.get("key", field.name))


def file_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of a settings class that a file may set."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("derived")]


def check_types(cls: type, values: object, where: str) -> None:
    """ConfigError keyed `where.key` for an unknown key or a value whose type is not the field's annotation."""
    if not isinstance(values, dict):
        raise ConfigError(f"expected a table, got {values!r}", key=where)
    fields = {key_of(f): f for f in file_fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown key (expected one of: {', '.join(sorted(fields))})", key=f"{where}.{key}")
        expected = hints[fields[key].name]
        if dataclasses.is_dataclass(expected) and isinstance(expected, type):
            check_types(expected, value, f"{where}.{key}")
        elif not _fits(value, expected):
            raise ConfigError(f"expected {_describe(expected)}, got {value!r}", key=f"{where}.{key}")


def build(cls: type[S], values: object, where: str) -> S:
    """An instance of `cls` from a config table: keys and types checked (`check_types`), lists made tuples, whole
    numbers made floats where a float is expected, tables built into their settings class, then `check`."""
    check_types(cls, values, where)
    assert isinstance(values, dict)  # check_types refused anything else
    fields = {key_of(f): f for f in file_fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        field = fields[key]
        expected = hints[field.name]
        if dataclasses.is_dataclass(expected) and isinstance(expected, type) and issubclass(expected, Settings):
            kwargs[field.name] = build(expected, value, f"{where}.{key}")
        elif isinstance(value, list):
            kwargs[field.name] = tuple(value)
        elif isinstance(value, dict):
            kwargs[field.name] = dict(value)
        elif isinstance(value, int) and not isinstance(value, bool) and _fits(1.5, expected):
            kwargs[field.name] = float(value)
        else:
            kwargs[field.name] = value
    return _checked(lambda: cls(**kwargs), where)


def overlay(settings: S, where: str, **flags: object) -> S:
    """`settings` with the command-line flags that were given (not None) laid over them, checked again."""
    given = {name: tuple(v) if isinstance(v, list) else v for name, v in flags.items() if v is not None}
    return _checked(lambda: dataclasses.replace(settings, **given), where)  # type: ignore[type-var]


def _checked(make: typing.Callable[[], S], where: str) -> S:
    try:
        return make()
    except ConfigError as exc:
        if exc.path is not None or exc.key is None:
            raise
        raise ConfigError(exc.message, key=f"{where}.{exc.key}") from None


def _fits(value: object, expected: Any) -> bool:  # noqa: ANN401 - a type annotation
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(expected) if arm is not type(None))
    if origin is Literal:
        return value in typing.get_args(expected)
    if origin is tuple:
        item = typing.get_args(expected)[0]
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(expected)
        return isinstance(value, dict) and all(_fits(k, key) and _fits(v, item) for k, v in value.items())
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
    if origin is dict:
        return f"a table of {_describe(typing.get_args(expected)[1]).removeprefix('a ')}s"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(
        expected, f"a {getattr(expected, '__name__', expected)}")
