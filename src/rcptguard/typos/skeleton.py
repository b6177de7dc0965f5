"""Visual skeletons (Unicode TR39): two strings with one skeleton look alike on screen.

The confusables data and the skeleton algorithm come from ICU (through PyICU), which tracks each Unicode
release. TR39's skeleton is case-sensitive; domains are not, so the skeleton is folded to lower case and
taken again until it stops changing (`0` -> `O` -> `o`, `m` -> `rn`).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import icu

_checker = icu.SpoofChecker()
_ANY_CASE = 8  # USPOOF_ANY_CASE


def uncached_skeleton(text: str) -> str:
    """The lower-case TR39 skeleton of `text`."""
    if text.isascii():
        return text.translate(_ASCII)
    return _skeleton(text)


skeleton = lru_cache(maxsize=65536)(uncached_skeleton)  # the same, remembered for the domains checked lately


def _skeleton(text: str) -> str:
    current = text
    for _ in range(4):
        following = _checker.getSkeleton(_ANY_CASE, current).casefold()
        if following == current:
            break
        current = following
    return current


# The skeleton maps each code point on its own, so an ASCII string's skeleton is a per-character table.
_ASCII = str.maketrans({chr(c): _skeleton(chr(c)) for c in range(128)})


def scripts_of(text: str) -> dict[str, str]:
    """The non-ASCII characters of `text`, each with its Unicode name (for the sender to read)."""
    return {ch: unicodedata.name(ch, f"U+{ord(ch):04X}") for ch in dict.fromkeys(text) if not ch.isascii()}
