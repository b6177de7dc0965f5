"""The shape of a single slip between what was typed and what was meant."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Op(enum.Enum):
    OMISSION = "omission"  # a character of the intended text is missing
    INSERTION = "insertion"  # the typed text has an extra character
    SUBSTITUTION = "substitution"  # one character typed in place of another
    TRANSPOSITION = "transposition"  # two neighbouring characters swapped


@dataclass(slots=True)  # a value never changed once made; not frozen, which costs on every check
class Edit:
    """One edit turning `intended` into `typed`, at index `pos` of `intended` (of `typed` for insertions).

    `was` is what the intended text has there, `now` what was typed: for a transposition both are two
    characters, for an omission `now` is empty, for an insertion `was` is empty.
    """

    op: Op
    pos: int
    was: str
    now: str
    typed: str
    intended: str

    def describe(self) -> str:
        if self.op is Op.OMISSION:
            return f"the {_char(self.was)} is missing"
        if self.op is Op.INSERTION:
            return f"an extra {_char(self.now)}"
        if self.op is Op.TRANSPOSITION:
            return f"{self.was!r} typed as {self.now!r}"
        return f"{_char(self.now)} typed for {_char(self.was)}"

    def before(self) -> str:
        """The typed character just before the edit, if any."""
        return self.typed[self.pos - 1] if self.pos > 0 else ""

    def after(self) -> str:
        """The typed character just after the edit, if any."""
        start = self.pos + len(self.now)
        return self.typed[start] if start < len(self.typed) else ""


def _char(c: str) -> str:
    return {".": "dot", "-": "hyphen"}.get(c, repr(c))


def single_edit(typed: str, intended: str) -> Edit | None:
    """The one edit that turns `intended` into `typed`, or None if they differ by none or by more than one."""
    if typed == intended or abs(len(typed) - len(intended)) > 1:
        return None
    start = 0
    limit = min(len(typed), len(intended))
    while start < limit and typed[start] == intended[start]:
        start += 1
    end_t, end_i = len(typed), len(intended)
    while end_t > start and end_i > start and typed[end_t - 1] == intended[end_i - 1]:
        end_t -= 1
        end_i -= 1
    now, was = typed[start:end_t], intended[start:end_i]
    if len(was) == 1 and not now:
        return Edit(Op.OMISSION, start, was, now, typed, intended)
    if len(now) == 1 and not was:
        return Edit(Op.INSERTION, start, was, now, typed, intended)
    if len(now) == 1 and len(was) == 1:
        return Edit(Op.SUBSTITUTION, start, was, now, typed, intended)
    if len(now) == 2 and len(was) == 2 and now == was[::-1]:
        return Edit(Op.TRANSPOSITION, start, was, now, typed, intended)
    return None


def deletions(text: str) -> set[str]:
    """Every string made by deleting one character of `text` (the deletion neighbourhood of radius 1)."""
    return {text[:i] + text[i + 1 :] for i in range(len(text))}


def one_edit_variants(text: str, alphabet: str) -> set[str]:
    """Every string one omission, insertion, substitution or transposition away from `text`."""
    out = deletions(text)
    for i in range(len(text) + 1):
        for c in alphabet:
            out.add(text[:i] + c + text[i:])
            if i < len(text):
                out.add(text[:i] + c + text[i + 1 :])
    for i in range(len(text) - 1):
        out.add(text[:i] + text[i + 1] + text[i] + text[i + 2 :])
    out.discard(text)
    return out


def paths(typed: str, intended: str) -> list[tuple[Edit, Edit]]:
    """The ways two edits turn `intended` into `typed`, each as (first, second); empty if none does.

    The first edit is made where the two strings first differ (any two-edit path can be moved there), the
    second is the one edit left between what the first makes and the typed text. The second edit's
    `intended` is that intermediate text.
    """
    if typed == intended or abs(len(typed) - len(intended)) > 2:
        return []
    p = 0
    limit = min(len(typed), len(intended))
    while p < limit and typed[p] == intended[p]:
        p += 1
    firsts: list[tuple[Op, str, str, str]] = []  # (op, was, now, intermediate)
    if p < len(intended):
        firsts.append((Op.OMISSION, intended[p], "", intended[:p] + intended[p + 1 :]))
    if p < len(typed):
        firsts.append((Op.INSERTION, "", typed[p], intended[:p] + typed[p] + intended[p:]))
        if p < len(intended):
            firsts.append((Op.SUBSTITUTION, intended[p], typed[p], intended[:p] + typed[p] + intended[p + 1 :]))
    if p + 1 < len(intended) and intended[p + 1] != intended[p]:
        swapped = intended[p + 1] + intended[p]
        firsts.append((Op.TRANSPOSITION, intended[p : p + 2], swapped, intended[:p] + swapped + intended[p + 2 :]))
    out = []
    for op, was, now, middle in firsts:
        second = single_edit(typed, middle)
        if second is not None:
            out.append((Edit(op, p, was, now, middle, intended), second))
    return out
