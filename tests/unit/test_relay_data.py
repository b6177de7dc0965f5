"""The relay's DATA reader: chunks in, the same message out as a line-by-line SMTP reader would give."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcptguard.gateways.relay import _CRLFLines


def by_lines(stream: bytes, size_limit: int | None) -> tuple[bytes | None, bytes]:
    """The reference: lines end at CRLF only, a line "." ends the data, a leading dot is removed.
    Returns (message or None when over the limit, what follows the end)."""
    lines: list[bytes] = []
    position = 0
    while True:
        end = stream.index(b"\r\n", position) + 2
        line = stream[position:end]
        position = end
        if line == b".\r\n":
            break
        lines.append(line)
    message = b"".join(line[1:] if line.startswith(b".") else line for line in lines)
    size = sum(len(line) for line in lines)
    return (None if size_limit and size > size_limit else message), stream[position:]


def read(chunks: list[bytes], size_limit: int | None = None, *, eof: bool = False) -> tuple[bytes | None, bytes]:
    """Feed `chunks` to a real StreamReader one at a time while `read_data` reads; return its result and
    what is left in the reader afterwards."""

    async def run() -> tuple[bytes | None, bytes]:
        reader = asyncio.StreamReader(limit=1 << 16)

        async def feed() -> None:
            for chunk in chunks:
                reader.feed_data(chunk)
                await asyncio.sleep(0)
            if eof:
                reader.feed_eof()

        feeding = asyncio.create_task(feed())
        result = await asyncio.wait_for(_CRLFLines(reader).read_data(size_limit), 2)  # never hangs a test
        await feeding
        rest = b""
        while reader._buffer:  # what the session's next command would read
            rest += await reader.read(1 << 20)
        return result, rest

    return asyncio.run(run())


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(points) if b > a]


@pytest.mark.parametrize(("stream", "message", "rest"), [
    (b".\r\n", b"", b""),                                        # empty message: the first line is the end
    (b"\r\n.\r\n", b"\r\n", b""),                                # one empty line
    (b"a\r\n.\r\nQUIT\r\n", b"a\r\n", b"QUIT\r\n"),               # a pipelined command stays for the session
    (b"..\r\n.\r\n", b".\r\n", b""),                             # a stuffed dot line
    (b"a\r\n..b\r\n...\r\n.\r\n", b"a\r\n.b\r\n..\r\n", b""),
    (b"a\n.\nb\r.\rc\n.\r\n.\r\n", b"a\n.\nb\r.\rc\n.\r\n", b""),  # bare LF / CR never end a line
    (b"x\r\n.\r\n.\r\n", b"x\r\n", b".\r\n"),                     # the first end wins
])
def test_known_streams(stream: bytes, message: bytes, rest: bytes) -> None:
    assert read([stream]) == (message, rest)
    assert read([bytes([b]) for b in stream]) == (message, rest)  # one byte at a time


def test_long_lines_and_a_big_message() -> None:
    """No line-length limit inside DATA (the size limit is what bounds it); 5 MB in 64 KB chunks."""
    body = (b"x" * 300_000 + b"\r\n") * 17
    stream = body + b".\r\n"
    assert read(split(stream, list(range(0, len(stream), 65_536)))) == (body, b"")


def test_over_the_size_limit_is_read_to_its_end_and_dropped() -> None:
    body = b"y" * 999 + b"\r\n"
    assert read([body + b".\r\nRSET\r\n"], size_limit=1000) == (None, b"RSET\r\n")
    assert read([body + b".\r\n"], size_limit=1001) == (body, b"")
    big = [b"z" * 4096 + b"\r\n"] * 1000 + [b".\r\nNOOP\r\n"]
    assert read(big, size_limit=10_000) == (None, b"NOOP\r\n")


def test_connection_closed_before_the_end() -> None:
    with pytest.raises(asyncio.CancelledError):
        read([b"half a message\r\n"], eof=True)


_BYTES = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b"\x00", b"\xff", b"\r\n.",
                                   b"QUIT", b"\r\n.\r\n"]), max_size=40).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(head=_BYTES, tail=_BYTES, cuts=st.lists(st.integers(min_value=0), max_size=8),
       limit=st.one_of(st.none(), st.integers(min_value=1, max_value=60)))
def test_same_as_reading_line_by_line(head: bytes, tail: bytes, cuts: list[int], limit: int | None) -> None:
    """For any bytes, cut anywhere: the same message, the same end, the same leftover as the reference."""
    stream = head + b"\r\n.\r\n" + tail  # always has an end somewhere
    assert read(split(stream, cuts), size_limit=limit) == by_lines(stream, limit)
