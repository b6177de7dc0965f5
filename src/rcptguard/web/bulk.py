"""Releasing or cancelling many held recipients at once from the admin list, in two steps.

    POST /admin/bulk          the ticked holds (or every held one the list's filters match, up to MAX_BULK) and an
                              action: answers a page that lists what would be done, changing nothing
    POST /admin/bulk/confirm  that page's form: the same ids and action under a token bound to them; each still
                              held recipient is decided as if its own button had been pressed (one atomic decision
                              each, the sender owed a notice), the others are said to be decided already

    holds = chosen(quarantine, "filter", (), {"domain": "gmial.com"})
    result = apply(decide, [h.id for h in holds], "cancel")

The confirmation's token (`token`) is an HMAC of the admin, the action and the exact ids, so the second step does
what the first one showed, and only that.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from rcptguard import logs
from rcptguard.store.quarantine import AlreadyDecided, Hold, NotFound, Quarantine
from rcptguard.web.listing import Listing, list_page

__all__ = ["ACTIONS", "MAX_BULK", "Applied", "apply", "chosen", "token"]

log = logging.getLogger("rcptguard.web")

MAX_BULK = 500  # held recipients one confirmation may decide
ACTIONS = {"release": "Release", "cancel": "Cancel (never send)"}


def token(secret: bytes, user: str, action: str, hold_ids: Sequence[str]) -> str:
    """The token of one confirmation: bound to the admin, the action and the ids, in their order."""
    bound = "\0".join(("admin-bulk", user, action, ",".join(hold_ids)))
    return hmac.new(secret, bound.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def chosen(quarantine: Quarantine, scope: str, hold_ids: Sequence[str], filters: Mapping[str, str]) -> list[Hold]:
    """The holds a bulk form names: the ticked ones (`scope` "selected"), or the held ones the list's filters
    match ("filter"; oldest first). At most MAX_BULK. ValueError for a filter that cannot be read; StoreError."""
    if scope == "filter":
        listing = replace(Listing.parse("held", "oldest", "1", None, filters), size=MAX_BULK)
        return list_page(quarantine, listing).holds
    return quarantine.get_many(list(dict.fromkeys(hold_ids))[:MAX_BULK])


@dataclass(slots=True)
class Applied:
    """What a confirmed bulk action did: the holds decided, and those decided already (or gone)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def apply(decide: Callable[[str], object], hold_ids: Sequence[str], action: str, user: str) -> Applied:
    """`decide(hold_id)` for each id, in order; AlreadyDecided and NotFound are skipped, a StoreError stops the
    run (what was done stays done). One log line with the counts."""
    applied = Applied()
    try:
        for hold_id in hold_ids:
            try:
                decide(hold_id)
                applied.done.append(hold_id)
            except (AlreadyDecided, NotFound):
                applied.skipped.append(hold_id)
    finally:
        left = len(hold_ids) - len(applied.done) - len(applied.skipped)
        logs.event(log, "admin_bulk", logging.ERROR if left else logging.INFO, user=user, action=action,
                   done=len(applied.done), skipped=len(applied.skipped), left=left)
    return applied
