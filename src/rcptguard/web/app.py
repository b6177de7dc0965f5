"""The web front: the sender's confirmation page, the operator's admin pages and the JSON check API.

    app = create_app(quarantine=q, links=Links(store), guard_provider=lambda: guard, next_hop=hop,
                     secret=key, settings=WebSettings(admin_user="ops", admin_password_hash="$argon2id$..."))

Pages are rendered on the server (Jinja2, autoescaped) and work without JavaScript. GET and HEAD never change
anything, because mail scanners follow links; every action is a POST carrying a CSRF token bound to the link and
the hold. A decision goes through the quarantine's atomic decide, so a double click, a replay or two browsers at
once deliver at most once. A release is recorded at once and sent in the background (web.releases): the POST
answers with a redirect to the page, which shows the delivery's progress. Every absolute URL the application
makes starts with the configured base_url, never with what the request's Host header says. The admin pages are
behind web.admin (a signed-in session or a trusted proxy's header; `Web.admin` and `Web.admin_form` are the
gate every admin route goes through); the client's address and scheme come from web.proxy (forwarded headers
from trusted proxies only), which also writes the access log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import inspect
import logging
import math
import re
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import jinja2
from fastapi import FastAPI, Form, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model
from starlette.datastructures import MutableHeaders

from rcptguard import __version__, lookalike
from rcptguard.delivery import NextHop
from rcptguard.domains import MAX_INPUT, DomainError, normalize_domain
from rcptguard.guard import Guard
from rcptguard.metrics import CONTENT_TYPE, Metrics
from rcptguard.notify import Doubt, Notifier
from rcptguard.rewrite import correct_headers
from rcptguard.store import StoreError
from rcptguard.store.links import LinkExpired, LinkInfo, LinkInvalid, Links
from rcptguard.store.quarantine import STATES, AlreadyDecided, Hold, NotFound, Quarantine, QuarantineError
from rcptguard.web import bulk, charts
from rcptguard.web.admin import COOKIE, LOGIN_COOKIE, AdminAuth, SignInNeededError
from rcptguard.web.answers import PageError
from rcptguard.web.dashboard import TIME_BUCKETS, dashboard
from rcptguard.web.limits import FORM_MAX_BODY, ApiAccess, BodyLimit, Clock, TokenBuckets, client_address, is_loopback
from rcptguard.web.listing import Listing, list_page
from rcptguard.web.proxy import AccessLog, ForwardedHeaders
from rcptguard.web.releases import Releases
from rcptguard.web.settings import WebSettings
from rcptguard.world.weigh import consult_all_sync

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from rcptguard.world import SyncWorld

__all__ = [
    "SECURITY_HEADERS",
    "SENDER_ACTOR",
    "CheckRequest",
    "CheckResponse",
    "Health",
    "SignalOut",
    "VerdictOut",
    "create_app",
    "csrf_token",
]

log = logging.getLogger(__name__)

SENDER_ACTOR = "sender via web"
MAX_RECIPIENTS = 1000  # the default of [web] api_max_recipients
CHECK_PATH = "/v1/check"
# The next hop the page speaks of: the organisation's own mail server, which then delivers the message onwards.
OUR_SERVER = "Your organisation's mail server"
SLOW_SEND = dt.timedelta(minutes=2)  # a delivery still in progress after this is said to take long
REFRESH_SECONDS = 3  # how often a page showing a delivery in progress reloads itself
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,128}")
TEMPLATES = Path(__file__).parent / "templates"
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
)
_FIELD_LIMIT = 512  # longer form values are cut before they are compared or shown


# -- the JSON API's models ---------------------------------------------------------------------------------------


class SignalOut(BaseModel):
    """One named finding, as in `rcptguard check --format jsonl`."""

    name: str
    score: float
    evidence: dict[str, str]


class VerdictOut(BaseModel):
    """The verdict for one recipient: exactly the shape of `rcptguard check --format jsonl` (Verdict.to_json())."""

    address: str
    domain: str | None
    domain_ascii: str | None
    verdict: Literal["pass", "warn", "hold", "reject"]
    intended: str | None
    suggestion: str | None
    score: float
    signals: list[SignalOut]
    reason: str
    alternatives: list[str]


Recipient = Annotated[str, StringConstraints(max_length=MAX_INPUT)]


class CheckRequest(BaseModel):
    """Recipients to check, as typed."""

    model_config = ConfigDict(extra="forbid")

    recipients: Annotated[list[Recipient], Field(min_length=1, max_length=MAX_RECIPIENTS)]


class CheckResponse(BaseModel):
    """One verdict per recipient, in request order."""

    verdicts: list[VerdictOut]


class Health(BaseModel):
    status: Literal["ok"]


class Problem(BaseModel):
    """A request the API could not read (the body is not JSON)."""

    detail: str


# -- helpers -----------------------------------------------------------------------------------------------------


class SecurityHeaders:
    """ASGI middleware: the security headers on every response (pages, API and errors alike)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one held recipient, in plain words: a headline and a sentence of detail; `in_progress`
    while the delivery is being sent (the page reloads itself to show how it ends)."""

    headline: str
    detail: str
    in_progress: bool = False


def outcome_of(hold: Hold, now: dt.datetime | None = None) -> Outcome:
    """The truth about one hold's delivery, as far as the store knows it: delivered (when), being sent, deferred
    by the next hop and retried (its last answer), or refused (its answer). Never "done" before it is."""
    to = hold.deliver_to or hold.recipient
    if hold.state == "held":
        return Outcome("Waiting for a decision", "Nothing has been sent to this address yet.")
    if hold.state == "cancelled":
        return Outcome("Not sent", f"The message was not sent to {hold.recipient}.")
    if hold.state == "expired":
        return Outcome("Not sent", "No decision was made in time, so the message was not sent to this address.")
    answer = hold.last_error or "no reason given"
    if hold.delivery == "delivered":
        when = f" on {_when(hold.delivered_at)}" if hold.delivered_at else ""
        return Outcome(f"Sent to {to}", f"{OUR_SERVER} accepted it for delivery{when}.")
    if hold.delivery == "failed":
        return Outcome(f"Not sent to {to}",
                       f"{OUR_SERVER} refused it, so it will not be tried again. Its answer: {answer}.")
    if hold.delivery == "pending" and hold.delivery_attempts > 0:
        return Outcome(f"Not sent yet to {to}: {OUR_SERVER[0].lower()}{OUR_SERVER[1:]} put it off",
                       f"It is tried again automatically. If it still cannot be sent after a few days, you will get "
                       f"a notice. The server's last answer: {answer}.")
    if hold.delivery in ("pending", "sending"):
        started = hold.decided_at or hold.created_at
        if (now or dt.datetime.now(dt.UTC)) - started > SLOW_SEND:
            return Outcome(f"Still sending to {to}",
                           "It is taking longer than usual. It is sent automatically; you do not need to choose "
                           "again. If it cannot be sent, you will get a notice.")
        return Outcome(f"Sending to {to}", "It is being sent now. This page shows the result in a few seconds; "
                       "reload it if it does not.", in_progress=True)
    return Outcome(f"Released to {to}", "")  # pragma: no cover - released holds always have a delivery state


def reply_note(hold: Hold, content: bytes) -> str:
    """For a corrected hold whose To or Cc the guard could not correct (a DKIM signature covers them): that
    replies may still go to the mistyped address. Otherwise ""."""
    if hold.state != "corrected" or not hold.deliver_to or hold.deliver_to == hold.recipient:
        return ""
    _, why_not = correct_headers(content, hold.recipient, hold.deliver_to)
    if why_not != "signed":
        return ""
    return (f" Replies may still go to {hold.recipient}: the message is signed over its To and Cc lines, so they "
            "were left as you wrote them. Tell the recipient the right address.")


def choice_of(hold: Hold) -> str:
    """What was chosen for a decided hold and when, in a sentence; "an administrator" when one chose. Never who
    else: the page cannot know whether its own reader chose (a link can be forwarded)."""
    if hold.state == "held" or hold.decided_at is None:
        return ""
    when = _when(hold.decided_at)
    if hold.state == "expired":
        return f"Nobody chose in time, so it expired on {when}."
    to = hold.deliver_to or hold.recipient
    if hold.decided_by == SENDER_ACTOR:
        button = {"cancelled": "Don't send", "corrected": f"Send to {domain_of(to)} instead",
                  "released": f"Send to {domain_of(hold.recipient)} anyway"}.get(hold.state, hold.state)
        return f"“{button}” was chosen on this page on {when}."
    chose = {"cancelled": "not to send it", "corrected": f"to send it to {to} instead",
             "released": "to send it anyway"}.get(hold.state, hold.state)
    return f"An administrator chose {chose} on {when}."


_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def visible(value: object) -> str:
    """Text safe to show as it is: control characters as their Unicode pictures, direction overrides as U+FFFD.

    HTML escaping is the template's job (autoescape); this keeps a CR/LF or a right-to-left override in a
    subject or an address from changing what the reader sees.
    """
    out = []
    for ch in str(value):
        code = ord(ch)
        if code < 0x20:
            out.append(chr(0x2400 + code))
        elif code == 0x7F:
            out.append("\u2421")
        elif ch in _BIDI:
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def marked(value: object) -> Markup:
    """`visible` text with each character that passes for another (a Cyrillic 'а' in a Latin name) in a <mark>
    that names it, and each one that shows nothing (a bidi control, a zero-width space, a variation selector: the
    default-ignorable code points) as a marked U+FFFD that names it: what a person cannot see on screen, the page
    shows."""
    raw = str(value)
    shown = visible(raw)  # a character for a character
    chars = {f.char: f for f in lookalike.foreign(shown)}
    if not chars and not any(_invisible(ch) for ch in raw):
        return Markup.escape(shown)
    return Markup("").join(_marked_char(ch, seen, chars) for ch, seen in zip(raw, shown, strict=True))


def _marked_char(ch: str, seen: str, chars: dict[str, lookalike.Foreign]) -> Markup:
    if _invisible(ch):
        name = unicodedata.name(ch, f"U+{ord(ch):04X}").lower()
        return Markup('<mark title="{}">\ufffd</mark>').format(f"an invisible character ({name}), not typed")
    if seen in chars:
        return Markup('<mark title="{}">{}</mark>').format(f"{chars[seen].script}: {chars[seen].name.lower()}", seen)
    return Markup.escape(seen)


def _invisible(ch: str) -> bool:
    """A character that shows nothing: Unicode's Default_Ignorable_Code_Point (bidi controls, zero-width
    characters, variation selectors, Hangul fillers, tags...)."""
    return _IGNORABLE.fullmatch(ch) is not None


# Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt; Python's unicodedata does not carry it)
_IGNORABLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                        "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
                        "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


def printable(value: Any) -> Any:  # noqa: ANN401 - any JSON value
    """A JSON value with every lone surrogate (which UTF-8 cannot carry) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def local_of(address: str) -> str:
    return address.rpartition("@")[0]


def confirms(typed: str, hold: Hold) -> bool:
    """Whether what the sender typed to send a held recipient anyway names what the hold doubts: the domain of an
    address that looks mistyped (`same_domain`), the person of one who may be the wrong person, since that domain is
    right (the local part, olga.smith, or the whole address; case aside)."""
    if not hold.about_person:
        return same_domain(typed, domain_of(hold.recipient))
    if indistinct(hold):
        return False
    typed = _comparable(typed.strip())
    local, _, domain = hold.recipient.rpartition("@")
    locals_ = {_comparable(local), _comparable(_unquoted(local))} - {""}
    if not typed or not locals_:
        return False
    if typed in locals_:
        return True
    typed_local, at, typed_domain = typed.rpartition("@")
    return bool(at) and typed_local in locals_ and same_domain(typed_domain, domain)


def indistinct(hold: Hold) -> bool:
    """Whether the address held as possibly the wrong person and the one suggested are the same when typed (one has
    a character that shows nothing): typing it would say nothing of which of the two was meant."""
    if not hold.about_person or not hold.suggestion:
        return False
    return (domain_of(hold.suggestion) == domain_of(hold.recipient)
            and _comparable(_unquoted(local_of(hold.suggestion))) == _comparable(_unquoted(local_of(hold.recipient))))


def _comparable(text: str) -> str:
    """Text as a sender can type what the page shows of it: NFC, lower case (not case folded: straße is not
    strasse), without the characters that show nothing (a bidi control, a zero-width space, a variation selector:
    nobody can type them) and without the U+FFFD the page shows for them (a copy of what it shows)."""
    kept = "".join(c for c in unicodedata.normalize("NFC", text) if not _invisible(c) and c != "\ufffd")
    return unicodedata.normalize("NFC", kept.lower())


def _unquoted(local: str) -> str:
    """A quoted local part's content ("john smith" -> john smith), as a sender would type it."""
    if len(local) >= 2 and local[0] == local[-1] == '"':
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def same_domain(typed: str, expected: str) -> bool:
    """Whether what the sender typed names the expected domain (case, a trailing dot and IDN spelling aside)."""
    typed = typed.strip().rstrip(".").lower()
    expected = expected.strip().rstrip(".").lower()
    if not typed:
        return False
    if typed == expected:
        return True
    try:
        return normalize_domain(typed).ascii == normalize_domain(expected).ascii
    except DomainError:
        return False


def csrf_token(secret: bytes, link_id: str, hold_id: str) -> str:
    """The CSRF token of one hold's forms on one link's page: HMAC-SHA256(secret, token hash + hold id)."""
    return hmac.new(secret, (link_id + hold_id).encode("utf-8"), hashlib.sha256).hexdigest()


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%d %B %Y, %H:%M UTC")


def _day(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%d %B %Y")


def _field(value: str) -> str:
    return value[:_FIELD_LIMIT]


def _duration(seconds: float | None) -> str:
    """A wait in the largest unit that says it: 45 s, 12 min, 3.5 h, 2.1 days."""
    if seconds is None:
        return "–"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = f"{seconds / size:.1f}".removesuffix(".0")
            return f"{amount} {unit}{'s' if unit == 'day' and amount != '1' else ''}"
    return f"{seconds:.0f} s"


class Pages:
    """The Jinja2 templates: the operator's template_dir first (if any), then the shipped ones."""

    def __init__(self, template_dir: Path | None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if template_dir is not None:
            loaders.append(jinja2.FileSystemLoader(template_dir))
        loaders.append(jinja2.FileSystemLoader(TEMPLATES))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders), autoescape=True, undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True,
        )
        self.env.filters["visible"] = visible
        self.env.filters["marked"] = marked

    def render(self, request: Request, name: str, status: int = 200, headers: Mapping[str, str] | None = None,
               **context: Any) -> HTMLResponse:  # noqa: ANN401 - template context
        root = str(request.scope.get("root_path", "")).rstrip("/")
        html = self.env.get_template(name).render(root=root, **context)
        return HTMLResponse(html, status_code=status, headers=dict(headers or {}))


# -- the application ---------------------------------------------------------------------------------------------

_NOT_ACCEPTED = "This form could not be accepted"
_NOT_VALID = "This link is not valid"


class Web:
    """What the routes do, with the application's collaborators; `create_app` wires it to FastAPI."""

    def __init__(self, *, quarantine: Quarantine, links: Links, guard_provider: Callable[[], Guard],
                 next_hop: NextHop, secret: bytes, template_dir: Path | None, settings: WebSettings, clock: Clock,
                 notifier: Notifier | None = None, metrics: Metrics | None = None,
                 world: SyncWorld | None = None) -> None:
        if len(secret) < 16:
            raise ValueError("the web secret must be at least 16 bytes")
        self.quarantine = quarantine
        self.links = links
        self.guard_provider = guard_provider
        self.next_hop = next_hop
        self.secret = secret
        self.pages = Pages(template_dir)
        self.settings = settings
        self.metrics = metrics or Metrics("web", quarantine.store)
        self.world = world
        self.releases = Releases(quarantine, next_hop, workers=settings.release_workers, notifier=notifier)
        self.auth = AdminAuth(secret=secret, settings=settings, clock=clock)

    def page_url(self, token: str) -> str:
        """The absolute URL of a link's page: under base_url, whatever Host the request named."""
        return f"{self.settings.public_url}/confirm/{token}"

    # -- shared ---------------------------------------------------------------------------------------------------

    @staticmethod
    def unavailable(exc: StoreError) -> PageError:
        log.error("web: %s", exc)
        return PageError(503, "Please try again in a few minutes",
                         "The service is busy or unavailable right now. Nothing was changed.")

    def resolve(self, token: str) -> LinkInfo:
        try:
            return self.links.resolve(token)
        except LinkInvalid:
            raise PageError(403, _NOT_VALID,
                            "Check that you copied the whole link from the message you were sent.") from None
        except LinkExpired:
            raise PageError(410, "This link has expired",
                            "The message is no longer waiting for your decision. If it still needs to go, "
                            "send it again with the address checked.") from None
        except StoreError as exc:
            raise self.unavailable(exc) from None

    def with_reply_note(self, hold: Hold, outcome: Outcome) -> Outcome:
        """The outcome, with `reply_note` added for a correction whose headers had to stay as written (unknown
        once the message itself is deleted: then nothing is added)."""
        if hold.state != "corrected" or hold.purged_at is not None:
            return outcome
        try:
            note = reply_note(hold, self.quarantine.content(hold.id))
        except (StoreError, QuarantineError):
            return outcome
        return dataclasses.replace(outcome, detail=outcome.detail + note) if note else outcome

    def message_holds(self, info: LinkInfo) -> list[Hold]:
        try:
            found = [self.quarantine.get(hold_id) for hold_id in self.links.hold_ids(info.message_id)]
        except StoreError as exc:
            raise self.unavailable(exc) from None
        return [hold for hold in found if hold is not None]

    def still_waiting(self, info: LinkInfo) -> int:
        try:
            return sum(1 for hold in self.message_holds(info) if hold.state == "held")
        except PageError:
            return 0

    def mark_used(self, token: str) -> None:
        try:
            self.links.mark_used_if_done(token)
        except StoreError as exc:  # the decision stands; the next decision marks the link
            log.warning("web: %s", exc)

    # -- the sender's confirmation page ---------------------------------------------------------------------------

    def confirm_page(self, request: Request, info: LinkInfo, status: int = 200,
                     errors: Mapping[str, str] | None = None) -> HTMLResponse:
        holds = self.message_holds(info)
        if not holds:
            raise PageError(403, _NOT_VALID, "There is no held message behind this link.")
        first = holds[0]
        message = {
            "subject": first.subject, "sender": first.mail_from or "(no sender address)",
            "received": _when(first.received_at), "received_iso": first.received_at.isoformat(),
            "purged": _day(first.purged_at) if first.purged_at else None,
        }
        now = dt.datetime.now(dt.UTC)
        outcomes = [self.with_reply_note(hold, outcome_of(hold, now)) for hold in holds]
        items = [{
            "hold": hold, "typed_domain": domain_of(hold.recipient), "typed_local": local_of(hold.recipient),
            "typed_both": lookalike.both(domain_of(hold.recipient)), "lookalike": lookalike.note(hold.recipient),
            "typed_ascii": lookalike.ascii_form(domain_of(hold.recipient)),
            "suggestion_domain": domain_of(hold.suggestion) if hold.suggestion else None,
            "csrf": csrf_token(self.secret, info.id, hold.id), "outcome": outcome, "choice": choice_of(hold),
            "error": (errors or {}).get(hold.id),
        } for hold, outcome in zip(holds, outcomes, strict=True)]
        waiting = [hold for hold in holds if hold.state == "held"]
        refresh = REFRESH_SECONDS if any(outcome.in_progress for outcome in outcomes) else None
        return self.pages.render(request, "confirm.html", status, message=message, items=items,
                                 waiting=len(waiting), doubt=Doubt.of(waiting), refresh=refresh)

    def confirm_action(self, request: Request, token: str, hold_id: str, action: str, csrf: str,
                       confirm_domain: str) -> Response:
        info = self.resolve(token)
        if not hold_id or not csrf or not _equal(csrf, csrf_token(self.secret, info.id, hold_id)):
            raise PageError(403, _NOT_ACCEPTED,
                            "Open the link from your message again and choose once more. Nothing was changed.")
        try:
            current = self.quarantine.get(hold_id)
        except StoreError as exc:
            raise self.unavailable(exc) from None
        if current is None or current.message_id != info.message_id:
            raise PageError(403, _NOT_ACCEPTED, "That recipient is not part of this message.")
        held = current.state == "held"  # a decided hold goes on to decide() and its AlreadyDecided (409)
        if held and action == "correct" and not current.suggestion:
            raise PageError(400, "There is no suggested address",
                            "This recipient has no suggested correction. Nothing was changed.")
        if held and action == "release" and not confirms(confirm_domain, current):
            asked = local_of(current.recipient) if current.about_person else domain_of(current.recipient)
            error = f"To send it anyway, type {visible(asked)} exactly. Nothing was sent."
            if indistinct(current):
                error = (f"{visible(current.recipient)} and {visible(current.suggestion)} look the same: typing it "
                         f"cannot tell them apart. Send it to {visible(current.suggestion)} instead, or ask your "
                         f"administrator. Nothing was sent.")
            return self.confirm_page(request, info, 422, {hold_id: error})
        if action not in ("cancel", "correct", "release"):
            raise PageError(400, "Please choose what to do",
                            "Open the link from your message again and use one of its buttons. Nothing was changed.")
        try:
            self.decide(current, action, SENDER_ACTOR)
        except AlreadyDecided:
            self.mark_used(token)
            try:
                now = self.quarantine.get(hold_id) or current
            except StoreError:
                now = current
            return self.pages.render(request, "outcome.html", 409, title="This was already done", already=True,
                                     outcome=outcome_of(now), choice=choice_of(now), hold=now,
                                     more=self.still_waiting(info), token=token)
        except NotFound:
            raise PageError(403, _NOT_ACCEPTED, "That recipient is not part of this message.") from None
        except StoreError as exc:
            raise self.unavailable(exc) from None
        self.mark_used(token)
        # Redirect-after-POST: the page shows this hold's outcome, and the delivery's progress while it is sent.
        return RedirectResponse(self.page_url(token), status_code=303)

    def decide(self, current: Hold, action: str, actor: str, *, notify_sender: bool = False,
               detail: str = "") -> Hold:
        """Record the decision (cancel, correct: to the suggestion, release: as typed), and have a release sent
        in the background; `notify_sender` (an administrator decides) owes the sender a notice of it, sent in the
        background too. The quarantine logs the decision; `detail` goes with it into the audit log. Raises
        AlreadyDecided, NotFound, StoreError."""
        by = "admin" if notify_sender else "sender"
        if action == "cancel":
            decided = self.quarantine.cancel(current.id, actor, notify_sender=notify_sender, detail=detail)
            self.metrics.page_decisions.labels(by, decided.state).inc()
            if notify_sender:
                self.releases.notify_soon()
            return decided
        to = current.suggestion if action == "correct" else None
        if to is not None and to != current.recipient:
            decided = self.quarantine.decide(current.id, "corrected", actor, deliver_to=to,
                                             notify_sender=notify_sender, detail=detail)
        else:
            decided = self.quarantine.decide(current.id, "released", actor, notify_sender=notify_sender,
                                             detail=detail)
        self.metrics.page_decisions.labels(by, decided.state).inc()
        self.releases.submit(decided.id)
        return decided

    # -- the operator's admin pages -------------------------------------------------------------------------------

    def admin(self, request: Request) -> str:
        """The gate of every admin page: the signed-in admin's name. Raises AdminError: 404 when the admin pages
        are off, SignInNeededError (a read goes to the sign-in page, a post gets 401) without a live session."""
        return self.auth.user(request)

    def admin_form(self, request: Request, csrf: str) -> str:
        """The gate of every admin form post: `admin`, and the form's CSRF token must be the admin's (403)."""
        return self.auth.form(request, csrf)

    def admin_page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:  # noqa: ANN401 - template context
        """An admin page: the template with the admin's name and the CSRF token its forms (sign-out too) carry."""
        return self.pages.render(request, name, status, admin=self.admin(request), csrf=self.auth.csrf(request),
                                 **context)

    def admin_list(self, request: Request) -> HTMLResponse:
        self.admin(request)
        params = request.query_params
        try:
            listing = Listing.parse(params.get("state"), params.get("order"), params.get("page"), params.get("size"),
                                    params)
        except ValueError as exc:
            raise PageError(400, "This list cannot be shown", f"{exc}.") from None
        try:
            page = list_page(self.quarantine, listing)
        except StoreError as exc:
            raise self.unavailable(exc) from None
        now = dt.datetime.now(dt.UTC)
        items = [{"hold": hold, "received": _when(hold.received_at), "outcome": outcome_of(hold, now),
                  "purged": _day(hold.purged_at) if hold.purged_at else None} for hold in page.holds]
        return self.admin_page(request, "admin.html", items=items, page=page, listing=listing,
                               states=(*STATES, "all"), bulk_limit=bulk.MAX_BULK)

    def bulk_token(self, request: Request, user: str, action: str, hold_ids: list[str]) -> str:
        """The token of a bulk confirmation: bound to the action, the ids, the admin and their session."""
        return bulk.token(self.secret, f"{user}\0{self.auth.csrf(request)}", action, hold_ids)

    def admin_bulk(self, request: Request, action: str, scope: str, hold_ids: list[str], filters: Mapping[str, str],
                   csrf: str) -> HTMLResponse:
        """Step one of a bulk release or cancel: the page that says what it would do, with a confirm button."""
        user = self.admin_form(request, csrf)
        if action not in bulk.ACTIONS:
            raise PageError(400, "Please choose what to do", "Choose release or cancel, then review again.")
        try:
            holds = bulk.chosen(self.quarantine, scope, hold_ids, filters)
        except ValueError as exc:
            raise PageError(400, "This list cannot be shown", f"{exc}.") from None
        except StoreError as exc:
            raise self.unavailable(exc) from None
        held = [hold for hold in holds if hold.state == "held"]
        ids = [hold.id for hold in held]
        return self.admin_page(request, "admin_bulk.html", title=f"{bulk.ACTIONS[action]}: review", action=action,
                               verb=bulk.ACTIONS[action], holds=held,
                               decided=[hold for hold in holds if hold.state != "held"], ids=ids,
                               confirm_token=self.bulk_token(request, user, action, ids), limit=bulk.MAX_BULK)

    def admin_bulk_confirm(self, request: Request, action: str, hold_ids: list[str], csrf: str) -> HTMLResponse:
        """Step two: each recipient the review named that is still held is decided, as by its own button."""
        user = self.admin(request)
        if action not in bulk.ACTIONS or not csrf or not _equal(csrf, self.bulk_token(request, user, action,
                                                                                      hold_ids)):
            raise PageError(403, _NOT_ACCEPTED, "Review the change again from the list.")
        detail = f"from {client_address(request.scope)}"
        try:
            applied = bulk.apply(lambda hold_id: self.decide(self.quarantine.require(hold_id), action,
                                                             f"{user} via web admin", notify_sender=True,
                                                             detail=detail),
                                 hold_ids, action, user)
        except StoreError as exc:
            raise self.unavailable(exc) from None
        verb = "released" if action == "release" else "cancelled"
        done = len(applied.done)
        text = f"{done} {'recipient' if done == 1 else 'recipients'} {verb}."
        if applied.skipped:
            text += f" {len(applied.skipped)} had been decided already, and were left as they were."
        if action == "release" and done:
            text += " Releases are sent in the background; the list of released messages shows how each ended."
        return self.admin_page(request, "admin_done.html", title=f"{done} {verb}", text=text)

    def admin_dashboard(self, request: Request) -> HTMLResponse:
        """The last 30 days: holds by day and outcome, time to decision, the domains and senders held most."""
        self.admin(request)
        try:
            board = dashboard(self.quarantine)
        except StoreError as exc:
            raise self.unavailable(exc) from None
        days = [day.strftime("%d %b") for day in board.days]
        decided = {state: times for state, times in board.decision_times.items() if times.count}
        drawn = {
            "per_day": charts.stacked_columns(days, board.per_day, title="Holds a day, by outcome now"),
            "outcomes": charts.bars(list(board.outcomes.items()), title="Holds by outcome",
                                    colours=charts.COLOURS),
            "times": {state: charts.bars([(label, times.buckets[i]) for i, (label, _) in enumerate(TIME_BUCKETS)],
                                         title=f"Time to {state}", colour=charts.COLOURS[state])
                      for state, times in decided.items()},
            "domains": charts.bars([(domain, count) for domain, count, _ in board.top_domains],
                                   title="Domains held most often"),
            "senders": charts.bars([(sender, count) for sender, count, _ in board.top_senders],
                                   title="Senders held most often"),
        }
        return self.admin_page(request, "dashboard.html", board=board, charts=drawn, decided=decided,
                               duration=_duration, wide=True)

    def admin_action(self, request: Request, hold_id: str, action: str, csrf: str) -> HTMLResponse:
        user = self.admin_form(request, csrf)
        if action not in ("release", "cancel"):
            raise PageError(400, "Please choose what to do", "Use the buttons on the list.")
        try:
            decided = self.decide(self.quarantine.require(hold_id), action, f"{user} via web admin",
                                  notify_sender=True, detail=f"from {client_address(request.scope)}")
        except AlreadyDecided as exc:
            return self.admin_page(request, "admin_done.html", 409, title="This was already decided",
                                   text=str(exc))
        except NotFound:
            raise PageError(404, "Not found", f"There is no held message {hold_id}.") from None
        except StoreError as exc:
            raise self.unavailable(exc) from None
        outcome = outcome_of(decided)
        text = "It is being sent now; the list of released messages shows how it ends." if outcome.in_progress \
            else outcome.detail
        return self.admin_page(request, "admin_done.html", title=outcome.headline, text=text)

    def sign_in_page(self, request: Request, status: int = 200, error: str = "",
                     headers: Mapping[str, str] | None = None) -> HTMLResponse:
        """The sign-in form, with the cookie that ties its CSRF token to this browser."""
        nonce, csrf = self.auth.sign_in_form(request)
        signed_out = request.query_params.get("out") == "1" and not error
        response = self.pages.render(request, "sign_in.html", status, headers, csrf=csrf, error=error,
                                     signed_out=signed_out, proxy_only=self.auth.password_hash is None)
        self.auth.set_cookie(request, response, LOGIN_COOKIE, nonce, max_age=3600)
        return response

    def sign_in(self, request: Request, user: str, password: str, csrf: str) -> Response:
        try:
            cookie = self.auth.sign_in(request, user, password, csrf)
        except PageError as exc:
            if exc.status in (401, 429):  # the form again, saying why
                return self.sign_in_page(request, exc.status, exc.text, exc.headers)
            raise
        response = RedirectResponse(f"{self.settings.public_url}/admin", status_code=303)
        self.auth.set_cookie(request, response, COOKIE, cookie, max_age=math.ceil(self.settings.admin_session_max))
        self.auth.clear_cookie(request, response, LOGIN_COOKIE)
        return response

    def sign_out(self, request: Request, csrf: str) -> Response:
        self.auth.sign_out(request, csrf)
        response = RedirectResponse(f"{self.settings.public_url}/admin/login?out=1", status_code=303)
        self.auth.clear_cookie(request, response, COOKIE)
        return response

    # -- the JSON API ---------------------------------------------------------------------------------------------

    def check(self, body: CheckRequest) -> CheckResponse:
        """Each recipient's verdict, with the world's evidence when [dns] is on (docs/world.md): the look-ups of
        one request are made at once, so it waits about one budget_ms at most, and never fails on them."""
        guard = self.guard_provider()
        verdicts, times = [], []
        for raw in body.recipients:
            started = time.perf_counter()
            verdicts.append(guard.check(raw))
            times.append(time.perf_counter() - started)
        verdicts = consult_all_sync(self.world, verdicts)
        for verdict, elapsed in zip(verdicts, times, strict=True):
            self.metrics.decided(verdict, elapsed)
        return CheckResponse(verdicts=[VerdictOut.model_validate(v.to_json()) for v in verdicts])

    # -- metrics --------------------------------------------------------------------------------------------------

    def exposition(self, request: Request) -> Response:
        """The Prometheus text of this process's metrics and the store's gauges: to loopback clients only with
        `metrics = "loopback"` (403 to others), to anyone with "open", 404 with "off"."""
        mode = self.settings.metrics
        if mode == "off":
            return PlainTextResponse("Not found.", status_code=404)
        if mode == "loopback" and not is_loopback(client_address(request.scope)):
            return PlainTextResponse("Metrics are served to this machine only.", status_code=403)
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)


def request_model(max_recipients: int) -> type[CheckRequest]:
    """CheckRequest with `max_recipients` as its limit (and in its schema)."""
    if max_recipients == MAX_RECIPIENTS:
        return CheckRequest
    return create_model("CheckRequest", __base__=CheckRequest, __module__=__name__,
                        recipients=(Annotated[list[Recipient], Field(min_length=1, max_length=max_recipients)], ...))


def create_app(
    *,
    quarantine: Quarantine,
    links: Links,
    guard_provider: Callable[[], Guard],
    next_hop: NextHop,
    secret: bytes,
    template_dir: Path | None = None,
    settings: WebSettings | None = None,
    clock: Clock = time.monotonic,
    notifier: Notifier | None = None,
    metrics: Metrics | None = None,
    world: SyncWorld | None = None,
) -> FastAPI:
    """The web application. `secret` keys the CSRF tokens and signs the admin's cookie (at least 16 bytes, the
    same across restarts and workers); templates in `template_dir` replace the shipped ones of the same name.
    `settings` ([web]) give the public base URL, the admin's sign-in (the admin pages answer 404 unless
    `admin_user` and `admin_password_hash`, or `admin_user_header`, are set), the trusted proxies, the access
    log and the limits; `clock` (monotonic seconds) times the rate limit, the login lockout and the sessions.
    With `notifier` ([notify]), the notices an administrator's decisions owe their senders are sent from here
    too, in the background, once the quarantine's notice_grace has passed; without it, by the relay's retry loop
    (or `quarantine deliver-pending`). `metrics`: what `GET /metrics` serves (default: the web's own, with the
    store's gauges). `world`: the DNS evidence `/v1/check` weighs (None: decided without it); the caller closes
    it."""
    settings = settings or WebSettings()
    web = Web(quarantine=quarantine, links=links, guard_provider=guard_provider, next_hop=next_hop, secret=secret,
              template_dir=template_dir, settings=settings, clock=clock, notifier=notifier, metrics=metrics,
              world=world)
    # redirect_slashes off: Starlette builds that redirect from the Host header (see confirm_slash).
    app = FastAPI(title="rcptguard", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json", redirect_slashes=False)
    app.state.web = web
    app.state.close = web.releases.close  # serve() calls it once the server has stopped
    buckets = TokenBuckets(settings.api_rate, settings.api_burst, clock)
    app.add_middleware(BodyLimit, limit_for=lambda path: settings.api_max_body if path == CHECK_PATH
                       else FORM_MAX_BODY)
    app.add_middleware(ApiAccess, path=CHECK_PATH, mode=settings.api, token=settings.api_token, buckets=buckets)
    app.add_middleware(SecurityHeaders)  # on every answer, the limits' too
    if settings.access_log != "off":
        app.add_middleware(AccessLog, level=logging.getLevelName(settings.access_log.upper()))
    # The outermost: everything within sees the client's address and scheme it settled on.
    app.add_middleware(ForwardedHeaders, trusted=settings.proxies, user_header=settings.admin_user_header)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own handler echoes each bad input back: up to megabytes, and a lone surrogate in it cannot be
        # encoded (a 500). The location, message and type say enough.
        errors = [{key: value for key, value in error.items() if key != "input"} for error in exc.errors()]
        return JSONResponse({"detail": printable(jsonable_encoder(errors))}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, _exc: Exception) -> Response:
        # Starlette answers an unhandled error from its outermost middleware, outside SecurityHeaders: the
        # headers go on here, and the text says nothing of the error (it is logged).
        return PlainTextResponse("Internal Server Error. Please try again later.", status_code=500,
                                 headers=dict(SECURITY_HEADERS))

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> Response:
        return web.pages.render(request, "message.html", exc.status, exc.headers, title=exc.title, text=exc.text)

    @app.exception_handler(SignInNeededError)
    async def sign_in_needed(request: Request, exc: SignInNeededError) -> Response:
        if request.method in ("GET", "HEAD"):
            return RedirectResponse(f"{settings.public_url}/admin/login", status_code=303)
        return web.pages.render(request, "message.html", exc.status, exc.headers, title=exc.title, text=exc.text,
                                sign_in=True)

    # Pages are sync routes: FastAPI runs them in its thread pool (they read the store). Deliveries are not
    # sent there but by web.releases, so that no page waits for the next hop.
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def home(request: Request) -> Response:
        # What this is, and where a sender's page is: nothing from the store, no version.
        return web.pages.render(request, "home.html")

    @app.api_route("/confirm/{token}", methods=["GET", "HEAD"], include_in_schema=False)
    def confirm_get(request: Request, token: str) -> Response:
        return web.confirm_page(request, web.resolve(token))

    @app.api_route("/confirm/{token}/", methods=["GET", "HEAD"], include_in_schema=False)
    def confirm_slash(token: str) -> Response:
        # A link with a slash added (by a mail client or a person): to the page under base_url, never elsewhere.
        if not _TOKEN_SHAPE.fullmatch(token):
            raise PageError(404, "Not found", "There is no page at this address.")
        return RedirectResponse(web.page_url(token), status_code=308)

    @app.post("/confirm/{token}", include_in_schema=False)
    def confirm_post(
        request: Request,
        token: str,
        hold: Annotated[str, Form()] = "",
        action: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
        confirm_domain: Annotated[str, Form()] = "",
    ) -> Response:
        return web.confirm_action(request, token, _field(hold), _field(action), _field(csrf), _field(confirm_domain))

    @app.get("/admin", include_in_schema=False)
    def admin_list(request: Request) -> Response:
        return web.admin_list(request)

    @app.get("/admin/dashboard", include_in_schema=False)
    def admin_dashboard(request: Request) -> Response:
        return web.admin_dashboard(request)

    @app.post("/admin/bulk", include_in_schema=False)
    def admin_bulk(
        request: Request,
        action: Annotated[str, Form()] = "",
        scope: Annotated[str, Form()] = "selected",
        hold: Annotated[list[str] | None, Form()] = None,
        csrf: Annotated[str, Form()] = "",
        filter_query: Annotated[str, Form(alias="filter")] = "",
    ) -> Response:
        filters = dict(urllib.parse.parse_qsl(_field(filter_query)))
        return web.admin_bulk(request, _field(action), _field(scope), [_field(h) for h in hold or []], filters,
                              _field(csrf))

    @app.post("/admin/bulk/confirm", include_in_schema=False)
    def admin_bulk_confirm(
        request: Request,
        action: Annotated[str, Form()] = "",
        hold: Annotated[list[str] | None, Form()] = None,
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        return web.admin_bulk_confirm(request, _field(action), [_field(h) for h in hold or []], _field(csrf))

    @app.api_route("/admin/login", methods=["GET", "HEAD"], include_in_schema=False)
    def sign_in_page(request: Request) -> Response:
        return web.sign_in_page(request)

    @app.post("/admin/login", include_in_schema=False)
    def sign_in(
        request: Request,
        user: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        return web.sign_in(request, _field(user), _field(password), _field(csrf))

    @app.post("/admin/logout", include_in_schema=False)
    def sign_out(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        return web.sign_out(request, _field(csrf))

    @app.post("/admin/holds/{hold_id}", include_in_schema=False)
    def admin_action(
        request: Request,
        hold_id: str,
        action: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        return web.admin_action(request, _field(hold_id), _field(action), _field(csrf))

    def check(body: CheckRequest) -> CheckResponse:
        """The verdict for each recipient, in order, as `rcptguard check --format jsonl` prints it."""
        return web.check(body)

    # FastAPI reads the body's model from the signature: the one with this configuration's recipient limit.
    body = inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                             annotation=request_model(settings.api_max_recipients))
    setattr(check, "__signature__", inspect.Signature([body], return_annotation=CheckResponse))  # noqa: B010
    responses: dict[int | str, dict[str, Any]] = {
        400: {"model": Problem, "description": "The body is not valid JSON"},
        401: {"model": Problem, "description": "A token is needed and missing or wrong"},
        403: {"model": Problem, "description": "Only clients on this machine may call the API"},
        413: {"model": Problem, "description": "The body is larger than the configured limit"},
        429: {"model": Problem, "description": "Too many requests from this address; see Retry-After"},
    }
    if settings.api != "off":
        app.add_api_route(CHECK_PATH, check, methods=["POST"], tags=["check"], summary="Check recipients",
                          responses=responses)

    @app.get("/metrics", include_in_schema=False)
    def metrics_text(request: Request) -> Response:
        # sync: the store's gauges are read in the thread pool, not on the event loop
        return web.exposition(request)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> Health:
        # async: answered on the event loop, even while every worker thread is busy
        return Health(status="ok")

    return app
