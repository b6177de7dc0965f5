"""Confirmation links: the secret URL mailed to the sender of a held message, to confirm or correct it.

    links = Links(store)
    raw = links.issue(message_id, ttl=dt.timedelta(days=7))  # goes into the mail, never into the store
    info = links.resolve(raw)                                # LinkInfo, or LinkInvalid / LinkExpired
    links.mark_used_if_done(raw)                             # after a decision: used once nothing is held

Only the sha256 of a raw token is stored, so neither a copy of the database nor its backups hold working
links. The held notice's link is issued by the worker that claimed the notice (notify.send_owed), so of any
number of relays holding the same message one tells the sender (the quarantine's notice claim decides which). A
token is single-use in effect: each held recipient can be decided once (the quarantine's atomic decide), and once
every hold of the message is decided the link is marked used.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from rcptguard.errors import LinkError, LinkExpired, LinkInvalid
from rcptguard.store import Store, StoreError
from rcptguard.store import as_utc as _utc
from rcptguard.store import error_line as _one_line
from rcptguard.store import utc_now as _now
from rcptguard.store.schema import holds, links, messages

__all__ = ["TOKEN_BYTES", "LinkError", "LinkExpired", "LinkInfo", "LinkInvalid", "Links", "token_hash"]

TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 256 bits, 43 characters
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """A resolved link: `id` is the sha256 hex of the raw token (the stored key)."""

    id: str
    message_id: str
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None


def token_hash(raw: str) -> str:
    """The sha256 hex of a raw token: what the store keeps instead of the token."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _well_formed(raw: str) -> bool:
    return _TOKEN.fullmatch(raw) is not None


class Links:
    """Confirmation links in the store. Every method is safe to call from several threads and processes at once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    def issue(self, message_id: str, ttl: dt.timedelta) -> str:
        """A new raw token for a held message, valid for `ttl`; only its hash is stored.

        Raises ValueError for a non-positive ttl or a message that is not in the quarantine.
        """
        if ttl <= dt.timedelta(0):
            raise ValueError("a link needs a positive lifetime")
        raw = secrets.token_urlsafe(TOKEN_BYTES)
        now = _now()
        try:
            with self.engine.begin() as connection:
                found = connection.execute(select(messages.c.id).where(messages.c.id == message_id)).first()
                if found is None:
                    raise ValueError(f"no held message with id {message_id!r}")
                connection.execute(insert(links).values(
                    id=token_hash(raw), message_id=message_id, created_at=now, expires_at=now + ttl, used_at=None,
                ))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store the link: {_one_line(exc)}") from exc
        return raw

    def revoke(self, raw: str) -> None:
        """Forget a link (its notice could not be sent)."""
        link_id = token_hash(raw)
        try:
            with self.engine.begin() as connection:
                connection.execute(delete(links).where(links.c.id == link_id))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot remove the link: {_one_line(exc)}") from exc

    def resolve(self, raw: str) -> LinkInfo:
        """The link behind a raw token; LinkInvalid if malformed or unknown, LinkExpired if past its lifetime."""
        if not _well_formed(raw):
            raise LinkInvalid
        try:
            with self.engine.connect() as connection:
                row = connection.execute(select(links).where(links.c.id == token_hash(raw))).mappings().first()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the link: {_one_line(exc)}") from exc
        if row is None:
            raise LinkInvalid
        info = LinkInfo(
            id=row["id"], message_id=row["message_id"], created_at=_utc(row["created_at"]),
            expires_at=_utc(row["expires_at"]), used_at=None if row["used_at"] is None else _utc(row["used_at"]),
        )
        if _now() >= info.expires_at:
            raise LinkExpired(info.expires_at)
        return info

    def hold_ids(self, message_id: str) -> list[str]:
        """The ids of every hold of a message (whatever their state), in recipient order."""
        query = select(holds.c.id).where(holds.c.message_id == message_id).order_by(holds.c.recipient, holds.c.id)
        try:
            with self.engine.connect() as connection:
                return [str(hold_id) for hold_id in connection.execute(query).scalars()]
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the holds of the message: {_one_line(exc)}") from exc

    def mark_used_if_done(self, raw: str) -> bool:
        """Set used_at when no hold of the link's message is still held; True if this call set it."""
        if not _well_formed(raw):
            return False
        still_held = exists().where(and_(holds.c.message_id == links.c.message_id, holds.c.state == "held"))
        statement = update(links).where(
            links.c.id == token_hash(raw), links.c.used_at.is_(None), ~still_held,
        ).values(used_at=_now())
        try:
            with self.engine.begin() as connection:
                return bool(connection.execute(statement).rowcount == 1)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot mark the link used: {_one_line(exc)}") from exc
