"""Retention on a real PostgreSQL server: the store's purge tests of tests/unit/test_retention.py, run again with
the store on this test's own PostgreSQL database (the correlated conditions and the deletes are the same SQL)."""

from __future__ import annotations

import pytest

from tests.unit.test_retention import (
    test_a_dry_run_changes_nothing,
    test_a_recent_decision_keeps_its_body,
    test_a_release_not_delivered_yet_keeps_its_body,
    test_an_expired_and_a_delivered_body_go_a_held_one_stays,
    test_an_owed_notice_keeps_its_body,
    test_one_recipient_still_held_keeps_the_message,
    test_records_are_deleted_after_their_period,
)

pytestmark = pytest.mark.integration

__all__ = [  # collected here once more, on PostgreSQL
    "test_a_dry_run_changes_nothing",
    "test_a_recent_decision_keeps_its_body",
    "test_a_release_not_delivered_yet_keeps_its_body",
    "test_an_expired_and_a_delivered_body_go_a_held_one_stays",
    "test_an_owed_notice_keeps_its_body",
    "test_one_recipient_still_held_keeps_the_message",
    "test_records_are_deleted_after_their_period",
]


@pytest.fixture
def db_url(postgres_url: str) -> str:
    """The store, its quarantine and links (tests/conftest.py) on this test's PostgreSQL database."""
    return postgres_url
