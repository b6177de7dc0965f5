"""The `[history]` section of the config file: how the organisation's own mail is weighed.

    key                   default  meaning
    --------------------  -------  ----------------------------------------------------------------------------
    half_life_days        180      a correspondent's messages fade with the time since the last one: after one
                                   half-life they weigh half, and a domain whose weight falls below half a message
                                   is no longer a known correspondent (312 messages: about four and a half years)
    near_min_senders      2        a domain one slip from a protected, known or popular one (the guard warned or
                                   held it) counts as a correspondent only once this many people wrote to it ...
    near_inbound          true     ... or once it wrote to us (an inbound message: the domain is real)
    confirmed_action      "pass"   what the next message from a sender to a domain that sender confirmed gets
                                   ("send anyway"): pass, or warn
    established           3        messages after which a domain or a group counts as long-standing
    max_group             30       co-recipients are remembered for messages of at most this many recipients
    odd_domain_slip       6.0      the odd recipient out: one slip from a co-recipient's domain
    odd_new_domain        2.0      a domain nobody wrote to, among long-standing ones
    odd_new_to_group      2.5      a recipient never addressed with any of the others, who were addressed together
    odd_new_address       1.5      an address nobody wrote to, at a long-standing domain
    odd_address_slip      3.0      an address the sender never wrote to, one slip (or a namesake) from one the
                                   sender writes to at the same domain, or the organisation does (a new address)
    odd_new_for_sender    1.5      an address others write to, never this sender, at a domain the sender writes
                                   to often
    odd_substitute        4.0      in the place of somebody at the same domain in a group written to before
    substitute_min        2        ... once the group had that person in that place in this many messages
    odd_personal          4.0      an address at a public mail provider spelling a colleague's name (warns alone)
    odd_greeting          4.0      the message greets a name none of its recipients answers to, and the sender
                                   writes to somebody of that name at the recipient's domain (warns alone; the
                                   relay and the milter, which read the message)
    greetings             true     the relay (and the milter, on the messages it reads) reads the first lines of a
                                   message's first text part for whom it greets (`odd_greeting`)
    reload_seconds        3600     a door holds history in memory, kept current by its own learning and by the
                                   history feed (what every other writer changed, at each flush); it reads the
                                   whole store again this often, a safety net for anything the feed missed
    observations_days     90       `rcptguard known prune` deletes observe mode's records older than this (and,
                                   always, the rows whose messages faded below half a message)

The odd-recipient points are added up and become an action by the policy's thresholds (warn 4, hold 8 by
default); they only ever raise a recipient's action, never lower it.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Literal

from rcptguard.settings import Settings, invalid

__all__ = ["HistorySettings"]


@dataclass(frozen=True, slots=True)
class HistorySettings(Settings):
    """How history is weighed; see the module docstring for every key."""

    half_life_days: float = 180.0
    near_min_senders: int = 2
    near_inbound: bool = True
    confirmed_action: Literal["pass", "warn"] = "pass"
    established: int = 3
    max_group: int = 30
    odd_domain_slip: float = 6.0
    odd_new_domain: float = 2.0
    odd_new_to_group: float = 2.5
    odd_new_address: float = 1.5
    odd_address_slip: float = 3.0
    odd_new_for_sender: float = 1.5
    odd_substitute: float = 4.0
    substitute_min: int = 2
    odd_personal: float = 4.0
    odd_greeting: float = 4.0
    greetings: bool = True
    reload_seconds: float = 3600.0
    observations_days: float = 90.0

    def check(self) -> None:
        if self.half_life_days <= 0:
            raise invalid("half_life_days", "must be more than 0")
        if self.near_min_senders < 1:
            raise invalid("near_min_senders", "at least 1")
        if self.observations_days <= 0:
            raise invalid("observations_days", "must be more than 0")
        if self.reload_seconds <= 0:
            raise invalid("reload_seconds", "must be more than 0")
        if self.substitute_min < 1:
            raise invalid("substitute_min", "at least 1")
        if self.max_group < 2:
            raise invalid("max_group", "at least 2")

    @property
    def half_life(self) -> dt.timedelta:
        return _days(self.half_life_days)


@functools.lru_cache(maxsize=64)
def _days(days: float) -> dt.timedelta:
    return dt.timedelta(days=days)  # (asked for every message a door judges: one timedelta made per value)
