"""The notice column keeps to the states of `schema.Notice`, as state and delivery keep to theirs since 0002:
a CHECK constraint on PostgreSQL; on SQLite, which cannot add one to an existing table (the events table's
foreign key forbids the rebuild), two triggers that refuse the same rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from rcptguard.store.schema import NOTICE_STATES, check_in

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_CONDITION = check_in("notice", NOTICE_STATES, nullable=True)
_TRIGGERS = {"insert": "ck_holds_notice_insert", "update": "ck_holds_notice_update"}


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for event, name in _TRIGGERS.items():
            column = "" if event == "insert" else " OF notice"
            op.execute(f"CREATE TRIGGER {name} BEFORE {event.upper()}{column} ON holds "
                       f"WHEN NOT ({check_in('NEW.notice', NOTICE_STATES, nullable=True)}) "
                       f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: ck_holds_notice'); END")
        return
    op.create_check_constraint("ck_holds_notice", "holds", _CONDITION)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for name in _TRIGGERS.values():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        return
    op.drop_constraint("ck_holds_notice", "holds", type_="check")
