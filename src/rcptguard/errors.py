"""Every error rcptguard raises on purpose, in one tree. Catch `RcptguardError` for all of them.

    RcptguardError
     ├── ConfigError (ValueError)          a config file or option that cannot be used: file, line and key
     ├── EvalError (ValueError)            an evaluation cases or profiles file that cannot be used
     ├── SourceError (ValueError)          an archive that cannot be read at all, or whose format is unknown
     ├── DomainError (ValueError)          a domain that cannot be a mail domain, with the reason
     ├── ProtocolError                     a peer broke the Postfix policy protocol: close without an answer
     ├── StoreError (RuntimeError)         the store cannot be reached or written: the doors answer 4xx
     │    ├── StoreNotFound                Store.open(create=False) found no store there
     │    ├── DeliveredNotRecorded         the next hop took a release, the store could not record it
     │    └── DecidedNotRecorded           a decision stands, but what followed it was not recorded
     ├── QuarantineError                   a request the quarantine cannot carry out
     │    ├── NotFound                     no such hold
     │    ├── AlreadyDecided               the hold was decided before (by whom, to what)
     │    ├── NotPending                   the hold has no delivery in progress
     │    └── Purged                       the message's bytes were deleted under the retention policy
     └── LinkError                         a confirmation link that cannot be used
          ├── LinkInvalid                  malformed, never issued, or tampered with
          └── LinkExpired                  issued, but its lifetime is over

The modules that raise them also export them under their old names (`rcptguard.store.StoreError`,
`rcptguard.policy.ConfigError`, ...). Two exceptions stay where they are used, on purpose: the web app's
`PageError` (web.answers) is an HTTP answer, not a failure; the next-hop client's `_ReplyError` never leaves
delivery.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rcptguard.delivery import NextHop
    from rcptguard.store.quarantine import Hold

__all__ = [
    "AlreadyDecided",
    "ConfigError",
    "DecidedNotRecorded",
    "DeliveredNotRecorded",
    "DomainError",
    "EvalError",
    "LinkError",
    "LinkExpired",
    "LinkInvalid",
    "NotFound",
    "NotPending",
    "ProtocolError",
    "Purged",
    "QuarantineError",
    "RcptguardError",
    "SourceError",
    "StoreError",
    "StoreNotFound",
]


class RcptguardError(Exception):
    """The root of every error rcptguard raises on purpose."""


class ConfigError(RcptguardError, ValueError):
    """A config file or option that cannot be used; the text names the file, line and key."""

    def __init__(self, message: str, *, path: Path | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        where = str(path) if path else "config"
        if line:
            where += f":{line}"
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.message, self.path, self.key, self.line = message, path, key, line


class EvalError(RcptguardError, ValueError):
    """A cases or profiles file that cannot be used."""


class SourceError(RcptguardError, ValueError):
    """An archive (log, mailbox, export) that cannot be opened, or whose format is not one rcptguard reads.

    Damage inside a readable archive is not an error: the reader counts it in `Source.problems` and goes on.
    """


class DomainError(RcptguardError, ValueError):
    """A domain that cannot be a mail domain; the message says why in plain words."""


class ProtocolError(RcptguardError):
    """The peer broke the policy protocol; the connection is closed without an answer."""


class StoreError(RcptguardError, RuntimeError):
    """The store cannot be reached or written; gateways answer 4xx so that the mail is retried."""


class StoreNotFound(StoreError):  # noqa: N818 - the name reads as the answer
    """`Store.open(url, create=False)` found no store there: no SQLite file, or a database without the schema."""


class DeliveredNotRecorded(StoreError):  # noqa: N818
    """The next hop accepted a released message, but the store failed to record it, on every retry. This worker
    remembers it (never sends it again, records it when the store works again); the hold stays claimed
    ('sending'), so no other worker takes it before the claim timeout."""

    def __init__(self, hold_id: str, next_hop: NextHop, cause: StoreError) -> None:
        super().__init__(f"{next_hop} accepted the message of {hold_id}, but the store could not record it: {cause}; "
                         f"once the store works, run `rcptguard quarantine mark-delivered {hold_id}`")
        self.hold_id = hold_id
        self.next_hop = next_hop


class DecidedNotRecorded(StoreError):  # noqa: N818 - the name reads as the answer
    """A release or correction was decided and stands, but the store failed after the decision (taking the
    delivery, or recording its outcome). `hold` is the hold as decided. `delivered`: the next hop accepted the
    message (only recording that failed: it is not sent again); otherwise the message is sent by the next retry of
    pending deliveries."""

    def __init__(self, hold: Hold, cause: StoreError) -> None:
        self.delivered = isinstance(cause, DeliveredNotRecorded)
        then = "" if self.delivered else "; the delivery is retried with the pending ones"
        super().__init__(f"the decision on {hold.id} is recorded ({hold.state}), but what followed was not: "
                         f"{cause}{then}")
        self.hold = hold


class QuarantineError(RcptguardError):
    """A request the quarantine cannot carry out (as opposed to StoreError: the database failed)."""


class NotFound(QuarantineError):  # noqa: N818 - the name reads as the answer
    def __init__(self, hold_id: str) -> None:
        super().__init__(f"no held message with id {hold_id!r}")
        self.hold_id = hold_id


class AlreadyDecided(QuarantineError):  # noqa: N818
    def __init__(self, hold_id: str, state: str, decided_by: str | None = None) -> None:
        by = f" by {decided_by}" if decided_by else ""
        super().__init__(f"{hold_id} was already decided: it is {state}{by}")
        self.hold_id = hold_id
        self.state = state
        self.decided_by = decided_by


class NotPending(QuarantineError):  # noqa: N818
    def __init__(self, hold_id: str, delivery: str) -> None:
        super().__init__(f"{hold_id} has no delivery in progress (delivery is {delivery})")
        self.hold_id = hold_id
        self.delivery = delivery


class Purged(QuarantineError):  # noqa: N818 - the name reads as the answer
    """The stored bytes of the hold's message were deleted under the retention policy (`[retention]`); what was
    held, decided and delivered is still on record."""

    def __init__(self, hold_id: str, purged_at: dt.datetime) -> None:
        super().__init__(f"the message itself of {hold_id} was deleted on {purged_at:%Y-%m-%d} under the "
                         "retention policy")
        self.hold_id = hold_id
        self.purged_at = purged_at


class LinkError(RcptguardError):
    """A confirmation link that cannot be used."""


class LinkInvalid(LinkError):  # noqa: N818 - the name reads as the answer
    """The token is malformed or was never issued (or was tampered with)."""

    def __init__(self) -> None:
        super().__init__("this confirmation link is not valid")


class LinkExpired(LinkError):  # noqa: N818
    """The token was issued but its lifetime is over."""

    def __init__(self, expires_at: dt.datetime) -> None:
        super().__init__(f"this confirmation link expired at {expires_at.isoformat()}")
        self.expires_at = expires_at
