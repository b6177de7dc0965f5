"""One message's recipients judged together, with the sender's history: the per-message judgement every door that
sees the whole envelope calls (the relay at the end of DATA; a milter at end of message).

    verdicts = judge_message(guard, "me@org.example", ["a@army.mil", "b@army.mil", "c@army.ml"], history)

It starts from the guard's verdict for each recipient (the typo model, org-wide) and changes it with what history
says of this sender and this group of recipients:

- **Confirmations teach.** A domain this sender confirmed ("send anyway" on the page, a release) passes for this
  sender (or is warned, `confirmed_action`), with `SENDER_CONFIRMED`. A reject (a force rule, a malformed address)
  is never lowered.
- **Truthful first contact.** The guard says "You have never written to X" of the organisation's correspondents;
  when someone did (not enough to make it known, see rules.py), the sentence says who and why it still counts as new.
- **The odd recipient out** (in the spirit of Carvalho & Cohen's leak detection), each with points from
  `[history]`, added up into an action by the policy's thresholds, only ever raising:
  `ODD_DOMAIN_SLIP` one slip from a co-recipient's better-established domain (five at army.mil, one at army.ml);
  `ODD_NEW_DOMAIN` a domain nobody wrote to, among long-standing ones;
  `ODD_NEW_TO_GROUP` never addressed with any of the others, who were addressed together before;
  `ODD_NEW_ADDRESS` an address nobody wrote to, at a long-standing domain;
  `ODD_ADDRESS_SLIP` an address the sender never wrote to, one slip (or the same first name) from one the sender
  writes to at that domain, or (an address nobody wrote to) from one the organisation writes to there;
  `ODD_NEW_FOR_SENDER` an address others write to, never this sender, at a domain the sender writes to often;
  `ODD_SUBSTITUTE` in the place of somebody at the same domain: the others on the message (the sender with them)
  were written to together before with that person where this one is now, never with this one (a wrong pick from
  the address book in a thread: nils.meyer@partner.example every time, o.koehler@partner.example now);
  `ODD_PERSONAL` an address at a public mail provider spelling the name of the sender or a colleague on the
  message (ann.lee@org.example, annlee84@gmail.com): a personal address, where company mail should not go; or of
  one colleague known to history (who sends mail, or was written to) whom the sender writes to or has mail from,
  in place of the work address, while the sender has written to it fewer than `established` times. Colleagues are
  the people of the sender's domain and of the organisation's other domains: the protected ones its people send
  from, or under one (dyoung@org.co.uk's colleague david.johnston@org.example, and d.johnston@icloud.com);
  `ODD_GREETING` the message's opening greets somebody (Hi Nils,) whom none of its recipients can be, and the sender
  writes to a Nils at this recipient's domain (rcptguard.history.greeting; the doors that read the message: the
  relay, a milter at end of message).

Inside the organisation (a recipient at the sender's domain, or at a protected one) only a slip of the domain counts:
a wrong colleague is no mail leaving for the wrong recipient, and at a thousand people most new colleagues share a
first name with one the sender writes to.

It is a function of (sender, verdicts, history): no door's state, so the relay, a milter and the evaluation call
the same code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rcptguard.domains import is_public_suffix, normalize_domain
from rcptguard.guard import Guard
from rcptguard.history.greeting import NOBODY_GREETED, Greeting, answers, spells, unanswered
from rcptguard.history.model import (
    CALLED,
    EXACT,
    DomainFacts,
    Facts,
    guessed,
    key_of,
    name_forms,
    named,
    sender_key,
    spelled,
)
from rcptguard.history.rules import why_not
from rcptguard.history.settings import HistorySettings
from rcptguard.history.view import HistoryView
from rcptguard.model import PERSON_SIGNALS, Action, Signal, Verdict, mark_person
from rcptguard.policy import Policy
from rcptguard.providers import providers
from rcptguard.reasons import messages, never_written
from rcptguard.typos.edits import single_edit

__all__ = ["ODD_SIGNALS", "adjust", "judge_message"]

_NOTHING_KNOWN = DomainFacts()  # a domain history has nothing on (frozen: one for all)
SLIP_COMPANY = 30  # a recipient's domain is compared with at most this many of the message's other domains
SHORT_NAME = 3  # the sender or a colleague on the message is named by fewer letters than anybody at all (wli@: wei.li)
SUBSTITUTE_SHARE = 0.8  # the person whose place is taken filled it in this share of the group's messages, at least
ODD_SIGNALS = ("ODD_DOMAIN_SLIP", "ODD_NEW_DOMAIN", "ODD_NEW_TO_GROUP", "ODD_NEW_ADDRESS", "ODD_ADDRESS_SLIP",
               "ODD_NEW_FOR_SENDER", "ODD_SUBSTITUTE", "ODD_PERSONAL", "ODD_GREETING")


def judge_message(guard: Guard, sender: str, recipients: Sequence[str], history: HistoryView,
                  settings: HistorySettings | None = None, now: dt.datetime | None = None, *,
                  greeting: Greeting = NOBODY_GREETED, displays: Mapping[str, str] | None = None) -> list[Verdict]:
    """The verdict for each recipient of one message from `sender`, in order."""
    verdicts = [guard.check(r) for r in recipients]
    return adjust(sender, verdicts, history, guard.policy, settings, now, greeting=greeting, displays=displays)


def adjust(sender: str, verdicts: Sequence[Verdict], history: HistoryView, policy: Policy,
           settings: HistorySettings | None = None, now: dt.datetime | None = None, *,
           last_only: bool = False, greeting: Greeting = NOBODY_GREETED,
           displays: Mapping[str, str] | None = None) -> list[Verdict]:
    """The guard's verdicts for one message's recipients, changed by the sender's history and each other; with
    `last_only`, only the last one is judged (in the company of the others, whose verdicts are returned as given:
    the policy service, which asks about one recipient at a time). `greeting`: whom the message's opening greets,
    with the recipients' display names (`displays`, by address as written) when the door read the message."""
    settings = settings or HistorySettings()
    now = now or dt.datetime.now(dt.UTC)
    keys = [_key(v) for v in verdicts]
    me = sender_key(sender)
    present = [k for k in keys if k is not None]
    facts = history.facts(me, present, now, own=organisation(policy.protect))
    message = _Message(facts, present, settings, policy, now, me, partial=last_only)
    message.prepare()
    if greeting and me is not None and not last_only:
        shown = {key: name for a, name in (displays or {}).items() if (key := key_of(a)) is not None}
        message.greeted = _misgreeted(me, present, greeting, shown, history)
    if last_only:
        return [*verdicts[:-1], verdicts[-1] if keys[-1] is None else message.judge(verdicts[-1], keys[-1])]
    return [v if k is None else message.judge(v, k) for v, k in zip(verdicts, keys, strict=True)]


@functools.lru_cache(maxsize=16)
def organisation(protect: tuple[str, ...]) -> frozenset[str]:
    """The domains that may be the organisation's, besides a sender's own: the protected ones, not whole suffixes
    (mil) nor public mail providers. History counts those its people send from, and their subdomains (`Facts.own`)."""
    public = providers()
    return frozenset(d for d in protect if d not in public and not is_public_suffix(d))


def _key(verdict: Verdict) -> str | None:
    if verdict.domain_ascii is None or verdict.action is Action.REJECT:
        return None
    return key_of(verdict.address)


@dataclass(slots=True)
class _Message:
    """One message's recipients, with what is worked out once for all of them (`prepare`): judging each recipient
    in their company then costs the same whatever the size of the message (a thousand recipients is no attack)."""

    facts: Facts
    keys: list[str]
    settings: HistorySettings
    policy: Policy
    now: dt.datetime
    sender: str | None = None
    partial: bool = False  # the recipients so far, not the whole envelope (the policy service): no substitutes
    here: dict[str, int] = field(default_factory=dict)  # recipients per domain
    recipients: int = 0  # distinct recipients
    unestablished: set[str] = field(default_factory=set)  # the message's domains that are not long-standing
    partners: dict[str, int] = field(default_factory=dict)  # address -> co-recipients here it was addressed with
    known_pairs: int = 0  # pairs of recipients here that were addressed together before
    likely: list[str] = field(default_factory=list)  # the domains a slip is compared with, the most present first
    names: dict[str, str] | None = None  # a name spelled (annlee, alee) -> the sender or colleague: `_names`
    present: set[str] = field(default_factory=set)  # the message's recipients
    greeted: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # recipient -> name, meant, messages

    def prepare(self) -> None:
        unique = dict.fromkeys(self.keys)
        self.present = set(unique)
        self.recipients = len(unique)
        here = self.here  # (plain dicts, not Counters: this runs for every message a door passes)
        for key in unique:
            domain = key.rpartition("@")[2]
            here[domain] = here.get(domain, 0) + 1
        established = self.settings.established
        domains = self.facts.domains
        self.unestablished = {d for d in here if domains.get(d, _NOTHING_KNOWN).org.count < established}
        partners = self.partners
        for (a, b), count in self.facts.pairs.items():
            if count:
                partners[a] = partners.get(a, 0) + 1
                partners[b] = partners.get(b, 0) + 1
                self.known_pairs += 1
        if len(here) == 1:
            self.likely = list(here)
            return
        weight = {d: domains.get(d, _NOTHING_KNOWN).org.weight(self.now, self.settings.half_life) for d in here}
        self.likely = sorted(here, key=lambda d: (-here[d], -weight[d], d))[:SLIP_COMPANY]

    @property
    def own(self) -> str | None:
        """The sender's domain: its addresses on the message are colleagues (so are those at the organisation's other
        domains, `Facts.own`, asked for when a recipient is at a public mail provider)."""
        return self.sender.rsplit("@", 1)[1] if self.sender else None

    def judge(self, verdict: Verdict, key: str) -> Verdict:
        domain = key.rsplit("@", 1)[1]
        known = self.facts.domains.get(domain, _NOTHING_KNOWN)
        if known.confirmed is not None and verdict.action >= Action.WARN and verdict.signal("FORCE_RULE") is None:
            return _confirmed(verdict, domain, known.confirmed, Action.parse(self.settings.confirmed_action))
        reason = self._first_contact(verdict, domain, known)
        inside = domain == self.own or verdict.signal("PROTECTED_DOMAIN") is not None
        found = self._odd(key, domain, known, inside=inside)
        if not found and reason == verdict.reason:
            return verdict
        judged = verdict.copy()
        judged.reason = reason
        if not found:
            return judged
        points = sum(s.score for s in found)
        action = max(verdict.action, min(self.policy.action_for(points), Action.HOLD))
        if action > verdict.action < Action.WARN and PERSON_SIGNALS.issuperset(s.name for s in found):
            found = [mark_person(s) for s in found]  # the guard passed the domain: only the person is doubted
        notes = " ".join(s.evidence["note"] for s in found)
        judged.signals = (*verdict.signals, *found)
        judged.action = action
        judged.reason = f"{reason} {notes}" if verdict.action > Action.PASS else notes
        judged.score = verdict.score + points if action > verdict.action else verdict.score
        like = next((s.evidence.get("like") for s in found if s.evidence.get("like")), None)
        if action >= Action.WARN and verdict.suggestion is None and like:
            judged.suggestion = like if "@" in like else f"{key.rsplit('@', 1)[0]}@{like}"
            judged.intended = like.rsplit("@", 1)[-1]
        return judged

    def _first_contact(self, verdict: Verdict, domain: str, known: DomainFacts) -> str:
        """The reason, with "you have never written to X" made true of this sender and the organisation."""
        if verdict.signal("FIRST_CONTACT") is None or not known.org.count:
            return verdict.reason
        shown = normalize_domain(domain)
        why = why_not(known, self.settings, self.now)
        still = f", but it is not a known correspondent: {why}" if why else ""
        if known.sender.count:
            truth = f"You have written to {shown.unicode} before ({messages(known.sender.count)}){still}."
        else:
            truth = (f"You have never written to {shown.unicode}; your organisation has "
                     f"({messages(known.org.count)}){still}.")
        return verdict.reason.replace(never_written(shown), truth)

    def _odd(self, key: str, domain: str, known: DomainFacts, *, inside: bool = False) -> list[Signal]:
        """The odd-recipient signals of one recipient; `inside` the organisation (the sender's domain, or a protected
        one), only a slip of the domain: a wrong colleague is no mail leaving for the wrong recipient."""
        settings, facts = self.settings, self.facts
        found = []
        slip = self._domain_slip(domain, known)
        if slip is not None:
            found.append(slip)
        if inside:
            return found
        if (len(self.here) > 1 and not known.org.count and known.state != "added"
                and len(self.unestablished) == (domain in self.unestablished)):
            found.append(_odd("ODD_NEW_DOMAIN", settings.odd_new_domain,
                              f"Nobody in your organisation has written to {domain}, unlike the other recipients' "
                              f"domains.", domain=domain))
        if self.recipients >= 3 and not self.partners.get(key) and self.known_pairs:  # two others, at least
            found.append(_odd("ODD_NEW_TO_GROUP", settings.odd_new_to_group,
                              f"{key} has never been addressed together with the other recipients, who have.",
                              address=key))
        if not facts.by_org.get(key) and known.org.count >= settings.established:
            found.append(_odd("ODD_NEW_ADDRESS", settings.odd_new_address,
                              f"Nobody in your organisation has written to {key}, though {domain} is a "
                              f"correspondent.", address=key))
        elif (facts.by_org.get(key) and not facts.by_sender.get(key)
              and known.sender.count >= settings.established):
            found.append(_odd("ODD_NEW_FOR_SENDER", settings.odd_new_for_sender,
                              f"You write to {domain} often, but never to {key} before.", address=key))
        if not facts.by_sender.get(key):
            names = domain not in providers()  # a namesake at a public mail provider is nobody's colleague
            neighbour = _near_address(key, facts.neighbours.get(domain, ()), names=names)
            whose = "You write"
            if neighbour is None and not facts.by_org.get(key):
                neighbour = _near_address(key, facts.org_neighbours.get(domain, ()), names=names)
                whose = "Your organisation writes"
            if neighbour is not None:
                found.append(_odd("ODD_ADDRESS_SLIP", settings.odd_address_slip,
                                  f"{whose} to {neighbour}: is {key} the person you meant?", like=neighbour))
        substitute = self._substitute(key, domain)
        if substitute is not None:
            found.append(substitute)
        personal = self._personal(key, domain)
        if personal is not None:
            found.append(personal)
        if key in self.greeted:
            name, meant, count = self.greeted[key]
            found.append(_odd("ODD_GREETING", settings.odd_greeting,
                              f"The message greets {name}, and nobody it goes to is {name}. You write to {meant} "
                              f"({messages(count)}): is {key} the person you meant?", like=meant, greeted=name))
        return found

    def _substitute(self, key: str, domain: str) -> Signal | None:
        """ODD_SUBSTITUTE: this group (the others on the message, and the sender) was written to before with one
        person at this domain in this recipient's place (`substitute_min` messages at least, and nearly always that
        person), never with this recipient, and that person is not on the message."""
        filled = self.facts.places.get(key)
        if self.partial or not filled or filled.get(key):  # the person "replaced" may be a recipient still to come
            return None
        total = sum(filled.values())
        other, count = max(filled.items(), key=lambda item: (item[1], item[0]))
        if (count < self.settings.substitute_min or count < total * SUBSTITUTE_SHARE or other in self.present
                or other.rsplit("@", 1)[1] != domain):
            return None
        return _odd("ODD_SUBSTITUTE", self.settings.odd_substitute,
                    f"The others on this message had {other} with them where {key} is now "
                    f"({messages(count)}), never {key}: is {key} the person you meant?", like=other)

    def _personal(self, key: str, domain: str) -> Signal | None:
        """ODD_PERSONAL: this address at a public mail provider spells the name of the sender or of a colleague on
        this message (an address at the sender's domain or another of the organisation's, `Facts.own`:
        ann.lee@org.example, annlee84@gmail.com), or of the one person there history knows by that name (the
        sender's domain first), whom the sender writes to or has mail from, not on the message (a colleague's work
        address replaced by a personal one), unless the sender has written to this address `established` times."""
        if self.own is None or domain == self.own or domain not in providers():
            return None
        local = key.rsplit("@", 1)[0]
        name, names = spelled(local), self._names()
        colleague = names.get(name) if name else None  # its letters are the name (annlee84): the colleague's
        if colleague is None and self.facts.by_sender.get(key, 0) < self.settings.established:
            # a guess (annamartinez for anna.martin, thorvat's tomaszhorvat): written to often, somebody else's
            colleague = (named(name, names) if name else None) or guessed(local, names, least=SHORT_NAME)
        if colleague is not None:
            return _odd("ODD_PERSONAL", self.settings.odd_personal,
                        f"{key} looks like a personal address of {colleague}, at a public mail provider.",
                        colleague=colleague)
        colleague = self.facts.colleagues.get(local)
        if colleague is None or self.facts.by_sender.get(key, 0) >= self.settings.established:
            return None
        # (at another of the organisation's domains, a protected one its people send from, the person is most likely a
        # colleague; but a protected partner whose mail was imported as the organisation's looks the same)
        whose = "your colleague " if colleague.rpartition("@")[2] == self.own else ""
        return _odd("ODD_PERSONAL", self.settings.odd_personal,
                    f"{key} looks like a personal address of {whose}{colleague}, at a public mail provider: "
                    f"is {colleague} the address you meant?", colleague=colleague, like=colleague)

    def _names(self) -> dict[str, str]:
        """The names the sender and the colleagues on this message spell (worked out once, when first wanted)."""
        if self.names is None:
            self.names = {}
            ours = set(self.facts.own) | {self.own}
            for other in (self.sender, *self.keys):
                if other is None or other.rsplit("@", 1)[1] not in ours:
                    continue
                for form in name_forms(other.rsplit("@", 1)[0]):
                    if len(form.rstrip(EXACT + CALLED)) >= SHORT_NAME:
                        self.names.setdefault(form, other)
        return self.names

    def _domain_slip(self, domain: str, known: DomainFacts) -> Signal | None:
        """ODD_DOMAIN_SLIP: one slip from a co-recipient's domain that has more recipients here or more history (the
        `SLIP_COMPANY` domains with the most recipients here are compared)."""
        here = self.here
        mine = known.org.weight(self.now, self.settings.half_life)
        for other in self.likely:
            if other == domain or abs(len(other) - len(domain)) > 1 or single_edit(domain, other) is None:
                continue
            theirs = self.facts.domains[other].org.weight(self.now, self.settings.half_life)
            if here[other] > here[domain] or theirs > max(mine, 1.0) * 2:
                count = here[other]
                return _odd("ODD_DOMAIN_SLIP", self.settings.odd_domain_slip,
                            f"{domain} is one slip from {other}, where {count} other recipient"
                            f"{'s' if count > 1 else ''} of this message {'are' if count > 1 else 'is'}.",
                            like=other)
        return None


def _misgreeted(sender: str, keys: Sequence[str], greeting: Greeting, displays: Mapping[str, str],
                history: HistoryView) -> dict[str, tuple[str, str, int]]:
    """The recipients a greeting says were not meant: the message greets a name that neither a recipient nor any
    other address of its To and Cc fields (`displays`, with their display names) answers to (`unanswered`), and
    this recipient, outside the sender's domain and not at a public mail provider, answers to no name greeted while
    the sender writes to somebody of that name at its domain (`HistoryView.written_at`). Each with the name, that
    address (the most written to) and its messages."""
    recipients = {k: displays.get(k, "") for k in keys}
    missing = unanswered(greeting, {**displays, **recipients})
    if not missing:
        return {}
    own = sender.rpartition("@")[2]
    public = providers()
    found = {}
    meant_at: dict[str, tuple[int, str, str] | None] = {}  # domain -> the most written-to person greeted there
    for key, shown in recipients.items():
        domain = key.rpartition("@")[2]
        if (domain == own or domain in public or any(answers(n, key, shown) for n in greeting.first)
                or any(answers(n, key, shown, last=True) for n in greeting.last)):
            continue
        if domain not in meant_at:  # (history asked once a domain)
            written = history.written_at(sender, domain)
            meant_at[domain] = min(((-n, a, name) for name in missing for a, n in written.items()
                                    if a not in recipients and spells(name, a, last=name in greeting.last)),
                                   default=None)
        meant = meant_at[domain]
        if meant is not None:
            count, address, name = meant
            found[key] = (_shown(name), address, -count)
    return found


def _shown(name: str) -> str:
    """A greeted name as a sentence shows it: nils, Nils; anna-lena, Anna-Lena; o'brien, O'Brien."""
    return "-".join("'".join(p[:1].upper() + p[1:] for p in part.split("'")) for part in name.split("-"))


def _odd(name: str, score: float, note: str, **evidence: str) -> Signal:
    return Signal(name, {**evidence, "note": note}, score)


def _near_address(key: str, neighbours: Sequence[str], *, names: bool = True) -> str | None:
    """One of `neighbours` (addresses at the same domain) whose local part is one slip from this one's, or starts
    with the same first name (john.smith, john.smyth; jane.doe, jane.dunn) or, both written initial first, the same
    initial (j.martin, j.schulz); without `names`, only the slip."""
    local, at = key.rsplit("@", 1)
    first = (_first_name(local) or _initial_first(local)) if names else ""
    size = len(local)
    for other in neighbours:
        theirs = other[: -len(at) - 1]  # the same domain: its local part
        if theirs == local:
            continue
        if abs(len(theirs) - size) <= 1 and single_edit(local, theirs) is not None:
            return other
        if first and theirs.startswith(first) and (_first_name(theirs) or _initial_first(theirs)) == first:
            return other
    return None


def _initial_first(local: str) -> str:
    """The initial of a local part written initial first (j.martin: "j."), or ""."""
    return local[:2] if len(local) > 3 and local[0].isalpha() and local[1] == "." else ""


def _first_name(local: str) -> str:
    for sep in ".-_":
        if sep in local:
            head = local.split(sep, 1)[0]
            return head if len(head) >= 3 else ""  # initials say too little
    return ""


def _confirmed(verdict: Verdict, domain: str, when: dt.datetime, action: Action) -> Verdict:
    shown = normalize_domain(domain).unicode
    signal = Signal("SENDER_CONFIRMED", {"domain": shown, "at": f"{when:%Y-%m-%d}"})
    reason = f"You confirmed mail to {shown} on {when:%Y-%m-%d}."
    if action >= Action.WARN:
        reason = f"{reason} {verdict.reason}"
    return dataclasses.replace(verdict, action=min(verdict.action, action), signals=(*verdict.signals, signal),
                               reason=reason, intended=verdict.intended if action >= Action.WARN else None,
                               suggestion=verdict.suggestion if action >= Action.WARN else None)
