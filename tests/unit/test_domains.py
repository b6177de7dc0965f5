"""Unit tests for address parsing and domain normalisation (`rcptguard.domains`)."""

from __future__ import annotations

import dataclasses

import pytest

from rcptguard.domains import DomainError, normalize_domain, parse_address
from rcptguard.model import Action, Address, Domain, Malformed, Verdict


def _address(raw: str) -> Address:
    result = parse_address(raw)
    assert isinstance(result, Address), f"{raw!r} was rejected: {result}"
    return result


def _malformed(raw: str) -> Malformed:
    result = parse_address(raw)
    assert isinstance(result, Malformed), f"{raw!r} was accepted as {result}"
    return result


# -- accepted forms ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "local", "domain"),
    [
        ("user@example.com", "user", "example.com"),
        ("<user@example.com>", "user", "example.com"),
        ("Jane Doe <user@example.com>", "user", "example.com"),
        ('"Doe, Jane" <user@example.com>', "user", "example.com"),
        ("  user@example.com\t", "user", "example.com"),
        ("first.last+tag@example.com", "first.last+tag", "example.com"),
    ],
)
def test_plain_and_bracketed_forms(raw: str, local: str, domain: str) -> None:
    """A bare address, an angle-bracketed one and one with a display name all yield the same parts."""
    address = _address(raw)
    assert address.local == local
    assert address.domain.ascii == domain
    assert address.text == f"{local}@{domain}"


@pytest.mark.parametrize(
    ("raw", "local"),
    [
        ('"john doe"@example.com', '"john doe"'),
        ('"a@b"@example.com', '"a@b"'),
        ('"a\\"b"@example.com', '"a\\"b"'),
        ('Name <"a@b"@example.com>', '"a@b"'),
    ],
)
def test_quoted_local_part(raw: str, local: str) -> None:
    """A quoted local part may hold spaces, an @ or an escaped quote, and is kept as written."""
    address = _address(raw)
    assert address.local == local
    assert address.domain.ascii == "example.com"


def test_quoted_local_part_with_angle_bracket_inside_brackets() -> None:
    """A quoted local part holding '<' is accepted inside angle brackets, as it is without them."""
    assert _address('"a<b"@example.com').local == '"a<b"'
    assert _address('<"a<b"@example.com>').local == '"a<b"'
    assert _address('Name "x" <"a<b"@example.com>').local == '"a<b"'


def test_c1_control_character_is_malformed() -> None:
    """A C1 control (NEL, U+0085) counts as a line break, not as a UTF-8 letter of the local part."""
    assert isinstance(parse_address("a\x85b@example.com"), Malformed)


def test_utf8_local_part() -> None:
    """A UTF-8 local part (RFC 6531) is accepted unchanged."""
    address = _address("jürgen.müller@example.com")
    assert address.local == "jürgen.müller"
    assert address.domain.ascii == "example.com"


def test_trailing_dot_is_dropped() -> None:
    """A fully-qualified domain with a trailing dot is the same domain without it."""
    assert _address("user@example.com.").domain == normalize_domain("example.com")
    assert normalize_domain("example.com.").ascii == "example.com"


def test_upper_case_domain_is_lowered_and_local_part_kept() -> None:
    """The domain is folded to lower case, while the (case-sensitive) local part is left alone."""
    address = _address("John.Smith@EXAMPLE.COM")
    assert address.local == "John.Smith"
    assert address.domain == Domain(ascii="example.com", unicode="example.com", suffix="com")


def test_idn_u_label_and_a_label_give_the_same_domain() -> None:
    """An IDN typed in Unicode, in A-label form or in upper case normalises to one `Domain`."""
    expected = Domain(ascii="xn--bcher-kva.de", unicode="bücher.de", suffix="de")
    assert normalize_domain("bücher.de") == expected
    assert normalize_domain("xn--bcher-kva.de") == expected
    assert normalize_domain("XN--BCHER-KVA.DE.") == expected
    assert normalize_domain("BÜCHER.de") == expected
    assert _address("a@bücher.de").domain == _address("a@xn--bcher-kva.de").domain
    assert expected.is_idn


@pytest.mark.parametrize(
    "raw",
    [
        "ｅｘａｍｐｌｅ．ｃｏｍ",  # fullwidth letters and fullwidth full stop
        "example。com",  # ideographic full stop
        "example｡com",  # halfwidth ideographic full stop
    ],
)
def test_uts46_mapping_of_fullwidth_forms_and_ideographic_dots(raw: str) -> None:
    """UTS-46 maps fullwidth letters and the ideographic dots onto plain `example.com`."""
    assert normalize_domain(raw) == Domain(ascii="example.com", unicode="example.com", suffix="com")
    assert _address(f"user@{raw}").domain.ascii == "example.com"


@pytest.mark.parametrize(
    ("domain", "suffix"),
    [
        ("army.ml", "ml"),
        ("walla.co.il", "co.il"),
        ("x.com.co", "com.co"),
        ("usace.army.mil", "mil"),
        ("mail.example.co.uk", "co.uk"),
        ("example.zzzz", "zzzz"),  # an unlisted top-level label counts as a suffix
    ],
)
def test_public_suffix(domain: str, suffix: str) -> None:
    """The `suffix` field is the ICANN public suffix of the domain."""
    assert normalize_domain(domain).suffix == suffix


def test_domain_labels_and_display() -> None:
    """`labels` counts labels and `display` shows the A-label beside the Unicode form only for IDN."""
    assert normalize_domain("a.b.example.com").labels == 4
    assert normalize_domain("bücher.de").display() == "bücher.de (xn--bcher-kva.de)"
    assert normalize_domain("example.com").display() == "example.com"


def test_normalize_domain_raises_domain_error() -> None:
    """`normalize_domain` (unlike `parse_address`) raises `DomainError` for a bad domain."""
    with pytest.raises(DomainError, match="empty label"):
        normalize_domain("a..b.com")


# -- malformed input: one test each, never an exception ------------------------------------------------


def test_empty_string() -> None:
    """An empty string is reported as an empty address."""
    assert _malformed("").reason == "the address is empty"


@pytest.mark.parametrize("raw", ["   ", "\t", " \t  "])
def test_whitespace_only(raw: str) -> None:
    """Blanks and tabs alone are reported as an empty address."""
    assert _malformed(raw).reason == "the address is empty"


def test_empty_angle_brackets() -> None:
    """A null reverse-path style `<>` is not a recipient."""
    assert _malformed("<>").reason == "the address is empty"


def test_no_at_sign() -> None:
    """Text without an @ is rejected for having no @."""
    assert "no @" in _malformed("user.example.com").reason


def test_two_at_signs() -> None:
    """An unquoted second @ is rejected."""
    assert "more than one @" in _malformed("a@b@example.com").reason


def test_nothing_before_at() -> None:
    """An empty local part is rejected."""
    assert "nothing before the @" in _malformed("@example.com").reason


def test_nothing_after_at() -> None:
    """An empty domain is rejected."""
    assert "no domain after the @" in _malformed("user@").reason


def test_domain_of_300_characters() -> None:
    """A domain longer than 253 octets is rejected with its length, even when every label is valid."""
    domain = ".".join(["a" * 49] * 5 + ["b" * 46, "com"])
    assert len(domain) == 300
    reason = _malformed(f"user@{domain}").reason
    assert "300 characters" in reason
    assert "253" in reason


def test_label_of_64_characters() -> None:
    """A 64-character label is one over the limit of 63."""
    reason = _malformed(f"user@{'a' * 64}.com").reason
    assert "64 characters" in reason
    assert "63" in reason


def test_label_of_63_characters_is_accepted() -> None:
    """The label limit is inclusive: 63 characters are fine."""
    assert _address(f"user@{'a' * 63}.com").domain.ascii == f"{'a' * 63}.com"


@pytest.mark.parametrize("raw", ["user@example.com\r", "user\r@example.com"])
def test_carriage_return(raw: str) -> None:
    """A bare CR anywhere is refused as a control character."""
    assert "control character" in _malformed(raw).reason


@pytest.mark.parametrize("raw", ["user@example.com\n", "user@exa\nmple.com"])
def test_line_feed(raw: str) -> None:
    """A bare LF anywhere is refused as a line break."""
    assert "line break" in _malformed(raw).reason


def test_crlf_smtp_injection() -> None:
    """A CRLF smuggling a second SMTP command is refused, not parsed as the first address."""
    raw = "a@b.com\r\nRCPT TO:<x@y.com>"
    result = _malformed(raw)
    assert result.raw == raw
    assert "line break" in result.reason


def test_nul() -> None:
    """A NUL byte is refused."""
    assert "NUL" in _malformed("user@exam\x00ple.com").reason


@pytest.mark.parametrize("domain", ["xn--zz.com", "xn--a.com", "XN--ZZ.COM"])
def test_invalid_idn(domain: str) -> None:
    """An A-label that does not decode to a valid IDN is refused with the reason from idna."""
    assert "not a valid internationalised name" in _malformed(f"user@{domain}").reason


@pytest.mark.parametrize("domain", ["-example.com", "example-.com", "mail.-example.com"])
def test_label_starting_or_ending_with_hyphen(domain: str) -> None:
    """A label may not start or end with a hyphen."""
    assert "characters a domain name cannot have" in _malformed(f"user@{domain}").reason


def test_idn_label_starting_with_hyphen() -> None:
    """The hyphen rule also holds for a Unicode label."""
    assert "hyphen" in _malformed("user@-bücher.de").reason


def test_two_dots_in_a_row() -> None:
    """An empty label between two dots is refused."""
    assert "empty label" in _malformed("user@example..com").reason


def test_ip_literal() -> None:
    """An address literal in brackets names an IP address, not a domain."""
    assert "IP address" in _malformed("user@[127.0.0.1]").reason


def test_numeric_tld() -> None:
    """A dotted quad (a numeric top-level label) is an IP address, not a mail domain."""
    assert "IP address" in _malformed("user@1.2.3.4").reason


def test_local_part_over_64_octets() -> None:
    """The local part limit of 64 is counted in UTF-8 octets, not characters."""
    assert isinstance(parse_address("a" * 64 + "@example.com"), Address)
    assert "65 octets" in _malformed("a" * 65 + "@example.com").reason
    # 33 two-octet characters: 33 characters but 66 octets.
    assert "66 octets" in _malformed("ü" * 33 + "@example.com").reason


def test_whole_address_over_254_octets() -> None:
    """A valid local part and a valid domain still may not add up to more than 254 octets."""
    domain = ".".join(["b" * 60] * 3) + ".ccccccccc.com"
    assert isinstance(normalize_domain(domain), Domain)
    assert "254" in _malformed("a" * 64 + "@" + domain).reason


def test_unclosed_quote() -> None:
    """A quoted local part without its closing quote is refused."""
    assert "not closed" in _malformed('"john doe@example.com').reason


def test_input_over_4096_characters() -> None:
    """Input over 4096 characters is refused by length and the raw text kept short."""
    raw = "a" * 5000 + "@example.com"
    result = _malformed(raw)
    assert "5012 characters" in result.reason
    assert len(result.raw) < 100


@pytest.mark.parametrize(
    "raw",
    [
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a b@example.com",
        '"abc"def@example.com',
        "user@exa mple.com",
        "user@ex_ample.com",
        "user@example.com>",
        "user@example.com..",
        "user@.",
        "\u2028",
        "user\u2029@example.com",
    ],
)
def test_other_malformed_inputs_do_not_raise(raw: str) -> None:
    """Other broken forms also come back as `Malformed` with a non-empty reason."""
    result = _malformed(raw)
    assert result.reason
    assert result.raw == raw


def test_a_verdict_copy_has_every_field_and_is_its_own() -> None:
    """`Verdict.copy` (the judgement's cheap `dataclasses.replace`) carries every field, a field added later too:
    each is set to an object of its own and must be that object in the copy; changing the copy leaves the original."""
    verdict = Verdict("a@b.example", "b.example", Action.PASS, 0.0, (), "")
    marks = {field.name: object() for field in dataclasses.fields(Verdict)}
    for name, mark in marks.items():
        setattr(verdict, name, mark)
    copied = verdict.copy()
    assert copied is not verdict
    assert all(getattr(copied, name) is mark for name, mark in marks.items())
    copied.reason = "changed"
    assert verdict.reason is marks["reason"]
