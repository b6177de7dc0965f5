"""Lookalikes a person can see: the characters of a domain that are not what they seem, named in plain words.

    foreign("gmаil.com")   # [Foreign(char="а", script="Cyrillic", looks_like="a", name="CYRILLIC SMALL LETTER A")]
    note("gmаil.com")      # "the 'а' in gmаil.com is Cyrillic (it looks like the Latin 'a')"
    both("xn--gmil-63d.com")  # "gmаil.com (xn--gmil-63d.com)": the form a person reads, and the one mail uses

A character is foreign when it is not ASCII and its TR39 skeleton is ASCII: it can pass for a Latin letter or
digit on screen. Its script is the first word of its Unicode name. Every place a person reads an address (the
page, the notices, `rcptguard check`) says which characters those are, so "gmаil.com looks like gmail.com" is
never the only thing they see.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import idna

from rcptguard.domains import to_ascii
from rcptguard.typos.skeleton import skeleton

__all__ = ["Foreign", "ascii_form", "both", "foreign", "note", "unicode_form"]


@dataclass(frozen=True, slots=True)
class Foreign:
    """One character that looks like another: itself, its script, the ASCII it passes for, its Unicode name."""

    char: str
    script: str
    looks_like: str
    name: str


def unicode_form(domain: str) -> str:
    """The domain as a person reads it: A-labels (`xn--…`) decoded; unchanged when it cannot be decoded."""
    if "xn--" not in domain.lower():
        return domain
    try:
        return ".".join(idna.decode(label) if label.lower().startswith("xn--") else label
                        for label in domain.split("."))
    except (idna.IDNAError, UnicodeError):
        return domain


def ascii_form(domain: str) -> str:
    """The domain as mail uses it: U-labels encoded (`xn--…`); unchanged when it cannot be encoded."""
    return to_ascii(domain)


def foreign(domain: str) -> list[Foreign]:
    """The characters of `domain` (either form) that pass for ASCII letters or digits, each once, in order."""
    found = []
    for char in dict.fromkeys(unicode_form(domain)):
        if char.isascii() or not char.isprintable():
            continue
        looks = skeleton(char)
        if not looks.isascii() or not looks.isalnum():
            continue
        name = unicodedata.name(char, f"U+{ord(char):04X}")
        found.append(Foreign(char, name.split(" ", 1)[0].title(), looks, name))
    return found


def note(domain: str) -> str | None:
    """One sentence naming the characters of `domain` that are not what they seem, or None when there are none."""
    chars = foreign(domain)
    if not chars:
        return None
    shown = unicode_form(domain)
    parts = [f"the '{c.char}' is {c.script} (it looks like the Latin '{c.looks_like}')" for c in chars]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"In {shown}, {listed}."


def both(domain: str) -> str:
    """The form a person reads and, where it differs, the one mail uses: "gmаil.com (xn--gmil-63d.com)"."""
    shown, sent = unicode_form(domain), ascii_form(domain)
    return f"{shown} ({sent})" if shown != sent else shown
