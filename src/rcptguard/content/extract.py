"""Text out of a message: its text and HTML parts, and the common attachments (PDF, DOCX, XLSX), within a budget.

A message's parts are walked in order. Text parts are decoded (base64, quoted-printable, their charset; a charset
that does not exist is read as Latin-1); HTML is turned to text with the standard library's parser; PDF with
pypdf, DOCX with python-docx, XLSX with openpyxl (read-only). Every attachment is named and typed whether or
not its text is read. The `Limits` bound the work per message: octets decoded per part, characters of text in
all, seconds spent, and for the zip containers of DOCX and XLSX the declared uncompressed size and compression
ratio (a zip bomb is refused before it is opened). Whatever is skipped or cut is said in `Part.unread`.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import io
import logging
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser

log = logging.getLogger("rcptguard.content")


@dataclass(frozen=True, slots=True)
class Limits:
    """The budget of one message's scan."""

    part_octets: int = 10_000_000  # decoded octets of one part read at most
    text_chars: int = 2_000_000  # characters of text looked at, all parts together
    seconds: float = 2.0  # time spent extracting, checked between parts and pages
    unzipped_octets: int = 50_000_000  # declared uncompressed size of a DOCX or XLSX container
    zip_ratio: int = 100  # declared uncompressed / compressed size beyond which a container is a bomb
    parts: int = 200  # MIME parts walked


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a message: `body`, `html body` or `attachment NAME`, its type, its text (maybe empty)."""

    label: str
    content_type: str
    filename: str | None
    text: str
    unread: str | None = None  # why its text was not read, or was cut


class _Text(HTMLParser):
    """HTML to text: the data outside script and style, a line break at block ends; a table as the text of a
    spreadsheet: a row a line, its cells between " | " (the scanner reads a column under its header, a crew list
    sent as an HTML table), and the white space of the markup between cells made one space."""

    _SKIP = frozenset({"script", "style", "head"})
    _BLOCK = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "table", "pre"})
    _CELL = frozenset({"td", "th"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0
        self.tables = 0  # tables open

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        del attrs
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in self._BLOCK:
            self.out.append("\n")
            self.tables += tag == "table"

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self._CELL:
            self.out.append(" | ")
        elif tag == "tr":
            self.out.append("\n")
        elif tag in self._BLOCK:
            self.out.append("\n")
            self.tables = max(0, self.tables - (tag == "table"))

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.tables and data.isspace():  # the markup's indentation between cells and rows, or a space between
            data = " "                      # two words: one space either way, never a line break inside a row
        self.out.append(data)


def html_text(html: str) -> str:
    parser = _Text()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # the standard parser gives up on some broken markup
        pass
    return "".join(parser.out)


def _decode(part: Message, limits: Limits) -> tuple[bytes, str | None]:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError):
        return b"", "its transfer encoding is broken"
    if not isinstance(payload, bytes):
        return b"", None
    if len(payload) > limits.part_octets:
        return payload[: limits.part_octets], f"cut at {limits.part_octets:,} octets"
    return payload, None


def charset_text(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset that does not exist
        return data.decode("latin-1")


def _zip_bomb(data: bytes, limits: Limits) -> str | None:
    """Why a zip container must not be opened, or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return "not a readable zip container"
    if declared > limits.unzipped_octets:
        return f"it would unpack to {declared:,} octets"
    if declared > max(len(data), 1) * limits.zip_ratio:
        return f"it is compressed {declared // max(len(data), 1)}-fold (a zip bomb?)"
    return None


def _pdf_text(data: bytes, deadline: float) -> tuple[str, str | None]:
    from pypdf import PdfReader  # noqa: PLC0415 - loaded only when a PDF is met
    from pypdf.errors import PyPdfError  # noqa: PLC0415

    pages: list[str] = []
    try:
        for page in PdfReader(io.BytesIO(data)).pages:
            if time.monotonic() > deadline:
                return "\n".join(pages), "out of time"
            pages.append(page.extract_text() or "")
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        return "\n".join(pages), f"a broken PDF ({type(exc).__name__})"
    return "\n".join(pages), None


def _docx_text(data: bytes) -> tuple[str, str | None]:
    import docx  # noqa: PLC0415 - loaded only when a DOCX is met

    try:
        document = docx.Document(io.BytesIO(data))
    except (ValueError, KeyError, zipfile.BadZipFile, OSError) as exc:
        return "", f"a broken DOCX ({type(exc).__name__})"
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        lines.extend(" | ".join(cell.text for cell in row.cells) for row in table.rows)
    return "\n".join(lines), None


def _xlsx_text(data: bytes, limit: int) -> tuple[str, str | None]:
    import openpyxl  # noqa: PLC0415 - loaded only when a spreadsheet is met

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (ValueError, KeyError, zipfile.BadZipFile, OSError, TypeError) as exc:
        return "", f"a broken XLSX ({type(exc).__name__})"
    lines: list[str] = []
    size = 0
    try:
        for sheet in book.worksheets:
            for row in sheet.iter_rows(values_only=True):
                line = " | ".join("" if v is None else str(v) for v in row)
                lines.append(line)
                size += len(line)
                if size > limit:
                    return "\n".join(lines), "cut at the text budget"
    finally:
        book.close()
    return "\n".join(lines), None


DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _kind(content_type: str, filename: str | None) -> str:
    name = (filename or "").lower()
    if content_type == "application/pdf" or name.endswith(".pdf"):
        return "pdf"
    if content_type == DOCX or name.endswith(".docx"):
        return "docx"
    if content_type == XLSX or name.endswith(".xlsx"):
        return "xlsx"
    if content_type == "text/html" or name.endswith((".html", ".htm")):
        return "html"
    if content_type.startswith("text/") or name.endswith((".txt", ".csv")):
        return "text"
    return "other"


def _attachment_text(kind: str, data: bytes, charset: str | None, limits: Limits,
                     deadline: float) -> tuple[str, str | None]:
    if kind in {"docx", "xlsx"}:
        bomb = _zip_bomb(data, limits)
        if bomb is not None:
            return "", bomb
    if kind == "pdf":
        return _pdf_text(data, deadline)
    if kind == "docx":
        return _docx_text(data)
    if kind == "xlsx":
        return _xlsx_text(data, limits.text_chars)
    if kind == "html":
        return html_text(charset_text(data, charset)), None
    if kind == "text":
        return charset_text(data, charset), None
    return "", None


_MIME_FIELDS = frozenset({b"content-type", b"content-transfer-encoding", b"content-disposition"})


def head_end(raw: bytes) -> tuple[int, int] | None:
    """Where the header block ends: the span of its first blank line break (`\r?\n\r?\n`), found with two
    searches in C where a regular expression would try every octet of the header block."""
    crlf = raw.find(b"\n\r\n")
    lf = raw.find(b"\n\n", 0, len(raw) if crlf < 0 else crlf + 1)
    at = crlf if lf < 0 else lf
    if at < 0:
        return None
    return (at - 1 if at and raw[at - 1] == ord("\r") else at), at + (2 if at == lf else 3)


def mime_fields(head: bytes) -> dict[str, str]:
    """The Content-Type, -Transfer-Encoding and -Disposition fields of a header block, unfolded, white space made
    single spaces, names in lower case."""
    lines: list[bytes] = []
    for line in head.split(b"\n"):
        if lines and line[:1] in {b" ", b"\t"}:  # a folded field goes on
            lines[-1] += b"\n" + line
        else:
            lines.append(line)
    fields: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if colon and (name := name.strip().lower()) in _MIME_FIELDS:
            fields[name.decode("latin-1")] = " ".join(value.decode("latin-1").split())
    return fields
_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)


def charset_of(content_type: str) -> str | None:
    """The charset parameter of a Content-Type field's value, or None."""
    found = _CHARSET.search(content_type)
    return found[1] if found else None


TEXT_TYPES = frozenset({"text/plain", "text/html"})


def transfer_decoded(body: bytes, encoding: str) -> bytes:
    """A part's body with its Content-Transfer-Encoding (lower case) undone: base64 and quoted-printable decoded,
    anything else as it is; binascii.Error or ValueError when it is broken."""
    if encoding == "base64":
        return binascii.a2b_base64(body)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body)  # (what quopri.decodestring calls)
    return body


def single_part(raw: bytes, limits: Limits, types: frozenset[str] = TEXT_TYPES) -> Part | None:
    """A message that is one part of one of the `types` (text or HTML) read without the email package's parser
    (most mail is; the parser costs more than the scan), or None when it is anything else."""
    end = head_end(raw)
    if end is None:
        return None
    fields = mime_fields(raw[: end[0]])
    content_type = fields.get("content-type", "text/plain").split(";", 1)[0].strip().lower()
    encoding = fields.get("content-transfer-encoding", "7bit").strip().lower()
    if (content_type not in types or "attachment" in fields.get("content-disposition", "")
            or encoding not in {"7bit", "8bit", "binary", "base64", "quoted-printable"}):
        return None
    body = raw[end[1] : end[1] + limits.part_octets * 2]
    try:
        data = transfer_decoded(body, encoding)
    except (binascii.Error, ValueError):
        return None
    text = charset_text(data[: limits.part_octets], charset_of(fields.get("content-type", "")))
    cut = f"cut at {limits.part_octets:,} octets" if len(data) > limits.part_octets else None
    if content_type == "text/html":
        return Part("html body", content_type, None, html_text(text)[: limits.text_chars], cut)
    if len(text) > limits.text_chars:
        text, cut = text[: limits.text_chars], "cut at the text budget"
    return Part("body", content_type, None, text, cut)


def parts(raw: bytes, limits: Limits | None = None) -> Iterator[Part]:
    """The parts of a message with their text, within the limits; never raises on broken MIME."""
    limits = limits or Limits()
    single = single_part(raw, limits)
    if single is not None:
        yield single
        return
    deadline = time.monotonic() + limits.seconds
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    budget = limits.text_chars
    for number, part in enumerate(message.walk()):
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        try:
            filename = part.get_filename()
        except (LookupError, ValueError, UnicodeError):
            filename = "(a name that cannot be read)"
        if number >= limits.parts or time.monotonic() > deadline or budget <= 0:
            yield Part(_label(filename, content_type), content_type, filename, "", "not read: the message's "
                       "budget was spent")
            continue
        data, cut = _decode(part, limits)
        kind = _kind(content_type, filename)
        attached = filename is not None or part.get("Content-Disposition", "").lower().startswith("attachment")
        if attached:
            text, unread = _safely(kind, data, part.get_content_charset(), limits, deadline)
        elif kind in {"html", "text"}:
            decoded = charset_text(data, part.get_content_charset())
            text, unread = (html_text(decoded) if kind == "html" else decoded), None
        else:
            text, unread = "", None
        if len(text) > budget:
            text, unread = text[:budget], "cut at the text budget"
        budget -= len(text)
        yield Part(_label(filename, content_type, attached), content_type, filename, text, unread or cut)


def _safely(kind: str, data: bytes, charset: str | None, limits: Limits, deadline: float) -> tuple[str, str | None]:
    """An attachment's text; a library failing on hostile input is a part not read, never an error."""
    try:
        return _attachment_text(kind, data, charset, limits, deadline)
    except Exception as exc:  # third-party parsers over hostile input: any failure is "not read"
        log.debug("attachment not read", exc_info=exc)
        return "", f"not read ({type(exc).__name__})"


def _label(filename: str | None, content_type: str, attached: bool = True) -> str:
    if filename:
        return f"attachment {filename}"
    if content_type == "text/html":
        return "html body"
    return "body" if not attached else f"attachment ({content_type})"
