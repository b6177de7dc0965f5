"""The admin list's paging and filter, and what the sender's page says about each delivery."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from rcptguard.guard import Guard
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Hold, Quarantine
from rcptguard.store.schema import holds as holds_table
from rcptguard.web.app import outcome_of
from tests.support.admin import signed_in
from tests.support.sink import RecordingSink
from tests.unit import test_web as shared
from tests.unit.test_web import LOCAL, build_app, form, held, hold_message, issue, message


@pytest.fixture
def client(quarantine: Quarantine, links: Links, guard: Guard, sink: RecordingSink) -> TestClient:
    return TestClient(build_app(quarantine, links, guard, sink.port), follow_redirects=False, client=LOCAL)


def hold_ids(page: str) -> list[str]:
    return re.findall(r'<dd class="addr">([a-z2-7]{10})</dd>', page)


def many_holds(quarantine: Quarantine, messages: int, per_message: int) -> list[Hold]:
    """`messages` messages of `per_message` held recipients, each message created a second after the last."""
    made: list[Hold] = []
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for number in range(messages):
        recipients = [held(f"u{number}-{i}@army.ml", f"u{number}-{i}@army.mil") for i in range(per_message)]
        holds = quarantine.hold(mail_from=shared.SENDER, recipients=recipients,
                                content=message(marker=str(number)), client="mua.example")
        with quarantine.engine.begin() as connection:
            connection.execute(update(holds_table).where(holds_table.c.id.in_([h.id for h in holds]))
                               .values(created_at=start + dt.timedelta(seconds=number)))
        made += holds
    return made


# -- the admin list --------------------------------------------------------------------------------------------


def test_admin_pages_through_1200_holds(client: TestClient, quarantine: Quarantine) -> None:
    """1,200 held recipients: the list says how many, shows 50 a page oldest first, and its next and previous
    links walk every hold exactly once; newest first walks them in the other order."""
    made = many_holds(quarantine, messages=3, per_message=400)
    signed_in(client)
    first = client.get("/admin")
    assert first.status_code == 200
    assert "1,200 recipients held; showing 1–50, oldest first (page 1 of 24)." in first.text
    assert "Previous page" not in first.text
    seen: list[str] = []
    url: str | None = "/admin"
    pages = 0
    while url is not None:
        page = client.get(url.replace("&amp;", "&"))
        assert page.status_code == 200
        seen += hold_ids(page.text)
        pages += 1
        found = re.search(r'href="(/admin\?[^"]+)" rel="next"', page.text)
        url = found.group(1) if found else None
    assert pages == 24
    assert len(seen) == len(set(seen)) == 1200
    created = {hold.id: hold.message_id for hold in made}
    order = list(dict.fromkeys(created[hold_id] for hold_id in seen))
    assert order == list(dict.fromkeys(hold.message_id for hold in made))  # oldest message first
    last = client.get("/admin?state=held&order=oldest&page=24&size=50")
    assert "showing 1,151–1,200" in last.text
    assert 'rel="prev"' in last.text
    assert 'rel="next"' not in last.text
    newest = client.get("/admin?order=newest&size=200")
    assert "showing 1–200, newest first (page 1 of 6)" in newest.text
    assert {created[hold_id] for hold_id in hold_ids(newest.text)} == {made[-1].message_id}


def test_admin_state_filter(client: TestClient, quarantine: Quarantine) -> None:
    """The list shows held recipients by default; state=cancelled, state=all and the others filter, and a
    decided hold shows its outcome and no buttons."""
    first, second, third = hold_message(quarantine, held("a@army.ml"), held("b@army.ml"), held("c@army.ml"))
    quarantine.cancel(second.id, "ops")
    signed_in(client)
    assert set(hold_ids(client.get("/admin").text)) == {first.id, third.id}
    cancelled = client.get("/admin?state=cancelled").text
    assert hold_ids(cancelled) == [second.id]
    assert "Decided by ops." in cancelled
    assert "Cancel (never send)" not in cancelled
    assert len(hold_ids(client.get("/admin?state=all").text)) == 3
    assert "no messages in this state" in client.get("/admin?state=expired").text
    for query in ("state=bogus", "order=sideways", "page=0", "page=x", "size=201", "size=-1"):
        assert client.get(f"/admin?{query}").status_code == 400
    beyond = client.get("/admin?page=9")
    assert (beyond.status_code, "There is no page 9" in beyond.text) == (200, True)


# -- what the sender's page says ----------------------------------------------------------------------------------


def test_outcome_tells_the_truth_per_delivery_state(quarantine: Quarantine) -> None:
    """Delivered names the time; pending or sending says it is being sent; put off gives the last answer and that
    it is retried; failed gives the answer; none of them says there is nothing more to do before it is so."""
    (hold,) = hold_message(quarantine)
    decided = quarantine.decide(hold.id, "corrected", "test", deliver_to="c@army.mil")
    now = decided.decided_at or dt.datetime.now(dt.UTC)
    sending = outcome_of(decided, now)
    assert (sending.headline, sending.in_progress) == ("Sending to c@army.mil", True)
    slow = outcome_of(decided, now + dt.timedelta(minutes=5))
    assert slow.headline == "Still sending to c@army.mil"
    assert not slow.in_progress
    assert "do not need to choose again" in slow.detail
    put_off = quarantine.mark_failed(hold.id, "451 4.3.0 try later", permanent=False)
    deferred = outcome_of(put_off, now)
    assert deferred.headline == "Not sent yet to c@army.mil: your organisation's mail server put it off"
    assert "451 4.3.0 try later" in deferred.detail
    assert "tried again automatically" in deferred.detail
    refused = outcome_of(quarantine.mark_failed(hold.id, "550 5.1.1 no such user", permanent=True), now)
    assert refused.headline == "Not sent to c@army.mil"
    assert "550 5.1.1 no such user" in refused.detail
    (other,) = hold_message(quarantine, held("d@army.ml"), content=message(marker="2"))
    quarantine.decide(other.id, "released", "test")
    done = quarantine.mark_delivered(other.id)
    assert done.delivered_at is not None
    delivered = outcome_of(done, now)
    assert delivered.headline == "Sent to d@army.ml"
    assert done.delivered_at.strftime("%d %B %Y, %H:%M UTC") in delivered.detail
    for outcome in (sending, slow, deferred, refused):
        assert "do not need to do anything" not in outcome.detail


def test_page_refreshes_while_sending_and_stops_after(client: TestClient, quarantine: Quarantine,
                                                      links: Links, sink: RecordingSink) -> None:
    """While a delivery is in progress the page reloads itself (a meta refresh, no script); once it is
    delivered the page says when and stops reloading."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    quarantine.decide(holds[0].id, "corrected", "test", deliver_to="c@army.mil")
    sending = client.get(f"/confirm/{token}").text
    assert '<meta http-equiv="refresh" content="3">' in sending
    assert "Sending to c@army.mil" in sending
    assert 'role="status"' in sending
    assert "<script" not in sending
    quarantine.mark_delivered(holds[0].id)
    done = client.get(f"/confirm/{token}").text
    assert 'http-equiv="refresh"' not in done
    assert "Sent to c@army.mil" in done
    assert "Your organisation&#39;s mail server accepted it for delivery on " in done


def test_release_answers_before_a_slow_next_hop(quarantine: Quarantine, links: Links, guard: Guard) -> None:
    """With a next hop that takes 3 s to answer the final dot, the POST answers at once, /healthz and the page
    answer while the release is sent, and the message is delivered exactly once."""
    with RecordingSink(delay_data=3.0) as slow:
        client = TestClient(build_app(quarantine, links, guard, slow.port), follow_redirects=False, client=LOCAL)
        holds = hold_message(quarantine)
        token = issue(links, holds)
        started = time.monotonic()
        posted = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "correct"))
        assert posted.status_code == 303
        assert time.monotonic() - started < 1.0
        slow.wait_for(1)  # the next hop has the message and sits on its answer
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        page = client.get(f"/confirm/{token}")
        assert time.monotonic() - started < 1.0
        assert "Sending to c@army.mil" in page.text
        assert shared.settled(quarantine, holds[0].id).delivery == "delivered"
        time.sleep(0.5)
        assert [m.rcpt_tos for m in slow.messages] == [("c@army.mil",)]
