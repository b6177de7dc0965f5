"""Properties that hold for every input: check never raises, and both IDN forms get one verdict."""

from __future__ import annotations

import idna
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rcptguard.gateways.replies import _spelled, ascii_line
from rcptguard.guard import Guard
from rcptguard.model import Action
from tests.conftest import make_guard

GUARD: Guard = make_guard(("mil", "example-corp.com"), ("gmail.com", "raytheon.com", "us.meridianbank.com"))

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-аеорсхі", min_size=1, max_size=20)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_check_never_raises_on_any_string(raw: str) -> None:
    """Any string at all gets a verdict, never an exception."""
    verdict = GUARD.check(raw)
    assert verdict.action in Action


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80), st.text(max_size=80))
def test_check_never_raises_on_address_shaped_strings(local: str, domain: str) -> None:
    """Strings with one @ somewhere in them get a verdict, never an exception."""
    verdict = GUARD.check(f"{local}@{domain}")
    assert verdict.action in Action
    if verdict.action is Action.REJECT and verdict.signals and verdict.signals[0].name == "MALFORMED_ADDRESS":
        assert verdict.reason.startswith("This is not a valid address")


@settings(max_examples=500)
@given(st.lists(label, min_size=1, max_size=3), st.sampled_from(["com", "ml", "mil", "co", "de", "il"]))
def test_unicode_and_ascii_forms_agree(labels: list[str], suffix: str) -> None:
    """Whenever a domain is valid IDN, its U-label and A-label forms get the same verdict and intended domain."""
    unicode_name = ".".join([*labels, suffix])
    try:
        ascii_name = idna.encode(unicode_name, uts46=True).decode()
    except idna.IDNAError:
        return
    one = GUARD.check(f"x@{unicode_name}")
    two = GUARD.check(f"x@{ascii_name}")
    assert (one.action, one.intended, one.reason, one.score) == (two.action, two.intended, two.reason, two.score)


@settings(max_examples=1500)
@given(st.text(alphabet=st.sampled_from(" \t\r\nab.-é日\x00\x7f"), max_size=60) | st.text(max_size=60),
       st.integers(min_value=4, max_value=80))
def test_a_reply_line_is_one_line_of_printable_ascii(text: str, limit: int) -> None:
    """`ascii_line` of any text is what spelling it letter by letter gives (its short cut for text that is one
    line of printable ASCII already changes nothing), within the limit."""
    line = ascii_line(text, limit)
    spelled = _spelled(text)
    assert line == (spelled if len(spelled) <= limit else spelled[: limit - 3].rstrip() + "...")
    assert line.isascii()
    assert line.isprintable()
    assert len(line) <= limit
    assert "  " not in line.removesuffix("...")
    assert line == line.strip()
