"""Mailboxes: mbox files, Maildir folders, folders of .eml files and single .eml files.

Only the header block of each message is read while records stream (the body stays on disk until
`Record.content()` asks for it), so a 5 GB mbox is read in flat memory: the mbox is searched in 1 MiB blocks for
the lines that start a message (`From ` at the start of a line, as Python's `mailbox` module splits), and each
message's header block is read apart, at most `MAX_HEADER_BLOCK` octets of it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from rcptguard.sources.addresses import (
    MAX_HEADER_BLOCK,
    addresses_in,
    header_fields,
    header_text,
    message_id,
    normal_address,
    parse_date,
)
from rcptguard.sources.record import Problems, Record, Source

ADDRESS_FIELDS = frozenset({b"from", b"to", b"cc", b"bcc"})
CHUNK = 1 << 20
FIRST_READ = 1 << 16  # most header blocks fit in this; a longer one is read again, up to MAX_HEADER_BLOCK
_FROM_LINE = re.compile(rb"From (\S+)[ \t]+(.*?)\r?$")
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)
_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")


def read_span(path: str, start: int, end: int, unquote: bool = False) -> bytes:
    """Octets `start`..`end` of a file; an mbox message loses its `From ` line and one `>` of quoted ones."""
    with Path(path).open("rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    if not unquote:
        return data
    newline = data.find(b"\n")
    body = data[newline + 1 :] if data.startswith(b"From ") and newline >= 0 else data
    return _QUOTED_FROM.sub(rb"\1", body)


def read_file(path: str) -> bytes:
    return Path(path).read_bytes()


def header_block(data: bytes) -> tuple[bytes, bool]:
    """The header block at the start of `data`, and whether its end (an empty line) was found."""
    found = _END_OF_HEADERS.search(data)
    if found is None:
        return data, False
    return data[: found.start() + 1], True


def message_record(block: bytes, where: str, problems: Problems, *, loader: Callable[[], bytes] | None = None,
                   envelope: str | None = None,
                   fallback_when: Callable[[], dt.datetime | None] | None = None) -> Record:
    """The record of one message from its header block; damage is counted in `problems`."""
    if b"\x00" in block:
        problems.add("binary", where, "NUL octets in the header block")
    fields, damaged = header_fields(block.replace(b"\x00", b""))
    if damaged:
        problems.add("unparsable header line", where)
    texts: dict[bytes, str] = {}
    not_utf8 = False
    for name, values in fields.items():
        decoded = [header_text(v, name not in ADDRESS_FIELDS) for v in values]
        not_utf8 = not_utf8 or any(bad for _, bad in decoded)
        texts[name] = ", ".join(text for text, _ in decoded) if name in {b"to", b"cc", b"bcc"} else decoded[0][0]
    if not_utf8:
        problems.add("not UTF-8", where, "a header is neither UTF-8 nor a valid encoded word")
    recipients: list[str] = []
    bad = 0
    for name in (b"to", b"cc", b"bcc"):
        if name in texts:
            found, unread = addresses_in(texts[name])
            recipients.extend(a for a in found if a not in recipients)
            bad += unread
    sender = envelope or ""
    if not sender and b"from" in texts:
        senders, unread = addresses_in(texts[b"from"])
        sender, bad = (senders[0] if senders else ""), bad + unread
    if bad:
        problems.add("bad address", where, f"{bad} address(es) could not be read")
    when = parse_date(texts[b"date"]) if b"date" in texts else None
    if when is None and fallback_when is not None:
        when = fallback_when()
    return Record(when=when, sender=sender, recipients=tuple(recipients),
                  message_id=message_id(texts.get(b"message-id", "")), where=where, status=None,
                  subject=texts.get(b"subject"), loader=loader)


def _read_header(handle: BinaryIO, start: int, end: int) -> tuple[bytes, bool]:
    """The first line and header block of the message at `start`..`end`; False when its end was not found."""
    handle.seek(start)
    size = min(end - start, FIRST_READ)
    data: bytes = handle.read(size)
    block, complete = header_block(data)
    if not complete and end - start > size:
        data += handle.read(min(end - start, MAX_HEADER_BLOCK) - size)
        block, complete = header_block(data)
    return block, complete


class Mbox(Source):
    """An mbox file (`From ` lines between messages), or a byte range of one for a worker of a process pool."""

    format = "mbox"

    def __init__(self, path: Path, begin: int = 0, end: int | None = None) -> None:
        super().__init__(path)
        self.begin = begin
        self.end = end

    def parts(self, wanted: int) -> list[Source]:
        size = self.path.stat().st_size if self.end is None else self.end
        if wanted <= 1 or size - self.begin < 4 * CHUNK:
            return [self]
        step = (size - self.begin) // wanted + 1
        return [Mbox(self.path, start, min(start + step, size)) for start in range(self.begin, size, step)]

    def _starts(self, size: int) -> Iterator[int]:
        """The offsets where messages start in [begin, end), then the first start after it (or the file size)."""
        with self.path.open("rb") as handle:  # its own handle: the caller reads header blocks in between
            yield from self._search(handle, size)

    def _search(self, handle: BinaryIO, size: int) -> Iterator[int]:
        end = size if self.end is None else self.end
        handle.seek(0)
        if self.begin == 0 and handle.read(5) == b"From ":
            yield 0
        base = max(self.begin - 1, 0)
        handle.seek(base)
        carry = b""
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            data = carry + chunk
            found = data.find(b"\nFrom ")
            while found >= 0:
                offset = base + found + 1
                if offset >= end:
                    yield offset
                    return
                if offset >= self.begin:
                    yield offset
                found = data.find(b"\nFrom ", found + 1)
            carry = data[-5:]
            base += len(data) - len(carry)
        yield size

    def records(self) -> Iterator[Record]:
        path = str(self.path)
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            self.problems.add("unreadable", path, exc.strerror or str(exc))
            return
        with handle:
            size = self.path.stat().st_size
            starts = self._starts(size)
            start = next(starts, size)
            if self.begin == 0 and start > 0:
                self.problems.add("not mbox", path, f"{start} octets before the first 'From ' line skipped")
            for following in starts:
                if start >= size or (self.end is not None and start >= self.end):
                    break
                yield from self._message(handle, start, following, size)
                start = following
            if self.end is None or self.end >= size:
                handle.seek(max(size - 1, 0))
                if size and handle.read(1) != b"\n":
                    self.problems.add("truncated", path, "the file does not end with a line break")

    def _message(self, handle: BinaryIO, start: int, end: int, size: int) -> Iterator[Record]:
        where = f"{self.path}:{start}"
        data, complete = _read_header(handle, start, end)
        newline = data.find(b"\n")
        first, block = data[:newline], data[newline + 1 :]
        if not complete and end - start > MAX_HEADER_BLOCK:
            self.problems.add("header too long", where, f"no end of the header block in {MAX_HEADER_BLOCK} octets")
            return
        if not complete and end >= size:
            self.problems.add("truncated", where, "the file ends inside the message's header block")
        match = _FROM_LINE.match(first)
        envelope = None
        if match is not None and b"@" in match[1] and match[1].upper() != b"MAILER-DAEMON":
            envelope = normal_address(match[1].decode("utf-8", "replace"))
        loader = functools.partial(read_span, str(self.path), start, end, unquote=True)
        yield message_record(block, where, self.problems, loader=loader, envelope=envelope,
                             fallback_when=functools.partial(_from_line_time, match[2] if match else b""))


def _from_line_time(text: bytes) -> dt.datetime | None:
    """The date of an mbox `From ` line (`Thu Jan  1 00:00:00 2026`, read as UTC)."""
    try:
        when = dt.datetime.strptime(" ".join(text.decode("ascii", "replace").split()[:5]), "%a %b %d %H:%M:%S %Y")  # noqa: DTZ007 - UTC below
    except ValueError:
        return None
    return when.replace(tzinfo=dt.UTC)


class MessageFiles(Source):
    """Messages one a file: a Maildir (`cur/` and `new/`, flags after `:2,`), a folder of .eml, or one .eml."""

    def __init__(self, path: Path, format_name: str, files: list[Path] | None = None) -> None:
        super().__init__(path)
        self.format = format_name
        self.files = files

    def message_files(self) -> list[Path]:
        """The message files this source reads, in order."""
        if self.files is not None:
            return self.files
        if self.format == "eml":
            return [self.path]
        if self.format == "maildir":
            return sorted(p for sub in ("cur", "new") if (self.path / sub).is_dir()
                          for p in (self.path / sub).iterdir() if p.is_file() and not p.name.startswith("."))
        return sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() == ".eml")

    def parts(self, wanted: int) -> list[Source]:
        files = self.message_files()
        if wanted <= 1 or len(files) < 2 * wanted:
            return [self]
        step = len(files) // wanted + 1
        return [MessageFiles(self.path, self.format, files[i : i + step]) for i in range(0, len(files), step)]

    def records(self) -> Iterator[Record]:
        for path in self.message_files():
            try:
                with path.open("rb") as handle:
                    size = path.stat().st_size
                    data, complete = _read_header(handle, 0, size)
                    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
            except OSError as exc:
                self.problems.add("unreadable", str(path), exc.strerror or str(exc))
                continue
            if not complete and size > MAX_HEADER_BLOCK:
                self.problems.add("header too long", str(path), f"no end of the header block in {MAX_HEADER_BLOCK} "
                                  "octets")
                continue
            yield message_record(data, str(path), self.problems, loader=functools.partial(read_file, str(path)),
                                 fallback_when=functools.partial(_file_time, path, mtime))


def _file_time(path: Path, mtime: dt.datetime) -> dt.datetime:
    """The delivery time a Maildir file name starts with (seconds since the epoch), else the file's time."""
    head = path.name.split(".", 1)[0]
    if not head.isdigit() or len(head) > 12:
        return mtime
    return dt.datetime.fromtimestamp(int(head), dt.UTC)
