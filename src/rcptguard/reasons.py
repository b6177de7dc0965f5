"""Reasons in plain words: what a sender reads in a bounce, a warning header or on the confirmation page."""

from __future__ import annotations

from rcptguard.countries import describe_tld
from rcptguard.domains import is_public_suffix, to_ascii
from rcptguard.index import Entry
from rcptguard.model import Domain, Role, Signal

_TLD_SLIP_WORDS = {
    "omission": "one letter short of .{meant}",
    "repetition": ".{meant} with a letter typed twice",
    "transposition": ".{meant} with two letters swapped",
    "keyboard": "one key away from .{meant}",
}


def _suffix_note(suffix: str) -> str:
    if "." in suffix and not is_public_suffix(to_ascii(suffix)):  # gv.uk for gov.uk: a name under .uk, no suffix
        return f".{suffix} is no public suffix"
    described = describe_tld(suffix)
    return f".{suffix} is {described}" if described else f".{suffix} is another suffix"


def slip_phrase(signal: Signal) -> str:
    """What the slip is, as the second half of "x looks like y: ..."."""
    ev = signal.evidence
    meant, _, typed = ev.get("edit", "→").partition("→")
    if signal.name == "TLD_SLIP":
        words = _TLD_SLIP_WORDS.get(ev.get("slip", ""), "close to .{meant}").format(meant=meant)
        return f"{_suffix_note(typed)}, {words}"
    if signal.name == "NO_SUCH_TLD":
        return f".{typed} is not a top-level domain ({ev.get('detail', f'for .{meant}')})"
    if signal.name == "TLD_HABIT":
        return f".{typed} typed out of habit for .{meant}"
    if signal.name == "SUFFIX_APPEND":
        extra = typed[len(meant) + 1 :]
        described = describe_tld(extra)
        note = f" ({described})" if described else ""
        return f"'.{extra}'{note} added after .{meant}"
    if signal.name in ("TLD_CHANGE", "TLD_SWAP"):
        return f"{_suffix_note(typed)}, in place of .{meant}"
    if signal.name == "IDN_HOMOGLYPH":
        return f"it is a different domain that uses {ev.get('letters', 'letters of another script')}"
    return ev.get("detail", "one letter differs")


def bounce_reason(typed: Domain, tld: str) -> str:
    """Why a domain under a top-level label that does not exist cannot receive mail."""
    return (f"{typed.display()} cannot receive mail: .{tld} is not a top-level domain, "
            f"so the message would bounce.")


def sibling_note(typed: Domain, provider: str, why: str) -> str:
    """Why a domain resembling a provider is probably that provider's real sibling."""
    if why == "registrable":
        return f"But {typed.unicode} and {provider} are under one registered domain, so one owner gets the mail."
    if why == "generic":
        return (f"But owners usually hold their name under the common generic suffixes too, so "
                f"{typed.unicode} is probably {provider}'s real sibling.")
    return (f"But {provider} is a brand with domains in many countries, so {typed.unicode} is probably "
            f"one of them.")


def target_phrase(entry: Entry, intended: str) -> str:
    if entry.role is Role.PROTECTED:
        if entry.is_suffix:
            return f"{intended} is under .{entry.domain.unicode}, which you protect."
        return f"{entry.domain.unicode} is one of your own domains."
    if entry.role is Role.KNOWN:
        if entry.count:
            return f"Your organisation writes to {entry.domain.unicode} ({messages(entry.count)})."
        return f"You write to {entry.domain.unicode}."
    return f"{entry.domain.unicode} is a major mail provider."


def messages(count: int) -> str:
    return f"{count} message" if count == 1 else f"{count} messages"


def never_written(domain: Domain) -> str:
    """The first-contact sentence (the history of one sender may say something truer in its place)."""
    return f"You have never written to {domain.unicode}."


def looks_like(typed: Domain, intended: str, slips: Signal | tuple[Signal, ...]) -> str:
    """"x looks like y: <the slip>", naming each slip when there are two ("... and ...")."""
    if isinstance(slips, Signal):
        slips = (slips,)
    return f"{typed.display()} looks like {intended}: {' and '.join(slip_phrase(s) for s in slips)}."


def covered_reason(domain: Domain, entry: Entry) -> str:
    if entry.role is Role.PROTECTED:
        if entry.is_suffix:
            return f"{domain.display()} is under .{entry.domain.unicode}, which you protect."
        return f"{domain.display()} is one of your own domains."
    if entry.count:
        return f"You have written to {entry.domain.unicode} {entry.count} times."
    return f"{entry.domain.unicode} is one of your known correspondents."
