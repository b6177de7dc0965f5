"""Archives written by the tests: messages, mbox files, Maildirs, folders of .eml, Postfix logs, trace exports."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

UTC = dt.UTC


@dataclass
class Sent:
    """One message as a test means it: who, to whom, when, and what it says."""

    sender: str
    to: tuple[str, ...]
    when: dt.datetime
    subject: str = "Hello"
    body: str = "Hello,\n\nsee you soon.\n"
    cc: tuple[str, ...] = ()
    message_id: str = ""
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)  # (name, mime type, content)
    html: str | None = None
    transfer: str | None = None  # "base64" or "quoted-printable" for the text part

    def build(self) -> bytes:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        if self.cc:
            message["Cc"] = ", ".join(self.cc)
        message["Subject"] = self.subject
        message["Date"] = format_datetime(self.when)
        message["Message-ID"] = f"<{self.message_id}>" if self.message_id else "<none@test>"
        message.set_content(self.body, cte=self.transfer)
        if self.html is not None:
            message.add_alternative(self.html, subtype="html")
        for name, mime, content in self.attachments:
            main, sub = mime.split("/", 1)
            message.add_attachment(content, maintype=main, subtype=sub, filename=name)
        return message.as_bytes()


def mbox_bytes(messages: list[bytes], senders: list[str] | None = None) -> bytes:
    """An mboxrd file: a `From ` line before each message, body lines starting with `>*From ` quoted once more."""
    out = io.BytesIO()
    for number, raw in enumerate(messages):
        who = senders[number] if senders else "MAILER-DAEMON"
        out.write(f"From {who} Thu Jan  1 00:00:00 2026\n".encode())
        body = re.sub(rb"(?m)^(>*From )", rb">\1", raw.replace(b"\r\n", b"\n"))
        out.write(body if body.endswith(b"\n") else body + b"\n")
        out.write(b"\n")
    return out.getvalue()


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    path.write_bytes(mbox_bytes(messages))
    return path


def write_maildir(path: Path, messages: list[bytes]) -> list[Path]:
    """A Maildir: even messages read (cur/ with flags), odd ones new; tmp/ holds a half-written one to ignore."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    written = []
    for number, raw in enumerate(messages):
        name = f"{1767225600 + number}.M{number}P1.host"
        target = path / "cur" / f"{name}:2,S" if number % 2 == 0 else path / "new" / name
        target.write_bytes(raw)
        written.append(target)
    (path / "tmp" / "1767225600.Mtmp.host").write_bytes(b"From: half@written.example\n")
    return written


def write_eml_dir(path: Path, messages: list[bytes]) -> list[Path]:
    """A folder of .eml files, half of them one folder deeper."""
    written = []
    for number, raw in enumerate(messages):
        folder = path / "sub" if number % 2 else path
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"message-{number:04d}.eml"
        target.write_bytes(raw)
        written.append(target)
    return written


@dataclass
class Delivery:
    """One message as Postfix logs it: a queue id, a sender, recipients with their status."""

    queue_id: str
    sender: str
    recipients: list[tuple[str, str]]  # (address, status)
    when: dt.datetime
    message_id: str = "id@test"


def postfix_lines(deliveries: list[Delivery], style: str = "classic", host: str = "mx1") -> list[str]:
    """The lines Postfix writes for each delivery, in `classic` syslog, `rfc3339` or `journal` (JSON) style."""
    lines = []
    for d in deliveries:
        events = [
            ("postfix/smtpd[101]", f"{d.queue_id}: client=localhost[127.0.0.1]"),
            ("postfix/cleanup[102]", f"{d.queue_id}: message-id=<{d.message_id}>"),
            ("postfix/qmgr[103]", f"{d.queue_id}: from=<{d.sender}>, size=1234, nrcpt={len(d.recipients)} (active)"),
        ]
        smtp = "to=<{}>, relay=mx.example[192.0.2.1]:25, delay=0.5, delays=0.1/0/0.2/0.2, dsn=2.0.0, status={} (250 Ok)"
        events += [("postfix/smtp[104]", f"{d.queue_id}: " + smtp.format(*sent)) for sent in d.recipients]
        events.append(("postfix/qmgr[103]", f"{d.queue_id}: removed"))
        for ident, message in events:
            lines.append(_log_line(d.when, host, ident, message, style))
    return lines


def _log_line(when: dt.datetime, host: str, ident: str, message: str, style: str) -> str:
    if style == "classic":
        return f"{when:%b} {when.day:2d} {when:%H:%M:%S} {host} {ident}: {message}"
    if style == "rfc3339":
        return f"{when.isoformat(timespec='microseconds')} {host} {ident}: {message}"
    name = ident.split("[", 1)[0]
    return json.dumps({"__REALTIME_TIMESTAMP": str(int(when.timestamp() * 1_000_000)), "_HOSTNAME": host,
                       "SYSLOG_IDENTIFIER": name, "_PID": "104", "MESSAGE": message})


def write_log(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def m365_trace_csv(rows: list[tuple[dt.datetime, str, str, str, str]], *, utf16: bool = False) -> bytes:
    """`Get-MessageTrace | Export-Csv` (Windows PowerShell 5.1: a #TYPE line first): (when, sender, recipient,
    status, message id)."""
    out = io.StringIO()
    out.write("#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace\n")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(["PSComputerName", "RunspaceId", "PSShowComputerName", "Organization", "MessageId", "Received",
                     "SenderAddress", "RecipientAddress", "Subject", "Status", "ToIP", "FromIP", "Size",
                     "MessageTraceId", "StartDate", "EndDate", "Index"])
    for number, (when, sender, rcpt, status, ident) in enumerate(rows):
        writer.writerow(["outlook.office365.com", "3f2a", "False", "contoso.onmicrosoft.com", f"<{ident}>",
                         f"{when.month}/{when.day}/{when.year} {when:%I:%M:%S %p}", sender, rcpt, "Report", status,
                         "", "192.0.2.7", "23456", "ae5c1219-4c90-41bf-fef5-08d837917e7c", "", "", str(number)])
    text = out.getvalue()
    return text.encode("utf-16") if utf16 else text.encode()


def m365_summary_csv(rows: list[tuple[dt.datetime, str, list[tuple[str, str]], str]]) -> bytes:
    """A historical search's "Enhanced summary" report: (when, sender, [(recipient, last event)], message id)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["origin_timestamp_utc", "sender_address", "recipient_status", "message_subject", "total_bytes",
                     "message_id", "network_message_id", "original_client_ip", "directionality", "connector_id",
                     "delivery_priority"])
    for when, sender, recipients, ident in rows:
        status = ";".join(f"{rcpt}##Receive, {event}" for rcpt, event in recipients)
        writer.writerow([when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), sender, status, "Report", "23456", f"<{ident}>",
                         "1341ac7b13fb42ab4d4408cf7f55890f", "192.0.2.7", "Originating", "", "Normal"])
    return out.getvalue().encode("utf-16")


def google_log_csv(rows: list[tuple[dt.datetime, str, str, str, str]]) -> bytes:
    """An Email Log Search export: (when, sender, recipient, message id, event target); each message's recipient
    on two rows (its delivery steps), as the export writes them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Message ID", "Start date", "End date", "Sender", "Message size", "Subject", "Direction",
                     "Attachments", "Recipient address", "Event target", "Event date", "Event status"])
    for when, sender, rcpt, ident, target in rows:
        stamp = when.strftime("%Y/%m/%d %H:%M:%S UTC")
        for step in ("SMTP_IN", target):
            writer.writerow([f"<{ident}>", stamp, stamp, sender, "23456", "Report", "Sent", "0", rcpt, step, stamp,
                             "DELIVERED"])
    return out.getvalue().encode()


def pdf_bytes(lines: list[str]) -> bytes:
    """A one-page PDF showing the lines in Helvetica (a real PDF: pypdf reads its text back)."""
    shown = " ".join("({}) Tj 0 -16 Td".format(line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)"))
                     for line in lines)
    stream = f"BT /F1 11 Tf 60 740 Td {shown} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
         b"/Resources << /Font << /F1 5 0 R >> >> >>"),
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    start = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, start))
    return out.getvalue()


def docx_bytes(paragraphs: list[str]) -> bytes:
    """A DOCX document with the paragraphs (python-docx)."""
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx_bytes(rows: list[list[str]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MRZ = ("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n"
       "L898902C36UTO7408122F1204159ZE184226B<<<<<10\n")  # the ICAO 9303 specimen
