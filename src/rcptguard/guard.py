"""The engine: one `Guard.check()` per recipient, the same for every door into the mail path.

For a typed domain the guard asks the index for every protected, known or popular domain it could be one
slip away from, names each slip with the detectors, scores it as a noisy channel would

    score = weight(slip) + prior(domain meant) + context (first contact, short names)

and takes the best. Real domains are never held for resembling another: a typed domain that is itself a
major mailbox provider, or lies under a suffix whose registrations are vetted (.gov, .mil, .edu, .int), gets
at most a warning, and none when it belongs to the same owner as the domain it resembles (gmx.net, gmx.de).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rcptguard.detect import classify
from rcptguard.domains import DomainError, is_public_suffix, normalize_domain, parse_address, use_suffix_list
from rcptguard.index import Candidate, DomainIndex, Entry, Family
from rcptguard.model import Action, Address, Domain, Malformed, Role, Signal, Verdict
from rcptguard.policy import ConfigError, Policy
from rcptguard.providers import providers
from rcptguard.reasons import covered_reason, looks_like, target_phrase

_WEAK_FOR_POPULAR = frozenset({"TLD_SWAP", "TLD_CHANGE"})
JUDGEMENT_CACHE = 65536  # domains whose judgement is remembered; mail traffic repeats domains heavily
ALTERNATIVE_MARGIN = 1.5  # other candidates this close to the best are named as alternatives


@dataclass(slots=True)  # a value never changed once made; not frozen, which costs on every check
class Judgement:
    """What the guard decided about a domain; a Verdict is this with the address filled in."""

    action: Action
    score: float
    signals: tuple[Signal, ...]
    reason: str
    intended: str | None = None
    alternatives: tuple[str, ...] = ()


@dataclass(slots=True)  # a value never changed once made; not frozen, which costs on every check
class Scored:
    """A candidate with the signals that explain it and their total score."""

    candidate: Candidate
    signals: tuple[Signal, ...]
    score: float

    @property
    def slip(self) -> Signal:
        return self.signals[0]


def read_known_file(path: Path) -> list[tuple[str, int]]:
    """Domains from a file, one a line: `domain` or `domain count`; `#` starts a comment."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the known-domains file ({exc})", path=path) from None
    out = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        name, _, count = text.partition(" ")
        try:
            domain = normalize_domain(name.strip().lstrip("*").lstrip(".").rsplit("@", 1)[-1])
        except DomainError as exc:
            raise ConfigError(f"{name!r}: {exc}", path=path, line=number) from None
        if count.strip() and not count.strip().isdigit():
            raise ConfigError(f"expected 'domain' or 'domain count', got {text!r}", path=path, line=number)
        out.append((domain.ascii, int(count.strip() or 0)))
    return out


class Guard:
    """Decides, for each recipient, whether it is probably a slip, of which domain, and what to do."""

    def __init__(self, policy: Policy, learned: Mapping[str, int] | None = None) -> None:
        self.policy = policy
        if policy.psl_file is not None:
            try:
                use_suffix_list(policy.psl_file)
            except OSError as exc:
                raise ConfigError(f"cannot read the suffix list ({exc.strerror})", path=policy.psl_file,
                                  key="psl_file") from None
        self._learned = dict(learned or {})
        self._restricted = tuple("." + s for s in policy.restricted_suffixes)
        self.index = DomainIndex(self._entries())
        # A domain's judgement depends only on the index and policy, both fixed for this guard's lifetime.
        self.judge = lru_cache(maxsize=JUDGEMENT_CACHE)(self._judge)

    def _entries(self) -> Iterable[Entry]:
        policy = self.policy
        for name in policy.protect:
            domain = normalize_domain(name)
            yield Entry(domain, Role.PROTECTED, is_suffix=is_public_suffix(domain.ascii))
        for name in policy.known:
            domain = normalize_domain(name)
            yield Entry(domain, Role.KNOWN, is_suffix=is_public_suffix(domain.ascii))
        for path in policy.known_files:
            for name, count in read_known_file(path):
                domain = normalize_domain(name)
                yield Entry(domain, Role.KNOWN, count=count, is_suffix=is_public_suffix(domain.ascii))
        for name, count in self._learned.items():
            if count >= policy.learn_min_count:
                yield Entry(normalize_domain(name), Role.KNOWN, count=count)
        if policy.providers:
            for name, owner in providers().items():
                yield Entry(normalize_domain(name), Role.POPULAR, owner=owner)

    # -- the check ------------------------------------------------------------------------------------

    def check(self, raw: str) -> Verdict:
        """The verdict for one recipient as typed; never raises on any string."""
        parsed = parse_address(raw)
        if isinstance(parsed, Malformed):
            return malformed_verdict(parsed)
        return self.check_address(parsed)

    def check_address(self, address: Address) -> Verdict:
        """The verdict for a parsed address: the domain's judgement, with the address filled in."""
        judged = self.judge(address.domain)
        suggestion = address.with_domain(judged.intended) if judged.intended else None
        return Verdict(address=address.text, domain=address.domain.unicode, action=judged.action,
                       score=judged.score, signals=judged.signals, reason=judged.reason,
                       intended=judged.intended, suggestion=suggestion, domain_ascii=address.domain.ascii,
                       alternatives=judged.alternatives)

    def _judge(self, domain: Domain) -> Judgement:
        covered = self.index.covering(domain)
        if covered is not None:
            name = "PROTECTED_DOMAIN" if covered.role is Role.PROTECTED else "KNOWN_CORRESPONDENT"
            signal = Signal(name, {"domain": covered.domain.unicode})
            return self._forced(domain, Judgement(Action.PASS, 0.0, (signal,), covered_reason(domain, covered)), None)
        ranked = self.rank(domain)
        if not ranked:
            reason = f"{domain.display()} does not look like any protected or known domain."
            return self._forced(domain, Judgement(Action.PASS, 0.0, (), reason), None)
        best = ranked[0]
        action = self.policy.action_for(best.score)
        signals = list(best.signals)
        notes = [looks_like(domain, best.candidate.intended, best.slip),
                 target_phrase(best.candidate.target, best.candidate.intended)]
        if self._first_contact(domain):
            notes.append(f"You have never written to {domain.unicode}.")
        action, cap_notes = self._cap(domain, best, action, signals)
        notes = cap_notes + notes if action is Action.PASS else notes + cap_notes
        alternatives = tuple(dict.fromkeys(
            s.candidate.intended for s in ranked[1:4] if s.candidate.intended != best.candidate.intended
            and s.score >= best.score - ALTERNATIVE_MARGIN))
        if action >= Action.WARN and alternatives:
            notes.append(f"It also resembles {', '.join(alternatives)}.")
        intended = best.candidate.intended
        judged = Judgement(action, best.score, tuple(signals), " ".join(notes),
                           intended if action >= Action.WARN else None,
                           alternatives if action >= Action.WARN else ())
        return self._forced(domain, judged, intended)

    def rank(self, domain: Domain) -> list[Scored]:
        """Every candidate the typed domain could be a slip of, best first (ties broken by name)."""
        scored = []
        for candidate in self.index.candidates(domain):
            slip = classify(candidate)
            if slip is None:
                continue
            if candidate.target.role is Role.POPULAR and slip.name in _WEAK_FOR_POPULAR:
                continue  # a provider's name under an unrelated suffix is another real domain (usa.gov, mail.de)
            signals = [Signal(slip.name, slip.evidence, self.policy.weight(slip.name))]
            signals.extend(self._context(domain, candidate))
            scored.append(Scored(candidate, tuple(signals), sum(s.score for s in signals)))
        scored.sort(key=_rank_key)
        return scored

    def _context(self, domain: Domain, candidate: Candidate) -> list[Signal]:
        priors = self.policy.priors
        target = candidate.target
        out = []
        if target.role is Role.PROTECTED:
            out.append(Signal("PROTECTED_TARGET", {"domain": target.domain.unicode}, priors.get("protected", 0)))
        elif target.role is Role.KNOWN:
            bonus = 0.0
            if target.count > 1:
                bonus = min(1.5, priors.get("known_per_doubling", 0) * math.log2(target.count))
            out.append(Signal("KNOWN_TARGET", {"domain": target.domain.unicode, "count": str(target.count)},
                              priors.get("known", 0) + bonus))
        else:
            out.append(Signal("POPULAR_TARGET", {"domain": target.domain.unicode, "owner": target.owner or ""},
                              priors.get("popular", 0)))
        if self._first_contact(domain):
            out.append(Signal("FIRST_CONTACT", {"domain": domain.unicode}, priors.get("first_contact", 0)))
        if candidate.family is Family.NAME:
            first = candidate.intended_stem.rsplit(".", 1)[-1]
            if len(first) <= 3:
                out.append(Signal("SHORT_NAME", {"name": first}, priors.get("short_name", 0)))
            elif len(first) == 4:
                out.append(Signal("SHORT_NAME", {"name": first}, priors.get("short_name_4", 0)))
        return out

    def _first_contact(self, domain: Domain) -> bool:
        return self._learned.get(domain.ascii, 0) == 0

    def _cap(self, domain: Domain, best: Scored, action: Action, signals: list[Signal]) -> tuple[Action, list[str]]:
        """Real domains are never held for resembling another one."""
        notes = []
        popular = self.index.popular(domain)
        if popular is not None:
            target = best.candidate.target
            if target.owner and target.owner == popular.owner:
                signals.append(Signal("SAME_OWNER", {"owner": target.owner}))
                notes.append(f"Both belong to {target.owner}, so {domain.unicode} is probably meant.")
                return Action.PASS, notes
            if target.role is Role.POPULAR:
                signals.append(Signal("POPULAR_PROVIDER", {"domain": popular.domain.unicode,
                                                           "owner": popular.owner or ""}))
                notes.append(f"Both are major mail providers, and you have written to neither: "
                             f"{domain.unicode} is probably meant.")
                return Action.PASS, notes
            signals.append(Signal("POPULAR_PROVIDER", {"domain": popular.domain.unicode,
                                                       "owner": popular.owner or ""}))
            action = min(action, Action.WARN)
            notes.append(f"But {domain.unicode} is itself a major mail provider ({popular.owner}).")
            return action, notes
        restricted = next((s for s in self._restricted if ("." + domain.ascii).endswith(s)), None)
        if restricted is not None:
            signals.append(Signal("RESTRICTED_SUFFIX", {"suffix": restricted[1:]}))
            action = min(action, Action.WARN)
            notes.append(f"But only vetted institutions can register under {restricted}, "
                         f"so {domain.unicode} is probably real.")
        return action, notes

    def _forced(self, domain: Domain, judged: Judgement, intended: str | None) -> Judgement:
        for rule in self.policy.force:
            if not rule.matches(domain.ascii):
                continue
            if rule.unless_known and self.index.covering(domain) is not None:
                continue
            signal = Signal("FORCE_RULE", {"rule": ", ".join(rule.suffixes + rule.domains),
                                           "action": str(rule.action), "message": rule.message})
            reason = " ".join(x for x in (rule.message, judged.reason) if x)
            return Judgement(rule.action, judged.score, (*judged.signals, signal), reason,
                             intended if rule.action >= Action.WARN else None, judged.alternatives)
        return judged


# Among equal scores: the domain the organisation knows best, then the commoner slip (a dropped letter
# before a neighbouring key: hotmail.co is hotmail.com rather than hotmail.cl), then the name.
_SLIP_ORDER = {"omission": 0, "transposition": 1, "repetition": 2, "keyboard": 3}


def _rank_key(item: Scored) -> tuple[float, int, int, str]:
    kind = item.slip.evidence.get("slip") or item.slip.evidence.get("edit", "")
    return (-item.score, -int(item.candidate.target.role), _SLIP_ORDER.get(kind, len(_SLIP_ORDER)),
            item.candidate.intended)


def malformed_verdict(bad: Malformed) -> Verdict:
    signal = Signal("MALFORMED_ADDRESS", {"problem": bad.reason})
    reason = f"This is not a valid address: {bad.reason}."
    return Verdict(address=bad.raw, domain=None, action=Action.REJECT, score=0.0, signals=(signal,), reason=reason)
