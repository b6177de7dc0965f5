"""The poisoning guard: which domains history may call correspondents.

A slip that got through once must not make itself known. Only mail let through without a hold is ever counted
(the doors count nothing they held, and nothing a sender confirmed counts for anyone but that sender), and a domain
the guard found one slip from a protected, known or popular domain (`near`: it warned of it, or would have held it)
needs more before it counts for the whole organisation:

- mail to it from `near_min_senders` different people (two by default: one person's repeated slip is one slip), or
- with `near_inbound`, a message from it (a domain that writes to us is real).

An administrator's word overrides both: `rcptguard known add` makes a domain known, `forget` makes it unknown
until added again. A correspondent's messages fade with time (`half_life_days`): once their weight falls below half
a message, the domain is no longer known (one message, a half-life ago; 312 messages, nine half-lives ago).
"""

from __future__ import annotations

import datetime as dt

from rcptguard.domains import DomainError, normalize_domain
from rcptguard.history.model import DomainFacts
from rcptguard.history.settings import HistorySettings

__all__ = ["HELD", "near_for", "qualifies", "why_not"]

FADED = 0.5  # a correspondent whose messages weigh less than this, faded, is no longer one
HELD = "held"  # `near` of a domain released from a hold that resembled no domain in particular (a force rule)


def near_for(domain: str, intended: str | None) -> str | None:
    """What the poisoning guard keeps of a let-through recipient at `domain` (A-label form) that the guard took for a
    slip of `intended`: that domain, or None when there is none or it is this one (a wrong person at the right
    domain: ann@partner.com for bob@partner.com doubts the person, never partner.com itself)."""
    if intended is None or intended == HELD:
        return intended
    if intended == domain:
        return None
    try:
        return None if normalize_domain(intended).ascii == domain else intended
    except DomainError:
        return intended


def qualifies(facts: DomainFacts, settings: HistorySettings, now: dt.datetime) -> bool:
    """Whether the organisation's mail to this domain makes it a correspondent."""
    return why_not(facts, settings, now) is None


def why_not(facts: DomainFacts, settings: HistorySettings, now: dt.datetime) -> str | None:
    """None when the domain counts as a correspondent, else why not, in plain words."""
    if facts.state == "forgotten":
        return "an administrator made it forgotten"
    if facts.state == "added":
        return None
    if facts.org.count <= 0:
        return "nobody wrote to it"
    if facts.org.weight(now, settings.half_life) < FADED:
        return f"the last message was long ago ({facts.org.last:%Y-%m-%d})" if facts.org.last else "too long ago"
    if facts.near is None:
        return None
    if facts.senders >= settings.near_min_senders:
        return None
    if settings.near_inbound and facts.inbound > 0:
        return None
    need = f"{settings.near_min_senders} people writing to it" + (" or a message from it" if settings.near_inbound
                                                                   else "")
    what = "it was held as a likely slip" if facts.near == HELD else f"it is one slip from {facts.near}"
    return f"{what}, so it needs {need}"
