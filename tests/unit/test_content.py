"""Unit tests for the sensitivity scanner (`rcptguard.content`): what raises a signal, what does not, and the
budget that bounds a message's scan."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
import zipfile

import pytest

from rcptguard.content import LIGHT_OCTETS, Limits, Severity, scan_light, scan_message
from rcptguard.content.detectors import _PASSPORT_WORDS, DETECTORS, GATED, Text, column, detect
from tests.support.archives import DOCX, MRZ, PDF, XLSX, Sent, docx_bytes, pdf_bytes, xlsx_bytes

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


FIRES = [
        ("SECRET//NOFORN\n\nThe convoy leaves at dawn.\n\nSECRET//NOFORN\n", "MARKING_CLASSIFIED", Severity.HIGH),
        ("TOP SECRET\nOperation details follow.\n", "MARKING_CLASSIFIED", Severity.HIGH),
        ("(S//NF) The route is via the northern pass.\n", "MARKING_CLASSIFIED", Severity.HIGH),
        ("VS-VERTRAULICH\nDie Besatzungsliste folgt.\n", "MARKING_CLASSIFIED", Severity.HIGH),
        ("SECRET DÉFENSE\nLa liste de l'équipage suit.\n", "MARKING_CLASSIFIED", Severity.HIGH),
        ("CUI\nControlled by: Army\nThe schedule is attached.\n", "MARKING_HANDLING", Severity.MEDIUM),
        ("This memo is FOR OFFICIAL USE ONLY.\n", "MARKING_HANDLING", Severity.MEDIUM),
        ("PROTECTED B when completed\n", "MARKING_HANDLING", Severity.MEDIUM),
        ("VS-NUR FÜR DEN DIENSTGEBRAUCH\nDie Liste der Besatzung folgt.\n", "MARKING_HANDLING", Severity.MEDIUM),
        ("Document à diffusion restreinte : ne pas transférer.\n", "MARKING_HANDLING", Severity.MEDIUM),
        ("Strictly confidential: the merger terms.\n", "MARKING_CONFIDENTIAL", Severity.LOW),
        ("Traveller:\n" + MRZ, "PASSPORT", Severity.HIGH),
        ("Her passport number is X1234567, valid to 2030.\n", "PASSPORT", Severity.MEDIUM),
        ("Employee SSN: 536-22-8726\n", "NATIONAL_ID", Severity.HIGH),
        ("DNI 12345678Z\n", "NATIONAL_ID", Severity.HIGH),
        ("BSN: 111222333\n", "NATIONAL_ID", Severity.HIGH),
        ("Card: 4111 1111 1111 1111 exp 12/28\n", "PAYMENT_CARD", Severity.HIGH),
        ("Please pay to DE89 3704 0044 0532 0130 00 by Friday.\n", "IBAN", Severity.MEDIUM),
        ("The VPN password: Tr0ub4dor&3\n", "CREDENTIAL", Severity.HIGH),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
         "CREDENTIAL", Severity.HIGH),
        ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n", "CREDENTIAL", Severity.HIGH),
        ("token ghp_" + "a1B2" * 9 + "\n", "CREDENTIAL", Severity.HIGH),
        ("Booking reference: QX7T2M\n", "TRAVEL", Severity.MEDIUM),
        ("Flight AF 1234 departs 14 Mar 2026 from CDG, gate 32.\n", "TRAVEL", Severity.MEDIUM),
        ("Flight LH 400 departs Frankfurt 14.03.2026 at 10:05.\n", "TRAVEL", Severity.MEDIUM),
        ("Your flight UA 901 departs on March 14, 2026.\n", "TRAVEL", Severity.MEDIUM),
        ("Flug LH400, Abflug 14.03.2026 um 10:05 Uhr.\n", "TRAVEL", Severity.MEDIUM),
        ("The patient was diagnosed with diabetes; prescription attached.\n", "MEDICAL", Severity.MEDIUM),
        ("Diagnose: Diabetes Typ 2. Medikation: Metformin. Krankmeldung bis Freitag.\n", "MEDICAL", Severity.MEDIUM),
        ("Cancer du sein : ordonnance jointe, arrêt maladie de deux semaines.\n", "MEDICAL", Severity.MEDIUM),
        ("Adjunto la receta médica y la baja médica.\n", "MEDICAL", Severity.MEDIUM),
]


@pytest.mark.parametrize(("body", "name", "severity"), FIRES)
def test_each_detector_fires(body: str, name: str, severity: Severity) -> None:
    """Each kind of sensitive content raises its named signal at its severity."""
    result = scan_message(Sent("a@example.com", ("b@army.ml",), T0, body=body).build())
    found = {s.name: s.severity for s in result.signals}
    assert found.get(name) == severity, result.signals
    assert result.severity >= severity


ALONE = [  # each alone on its line, no other number near it: the windows the detectors read must still hold it
        ("Il codice fiscale del paziente: RSSMRA85T10A562S.\n", "Italy codice fiscale (check digit)"),
        ("Henkilötunnus 131052-308T\n", "Finland HETU (check digit)"),
        ("Numéro de sécurité sociale : 2 95 10 99 126 111 93\n", "France NIR (check digit)"),
        ("PESEL: 44051401359\n", "Poland PESEL (check digit)"),
        ("Ditt personnummer är 880320-0016.\n", "Sweden personnummer (check digit)"),
        ("CPR-nr. 211062-5629\n", "Denmark CPR (check digit)"),
        ("Fødselsnummer: 15108695088\n", "Norway fødselsnummer (check digit)"),
        ("Steuer-ID 36 574 261 809\n", "Germany IdNr (check digit)"),
        ("SIN: 130 692 544\n", "Canada SIN (check digit)"),
        ("Aadhaar 2341 2341 2346\n", "India Aadhaar (check digit)"),
        ("api_key = AbCdEf1234567890XyZqw\n", "API key assignment"),
        ("access_token: AbCdEf1234567890XyZqwe\n", "API key assignment"),
        ("client_secret=AbCdEf1234567890XyZqwe\n", "API key assignment"),
        ("sk_live_" + "a1B2c3D4" * 3 + " is the key\n", "Stripe secret key"),
        ("My password is: hunter22\n", "a password after the word 'password'"),
        ("Reisepassnummer: C01X00T47\n", "passport number after the word 'passport'"),
        ("Número de pasaporte: XDB123456\n", "passport number after the word 'passport'"),
]


@pytest.mark.parametrize(("body", "pattern"), ALONE)
def test_every_national_id_and_key_form_is_found_alone(body: str, pattern: str) -> None:
    """Every identity number and key form the scanner names is found with the words it usually comes with and no
    other number near it (a window that starts at the word found must not cut a pattern that starts before it:
    client_secret, sécurité sociale, fødselsnummer; a codice fiscale has no run of four digits)."""
    result = scan_message(Sent("a@example.com", ("b@army.ml",), T0, body=body).build())
    assert pattern in {s.evidence["pattern"] for s in result.signals}, result.signals


ORDINARY = [
        "Let's keep this secret until the party on Friday!\n",  # lower-case secret: not a marking
        "Call me at 555-0123 or on 123-45-678 or 0049-30-1234.\n",  # not SSN shapes
        "SSN 000-12-3456 and 666-12-3456 and 900-12-3456\n",  # invalid areas
        "Order number 4111 1111 1111 1112\n",  # fails Luhn
        "Reference DE89 3704 0044 0532 0130 01\n",  # fails mod 97
        "The password field must be at least 8 characters\n",  # no value after it
        "The password is required to log in, and it expires monthly.\n",  # prose after 'is'
        "Password - please reset it before Friday.\n",  # prose after a dash
        "Lunch on Thursday at noon? The new place on 5th Avenue.\n",
        "Passport photos are in the other folder.\n",  # no number after the word
        "Wir machen eine Diagnose des Netzwerks und einen Befund der Server.\n",  # a network's diagnosis
        "Run the diagnostic and send the diagnosis of the server.\n",
        "Das bleibt geheim, versprochen: der GEHEIMDIENST-Film läuft am Freitag.\n",  # not a marking
]


@pytest.mark.parametrize("body", ORDINARY)
def test_ordinary_text_raises_nothing(body: str) -> None:
    """Ordinary text, and numbers whose check digits fail, raise no signal."""
    result = scan_message(Sent("a@example.com", ("b@army.ml",), T0, body=body).build())
    assert result.severity == Severity.NONE, result.signals


def test_a_detector_is_left_out_only_when_it_could_find_nothing() -> None:
    """`detect` gives a text only to the detectors whose words (or runs of digits) it has: on every sample above, in
    upper case, after a character whose lower case is longer (İ: offsets in the lower-case text do not match), and
    repeated, it finds exactly what every detector run on the text finds."""
    bodies = [body for body, *_ in FIRES] + [body for body, _ in ALONE] + ORDINARY + [MRZ]
    left_out = 0
    for body in bodies:
        for variant in (body, body.upper(), "İstanbul, " + body, body * 3, body.replace("\n", "\r\n")):
            everything = [hit for detector in DETECTORS for hit in detector(Text(variant))]
            assert list(detect(Text(variant))) == everything, variant
            text = Text(variant)
            left_out += sum(1 for detector, words, digits in GATED
                            if not (digits and text.numbers) and words.isdisjoint(text.positions))
    assert left_out > 3 * len(bodies)  # most samples are of one kind: the others' detectors are left out


def test_values_never_in_the_evidence() -> None:
    """The evidence names the part and the pattern, never the value found."""
    secrets = ["536-22-8726", "4111 1111 1111 1111", "Tr0ub4dor&3", "DE89 3704 0044 0532 0130 00", "X1234567"]
    body = ("SSN 536-22-8726\nCard 4111 1111 1111 1111\npassword: Tr0ub4dor&3\n"
            "IBAN DE89 3704 0044 0532 0130 00\npassport X1234567\n")
    result = scan_message(Sent("a@example.com", ("b@army.ml",), T0, body=body).build())
    dumped = json.dumps(result.to_json())
    assert {s.name for s in result.signals} >= {"NATIONAL_ID", "PAYMENT_CARD", "CREDENTIAL", "IBAN", "PASSPORT"}
    for secret in secrets:
        assert secret not in dumped
        assert secret.replace(" ", "") not in dumped


def test_reason_names_what_raised_it() -> None:
    """The reason is a sentence for the sender naming what raised the severity."""
    result = scan_message(Sent("a@example.com", ("b@army.ml",), T0, body="Crew passport number P1234567\n"
                               "SSN 536-22-8726\n").build())
    assert result.severity == Severity.HIGH
    assert result.reason() == "It contains what looks like a national identity number."
    assert "passport" in json.dumps(result.to_json())


def test_passport_numbers_in_a_column_of_a_table() -> None:
    """A crew list as a table (CSV, a spreadsheet, a document's table in the body): the passport numbers under a
    header cell naming them are found, whatever the file is called; the other columns' numbers are not passports."""
    crew = [["Name", "Nationality", "Passport No.", "Room"], ["John Smith", "GB", "X1234567", "12"],
            ["Anna Lee", "US", "584720193", "14"], ["Ivo Horvat", "HR", "C01X00T47", "15"]]
    sent = Sent("a@example.com", ("b@army.ml",), T0, body="Name | Reisepass | Zimmer\nHans | C02Y11T58 | 12\n",
                attachments=[
                    ("list.csv", "text/csv", "\n".join(",".join(row) for row in crew).encode()),
                    ("rooms.xlsx", XLSX, xlsx_bytes(crew)),
                ])
    signals = scan_message(sent.build()).signals
    found = {(s.evidence["part"], s.evidence["pattern"]): s.evidence["count"] for s in signals if s.name == "PASSPORT"}
    column = "passport numbers in a column headed 'passport'"
    assert found == {("attachment list.csv", column): "3", ("attachment rooms.xlsx", column): "3",
                     ("body", column): "1"}


def test_social_security_numbers_in_a_column_of_a_table() -> None:
    """SSNs written without dashes under a header cell "SSN" are found; with dashes they are found by their shape,
    and counted once."""
    table = ("Employee;SSN;Start\nA. Smith;536228726;2024-01-02\nB. Jones;536-22-8727;2024-02-03\n"
             "C. Wu;000112222;2024-03-04\nD. Roe;536228728;2024-04-05\n")
    signals = scan_message(Sent("a@example.com", ("b@army.ml",), T0, body=table).build()).signals
    found = {s.evidence["pattern"]: s.evidence["count"] for s in signals if s.name == "NATIONAL_ID"}
    assert found == {"US SSN after 'SSN'": "1",  # the first row: near enough the word
                     "US SSN (area, group and serial rules)": "1", "US SSN in a column headed 'SSN'": "1"}


def test_passport_numbers_in_an_html_table() -> None:
    """A crew list sent as an HTML table, indented as mail programs write it: the passports under its header."""
    rows = "".join(f"\n  <tr>\n    <td>{name}</td>\n    <td>{number}</td>\n  </tr>"
                   for name, number in [("John Smith", "X1234567"), ("Anna Lee", "584720193")])
    html = f"<p>The crew:</p>\n<table>\n  <tr>\n    <th>Name</th>\n    <th>Passport</th>\n  </tr>{rows}\n</table>"
    signals = scan_message(Sent("a@example.com", ("b@army.ml",), T0, body="The crew.\n", html=html).build()).signals
    assert {(s.evidence["part"], s.evidence["count"]) for s in signals if s.name == "PASSPORT"} == {("html body", "2")}


def test_a_table_column_is_read_once_whatever_the_rows_say() -> None:
    """Rows that each name a passport (each could be a header) are read once in all, not once per row: a long CSV
    of such rows costs the scanner a pass, not a pass per row."""
    rows = "\n".join(f"{n},passport renewal {n},X{1000000 + n}" for n in range(5000))
    looked: list[str] = []
    found = list(column(Text(rows), _PASSPORT_WORDS, lambda cell: looked.append(cell) or False))
    assert found == []
    assert len(looked) < 5000


def test_an_html_mail_laid_out_in_tables_reads_as_before() -> None:
    """An HTML mail laid out in tables (most are): a marking alone in its cell is still alone, a banner row is still
    a banner, and the words of a cell keep their spaces around inline tags."""
    html = ("<table>\n <tr>\n  <td>SECRET</td>\n </tr>\n <tr>\n  <td>UNCLASSIFIED//FOUO</td><td>page 1</td>\n </tr>\n"
            " <tr><td>Please find <b>the</b> <i>crew</i> list: her <b>passport</b> <i>number</i> is X1234567."
            "</td></tr>\n"
            "</table>")
    signals = scan_message(Sent("a@example.com", ("b@army.ml",), T0, body="See below.\n", html=html).build()).signals
    assert {(s.name, s.evidence["pattern"]) for s in signals} == {
        ("MARKING_CLASSIFIED", "SECRET"), ("MARKING_HANDLING", "FOUO"),
        ("MARKING_HANDLING", "banner line UNCLASSIFIED//FOUO"),
        ("PASSPORT", "passport number after the word 'passport'")}


def test_a_passport_word_in_prose_or_a_table_without_numbers_is_nothing() -> None:
    """The word in prose, or heading a column of yes and no, raises nothing."""
    body = ("Passport photos, visas and tickets: we need them by Friday.\n\n"
            "Name;Passport valid;Visa\nJohn;yes;no\nAnna;no;yes\n")
    assert scan_message(Sent("a@example.com", ("b@army.ml",), T0, body=body).build()).signals == ()


def test_attachments_pdf_docx_xlsx_and_names() -> None:
    """Text is read from PDF, DOCX and XLSX attachments; names and key files raise their own signals; each signal
    says which attachment."""
    sent = Sent("a@example.com", ("b@army.ml",), T0, body="See attached.\n", attachments=[
        ("crew-list.pdf", PDF, pdf_bytes(["Crew list", "SSN 536-22-8726"])),
        ("notes.docx", DOCX, docx_bytes(["Meeting notes", "CUI", "The password: hunter2hunter2"])),
        ("budget.xlsx", XLSX, xlsx_bytes([["name", "card"], ["A. Smith", "4111 1111 1111 1111"]])),
        ("server.pem", "application/x-pem-file", b"not really a key"),
    ])
    result = scan_message(sent.build())
    where = {(s.name, s.evidence["part"]) for s in result.signals}
    assert ("NATIONAL_ID", "attachment crew-list.pdf") in where
    assert ("ATTACHMENT_NAME", "attachment crew-list.pdf") in where
    assert ("MARKING_HANDLING", "attachment notes.docx") in where
    assert ("CREDENTIAL", "attachment notes.docx") in where
    assert ("PAYMENT_CARD", "attachment budget.xlsx") in where
    assert ("ATTACHMENT_KEYS", "attachment server.pem") in where
    assert not result.unread


def test_encodings_html_and_broken_charsets() -> None:
    """Base64 and quoted-printable parts, HTML bodies and an unknown charset are all read."""
    b64 = Sent("a@example.com", ("b@army.ml",), T0, body="SSN 536-22-8726\n", transfer="base64").build()
    assert scan_message(b64).severity == Severity.HIGH
    qp = Sent("a@example.com", ("b@army.ml",), T0, body="Caf\u00e9 SECRET//NOFORN\n", transfer="quoted-printable")
    assert scan_message(qp.build()).severity == Severity.HIGH
    html = Sent("a@example.com", ("b@army.ml",), T0, body="see html",
                html="<html><head><style>p{}</style></head><body><p>Card <b>4111 1111 1111 1111</b></p></body></html>")
    assert {s.evidence["part"] for s in scan_message(html.build()).signals} == {"html body"}
    raw = (b"From: a@example.com\nTo: b@army.ml\nMIME-Version: 1.0\nContent-Type: text/plain; charset=x-no-such\n\n"
           b"password: s3cr\xe9t-value\n")
    assert scan_message(raw).severity == Severity.HIGH


def test_broken_mime_and_junk_never_raise() -> None:
    """Broken boundaries, binary junk and a bad base64 part give an answer, not an exception."""
    broken = (b"From: a@example.com\nTo: b@army.ml\nMIME-Version: 1.0\n"
              b'Content-Type: multipart/mixed; boundary="XX"\n\n--XX\nContent-Type: text/plain\n\nSSN 536-22-8726\n'
              b"--XY\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n!!!not base64###\n")
    assert scan_message(broken).severity == Severity.HIGH
    assert scan_message(bytes(range(256)) * 400).severity == Severity.NONE
    bad_pdf = Sent("a@example.com", ("b@army.ml",), T0, attachments=[("x.pdf", PDF, b"%PDF-1.4 garbage")]).build()
    result = scan_message(bad_pdf)
    assert any("x.pdf" in u for u in result.unread)


def test_zip_bomb_like_attachment_refused() -> None:
    """A DOCX that would unpack to far more than it weighs is not opened; the part is said to be unread."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"0" * 60_000_000)
    bomb = Sent("a@example.com", ("b@army.ml",), T0, attachments=[("big.docx", DOCX, out.getvalue())]).build()
    start = time.monotonic()
    result = scan_message(bomb)
    assert time.monotonic() - start < 5
    assert any("big.docx" in u and "unpack" in u for u in result.unread)


def test_budget_cuts_long_messages() -> None:
    """Text beyond the budget is not looked at, and the cut is said."""
    body = "x" * 5000 + "\nSSN 536-22-8726\n"
    sent = Sent("a@example.com", ("b@army.ml",), T0, body=body).build()
    assert scan_message(sent).severity == Severity.HIGH
    small = scan_message(sent, Limits(text_chars=1000))
    assert small.severity == Severity.NONE
    assert any("budget" in u for u in small.unread)


def test_light_scan_is_the_scan_of_a_short_plain_message() -> None:
    """scan_light answers as scan_message for a short message of one plain text part (what the relay scans on its
    event loop), and leaves anything else to scan_message: HTML, attachments, a long message."""
    bodies = ["Employee SSN: 536-22-8726\n", "Traveller:\n" + MRZ, "Lunch on Friday?\n", "CUI\nThe schedule.\n",
              "The VPN password: Tr0ub4dor&3\n" * 3, "x" * (LIGHT_OCTETS // 2) + "\nCard: 4111 1111 1111 1111\n"]
    for body in bodies:
        for transfer in (None, "base64", "quoted-printable"):
            raw = Sent("a@example.com", ("b@army.ml",), T0, body=body, transfer=transfer).build()
            assert scan_light(raw) == scan_message(raw)
            assert scan_light(raw, Limits(text_chars=20)) == scan_message(raw, Limits(text_chars=20))
    assert scan_light(Sent("a@example.com", ("b@army.ml",), T0, body="SSN 536-22-8726\n").build()) is not None
    long = Sent("a@example.com", ("b@army.ml",), T0, body="y" * LIGHT_OCTETS + "\nSSN 536-22-8726\n").build()
    html = Sent("a@example.com", ("b@army.ml",), T0, body="see html", html="<p>SSN 536-22-8726</p>").build()
    html_only = (b"From: a@example.com\nContent-Type: text/html\n\n<p>SSN 536-22-8726</p>\n")
    attached = Sent("a@example.com", ("b@army.ml",), T0, body="See attached.\n",
                    attachments=[("crew.pdf", PDF, pdf_bytes(["SSN 536-22-8726"]))]).build()
    for raw in (long, html, html_only, attached):
        assert scan_light(raw) is None
        assert scan_message(raw).severity is Severity.HIGH
