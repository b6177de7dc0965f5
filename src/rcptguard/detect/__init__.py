"""Detectors: small named functions that explain how a typed domain could come from an intended one.

The index finds candidate pairs (typed, intended) by one of three routes, the *family*:

    SUFFIX    same name, different public suffix      army.ml      <- army.mil
    NAME      slips inside the name                    gmial.com    <- gmail.com
              (two in a strong name, or one on top of a suffix slip: outlok.co <- outlook.com)
    SKELETON  the same visual skeleton (TR39)          аmazon.com   <- amazon.com

Each family has an ordered tuple of detectors, most specific first; the first one that recognises the pair
names the slip, and its signal (with evidence a sender can read) is what the policy weighs. Detectors are pure:
no I/O, no weights, no knowledge of actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from rcptguard.index import Candidate, Family
from rcptguard.model import Signal

from . import homoglyph, names, tld

Detector = Callable[[Candidate], Signal | None]


@dataclass(frozen=True, slots=True)
class Described:
    name: str
    family: Family
    description: str


DETECTORS: dict[Family, tuple[Detector, ...]] = {
    Family.SUFFIX: tld.DETECTORS,
    Family.NAME: names.DETECTORS,
    Family.SKELETON: homoglyph.DETECTORS,
}


def classify(candidate: Candidate) -> Signal | None:
    """The signal of the first detector of the candidate's family that recognises it."""
    for detector in DETECTORS[candidate.family]:
        signal = detector(candidate)
        if signal is not None:
            return signal
    return None


def explain(candidate: Candidate) -> tuple[Signal, ...] | None:
    """One signal for each slip of the candidate, or None if any of them is not recognised.

    A NAME candidate may carry two slips: two edits in the name (each named by the name detectors), or one
    edit in the name and a slip of the suffix (named by the suffix detectors). Every other candidate has one.
    """
    if candidate.family is not Family.NAME or (len(candidate.edits) == 1 and not candidate.suffix_slip):
        signal = classify(candidate)
        return None if signal is None else (signal,)
    signals = []
    for edit in candidate.edits:
        signal = classify(replace(candidate, edit=edit, edits=(edit,), suffix_slip=False))
        if signal is None:
            return None
        signals.append(signal)
    if candidate.suffix_slip:
        signal = classify(replace(candidate, family=Family.SUFFIX, typed_stem=candidate.intended_stem,
                                  edit=None, edits=(), suffix_slip=False))
        if signal is None:
            return None
        signals.append(signal)
    return tuple(signals)


def catalogue() -> list[Described]:
    """Every detector with its signal name and first docstring line, for docs and `rcptguard detectors`."""
    out = []
    for family, detectors in DETECTORS.items():
        for detector in detectors:
            doc = (detector.__doc__ or "").strip().splitlines()[0]
            out.append(Described(detector.__name__.upper(), family, doc))
    return out


__all__ = ["DETECTORS", "Described", "Detector", "catalogue", "classify", "explain"]
