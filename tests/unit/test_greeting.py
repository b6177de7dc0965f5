"""Whom a message greets (rcptguard.history.greeting), whether its recipients answer to that name, and the wrong
person it reveals (ODD_GREETING) in the judgement, from memory and from the store alike."""

from __future__ import annotations

import base64
import datetime as dt
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcptguard.guard import Guard
from rcptguard.history import Batch, Counted, MemoryHistory
from rcptguard.history.greeting import (
    NOBODY_GREETED,
    Greeting,
    answers,
    greeting_of,
    header_addresses,
    opening,
    spells,
)
from rcptguard.history.judge import judge_message
from rcptguard.model import Action
from rcptguard.policy import load_policy
from rcptguard.store import Store
from rcptguard.store.history import StoreHistory

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize(("text", "greeting"), [
    ("Hi Nils,\n\nthe figures you asked for.", Greeting(first=("nils",))),
    ("Dear Nils and Carla,\nsee below", Greeting(first=("nils", "carla"))),
    ("Hallo Herr Müller,", Greeting(last=("müller",))),
    ("Dear Dr. O'Brien,", Greeting(last=("o'brien",))),
    ("Guten Tag Frau Schmidt,", Greeting(last=("schmidt",))),
    ("Bonjour Zoë,", Greeting(first=("zoë",))),
    ("Good morning Anna-Lena!", Greeting(first=("anna-lena",))),
    ("Nils,\nsee below", Greeting(first=("nils",))),
    ("Re: the figures\n\nHi Bob!", Greeting(first=("bob",))),
    ("FYI, see below\n\nNils wrote:", NOBODY_GREETED),  # an attribution line, not a greeting
    ("Zur Info.\n\nNils schrieb:", NOBODY_GREETED),
    ("On Tue, Nils wrote:", NOBODY_GREETED),
    ("Thanks,\nNils,", NOBODY_GREETED),  # a name alone only on the first line
    ("Nils, Carla,", NOBODY_GREETED),  # and only one
    ("Dear Support Team,", NOBODY_GREETED),
    ("Hello Sales,", NOBODY_GREETED),
    ("Hello, I hope you are well.", NOBODY_GREETED),
    ("Estimado Don Pedro,", Greeting(last=("pedro",))),
    ("> Hi Olga,\n> quoted\nHi Nils,", Greeting(first=("nils",))),
    ("Dear Nils Martin,", Greeting(first=("nils",))),  # a full name: its first word
    ("Dear Dr Nils Martin,", Greeting(last=("martin",))),  # after a title: its last
    ("Hi Nils Martin and Carla Rossi,", Greeting(first=("nils", "carla"))),
    ("Dear Mr and Mrs Smith,", NOBODY_GREETED),
    ("Hi all together,", NOBODY_GREETED),
    ("Hello all,", NOBODY_GREETED),
    ("Hi Nils and team,", NOBODY_GREETED),
    ("Dear Sir or Madam,", NOBODY_GREETED),
    ("Hi there,", NOBODY_GREETED),
    ("Hello,\nNils wrote the figures.", NOBODY_GREETED),
    ("Thanks", NOBODY_GREETED),
    ("Attached the report.", NOBODY_GREETED),
    ("The figures are attached.\nThey are late.\nSorry.\nHi Nils,", NOBODY_GREETED),  # not on its first lines
    ("", NOBODY_GREETED),
    ("Hi " + "N" * 200 + ",", NOBODY_GREETED),
])
def test_the_names_greeted(text: str, greeting: Greeting) -> None:
    assert greeting_of(text) == greeting


SALUTES = ("Hi", "Hello", "Hey", "Hiya", "Dear", "Dearest", "Greetings", "Good morning", "Good afternoon",
           "Good evening", "Good day", "Morning", "Hallo", "Hallöchen", "Moin", "Servus", "Guten Tag", "Guten Morgen",
           "Guten Abend", "Grüß dich", "Grüss dich", "Liebe", "Lieber", "Bonjour", "Bonsoir", "Salut", "Coucou", "Cher",
           "Chère", "Hola", "Buenos días", "Estimado", "Estimada", "Ciao", "Salve", "Buongiorno", "Buonasera",
           "Gentile", "Caro", "Cara", "Hej", "Hei", "Hoi", "Beste", "Goedemorgen", "Olá", "Prezado", "Prezada")
TITLES = ("Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Dr.", "Prof", "Professor", "Herr", "Frau", "Monsieur", "Madame",
          "Mme", "M.", "Señor", "Señora", "Sr", "Sra", "Signor", "Signora", "Dott", "Mevrouw", "Meneer", "Dhr")


@pytest.mark.parametrize("salute", SALUTES)
def test_every_salute_is_read_with_or_without_a_comma(salute: str) -> None:
    """Each salute the expressions know starts with a word the short cut looks at (`_OPENERS`): a greeting with no
    comma after the name is read too."""
    assert greeting_of(f"{salute} Nils") == Greeting(first=("nils",))
    assert greeting_of(f"{salute} Nils,\nthe figures") == Greeting(first=("nils",))


@pytest.mark.parametrize("title", TITLES)
def test_every_title_is_read(title: str) -> None:
    assert greeting_of(f"{title} Martin") == Greeting(last=("martin",))
    assert greeting_of(f"Dear {title} Martin,") == Greeting(last=("martin",))


@pytest.mark.parametrize(("name", "address", "display", "last", "expected"), [
    ("nils", "nils.martin@kavale.de", "", False, True),
    ("nils", "olga.smith@kavale.de", "", False, False),
    ("nils", "olga.smith@kavale.de", "Nils Martin", False, True),  # the display name says who reads it
    ("nils", "n.martin@kavale.de", "", False, True),  # an initial: may be Nils
    ("nils", "o.smith@kavale.de", "", False, False),
    ("nils", "nmartin@kavale.de", "", False, True),  # one word: anybody's
    ("nils", "olga@kavale.de", "", False, True),
    ("mike", "jackson@firm.com", "", False, True),
    ("nils", "olgasmith@kavale.de", "", False, True),
    ("bob", "robert.smith@kavale.de", "", False, True),  # a nickname
    ("nils", "accounts.payable@kavale.de", "", False, True),  # a role's: anyone may read it
    ("nils", "customer.care@vendor.com", "", False, True),
    ("müller", "hans.mueller@firma.de", "", True, True),
    ("martin", "olga.smith@kavale.de", "", True, False),
    ("søren", "soeren.hansen@x.dk", "", False, True),
    ("åse", "aase.berg@x.no", "", False, True),
    ("anna-lena", "annalena.b@x.com", "", False, True),
    ("o'brien", "sean.obrien@x.com", "", True, True),
    ("zoë", "zoe.k@x.com", "", False, True),
])
def test_whether_a_recipient_answers_to_a_name(name: str, address: str, display: str, last: bool,
                                                expected: bool) -> None:
    assert answers(name, address, display, last=last) is expected


def test_whom_an_address_plainly_names() -> None:
    assert spells("nils", "nils.martin@kavale.de")
    assert spells("bob", "robert.king@x.com")
    assert spells("martin", "nils.martin@kavale.de", last=True)
    assert not spells("nils", "n.martin@kavale.de")  # an initial is nobody in particular
    assert not spells("nils", "olga.nils@x.com")  # a last name
    assert not spells("nils", "nilsmartin@x.com")  # one word: whose, nobody can say
    assert not spells("hall", "marshall@x.com", last=True)
    assert not spells("al", "alice.king@x.com")


def test_the_opening_of_every_shape_of_message() -> None:
    plain = b"From: a@org.example\r\nTo: b@x.com\r\nSubject: s\r\n\r\nHi Nils,\r\n\r\nthe figures\r\n"
    assert greeting_of(opening(plain)) == Greeting(first=("nils",))
    encoded = base64.encodebytes("Hallo Jürgen,\n\ndie Zahlen.\n".encode() * 200)
    b64 = (b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded)
    assert greeting_of(opening(b64)) == Greeting(first=("jürgen",))
    qp = (b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
          b"Bonjour Ren=E9,\r\n")
    assert greeting_of(opening(qp)) == Greeting(first=("rené",))
    mixed = (b'Content-Type: multipart/mixed; boundary="out"\r\n\r\npreamble\r\n--out\r\n'
             b'Content-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\n'
             b'Dear Carla,\r\nsee the file\r\n--in\r\nContent-Type: text/html\r\n\r\n<p>Dear Carla,</p>\r\n--in--\r\n'
             b'--out\r\nContent-Type: application/pdf\r\n\r\nJVBER\r\n--out--\r\n')
    assert greeting_of(opening(mixed)) == Greeting(first=("carla",))
    html = b"Content-Type: text/html\r\n\r\n<html><body><p>Hi Olga,</p><p>attached</p></body></html>"
    assert greeting_of(opening(html)) == Greeting(first=("olga",))


@pytest.mark.parametrize("raw", [
    b"", b"no header block at all", b"Content-Type: multipart/mixed\r\n\r\nno boundary",
    b'Content-Type: multipart/mixed; boundary="x"\r\n\r\nthe boundary never comes',
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
    b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\x02",
    b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nHi Nils,",
    b"Subject: " + b"x" * 10_000_000 + b"\r\n\r\nHi Nils,",
    bytes(range(256)) * 100,
])
def test_a_message_that_cannot_be_read_greets_nobody_or_is_read_safely(raw: bytes) -> None:
    text = opening(raw)
    assert isinstance(text, str)
    assert len(text) <= 8192
    greeting_of(text)  # never raises


def test_the_addresses_of_to_and_cc_with_their_display_names() -> None:
    raw = (b'To: "Martin, Nils" <Nils.Martin@Kavale.de>,\r\n olga@x.com\r\nCc: =?utf-8?q?J=C3=BCrgen_K?= <jk@x.de>\r\n'
           b"Subject: s\r\n\r\nbody")
    assert header_addresses(raw) == {"nils.martin@kavale.de": "Martin, Nils", "olga@x.com": "", "jk@x.de": "Jürgen K"}


@pytest.mark.parametrize("raw", [
    b"To: =?utf-8?b?x?= <olga.smith@kavale.de>\r\n\r\nHi Nils,\r\n",  # an encoded word that is no base64
    b"To: " + b"(" * 5000 + b"\r\n\r\nHi Nils,",  # comments nested beyond the parser
    b"To: " + b"a@b.c, " * 100_000 + b"\r\n\r\nHi Nils,",
])
def test_to_and_cc_that_cannot_be_read_name_nobody_without_an_error(raw: bytes) -> None:
    assert isinstance(header_addresses(raw), dict)


def test_a_part_with_no_header_fields_is_text() -> None:
    raw = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nHi Carla,\r\n\r\nNils wrote:\r\n--b--\r\n'
    assert greeting_of(opening(raw)) == Greeting(first=("carla",))


def test_a_long_line_of_joiners_is_read_at_once() -> None:
    """A line built to make a backtracking expression try every split ("m e e e ... 9,") is read in one pass."""
    started = time.process_time()
    for line in ("m " + "e " * 38 + "9,", "Hi " + "e " * 38 + "x", "Dear " + "Nils and " * 8 + "9"):
        greeting_of(f"{line}\n{line}\n{line}")
    assert time.process_time() - started < 0.05


def written(history: MemoryHistory | StoreHistory) -> None:
    batch = Batch()
    for day in range(5):
        when = NOW - dt.timedelta(days=day + 1)
        batch.message("me@org.example", [Counted("nils.martin@kavale.de", "kavale.de")], when)
        batch.message("me@org.example", [Counted("olga.smith@kavale.de", "kavale.de")], when)
        batch.message("me@org.example", [Counted("carla.rossi@partner.com", "partner.com")], when)
    history.record(batch)


@pytest.mark.parametrize("kind", ["memory", "store"])
def test_a_greeting_nobody_answers_warns_of_the_wrong_person(tmp_path: Path, kind: str) -> None:
    history = MemoryHistory() if kind == "memory" else StoreHistory(Store.open(f"sqlite:///{tmp_path / 'h.db'}"))
    written(history)
    guard = Guard(load_policy().with_domains(("org.example",), ()), learned={"kavale.de": 10, "partner.com": 5})

    def judged(recipients: list[str], text: str, displays: dict[str, str] | None = None) -> list:
        return judge_message(guard, "me@org.example", recipients, history, now=NOW, greeting=greeting_of(text),
                             displays=displays)

    [wrong] = judged(["olga.smith@kavale.de"], "Hi Nils,\n\nthe figures")
    assert wrong.action is Action.WARN
    assert wrong.signal("ODD_GREETING") is not None
    assert wrong.suggestion == "nils.martin@kavale.de"
    assert ("The message greets Nils, and nobody it goes to is Nils. You write to nils.martin@kavale.de "
            "(5 messages): is olga.smith@kavale.de the person you meant?") in wrong.reason
    assert judged(["olga.smith@kavale.de"], "Hi Olga,")[0].action is Action.PASS
    assert judged(["olga.smith@kavale.de"], "Hi Nils,", {"olga.smith@kavale.de": "Nils Smith"})[0].action \
        is Action.PASS  # the display name answers
    assert judged(["olga.smith@kavale.de"], "Hi Zoe,")[0].action is Action.PASS  # no Zoe the sender writes to
    assert judged(["olga.smith@kavale.de"], "Hello all,")[0].action is Action.PASS
    both = judged(["olga.smith@kavale.de", "carla.rossi@partner.com"], "Hi Nils and Carla,")
    assert [v.action for v in both] == [Action.WARN, Action.PASS]  # Carla answers; Olga is in Nils's place
    assert both[0].suggestion == "nils.martin@kavale.de"
    assert judged(["olga.smith@kavale.de", "nils.martin@kavale.de"], "Hi Nils,")[0].action is Action.PASS
    assert judged(["info@kavale.de"], "Hi Nils,")[0].action is Action.PASS  # anyone may read info@
    assert judged(["olga.smith@kavale.de"], "Hi Nils,", {"nils@org.example": ""})[0].action is Action.PASS  # in To
    assert judged(["carla.rossi@partner.com"], "Hi Nils,")[0].action is Action.PASS  # no Nils at partner.com
    inside = judged(["ann.lee@org.example"], "Hi Nils,")
    assert inside[0].action is Action.PASS  # a colleague: no mail leaving


def test_without_a_greeting_the_judgement_is_unchanged() -> None:
    history = MemoryHistory()
    written(history)
    guard = Guard(load_policy().with_domains(("org.example",), ()), learned={"kavale.de": 10})
    for recipients in (["olga.smith@kavale.de"], ["olga.smith@kavale.de", "nils.martin@kavale.de"]):
        assert judge_message(guard, "me@org.example", recipients, history, now=NOW) == judge_message(
            guard, "me@org.example", recipients, history, now=NOW, greeting=NOBODY_GREETED)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from([b"", b"Content-Type: text/plain\r\n\r\n",
                                                    b"Content-Transfer-Encoding: base64\r\n\r\n",
                                                    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                                                    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n',
                                                    b"Content-Type: text/html\r\n\r\n<p>"]))
def test_any_octets_are_read_without_an_error(body: bytes, head: bytes) -> None:
    raw = head + body
    greeting_of(opening(raw))
    header_addresses(b"To: " + body + b"\r\n\r\n")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.emails())
def test_any_text_and_address_are_judged_without_an_error(text: str, address: str) -> None:
    greeting = greeting_of(text)
    for name in (*greeting.first, *greeting.last):
        answers(name, address)
        answers(name, address, last=True)
        spells(name, address)


def test_a_door_judges_without_the_greeting_when_its_reader_fails(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The greeting only sharpens a verdict: whatever its reader raises, the door reads no greeting and says so in
    its log (the message is judged, never tempfailed for it)."""
    from rcptguard import runtime
    from rcptguard.history import HistorySettings

    door = SimpleNamespace(settings=HistorySettings())
    raw = b"To: =?utf-8?b?x?= <olga.smith@kavale.de>\r\n\r\nHi Nils,\r\n"
    greeting, addresses = runtime.Runtime.greeting(door, raw)  # type: ignore[arg-type]
    assert greeting == Greeting(first=("nils",))
    assert "olga.smith@kavale.de" in addresses

    def broken(_: bytes) -> str:
        raise RecursionError("deep")

    monkeypatch.setattr(runtime, "opening", broken)
    assert runtime.Runtime.greeting(door, raw) == (NOBODY_GREETED, {})  # type: ignore[arg-type]
    assert "opening not read" in caplog.text
    off = SimpleNamespace(settings=HistorySettings(greetings=False))
    monkeypatch.undo()
    assert runtime.Runtime.greeting(off, raw) == (NOBODY_GREETED, {})  # type: ignore[arg-type]
