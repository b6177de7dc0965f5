"""The admin list at scale (paging and filters by state, sender, domain and date against a reference computed in
the test), bulk release and cancel with their confirmation step, and the dashboard's numbers and charts."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from rcptguard.guard import Guard
from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Quarantine
from rcptguard.store.schema import holds
from rcptguard.web.dashboard import dashboard
from rcptguard.web.listing import Listing, list_page
from tests.support.admin import ADMIN, signed_in
from tests.support.sink import RecordingSink
from tests.unit.test_web import LOCAL, build_app, held

SENDERS = ("alice@example.org", "Bob@Example.org", "carol@example.org")
DOMAINS = {"army.ml": "army.mil", "gmial.com": "gmail.com", "raytheon.co": "raytheon.com"}
NOW = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Made:
    id: str
    sender: str
    domain: str
    created: dt.datetime
    state: str


def fill(quarantine: Quarantine, messages: int = 40) -> list[Made]:
    """`messages` messages of three recipients each (one per domain), from three senders, held on days spread
    over the last three weeks; one in four cancelled by the sender an hour after, one in five released a day
    after."""
    made: list[Made] = []
    for n in range(messages):
        sender = SENDERS[n % len(SENDERS)]
        content = f"From: {sender}\r\nSubject: message {n}\r\nMessage-ID: <{n}@example.org>\r\n\r\nbody {n}\r\n"
        recipients = [held(f"u{n}@{typed}", f"u{n}@{meant}") for typed, meant in DOMAINS.items()]
        created = NOW - dt.timedelta(days=n % 21, minutes=n)
        for hold in quarantine.hold(mail_from=sender, recipients=recipients, content=content.encode(), client="mua"):
            state = "held"
            with quarantine.engine.begin() as connection:
                connection.execute(update(holds).where(holds.c.id == hold.id).values(created_at=created))
            if n % 4 == 0 and hold.recipient.endswith("army.ml"):
                state = decide_at(quarantine, hold.id, "cancelled", created + dt.timedelta(hours=1))
            elif n % 5 == 0 and hold.recipient.endswith("gmial.com"):
                state = decide_at(quarantine, hold.id, "released", created + dt.timedelta(days=1))
            made.append(Made(hold.id, sender, hold.recipient.rpartition("@")[2], created, state))
    return made


def decide_at(quarantine: Quarantine, hold_id: str, state: str, when: dt.datetime) -> str:
    if state == "cancelled":
        quarantine.cancel(hold_id, "sender via web")
    else:
        quarantine.decide(hold_id, state, "sender via web")
    with quarantine.engine.begin() as connection:
        connection.execute(update(holds).where(holds.c.id == hold_id).values(decided_at=when))
    return state


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Quarantine, list[Made]]:
    store = Store.open(f"sqlite:///{tmp_path_factory.mktemp('many') / 'store.db'}")
    quarantine = Quarantine(store)
    return quarantine, fill(quarantine)


LISTINGS = [
    Listing(state="held", size=7),
    Listing(state="all", order="newest", size=11),
    Listing(state="cancelled", size=3),
    Listing(state="all", sender="bob@example.org", size=5),
    Listing(state="held", domain="gmial.com", order="newest", size=4),
    Listing(state="all", since=(NOW - dt.timedelta(days=6)).date(), until=(NOW - dt.timedelta(days=2)).date(),
            size=6),
    Listing(state="all", sender="alice@example.org", domain="army.ml", since=(NOW - dt.timedelta(days=14)).date(),
            size=2),
]


@pytest.mark.parametrize("listing", LISTINGS, ids=lambda listing: listing.query())
def test_every_page_together_is_exactly_the_filtered_list(filled: tuple[Quarantine, list[Made]],
                                                          listing: Listing) -> None:
    """Walking every page of a listing gives each matching hold once, in the listing's order, and nothing else;
    the total is the same on every page; a page past the end is empty."""
    quarantine, made = filled
    expected = [m for m in made
                if listing.state in ("all", m.state)
                and (not listing.sender or m.sender.lower() == listing.sender)
                and (not listing.domain or m.domain == listing.domain)
                and (listing.since is None or m.created.date() >= listing.since)
                and (listing.until is None or m.created.date() <= listing.until)]
    expected.sort(key=lambda m: (m.created, m.id), reverse=listing.order == "newest")
    assert expected, "the filter must match something for the test to mean anything"
    seen: list[str] = []
    number = 1
    while True:
        page = list_page(quarantine, replace(listing, page=number))
        assert page.total == len(expected)
        if not page.holds:
            break
        assert len(page.holds) <= listing.size
        seen += [hold.id for hold in page.holds]
        number += 1
    assert seen == [m.id for m in expected]
    assert number - 1 == page.pages


def test_filters_are_read_from_the_query() -> None:
    """Sender and domain are compared without case (angle brackets and a leading @ dropped); dates are days; a
    date that is not one is refused with what is expected."""
    listing = Listing.parse("all", None, "2", "10", {"sender": " <Bob@Example.org> ", "domain": "@GMIAL.com.",
                                                     "since": "2026-11-01", "until": "2026-11-30"})
    assert (listing.sender, listing.domain) == ("bob@example.org", "gmial.com")
    assert (listing.since, listing.until) == (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert "sender=bob%40example.org" in listing.query()
    assert "page=3" in listing.query(page=3)
    with pytest.raises(ValueError, match="since is a date"):
        Listing.parse(None, None, None, None, {"since": "last week"})


def test_a_domain_filter_matches_its_own_percent_and_underscore_only(quarantine: Quarantine) -> None:
    """LIKE's wildcards in a domain filter are matched as themselves."""
    quarantine.hold(mail_from="a@example.org", recipients=[held("x@a_b.example"), held("y@axb.example")],
                    content=b"Subject: s\r\n\r\nb\r\n", client="mua")
    page = list_page(quarantine, Listing(state="all", domain="a_b.example"))
    assert [hold.recipient for hold in page.holds] == ["x@a_b.example"]


def admin_client(quarantine: Quarantine, pentagon: Guard, sink: RecordingSink, *, sign_in: bool = True) -> TestClient:
    """A client to the page, signed in as ADMIN (unless told not to)."""
    client = TestClient(build_app(quarantine, Links(quarantine.store), pentagon, sink.port), follow_redirects=False,
                        client=LOCAL)
    if sign_in:
        signed_in(client)
    return client


CONFIRM_TOKEN = r'action="/admin/bulk/confirm">\s*<input type="hidden" name="csrf" value="([0-9a-f]+)"'


def review(client: TestClient, path: str, **form: str | list[str]) -> str:
    """Open the list at `path`, then post its bulk form with `form`: the review page."""
    page = client.get(path).text
    csrf = re.search(r'<form id="bulk"[^>]*>\s*<input type="hidden" name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None, page
    answer = client.post("/admin/bulk", data={"csrf": csrf[1], **form})
    assert answer.status_code == 200, answer.text
    return answer.text


def confirm(client: TestClient, page: str) -> tuple[int, str]:
    """Post the review page's confirm form as it is."""
    ids = re.findall(r'<input type="hidden" name="hold" value="(\w+)">', page)
    csrf = re.search(CONFIRM_TOKEN, page)
    action = re.search(r'name="action" value="(\w+)"', page)
    assert csrf is not None
    assert action is not None
    answer = client.post("/admin/bulk/confirm",
                         data={"csrf": csrf[1], "action": action[1], "hold": ids})
    return answer.status_code, answer.text


def test_bulk_cancel_of_what_a_filter_shows_asks_first(quarantine: Quarantine, pentagon: Guard,
                                                       sink: RecordingSink) -> None:
    """"Every held recipient this list shows" with a domain filter: the review lists exactly those and changes
    nothing; confirming cancels each, owing each sender a notice; the other domain stays held."""
    for n in range(3):
        quarantine.hold(mail_from="a@example.org", recipients=[held(f"x{n}@army.ml"), held(f"y{n}@gmial.com")],
                        content=f"Subject: {n}\r\n\r\nb\r\n".encode(), client="mua")
    client = admin_client(quarantine, pentagon, sink)
    page = review(client, "/admin?domain=army.ml", action="cancel", scope="filter", filter="domain=army.ml")
    assert "these 3 held recipients" in page
    assert len(quarantine.list()) == 6  # nothing decided yet
    code, text = confirm(client, page)
    assert code == 200
    assert "3 recipients cancelled." in text
    left = quarantine.list()
    assert sorted(hold.recipient for hold in left) == ["y0@gmial.com", "y1@gmial.com", "y2@gmial.com"]
    cancelled = quarantine.list("cancelled")
    assert all(h.decided_by == f"{ADMIN[0]} via web admin" and h.notice == "pending" for h in cancelled)


def test_bulk_release_of_ticked_holds_skips_what_was_decided_meanwhile(quarantine: Quarantine, pentagon: Guard,
                                                                      sink: RecordingSink) -> None:
    """Two ticked holds reviewed; one is cancelled by its sender before the confirmation: the other is released
    and delivered, the first is left cancelled and said to be decided already."""
    made = quarantine.hold(mail_from="a@example.org", recipients=[held("x@army.ml"), held("y@army.ml")],
                           content=b"Subject: s\r\n\r\nb\r\n", client="mua")
    client = admin_client(quarantine, pentagon, sink)
    page = review(client, "/admin", action="release", scope="selected", hold=[h.id for h in made])
    quarantine.cancel(made[0].id, "sender via web")
    code, text = confirm(client, page)
    assert code == 200
    assert "1 recipient released." in text
    assert "1 had been decided already" in text
    assert quarantine.require(made[0].id).state == "cancelled"
    assert quarantine.require(made[1].id).state == "released"
    sink.wait_for(1)


def test_a_confirmation_does_only_what_it_showed(quarantine: Quarantine, pentagon: Guard,
                                                 sink: RecordingSink) -> None:
    """A confirmation whose ids or action were changed after the review is refused (403), and nothing changes;
    so is one with no review at all."""
    made = quarantine.hold(mail_from="a@example.org", recipients=[held("x@army.ml"), held("y@army.ml")],
                           content=b"Subject: s\r\n\r\nb\r\n", client="mua")
    client = admin_client(quarantine, pentagon, sink)
    page = review(client, "/admin", action="cancel", scope="selected", hold=[made[0].id])
    csrf = re.search(CONFIRM_TOKEN, page)
    assert csrf is not None
    for data in ({"action": "cancel", "hold": [made[0].id, made[1].id]}, {"action": "release", "hold": [made[0].id]},
                 {"action": "cancel", "hold": [made[1].id]}):
        answer = client.post("/admin/bulk/confirm", data={"csrf": csrf[1], **data})
        assert answer.status_code == 403
    assert client.post("/admin/bulk", data={"action": "cancel"}).status_code == 403
    assert admin_client(quarantine, pentagon, sink, sign_in=False).post(
        "/admin/bulk/confirm", data={"action": "cancel"}).status_code == 401
    assert len(quarantine.list()) == 2


def test_the_dashboard_counts(filled: tuple[Quarantine, list[Made]]) -> None:
    """Holds a day by state, outcomes, time to decision (an hour to cancel, a day to release), the domains held
    most with what they resembled, and the senders held most with the slips they owned, from known holds."""
    quarantine, made = filled
    board = dashboard(quarantine, days=30)
    assert board.outcomes == {state: sum(1 for m in made if m.state == state)
                              for state in ("held", "released", "corrected", "cancelled", "expired")}
    today = [m for m in made if m.created.date() == NOW.date()]
    assert sum(counts[-1] for counts in board.per_day.values()) == len(today)
    assert board.decision_times["cancelled"].median == 3600
    assert board.decision_times["released"].median == 86400
    assert board.decision_times["cancelled"].buckets == (0, 0, board.outcomes["cancelled"], 0, 0)
    assert board.decision_times["corrected"].count == 0
    assert {domain: (count, intended) for domain, count, intended in board.top_domains} == {
        "army.ml": (40, "army.mil"), "gmial.com": (40, "gmail.com"), "raytheon.co": (40, "raytheon.com")}
    owned = {sender: (count, slips) for sender, count, slips in board.top_senders}
    assert owned["alice@example.org"] == (3 * 14, sum(1 for m in made if m.sender == "alice@example.org"
                                                       and m.state == "cancelled"))
    assert board.snapshot.holds["held"] == board.outcomes["held"]


def test_the_dashboard_page_draws_its_charts_inline(filled: tuple[Quarantine, list[Made]], pentagon: Guard,
                                                    sink: RecordingSink) -> None:
    """The page has its charts as inline SVG images with words for screen readers, no script and no address of
    anything outside the page; without signing in it sends to the sign-in form."""
    quarantine, _ = filled
    assert admin_client(quarantine, pentagon, sink, sign_in=False).get("/admin/dashboard").status_code == 303
    client = admin_client(quarantine, pentagon, sink)
    answer = client.get("/admin/dashboard")
    assert answer.status_code == 200
    page = answer.text
    assert page.count("<svg viewBox=") >= 5
    assert "<title>Holds a day, by outcome now</title>" in page
    assert "army.ml: 40" in page  # the top domains chart's description
    assert "<script" not in page
    assert re.findall(r'(?:href|src)="(https?:[^"]*)"', page) == []
    assert 'href="/admin?state=all&amp;domain=gmial.com"' in page
