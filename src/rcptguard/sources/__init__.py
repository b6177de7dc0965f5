"""Archive readers: what an organisation already sent, from its logs, mailboxes and hosted mail's exports.

    detect(path) -> "postfix-log" | "mbox" | "maildir" | "eml-dir" | "eml" | "m365-trace" | "google-log" | "counts"
    open_source(path, format=None) -> Source       one archive
    open_sources(paths) -> list[Source]            several, folders walked (rotated logs read as one stream)

A `Source` streams `Record`s (one per message, or per delivery in logs and traces) in flat memory and counts
what it cannot use in `Source.problems` instead of raising: a truncated mbox, binary junk, a header that is not
UTF-8, a line that is not a log line, an address that is not one. Only a path that cannot be read at all, or
whose format is none of the above, raises `SourceError`.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from rcptguard.errors import SourceError
from rcptguard.sources.addresses import normal_address
from rcptguard.sources.mailbox import Mbox, MessageFiles
from rcptguard.sources.postfix import PostfixLog
from rcptguard.sources.record import Problems, Record, Source
from rcptguard.sources.traces import CountsSource, TraceSource, csv_header, open_text

__all__ = ["FORMATS", "Problems", "Record", "Source", "SourceError", "detect", "normal_address", "open_source",
           "open_sources"]

FORMATS = ("postfix-log", "mbox", "maildir", "eml-dir", "eml", "m365-trace", "google-log", "counts")
HEAD = 1 << 16
_POSTFIX = re.compile(rb"^\S.{0,40}? \S+ postfix[^\s\[:]*(?:\[\d+\])?: ", re.MULTILINE)
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_MESSAGE_HEADERS = {b"from", b"to", b"cc", b"subject", b"date", b"received", b"message-id", b"return-path",
                    b"mime-version", b"delivered-to", b"x-mailer", b"content-type"}


def _head(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read(HEAD)
        with path.open("rb") as handle:
            return handle.read(HEAD)
    except (EOFError, zlib.error, gzip.BadGzipFile):
        return b""
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _csv_format(path: Path) -> str | None:
    try:
        with open_text(path) as handle:
            names = set(csv_header(handle)[0])
    except (OSError, UnicodeError):
        return None
    if {"senderaddress", "recipientaddress"} <= names or {"sender_address", "recipient_status"} <= names:
        return "m365-trace"
    if {"sender", "recipient address"} <= names:
        return "google-log"
    return None


def _looks_like_message(head: bytes) -> bool:
    lines = head.split(b"\n", 20)[:20]
    names = set()
    for line in lines:
        if not line.strip():
            break
        if line[:1] in b" \t":
            continue
        match = _HEADER_LINE.match(line)
        if match is None:
            return False
        names.add(match[0].rstrip(b": \t").lower())
    return len(names & _MESSAGE_HEADERS) >= 2


def _looks_like_counts(head: bytes) -> bool:
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()[:50]]
    lines = [line for line in lines if line]
    if lines and lines[0].split(",")[0].strip().strip('"').lower() in {"domain", "address", "recipient", "email"}:
        lines = lines[1:]
    if not lines:
        return False
    return all(re.fullmatch(r'"?[^\s,;"]+\.[^\s,;"]+"?(?:[\s,;]+"?\d+"?)?', line) for line in lines[:-1] or lines)


def detect_file(path: Path) -> str | None:
    """The format of one file, or None when it is none rcptguard reads."""
    head = _head(path)
    if head.startswith(b"From "):
        return "mbox"
    first = head.lstrip()[:1]
    if first == b"{" and b'"MESSAGE"' in head:
        return "postfix-log"
    if _POSTFIX.search(head):
        return "postfix-log"
    found = _csv_format(path) if path.suffix != ".gz" else None
    if found:
        return found
    if _looks_like_message(head):
        return "eml"
    if _looks_like_counts(head):
        return "counts"
    return None


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def detect(path: Path | str) -> str:
    """The format of an archive: a file, a Maildir, a folder of .eml or a folder of (rotated) Postfix logs."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_dir():
        if _is_maildir(path):
            return "maildir"
        if next((p for p in path.rglob("*.eml") if p.is_file()), None) is not None:
            return "eml-dir"
        files = [p for p in path.iterdir() if p.is_file() and p.stat().st_size]
        if files and all(detect_file(p) == "postfix-log" for p in files):
            return "postfix-log"
        raise SourceError(f"{path}: a folder that is not a Maildir, a folder of .eml files or of Postfix logs")
    found = detect_file(path)
    if found is None:
        raise SourceError(f"{path}: not a format rcptguard reads ({', '.join(FORMATS)})")
    return found


def open_source(path: Path | str, format: str | None = None) -> Source:  # noqa: A002 - the contract's name
    """One archive opened for reading, its format detected unless given."""
    path = Path(path)
    kind = format or detect(path)
    if kind not in FORMATS:
        raise SourceError(f"unknown format {kind!r} (expected one of {', '.join(FORMATS)})")
    if kind == "postfix-log":
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        return PostfixLog(path, files)
    if kind == "mbox":
        return Mbox(path)
    if kind in {"maildir", "eml-dir", "eml"}:
        return MessageFiles(path, kind)
    if kind == "counts":
        return CountsSource(path)
    return TraceSource(path, kind)


class Unknown(Source):
    """A file met while walking a folder that is in no format rcptguard reads: no records, one problem."""

    format = "unknown"

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(path)
        self.problems.add("unknown format", str(path), why)

    def records(self) -> Iterator[Record]:
        return iter(())


def open_sources(paths: Iterable[Path | str]) -> list[Source]:
    """Every archive under the paths: a Maildir or folder of .eml is one source, the Postfix logs of one folder
    one stream (rotated files oldest first), other folders walked. A path given that cannot be read raises
    SourceError; a file met while walking that is in no known format becomes an `Unknown` source."""
    out: list[Source] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            out.append(open_source(path))
            continue
        out.extend(_walk(path))
    return out


def _walk(folder: Path) -> Iterator[Source]:
    if _is_maildir(folder):
        yield MessageFiles(folder, "maildir")
        return
    logs: list[Path] = []
    emls = False
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            yield from _walk(path)
            continue
        if not path.stat().st_size:
            continue
        if path.suffix.lower() == ".eml":
            emls = True
            continue
        try:
            kind = detect_file(path)
        except SourceError as exc:
            yield Unknown(path, str(exc))
            continue
        if kind == "postfix-log":
            logs.append(path)
        elif kind is None:
            yield Unknown(path, "not a format rcptguard reads")
        else:
            yield open_source(path, kind)
    if logs:
        yield PostfixLog(folder if len(logs) > 1 else logs[0], logs)
    if emls:
        yield MessageFiles(folder, "eml-dir", sorted(p for p in folder.iterdir() if p.suffix.lower() == ".eml"))
