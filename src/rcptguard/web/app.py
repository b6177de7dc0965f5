"""The web front: the sender's confirmation page, the operator's admin pages and the JSON check API.

    app = create_app(quarantine=q, links=Links(store), guard_provider=lambda: guard, next_hop=hop,
                     secret=key, admin_user="ops", admin_password="...")

Pages are rendered on the server (Jinja2, autoescaped) and work without JavaScript. GET and HEAD never change
anything, because mail scanners follow links; every action is a POST carrying a CSRF token bound to the link and
the hold. A decision goes through the quarantine's atomic decide, so a double click, a replay or two browsers at
once deliver at most once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import jinja2
from fastapi import FastAPI, Form, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.datastructures import MutableHeaders

from rcptguard import __version__
from rcptguard.delivery import NextHop
from rcptguard.domains import MAX_INPUT, DomainError, normalize_domain
from rcptguard.guard import Guard
from rcptguard.store import StoreError
from rcptguard.store.links import LinkExpired, LinkInfo, LinkInvalid, Links
from rcptguard.store.quarantine import AlreadyDecided, DecidedNotRecorded, Hold, NotFound, Quarantine

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
MAX_RECIPIENTS = 1000
ADMIN_LIST_LIMIT = 500
TEMPLATES = Path(__file__).parent / "templates"
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
)
_REALM = 'Basic realm="rcptguard admin", charset="UTF-8"'
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


class PageError(Exception):
    """Stop handling a page request and answer with an HTML page (title and text) and this status."""

    def __init__(self, status: int, title: str, text: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.text = text
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one held recipient, in plain words: a headline and a sentence of detail."""

    headline: str
    detail: str


def outcome_of(hold: Hold) -> Outcome:
    to = hold.deliver_to or hold.recipient
    if hold.state == "held":
        return Outcome("Waiting for a decision", "Nothing has been sent to this address yet.")
    if hold.state == "cancelled":
        return Outcome("Not sent", f"The message was not sent to {hold.recipient}.")
    if hold.state == "expired":
        return Outcome("Not sent", "No decision was made in time, so the message was not sent to this address.")
    if hold.delivery == "delivered":
        return Outcome(f"Sent to {to}", "The receiving mail server accepted it.")
    if hold.delivery == "pending":
        return Outcome("Sending is delayed; it will be retried", f"It will be sent to {to} as soon as possible.")
    if hold.delivery == "sending":
        return Outcome(f"Sending to {to}", "It is being sent now.")
    if hold.delivery == "failed":
        return Outcome("Not sent", f"The receiving mail server refused {to}: {hold.last_error or 'no reason given'}.")
    return Outcome(f"Released to {to}", "")  # pragma: no cover - released holds always have a delivery state


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


def _field(value: str) -> str:
    return value[:_FIELD_LIMIT]


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
                 next_hop: NextHop, secret: bytes, admin_user: str | None, admin_password: str | None,
                 template_dir: Path | None) -> None:
        if len(secret) < 16:
            raise ValueError("the web secret must be at least 16 bytes")
        self.quarantine = quarantine
        self.links = links
        self.guard_provider = guard_provider
        self.next_hop = next_hop
        self.secret = secret
        self.admin_credentials = (admin_user, admin_password) if admin_user and admin_password else None
        self.pages = Pages(template_dir)

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
        }
        items = [{
            "hold": hold, "typed_domain": domain_of(hold.recipient),
            "suggestion_domain": domain_of(hold.suggestion) if hold.suggestion else None,
            "csrf": csrf_token(self.secret, info.id, hold.id), "outcome": outcome_of(hold),
            "error": (errors or {}).get(hold.id),
        } for hold in holds]
        waiting = sum(1 for hold in holds if hold.state == "held")
        return self.pages.render(request, "confirm.html", status, message=message, items=items, waiting=waiting)

    def confirm_action(self, request: Request, token: str, hold_id: str, action: str, csrf: str,
                       confirm_domain: str) -> HTMLResponse:
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
        if held and action == "release" and not same_domain(confirm_domain, domain_of(current.recipient)):
            error = f"To send it anyway, type {visible(domain_of(current.recipient))} exactly. Nothing was sent."
            return self.confirm_page(request, info, 422, {hold_id: error})
        try:
            if action == "cancel":
                decided = self.quarantine.cancel(hold_id, SENDER_ACTOR)
            elif action in ("correct", "release"):
                to = current.suggestion if action == "correct" else None
                decided = self.quarantine.release_outcome(hold_id, SENDER_ACTOR, self.next_hop, to=to).hold
            else:
                raise PageError(400, "Please choose what to do",
                                "Open the link from your message again and use one of its buttons. "
                                "Nothing was changed.")
        except AlreadyDecided:
            self.mark_used(token)
            try:
                now = self.quarantine.get(hold_id) or current
            except StoreError:
                now = current
            return self.pages.render(request, "outcome.html", 409, title="This was already done", already=True,
                                     outcome=outcome_of(now), hold=now, more=self.still_waiting(info), token=token)
        except NotFound:
            raise PageError(403, _NOT_ACCEPTED, "That recipient is not part of this message.") from None
        except DecidedNotRecorded as exc:
            log.error("web: %s", exc)  # noqa: TRY400 - one line: the cause is in the text
            target = exc.hold.deliver_to or exc.hold.recipient
            raise PageError(202, "Your choice was recorded",
                            f"The server is finishing the delivery to {visible(target)}. You do not need to do "
                            "anything more; if it cannot be delivered, you will get a notice.") from None
        except StoreError as exc:
            raise self.unavailable(exc) from None
        self.mark_used(token)
        outcome = outcome_of(decided)
        return self.pages.render(request, "outcome.html", 200, title=outcome.headline, already=False,
                                 outcome=outcome, hold=decided, more=self.still_waiting(info), token=token)

    # -- the operator's admin pages -------------------------------------------------------------------------------

    def admin(self, request: Request) -> str:
        """The admin's user name, or 404 (admin not configured) / 401 (no or wrong credentials)."""
        if self.admin_credentials is None:
            raise PageError(404, "Not found", "There is no page at this address.")
        admin_user, admin_password = self.admin_credentials
        denied = PageError(401, "Sign in to see the quarantine", "The user name or password is missing or wrong.",
                           {"WWW-Authenticate": _REALM})
        scheme, _, param = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            raise denied
        try:
            decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise denied from None
        user, sep, password = decoded.partition(":")
        # Digests first, so that the comparison takes the same time whatever the lengths.
        user_ok = hmac.compare_digest(hashlib.sha256(user.encode()).digest(),
                                      hashlib.sha256(admin_user.encode()).digest())
        password_ok = hmac.compare_digest(hashlib.sha256(password.encode()).digest(),
                                          hashlib.sha256(admin_password.encode()).digest())
        if not (sep and user_ok and password_ok):
            raise denied
        return user

    def admin_csrf(self, user: str, hold_id: str) -> str:
        return csrf_token(self.secret, f"admin\0{user}\0", hold_id)

    def admin_list(self, request: Request) -> HTMLResponse:
        user = self.admin(request)
        try:
            held = self.quarantine.list("held", limit=ADMIN_LIST_LIMIT + 1)
        except StoreError as exc:
            raise self.unavailable(exc) from None
        items = [{"hold": hold, "csrf": self.admin_csrf(user, hold.id), "received": _when(hold.received_at)}
                 for hold in held[:ADMIN_LIST_LIMIT]]
        return self.pages.render(request, "admin.html", items=items, more=len(held) > ADMIN_LIST_LIMIT,
                                 limit=ADMIN_LIST_LIMIT)

    def admin_action(self, request: Request, hold_id: str, action: str, csrf: str) -> HTMLResponse:
        user = self.admin(request)
        if not csrf or not _equal(csrf, self.admin_csrf(user, hold_id)):
            raise PageError(403, _NOT_ACCEPTED, "Reload the list and try again.")
        actor = f"{user} via web admin"
        try:
            if action == "release":
                decided = self.quarantine.release_outcome(hold_id, actor, self.next_hop).hold
            elif action == "cancel":
                decided = self.quarantine.cancel(hold_id, actor)
            else:
                raise PageError(400, "Please choose what to do", "Use the buttons on the list.")
        except AlreadyDecided as exc:
            return self.pages.render(request, "admin_done.html", 409, title="This was already decided",
                                     text=str(exc))
        except NotFound:
            raise PageError(404, "Not found", f"There is no held message {hold_id}.") from None
        except DecidedNotRecorded as exc:
            log.error("web: %s", exc)  # noqa: TRY400 - one line: the cause is in the text
            return self.pages.render(request, "admin_done.html", 202, title="Released; the store failed after it",
                                     text=str(exc))
        except StoreError as exc:
            raise self.unavailable(exc) from None
        outcome = outcome_of(decided)
        return self.pages.render(request, "admin_done.html", title=outcome.headline, text=outcome.detail)

    # -- the JSON API ---------------------------------------------------------------------------------------------

    def check(self, body: CheckRequest) -> CheckResponse:
        guard = self.guard_provider()
        return CheckResponse(verdicts=[VerdictOut.model_validate(guard.check(raw).to_json())
                                       for raw in body.recipients])


def create_app(
    *,
    quarantine: Quarantine,
    links: Links,
    guard_provider: Callable[[], Guard],
    next_hop: NextHop,
    secret: bytes,
    admin_user: str | None,
    admin_password: str | None,
    template_dir: Path | None = None,
) -> FastAPI:
    """The web application. `secret` keys the CSRF tokens (at least 16 bytes, the same across restarts and
    workers); the admin pages answer 404 unless both `admin_user` and `admin_password` are set; templates in
    `template_dir` replace the shipped ones of the same name."""
    web = Web(quarantine=quarantine, links=links, guard_provider=guard_provider, next_hop=next_hop, secret=secret,
              admin_user=admin_user, admin_password=admin_password, template_dir=template_dir)
    app = FastAPI(title="rcptguard", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json")
    app.add_middleware(SecurityHeaders)

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

    # Pages are sync routes: FastAPI runs them in its thread pool, where the blocking SMTP delivery belongs.
    @app.api_route("/confirm/{token}", methods=["GET", "HEAD"], include_in_schema=False)
    def confirm_get(request: Request, token: str) -> Response:
        return web.confirm_page(request, web.resolve(token))

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

    @app.post("/admin/holds/{hold_id}", include_in_schema=False)
    def admin_action(
        request: Request,
        hold_id: str,
        action: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        return web.admin_action(request, _field(hold_id), _field(action), _field(csrf))

    @app.post("/v1/check", tags=["check"], summary="Check recipients",
              responses={400: {"model": Problem, "description": "The body is not valid JSON"}})
    def check(body: CheckRequest) -> CheckResponse:
        """The verdict for each recipient, in order, as `rcptguard check --format jsonl` prints it."""
        return web.check(body)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    def healthz() -> Health:
        return Health(status="ok")

    return app
