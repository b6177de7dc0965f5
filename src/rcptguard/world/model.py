"""Values of the world's evidence: one DNS answer (`Answer`), what it shows (`Finding`), what the sender reads
(`Evidence`). Nothing here does I/O; `classify.py` turns answers into a finding, `lookup.py` asks the DNS.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    """How one DNS question ended."""

    ANSWER = "answer"  # NOERROR: records, or none (NODATA: the name exists, without this type)
    NXDOMAIN = "nxdomain"  # the name does not exist
    FAILED = "failed"  # SERVFAIL, REFUSED, a broken reply, no server configured: nothing is known
    TIMEOUT = "timeout"  # no answer in time: nothing is known


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one question (`name`, `rdtype`).

    `records` are normalised: MX exchanges in preference order, lower case without the trailing dot (the root,
    as in a null MX `0 .`, is `"."`); A/AAAA addresses as text. `ttl` is how long it may be kept (seconds, before
    the cache's floor and ceiling). `detail` says why a FAILED or TIMEOUT answer is one ("SERVFAIL").
    """

    name: str
    rdtype: str
    outcome: Outcome
    records: tuple[str, ...] = ()
    ttl: int = 0
    detail: str = ""

    @property
    def known(self) -> bool:
        """The DNS said something about the name (it exists with or without records, or does not exist)."""
        return self.outcome in {Outcome.ANSWER, Outcome.NXDOMAIN}


class Finding(enum.StrEnum):
    """What the typed domain's DNS shows about mail to it, compared with the domain it resembles."""

    NO_DOMAIN = "no_domain"  # NXDOMAIN: mail to it would bounce
    NO_MAIL = "no_mail"  # no MX and no address (RFC 5321 5.1), or a null MX (RFC 7505): it would bounce
    SAME_OPERATOR = "same_operator"  # its MX hosts are the intended domain's own: a real sibling
    SHARED_HOSTING = "shared_hosting"  # its MX hosts serve millions of tenants: proves nothing
    DIFFERENT_OPERATOR = "different_operator"  # it takes mail at servers that are not the intended domain's
    UNKNOWN = "unknown"  # no answer in time, a failing server, DNS off: decide without it

    @property
    def would_bounce(self) -> bool:
        return self in {Finding.NO_DOMAIN, Finding.NO_MAIL}


@dataclass(frozen=True, slots=True)
class Evidence:
    """The world's evidence about one typed domain, for the guard and for the sender.

    `text` is one or two sentences a sender can read ("army.ml does not exist: mail to it would bounce.").
    `hosts` are the typed domain's MX hosts (or addresses, when it has no MX) that the finding rests on.
    `elapsed_ms` is the time the check took; `cached` is true when every answer came from the cache.
    """

    finding: Finding
    typed: str
    intended: str
    text: str
    hosts: tuple[str, ...] = ()
    elapsed_ms: float = 0.0
    cached: bool = False

    @property
    def would_bounce(self) -> bool:
        """Mail to the typed domain cannot be delivered (no such domain, or no mail server)."""
        return self.finding.would_bounce

    @property
    def same_operator(self) -> bool:
        """The typed domain's mail goes to the intended domain's own servers: a real sibling, at most a warning."""
        return self.finding is Finding.SAME_OPERATOR
