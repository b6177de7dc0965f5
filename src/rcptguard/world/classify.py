"""From DNS answers to a finding: pure functions, no I/O, tested over hand-made `Answer`s.

    classify(typed, intended, mx, address, intended_mx) -> Classified(finding, text, hosts)

The order of the questions, and what each answer settles:

* the typed domain's MX: NXDOMAIN -> NO_DOMAIN; only a null MX `0 .` (RFC 7505) -> NO_MAIL; a failure -> UNKNOWN;
* no MX record at all (NODATA): its A and AAAA (`address`, the implicit MX of RFC 5321 5.1): none -> NO_MAIL,
  some -> DIFFERENT_OPERATOR (mail would go to the typed domain's own address);
* MX hosts: each is *shared* (on the shared-hosting list: proves nothing), *owned* by the intended domain, or
  neither. Owned means one of the intended domain's own MX hosts, or a host under the intended domain's
  registrable domain (`mx1.army.mil` for `army.mil`), or under the registrable domain of one of its MX hosts that
  carries the same brand (`gmx.de`'s mail goes to `mx00.emig.gmx.net`, so `gmx.net` hosts count for it). All
  owned -> SAME_OPERATOR; all shared or owned -> SHARED_HOSTING; any other host -> DIFFERENT_OPERATOR, or UNKNOWN
  when the intended domain's own MX could not be read to compare.

A brand alone never counts: `army.ml`'s `mail.army.ml` carries the brand `army` as `army.mil` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcptguard.domains import public_suffix
from rcptguard.world.model import Answer, Finding, Outcome
from rcptguard.world.shared import SharedHosts

NULL_MX = "."
_SHOWN_HOSTS = 3
_DEFAULT_SHARED = SharedHosts()


@dataclass(frozen=True, slots=True)
class Classified:
    """A finding, the sentence a sender reads, and the hosts it rests on."""

    finding: Finding
    text: str
    hosts: tuple[str, ...] = ()


def registrable(host: str) -> str:
    """The registrable domain of a host name (`mx1.army.mil` -> `army.mil`); a public suffix is its own."""
    suffix = public_suffix(host)
    if host == suffix or not host.endswith("." + suffix):
        return host
    rest = host[: -len(suffix) - 1]
    return f"{rest.rsplit('.', 1)[-1]}.{suffix}"


def brand(domain: str) -> str:
    """The label left of the public suffix (`gmx` for `mx00.emig.gmx.net`)."""
    return registrable(domain).split(".", 1)[0]


def mail_hosts(mx: Answer) -> tuple[str, ...]:
    """The MX hosts mail would go to, without a null MX's root."""
    return tuple(host for host in mx.records if host != NULL_MX)


def needs_address(mx: Answer) -> bool:
    """The typed domain exists without an MX record: its A/AAAA decide (RFC 5321 5.1 implicit MX)."""
    return mx.outcome is Outcome.ANSWER and not mx.records


def needs_intended(mx: Answer) -> bool:
    """The typed domain has MX hosts to compare with the intended domain's."""
    return mx.outcome is Outcome.ANSWER and bool(mail_hosts(mx))


def merge_addresses(a: Answer, aaaa: Answer) -> Answer:
    """One answer for the domain's addresses: any address is an answer; none only when both questions said none."""
    records = a.records + aaaa.records if a.outcome is Outcome.ANSWER or aaaa.outcome is Outcome.ANSWER else ()
    if records:
        return Answer(a.name, "A/AAAA", Outcome.ANSWER, records, min(x.ttl for x in (a, aaaa) if x.records))
    if Outcome.NXDOMAIN in {a.outcome, aaaa.outcome}:
        return Answer(a.name, "A/AAAA", Outcome.NXDOMAIN, ttl=min(a.ttl, aaaa.ttl))
    if a.outcome is Outcome.ANSWER and aaaa.outcome is Outcome.ANSWER:
        return Answer(a.name, "A/AAAA", Outcome.ANSWER, ttl=min(a.ttl, aaaa.ttl))
    failed = a if a.outcome is not Outcome.ANSWER else aaaa
    return Answer(a.name, "A/AAAA", failed.outcome, detail=failed.detail)


def classify(typed: str, intended: str, mx: Answer, address: Answer | None = None,
             intended_mx: Answer | None = None, shared: SharedHosts = _DEFAULT_SHARED) -> Classified:
    """What the answers show about mail to `typed`, which resembles `intended` (both lower-case A-labels).

    A finding that the mail would bounce is believed only when the same resolver knows the intended domain
    (`intended_mx` answered): a resolver that denies every name (a sandbox, a broken forwarder, a captive network)
    must not make the guard tell a sender that a real domain does not exist."""
    found = _classify(typed, intended, mx, address, intended_mx, shared)
    if found.finding.would_bounce and intended_mx is not None and intended_mx.outcome is not Outcome.ANSWER:
        return Classified(Finding.UNKNOWN, f"The DNS says {typed} does not take mail, but it does not know "
                          f"{intended} either: its answers are not to be trusted; decided without it.")
    return found


def _classify(typed: str, intended: str, mx: Answer, address: Answer | None, intended_mx: Answer | None,
              shared: SharedHosts) -> Classified:
    if mx.outcome is Outcome.NXDOMAIN:
        return _no_domain(typed)
    if not mx.known:
        return Classified(Finding.UNKNOWN, _unknown(typed, mx))
    if not mx.records:
        return _without_mx(typed, address)
    hosts = mail_hosts(mx)
    if not hosts:
        return Classified(Finding.NO_MAIL, f"{typed} says it takes no mail (a null MX record): mail to it would "
                          "bounce.", (NULL_MX,))
    return _compare(typed, intended, hosts, intended_mx, shared)


def _no_domain(typed: str) -> Classified:
    return Classified(Finding.NO_DOMAIN, f"{typed} does not exist (the DNS has no such domain): mail to it would "
                      "bounce.")


def _unknown(name: str, answer: Answer) -> str:
    if answer.outcome is Outcome.TIMEOUT:
        return f"The DNS gave no answer about {name} {answer.detail or 'in time'}; decided without it."
    return f"The DNS could not answer about {name} ({answer.detail or 'failed'}); decided without it."


def _without_mx(typed: str, address: Answer | None) -> Classified:
    if address is None:
        return Classified(Finding.UNKNOWN, f"{typed} has no MX record and its address was not looked up; "
                          "decided without it.")
    if address.outcome is Outcome.NXDOMAIN:
        return _no_domain(typed)
    if not address.known:
        return Classified(Finding.UNKNOWN, f"{typed} has no MX record. " + _unknown(typed, address))
    if not address.records:
        return Classified(Finding.NO_MAIL, f"{typed} exists but has no mail server (no MX and no address record): "
                          "mail to it would bounce.")
    return Classified(Finding.DIFFERENT_OPERATOR, f"{typed} has no MX record: mail to it would go to its own "
                      f"address ({_listed(address.records)}).", address.records)


def _compare(typed: str, intended: str, hosts: tuple[str, ...], intended_mx: Answer | None,
             shared: SharedHosts) -> Classified:
    own_hosts: frozenset[str] | None = None
    own_domains = {registrable(intended)}
    if intended_mx is not None and intended_mx.known:
        own_hosts = frozenset(h for h in mail_hosts(intended_mx) if h not in shared)
        intended_brand = brand(intended)
        own_domains |= {registrable(h) for h in own_hosts if brand(h) == intended_brand}
    operators: list[str] = []
    others: list[str] = []
    for host in hosts:
        operator = shared.operator(host)
        if operator is not None:
            if operator not in operators:
                operators.append(operator)
        elif not ((own_hosts is not None and host in own_hosts) or registrable(host) in own_domains):
            others.append(host)
    if not others and not operators:
        return Classified(Finding.SAME_OPERATOR, f"{typed}'s mail goes to {intended}'s own mail servers "
                          f"({_listed(hosts)}): the same operator runs both.", hosts)
    if not others:
        return Classified(Finding.SHARED_HOSTING, f"{typed}'s mail is hosted by {' and '.join(operators)} "
                          f"({_listed(hosts)}), which serves many unrelated domains: that says nothing about who "
                          "owns it.", hosts)
    if own_hosts is None:
        reason = "not looked up" if intended_mx is None else (intended_mx.detail or "no answer")
        return Classified(Finding.UNKNOWN, f"{typed}'s mail servers ({_listed(hosts)}) could not be compared with "
                          f"{intended}'s ({reason}); decided without it.", hosts)
    return Classified(Finding.DIFFERENT_OPERATOR, f"{typed} takes mail at {_listed(tuple(others))}, which "
                      f"{'is not one' if len(others) == 1 else 'are not'} of {intended}'s mail servers.", hosts)


def _listed(items: tuple[str, ...]) -> str:
    shown = ", ".join(items[:_SHOWN_HOSTS])
    return shown + (f" and {len(items) - _SHOWN_HOSTS} more" if len(items) > _SHOWN_HOSTS else "")
