"""The private parts of aiosmtpd and asyncio that the relay's GuardedSMTP relies on, checked so that an upgrade
that moves them fails here, loudly, instead of in the mail path (docs/design.md, "The relay's SMTP server")."""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version

from aiosmtpd.smtp import SMTP


def test_aiosmtpd_is_a_tested_version() -> None:
    """The pinned range in pyproject.toml is the one these internals were read from."""
    major, minor, *_ = (int(part) for part in version("aiosmtpd").split(".")[:3])
    assert (major, minor) == (1, 4), version("aiosmtpd")


def test_the_session_methods_the_relay_overrides_exist() -> None:
    """GuardedSMTP overrides or calls these private methods with these parameters."""
    expected = {
        "_handle_client": ["self"],
        "_reset_timeout": ["self", "duration"],
        "_timeout_cb": ["self"],
        "_cb_client_connected": ["self", "reader", "writer"],
        "_create_envelope": ["self"],
        "_getaddr": ["self", "arg"],
        "eof_received": ["self"],
        "connection_lost": ["self", "error"],
        "push": ["self", "status"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(SMTP, name)).parameters) == parameters, name


def test_the_command_loop_restarts_the_timer_before_each_command() -> None:
    """NOOP and RSET put the idle deadline back because aiosmtpd restarts it just before calling a command, and
    the session ends at EOF because aiosmtpd cancels its loop there (GuardedSMTP.eof_received takes that over)."""
    loop = inspect.getsource(SMTP._handle_client)
    assert loop.index("self._reset_timeout()\n") < loop.index("await method(arg)")
    assert "self._reader.readuntil()" in loop
    assert "_handler_coroutine.cancel()" in inspect.getsource(SMTP.eof_received)
    init = inspect.getsource(SMTP.__init__)
    for attribute in ("self._timeout_duration", "self._timeout_handle"):
        assert attribute in init, attribute


def test_stream_reader_keeps_its_buffer_where_the_relay_looks() -> None:
    """DATA's leftover bytes go back into StreamReader._buffer after EOF, and a pipelined line is seen there."""
    loop = asyncio.new_event_loop()
    try:
        reader = asyncio.StreamReader(loop=loop)
        reader.feed_data(b"QUIT\r\n")
        reader.feed_eof()
        assert isinstance(reader._buffer, bytearray)
        assert reader._eof
    finally:
        loop.close()
