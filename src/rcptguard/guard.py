"""The engine: one `Guard.check()` per recipient, the same for every door into the mail path.

For a typed domain the guard asks the index for every protected, known or popular domain it could be one
slip away from, names each slip with the detectors, scores it as a noisy channel would

    score = weight(slip) + prior(domain meant) + context (first contact, short names)

and takes the best. A candidate with two slips (`outlok.co`, `micorsfot.com`) scores the weights of both
less the `second_slip` prior: two slips at once are rarer than one. Real domains are never held for
resembling another: a typed domain that is itself a major mailbox provider, or lies under a suffix whose
registrations are vetted (.gov, .mil, .edu, .int), gets at most a warning, and none when it belongs to the
same owner as the domain it resembles (gmx.net, gmx.de); so does a likely sibling (under the same registered
domain; or a provider's name under .com for .net, or under another country's code or registry when the brand
has several: hotmail.ch, gmx.com.ar).

A domain whose top-level label does not exist (`smallfirm.con`) cannot receive mail: it gets the policy's
`no_such_tld.action`, with the likeliest real domain named, known or not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rcptguard.detect import explain
from rcptguard.domains import (
    DomainError,
    normalize_domain,
    parse_address,
    public_suffix,
    to_ascii,
    use_suffix_list,
)
from rcptguard.index import Candidate, DomainIndex, Family, Listed, weakly_cached
from rcptguard.model import Action, Address, Domain, Malformed, Role, Signal, Verdict
from rcptguard.policy import ConfigError, Policy
from rcptguard.providers import providers
from rcptguard.reasons import (
    bounce_reason,
    covered_reason,
    looks_like,
    never_written,
    sibling_note,
    target_phrase,
)
from rcptguard.typos.cost import path_cost
from rcptguard.typos.edits import Edit, single_edit
from rcptguard.typos.suffixes import country_codes, fix_for, nearest, real_tlds

_WEAK_FOR_POPULAR = frozenset({"TLD_SWAP", "TLD_CHANGE"})
_DOT_SLIPS = frozenset({"MISSING_DOT", "DOT_HYPHEN", "MISPLACED_DOT", "GLUED_PREFIX"})
DISTINCT_NAME = 5  # letters from which a provider's name alone, under a suffix it does not use, points to it
BRAND_COUNTRIES = 2  # suffixes a name is indexed under for it to count as a brand present in many countries
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

    cost: float = 0.0  # the typing cost of its slips (typos.cost): the likelier explanation ranks first
    slips: int = 1  # how many slip signals lead `signals`

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

    def __init__(self, policy: Policy, learned: Mapping[str, int] | None = None, *,
                 index: DomainIndex | None = None) -> None:
        self.policy = policy
        if policy.psl_file is not None:
            try:
                use_suffix_list(policy.psl_file)
            except OSError as exc:
                raise ConfigError(f"cannot read the suffix list ({exc.strerror})", path=policy.psl_file,
                                  key="psl_file") from None
        self._learned = dict(learned or {})
        self._restricted = tuple("." + s for s in policy.restricted_suffixes)
        self._private = frozenset(policy.private_suffixes)
        self._real = real_tlds()
        self.index = DomainIndex(self._entries()) if index is None else index  # given: `extended`
        # A domain's judgement depends only on the index and policy, both fixed for this guard's lifetime.
        self.judge = weakly_cached(self._judge, JUDGEMENT_CACHE)

    def extended(self, learned: Mapping[str, int], added: Iterable[str] = ()) -> Guard:
        """This guard with the correspondents `learned` (all of them, as a new guard is given them) and the domains
        `added` known, in a time that grows with what is new: the index is extended with the domains it did not
        know (`DomainIndex.extended`), and every judgement is made again. This guard is left as it was."""
        least, before = self.policy.learn_min_count, self._learned
        new = [Listed(normalize_domain(name), Role.KNOWN, count) for name, count in learned.items()
               if count >= least and before.get(name, 0) < least]
        new.extend(Listed(normalize_domain(name), Role.KNOWN) for name in added)
        return Guard(self.policy, learned, index=self.index.extended(new))

    def _entries(self) -> Iterable[Listed]:
        # A domain is a whole public suffix (mil) when its own public suffix is itself: `Domain.suffix` already
        # holds it, one look-up in the list instead of two for each of up to a million domains. The lists are
        # read without normalize_domain's cache, which a million names would only churn.
        policy, normalize = self.policy, normalize_domain.__wrapped__
        for name in policy.protect:
            domain = normalize(name)
            yield Listed(domain, Role.PROTECTED, 0, None, domain.suffix == domain.ascii)
        for name in policy.known:
            domain = normalize(name)
            yield Listed(domain, Role.KNOWN, 0, None, domain.suffix == domain.ascii)
        for path in policy.known_files:
            for name, count in read_known_file(path):
                domain = normalize(name)
                yield Listed(domain, Role.KNOWN, count, None, domain.suffix == domain.ascii)
        for name, count in self._learned.items():
            if count >= policy.learn_min_count:
                yield Listed(normalize(name), Role.KNOWN, count)
        if policy.providers:
            for name, owner in providers().items():
                yield Listed(normalize(name), Role.POPULAR, owner=owner)

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
        tld = domain.ascii[domain.ascii.rfind(".") + 1 :]
        bogus = tld not in self._real and tld not in self._private
        if bogus and (not ranked or ranked[0].score < self.policy.weight("NO_SUCH_TLD")):
            # Nothing indexed explains it better than one slip in the suffix alone: the nearest real suffix
            # for the name as typed (smallfirm.con -> smallfirm.com).
            return self._forced(domain, self._bounce(domain, tld), None)
        if not ranked:
            reason = f"{domain.display()} does not look like any protected or known domain."
            return self._forced(domain, Judgement(Action.PASS, 0.0, (), reason), None)
        best = ranked[0]
        if best.candidate.target.role is Role.POPULAR and self.index.popular(domain) is not None:
            # A provider resembling a provider passes; one of the organisation's own correspondents it
            # resembles matters more.
            own = next((s for s in ranked if s.candidate.target.role is not Role.POPULAR), None)
            if own is not None and self.policy.action_for(own.score) >= Action.WARN:
                best = own
        action = self.policy.action_for(best.score)
        signals = list(best.signals)
        notes = [looks_like(domain, best.candidate.intended, best.signals[: best.slips]),
                 target_phrase(best.candidate.target, best.candidate.intended)]
        if self._first_contact(domain):
            notes.append(never_written(domain))
        if bogus:  # the mail would bounce: no real domain resembling it lowers that
            action = max(action, self.policy.no_such_tld)
            notes.insert(0, bounce_reason(domain, tld))
        else:
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

    def _bounce(self, domain: Domain, tld: str) -> Judgement:
        """A domain under a top-level label that does not exist, resembling nothing indexed: the nearest real
        suffix is named for the name as typed (smallfirm.con -> smallfirm.com)."""
        fixes = nearest(tld)
        reason = bounce_reason(domain, tld)
        if not fixes:
            signal = Signal("NO_SUCH_TLD", {"typed": domain.unicode, "likely": "", "edit": "",
                                            "detail": f".{tld} is not a top-level domain"})
            return Judgement(self.policy.no_such_tld, 0.0, (signal,), reason)
        fix = fixes[0]
        intended = domain.unicode[: -len(domain.unicode.rsplit(".", 1)[-1])] + fix.tld
        weight = self.policy.weight("NO_SUCH_TLD")
        signal = Signal("NO_SUCH_TLD", {"typed": domain.unicode, "likely": intended, "edit": f"{fix.tld}→{tld}",
                                        "detail": fix.detail, "cost": f"{fix.cost:.2f}"}, weight)
        action = max(self.policy.action_for(weight), self.policy.no_such_tld)
        others = tuple(domain.unicode[: -len(tld)] + f.tld for f in fixes[1:3] if f.cost <= fix.cost + 1.0)
        note = f"Did you mean {intended}? ({fix.detail})"
        if others:
            note += f" It could also be {', '.join(others)}."
        return Judgement(action, weight, (signal,), f"{reason} {note}", intended if action >= Action.WARN else None,
                         others if action >= Action.WARN else ())

    def rank(self, domain: Domain) -> list[Scored]:
        """Every candidate the typed domain could be a slip of, best first (ties: the domain the organisation
        knows best, then the cheaper slips by the typing model, then the name)."""
        candidates = self.index.candidates(domain)
        if not candidates:
            return []
        if len(candidates) > 1:
            candidates = _undominated(candidates)
        scored = []
        for candidate in candidates:
            slips = explain(candidate)
            if slips is None:
                continue
            if (candidate.target.role is Role.POPULAR and len(slips) == 1 and slips[0].name in _WEAK_FOR_POPULAR
                    and not self._distinct_provider_name(candidate)):
                continue  # a provider's name under an unrelated suffix is another real domain (usa.gov, mail.de)
            signals = [Signal(s.name, s.evidence, self.policy.weight(s.name)) for s in slips]
            if len(slips) > 1:
                signals.append(Signal("SECOND_SLIP", {"slips": " and ".join(s.evidence.get("detail", s.name)
                                                                          for s in slips)},
                                      self.policy.priors.get("second_slip", 0) * (len(slips) - 1)))
            signals.extend(self._context(domain, candidate, slips))
            scored.append(Scored(candidate, tuple(signals), sum(s.score for s in signals), 0.0, len(slips)))
        if len(scored) > 1:  # the typing cost only breaks ties
            for item in scored:
                item.cost = _typing_cost(item.candidate)
            scored.sort(key=_rank_key)
        return scored

    def _distinct_provider_name(self, candidate: Candidate) -> bool:
        """The typed name is a provider's own, long enough to be nobody else's, and the provider uses few
        suffixes (gmail.co.uk is gmail.com; hotmail.ch is not hotmail.com, since Hotmail has country domains)."""
        return (candidate.typed_stem == candidate.intended_stem
                and len(candidate.intended_stem.rsplit(".", 1)[-1]) >= DISTINCT_NAME
                and self.index.suffix_count(candidate.intended_stem) < BRAND_COUNTRIES)

    def _context(self, domain: Domain, candidate: Candidate, slips: tuple[Signal, ...] = ()) -> list[Signal]:
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
        if candidate.family is Family.NAME and not any(s.name in _DOT_SLIPS for s in slips):
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
        sibling = self._sibling(domain, best)
        if sibling is not None:
            signals.append(Signal("LIKELY_SIBLING", {"domain": best.candidate.target.domain.unicode,
                                                     "why": sibling}))
            action = min(action, Action.WARN)
            notes.append(sibling_note(domain, best.candidate.target.domain.unicode, sibling))
        restricted = next((s for s in self._restricted if ("." + domain.ascii).endswith(s)), None)
        if restricted is not None:
            signals.append(Signal("RESTRICTED_SUFFIX", {"suffix": restricted[1:]}))
            action = min(action, Action.WARN)
            notes.append(f"But only vetted institutions can register under {restricted}, "
                         f"so {domain.unicode} is probably real.")
        return action, notes

    def _sibling(self, domain: Domain, best: Scored) -> str | None:
        """Why the typed domain is probably a real sibling of the domain it resembles, if it is: both under one
        registrable domain (kl.wind.jp for k1.wind.jp: whoever owns wind.jp gets the mail either way); or, for
        a provider, the same name under the other big generic suffix (cox.com for cox.net: owners hold both),
        or under another country's code or country registry when the brand is indexed under several
        (hotmail.ch for hotmail.cz, yahoo.com.ar for yahoo.com)."""
        candidate = best.candidate
        if _registrable(domain.ascii, domain.suffix) == _registrable(to_ascii(candidate.intended)):
            return "registrable"
        if (candidate.target.owner is None or candidate.family is not Family.SUFFIX
                or best.slips != 1 or candidate.typed_stem != candidate.intended_stem):
            return None
        if best.slip.name == "TLD_HABIT":
            return "generic"
        ccs = country_codes()
        typed, meant = candidate.typed_suffix.rsplit(".", 1)[-1], candidate.intended_suffix.rsplit(".", 1)[-1]
        # The brand's suffix under a country's own registry: com.ar is one (a public suffix), com.com is not.
        registry = candidate.typed_suffix.startswith(candidate.intended_suffix + ".") \
            and candidate.typed_suffix == domain.suffix
        if (typed in ccs and typed != "co" and (meant in ccs or registry)
                and self.index.suffix_count(candidate.intended_stem) >= BRAND_COUNTRIES):
            return "country"
        return None

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


_UNRELATED_SUFFIX = 4.0  # typing cost given to a suffix no slip explains (acme.fr for acme.com)


def _suffix_cost(typed: str, intended: str) -> float:
    if typed.startswith(intended + "."):
        return 1.0
    fix = fix_for(typed, intended)
    if fix is not None:
        return max(fix.cost, 0.0)
    edit = single_edit(typed, intended)
    return path_cost((edit,), in_name=False) if edit is not None else _UNRELATED_SUFFIX


def _registrable(ascii_domain: str, suffix: str | None = None) -> str:
    """The domain registered under its public suffix (wind.jp for k1.wind.jp)."""
    suffix = public_suffix(ascii_domain) if suffix is None else suffix
    return ".".join(ascii_domain.split(".")[-suffix.count(".") - 2 :])


def _typing_cost(candidate: Candidate) -> float:
    """The typing cost of the candidate's slips (typos.cost): a dropped letter is cheaper than a neighbouring
    key (army.ml is army.mil rather than army.nl; hotmail.co is hotmail.com rather than hotmail.cl)."""
    if candidate.family is Family.SKELETON:
        return 0.0
    cost = path_cost(candidate.edits)
    if candidate.family is Family.SUFFIX or candidate.suffix_slip:
        cost += _suffix_cost(candidate.typed_suffix, candidate.intended_suffix)
    return cost


def _undominated(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates less those explained by the same slip in the same name as another, plus a slip of the
    suffix: outlok.com.br is outlook.com.br with an 'o' missing, not outlook.com.gr with a key slipped too."""
    plain = {(c.intended_stem, _edits_key(c.edits)) for c in candidates
             if c.family is Family.NAME and c.edits and not c.suffix_slip}
    if not plain:
        return candidates
    return [c for c in candidates
            if not (c.suffix_slip and (c.intended_stem, _edits_key(c.edits)) in plain)]


def _edits_key(edits: tuple[Edit, ...]) -> tuple[tuple[str, int, str, str], ...]:
    return tuple((e.op.value, e.pos, e.was, e.now) for e in edits)


def _rank_key(item: Scored) -> tuple[float, int, float, str]:
    """Among equal scores: the domain the organisation knows best, then the cheaper slips, then the name."""
    return (-item.score, -int(item.candidate.target.role), item.cost, item.candidate.intended)


def malformed_verdict(bad: Malformed) -> Verdict:
    signal = Signal("MALFORMED_ADDRESS", {"problem": bad.reason})
    reason = f"This is not a valid address: {bad.reason}."
    return Verdict(address=bad.raw, domain=None, action=Action.REJECT, score=0.0, signals=(signal,), reason=reason)
