"""What an envelope asks for beyond its addresses: delivery status notifications (RFC 3461), the body type
(RFC 6152), and Postfix's XFORWARD, parsed from the client's words and said again to the next hop.

    mail = MailParams.parse("RET=HDRS ENVID=QQ314159")        # DsnError: a 501 reply, for a malformed one
    rcpt = RcptParams.parse("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;j.doe@army.ml")
    mail.options(), rcpt.options()                             # what MAIL and RCPT carry on (when DSN is offered)

Values keep the client's case (an ENVID is the sender's own identifier, compared byte for byte), and xtext
(RFC 3461 §4) stays encoded as it came: the guard only checks it, decodes it for people to read, and passes it
on. Parameters the guard does not know are left to the SMTP server's own answer (555: refused, never dropped).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "XFORWARD_ATTRIBUTES",
    "DsnError",
    "EnvelopeParams",
    "MailParams",
    "RcptParams",
    "parse_xforward",
    "split_params",
    "xtext_decode",
    "xtext_encode",
]

_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")  # xchar: "!".."~" but "+" and "="; hexchar: "+" 2 HEXDIG
_NOTIFY = ("SUCCESS", "FAILURE", "DELAY")
XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")  # Postfix XFORWARD_README
MAX_ENVID = 100  # RFC 3461 §4.4: an ENVID of up to 100 characters
MAX_ORCPT = 500  # RFC 3461 §4.2: an ORCPT of up to 500 characters


class DsnError(ValueError):
    """A parameter the client got wrong (501), or one the guard does not carry on (555); the text is the whole
    SMTP reply."""

    def __init__(self, text: str, *, code: str = "501") -> None:
        super().__init__(f"{code} 5.5.4 {text}")


def xtext_decode(text: str) -> str:
    """The characters xtext stands for ("+2B" is "+"); DsnError if `text` is not xtext."""
    if not _XTEXT.fullmatch(text):
        raise DsnError(f"not xtext (RFC 3461 section 4): {text[:60]!r}")
    raw = re.sub(rb"\+([0-9A-F]{2})", lambda m: bytes([int(m[1], 16)]), text.encode("ascii"))
    return raw.decode("utf-8", "replace")


def xtext_encode(text: str) -> str:
    """`text` as xtext: "+", "=" and every byte outside "!".."~" written +HH (UTF-8 for anything beyond ASCII)."""
    out = []
    for char in text:
        if "!" <= char <= "~" and char not in "+=":
            out.append(char)
        else:
            out.extend(f"+{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def split_params(text: str) -> dict[str, str]:
    """`KEY=value KEY2` into {"KEY": "value", "KEY2": ""}, keys upper-cased, values as written; DsnError for a
    parameter named twice or not of the form esmtp-keyword[=esmtp-value] (RFC 5321 §4.1.2)."""
    params: dict[str, str] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", key) or (eq and not value):
            raise DsnError(f"malformed parameter {word[:60]!r}")
        if key.upper() in params:
            raise DsnError(f"parameter {key.upper()} given twice")
        params[key.upper()] = value
    return params


@dataclass(frozen=True, slots=True)
class MailParams:
    """What MAIL FROM asks for: RET (the whole message or only its headers in a failure report), ENVID (the
    sender's own identifier for the transaction, xtext) and BODY (7BIT or 8BITMIME)."""

    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    body: Literal["7BIT", "8BITMIME"] | None = None

    @classmethod
    def take(cls, params: dict[str, str]) -> MailParams:
        """Take RET, ENVID and BODY out of `params` (the others stay for the server); DsnError when malformed."""
        ret, envid, body = params.pop("RET", None), params.pop("ENVID", None), params.pop("BODY", None)
        if ret is not None and ret.upper() not in ("FULL", "HDRS"):
            raise DsnError(f"RET is FULL or HDRS, not {ret[:20]!r}")
        if envid is not None:
            xtext_decode(envid)
            if len(envid) > MAX_ENVID:
                raise DsnError(f"ENVID longer than {MAX_ENVID} characters")
        if body is not None and body.upper() not in ("7BIT", "8BITMIME"):
            raise DsnError(f"BODY is 7BIT or 8BITMIME, not {body[:20]!r}")
        return cls(ret.upper() if ret else None, envid, body.upper() if body else None)  # type: ignore[arg-type]

    def options(self, *, dsn: bool) -> list[str]:
        """The parameters to say again on MAIL (RET and ENVID only to a next hop that offers DSN)."""
        out = [f"BODY={self.body}"] if self.body else []
        if dsn:
            out += [f"RET={self.ret}"] if self.ret else []
            out += [f"ENVID={self.envid}"] if self.envid else []
        return out


@dataclass(frozen=True, slots=True)
class RcptParams:
    """What RCPT TO asks for: NOTIFY (NEVER, or any of SUCCESS, FAILURE, DELAY) and ORCPT (the address the
    sender first gave: "rfc822;" and xtext)."""

    notify: tuple[str, ...] | None = None
    orcpt: str | None = None

    @classmethod
    def take(cls, params: dict[str, str]) -> RcptParams:
        """Take NOTIFY and ORCPT out of `params`; DsnError when malformed."""
        notify, orcpt = params.pop("NOTIFY", None), params.pop("ORCPT", None)
        values: tuple[str, ...] | None = None
        if notify is not None:
            values = tuple(v.upper() for v in notify.split(","))
            if values != ("NEVER",) and (not values or any(v not in _NOTIFY for v in values)
                                         or len(set(values)) != len(values)):
                raise DsnError(f"NOTIFY is NEVER or a list of SUCCESS, FAILURE, DELAY, not {notify[:40]!r}")
        if orcpt is not None:
            kind, semi, address = orcpt.partition(";")
            if not semi or not re.fullmatch(r"[A-Za-z0-9-]+", kind) or not address:
                raise DsnError(f"ORCPT is addr-type;xtext, not {orcpt[:60]!r}")
            xtext_decode(address)
            if len(orcpt) > MAX_ORCPT:
                raise DsnError(f"ORCPT longer than {MAX_ORCPT} characters")
        return cls(values, orcpt)

    @property
    def never(self) -> bool:
        """The sender asked for no report at all about this recipient."""
        return self.notify == ("NEVER",)

    def wants(self, event: Literal["SUCCESS", "FAILURE", "DELAY"]) -> bool:
        """Whether a report of `event` is wanted: as asked, or by default failures and delays (RFC 3461 §4.1)."""
        return event in self.notify if self.notify is not None else event != "SUCCESS"

    def options(self) -> list[str]:
        """The parameters to say again on RCPT (to a next hop that offers DSN)."""
        return ([f"NOTIFY={','.join(self.notify)}"] if self.notify else []) + (
            [f"ORCPT={self.orcpt}"] if self.orcpt else [])

    def original(self, address: str) -> RcptParams:
        """These parameters for `address`'s delivery under another address (a correction): the original
        recipient is kept, or named when the client gave none (that is what ORCPT is for)."""
        return RcptParams(self.notify, self.orcpt or f"rfc822;{xtext_encode(address)}")


def parse_xforward(text: str) -> dict[str, str]:
    """`NAME=mx.example.org ADDR=192.0.2.1 …` from Postfix's XFORWARD command: attributes upper-cased, values as
    sent (xtext; "[UNAVAILABLE]" and "[TEMPUNAVAIL]" where Postfix does not know); DsnError for an attribute
    XFORWARD does not have or a value that is not xtext."""
    values = split_params(text)
    if not values:
        raise DsnError("XFORWARD needs at least one attribute")
    for key, value in values.items():
        if key not in XFORWARD_ATTRIBUTES:
            raise DsnError(f"XFORWARD has no attribute {key}")
        xtext_decode(value)
    return values


@dataclass(frozen=True, slots=True)
class EnvelopeParams:
    """Everything the client's envelope asked for, kept with a held message and said again on its release."""

    mail: MailParams = field(default_factory=MailParams)
    rcpts: dict[str, RcptParams] = field(default_factory=dict)  # by recipient address
    xforward: dict[str, str] = field(default_factory=dict)  # the original client, as Postfix told it

    def rcpt(self, address: str) -> RcptParams:
        return self.rcpts.get(address, RcptParams())

    def to_json(self) -> str:
        """The envelope for one recipient's row: compact, and empty ("") when it asked for nothing."""
        data: dict[str, Any] = {}
        if self.mail != MailParams():
            data["mail"] = {k: v for k, v in (("ret", self.mail.ret), ("envid", self.mail.envid),
                                              ("body", self.mail.body)) if v}
        rcpts = {a: {k: v for k, v in (("notify", p.notify), ("orcpt", p.orcpt)) if v}
                 for a, p in self.rcpts.items() if p != RcptParams()}
        if rcpts:
            data["rcpts"] = rcpts
        if self.xforward:
            data["xforward"] = self.xforward
        return json.dumps(data, separators=(",", ":")) if data else ""

    @classmethod
    def from_json(cls, text: str | None) -> EnvelopeParams:
        if not text:
            return cls()
        data = json.loads(text)
        mail = data.get("mail", {})
        return cls(MailParams(mail.get("ret"), mail.get("envid"), mail.get("body")),
                   {a: RcptParams(tuple(p["notify"]) if p.get("notify") else None, p.get("orcpt"))
                    for a, p in data.get("rcpts", {}).items()},
                   dict(data.get("xforward", {})))
