"""bench/bench_relay.py's traffic: the share of messages sent to the warned recipient, from sessions of their own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_relay


def _split(command: list[str]) -> tuple[int, int, str]:
    """(sessions, messages, recipient) of one smtp-source command."""
    return (int(command[command.index("-s") + 1]), int(command[command.index("-m") + 1]),
            command[command.index("-t") + 1])


def test_no_share_sends_everything_to_the_recipient_given() -> None:
    commands = bench_relay.sources(2525, 3000, "a@partner.example", 0.0)
    assert [_split(c) for c in commands] == [(20, 3000, "a@partner.example")]
    assert commands[0][-1] == "127.0.0.1:2525"


@pytest.mark.parametrize(("share", "warned", "sessions"), [(0.05, 150, 1), (0.1, 300, 2), (0.5, 1500, 10),
                                                            (0.001, 3, 1), (0.99, 2970, 19)])
def test_a_share_goes_to_the_warned_recipient_from_sessions_of_its_own(share: float, warned: int,
                                                                       sessions: int) -> None:
    passing, scanned = (_split(c) for c in bench_relay.sources(2525, 3000, "a@partner.example", share))
    assert scanned == (sessions, warned, bench_relay.WARNED)
    assert passing == (20 - sessions, 3000 - warned, "a@partner.example")


def test_every_message_warned_is_one_source() -> None:
    assert [_split(c) for c in bench_relay.sources(2525, 3000, "a@partner.example", 1.0)] == [
        (20, 3000, bench_relay.WARNED)]


def test_a_share_too_small_for_one_message_sends_none_warned() -> None:
    assert [_split(c) for c in bench_relay.sources(2525, 10, "a@partner.example", 0.01)] == [
        (20, 10, "a@partner.example")]
