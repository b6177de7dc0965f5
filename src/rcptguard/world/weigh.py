"""Weighing the world's evidence into a verdict: pure `weigh`, and `consult` / `consult_sync` for the doors.

    if wants_evidence(verdict):                       # warn or worse, with an intended domain (rare)
        verdict = weigh(verdict, await world.check(verdict.domain_ascii, verdict.intended))
    verdict = await consult(world, verdict)           # the same, never raises (the relay, the policy service)
    verdict = consult_sync(sync_world, verdict)       # without an event loop (`rcptguard check --dns`, stdio)
    verdicts = consult_all_sync(sync_world, verdicts) # a batch at once (the web API's /v1/check)

What each finding does (docs/world.md):

    NO_DOMAIN, NO_MAIL    the action is kept (the sender deserves "did you mean" now, not a bounce later); the
                          evidence ("army.ml does not exist ...: mail to it would bounce.") is appended to the
                          reason (the first sentence, which a Postfix reply quotes, stays the engine's)
    SAME_OPERATOR         the action is capped at warn (never below what it was; a [[force]] rule is not capped);
                          the reason says why
    SHARED_HOSTING,       nothing proven: the verdict is unchanged but for the signal, whose evidence carries
    DIFFERENT_OPERATOR,   the note ("no answer within 150 ms; decided without it")
    UNKNOWN

Every finding adds one signal `DNS_<FINDING>` scored 0: the score is the engine's, the evidence only words or
caps it. The names are in `SIGNALS` and listed by `rcptguard detectors`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rcptguard.model import Action, Signal, Verdict
from rcptguard.world.model import Evidence, Finding

if TYPE_CHECKING:
    from rcptguard.world.lookup import SyncWorld, World

__all__ = ["SIGNALS", "consult", "consult_all_sync", "consult_sync", "wants_evidence", "weigh"]

log = logging.getLogger("rcptguard.world")

SIGNALS: dict[Finding, str] = {finding: f"DNS_{finding.name}" for finding in Finding}
# Verdicts that already say the mail would bounce without asking (a top-level label that does not exist), or that
# have the evidence already.
_NOT_WANTED = frozenset({"NO_SUCH_TLD", *SIGNALS.values()})


def wants_evidence(verdict: Verdict) -> bool:
    """The verdict is worth a DNS look-up: warn or worse, for a slip of a named domain, not yet known to bounce."""
    if verdict.action < Action.WARN or not verdict.intended or not verdict.domain_ascii:
        return False
    return all(s.name not in _NOT_WANTED for s in verdict.signals)


def weigh(verdict: Verdict, evidence: Evidence) -> Verdict:
    """The verdict with the world's evidence weighed in (the module docstring has the table); pure."""
    if not wants_evidence(verdict):
        return verdict
    signal = Signal(SIGNALS[evidence.finding], {"finding": str(evidence.finding), "text": evidence.text,
                                                "hosts": ", ".join(evidence.hosts),
                                                "ms": f"{evidence.elapsed_ms:.0f}"})
    weighed = verdict.copy()
    weighed.signals = (*verdict.signals, signal)
    if evidence.would_bounce:
        weighed.reason = f"{verdict.reason} {evidence.text}"
    elif evidence.same_operator and verdict.action > Action.WARN and verdict.signal("FORCE_RULE") is None:
        weighed.action = Action.WARN
        weighed.reason = (f"{verdict.reason} {evidence.text} So {evidence.typed} is probably a real sibling of "
                          f"{evidence.intended}: a warning, not a {verdict.action}.")
    elif evidence.same_operator:
        weighed.reason = f"{verdict.reason} {evidence.text}"
    return weighed


async def consult(world: World | None, verdict: Verdict) -> Verdict:
    """`weigh` with the evidence of `world` (None: DNS off) when the verdict wants it; never raises, and takes
    at most the world's budget: on any failure the verdict is decided without it (and the failure logged)."""
    if world is None or not wants_evidence(verdict):
        return verdict
    try:
        assert verdict.domain_ascii is not None  # wants_evidence
        assert verdict.intended is not None
        return weigh(verdict, await world.check(verdict.domain_ascii, verdict.intended))
    except Exception:  # the mail path never fails on the world's evidence
        log.exception("dns evidence not weighed; decided without it")
        return verdict


def consult_all_sync(world: SyncWorld | None, verdicts: list[Verdict]) -> list[Verdict]:
    """`consult_sync` for a batch (the web API's recipients), the look-ups made at once: the batch waits about
    one budget in all; never raises."""
    asking = [i for i, verdict in enumerate(verdicts) if wants_evidence(verdict)]
    if world is None or not asking:
        return verdicts
    out = list(verdicts)
    try:
        found = world.check_all([(verdicts[i].domain_ascii or "", verdicts[i].intended or "") for i in asking])
        for i, evidence in zip(asking, found, strict=True):
            out[i] = weigh(verdicts[i], evidence)
    except Exception:  # the check path never fails on the world's evidence
        log.exception("dns evidence not weighed; decided without it")
        return verdicts
    return out


def consult_sync(world: SyncWorld | None, verdict: Verdict) -> Verdict:
    """`consult` for callers without an event loop (`rcptguard check --dns`, the policy service on stdio)."""
    if world is None or not wants_evidence(verdict):
        return verdict
    try:
        assert verdict.domain_ascii is not None  # wants_evidence
        assert verdict.intended is not None
        return weigh(verdict, world.check(verdict.domain_ascii, verdict.intended))
    except Exception:  # the check path never fails on the world's evidence
        log.exception("dns evidence not weighed; decided without it")
        return verdict
