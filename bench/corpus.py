"""Realistic synthetic domain lists and recipient mixes for the benchmarks (deterministic, seeded)."""

from __future__ import annotations

import random

_ONSETS = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "ch", "cl", "cr", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "x", "ck", "nd", "rt", "st"]
_WORDS = ["tech", "med", "bank", "group", "law", "energy", "health", "labs", "media", "trade", "systems",
          "partners", "capital", "clinic", "marine", "air", "net", "mail", "global", "consult"]
# Roughly the share of suffixes among the domains an organisation writes to.
_SUFFIXES = [("com", 50), ("net", 6), ("org", 6), ("de", 5), ("co.uk", 4), ("fr", 3), ("nl", 2), ("it", 2),
             ("io", 2), ("ca", 2), ("com.au", 2), ("es", 2), ("ch", 1), ("se", 1), ("be", 1), ("us", 1),
             ("gov", 2), ("edu", 2), ("co", 1), ("ai", 1), ("jp", 1), ("com.br", 1)]


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def name(rng: random.Random) -> str:
    parts = [_syllable(rng) for _ in range(rng.choice([2, 2, 3, 3, 4]))]
    word = "".join(parts)
    roll = rng.random()
    if roll < 0.2:
        word += rng.choice(_WORDS)
    elif roll < 0.3:
        word += "-" + rng.choice(_WORDS)
    return word[:40]


def domains(count: int, seed: int = 1) -> list[str]:
    """`count` distinct, plausible registrable domains (and a few subdomains such as us.example.com)."""
    rng = random.Random(seed)
    suffixes = [s for s, w in _SUFFIXES for _ in range(w)]
    out: dict[str, None] = {}
    while len(out) < count:
        domain = f"{name(rng)}.{rng.choice(suffixes)}"
        if rng.random() < 0.03:
            domain = f"{rng.choice(['us', 'mail', 'eu', 'corp'])}.{domain}"
        out[domain] = None
    return list(out)


def typo(domain: str, rng: random.Random) -> str:
    """One slip of `domain`: an omission, a transposition, a doubled letter or a suffix slip."""
    head, _, suffix = domain.rpartition(".")
    kind = rng.randrange(4)
    i = rng.randrange(1, max(2, len(head) - 1))
    if kind == 0:
        head = head[:i] + head[i + 1 :]
    elif kind == 1 and i + 1 < len(head):
        head = head[:i] + head[i + 1] + head[i] + head[i + 2 :]
    elif kind == 2:
        head = head[:i] + head[i] + head[i:]
    else:
        suffix = suffix[:-1] if len(suffix) > 2 else suffix + suffix[-1]
    return f"{head}.{suffix}"


def recipients(known: list[str], count: int, seed: int = 2) -> list[str]:
    """A mix like an organisation's outbound mail: 60% known domains, 25% unknown ones, 15% slips."""
    rng = random.Random(seed)
    strangers = domains(count, seed=seed + 100)
    out = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.60:
            domain = rng.choice(known)
        elif roll < 0.85:
            domain = strangers[i]
        else:
            domain = typo(rng.choice(known), rng)
        out.append(f"user{i}@{domain}")
    return out


def stream(known: list[str], count: int, seed: int = 3) -> list[str]:
    """Outbound traffic as it repeats: domains drawn with a Zipf-like skew (a few correspondents get most
    mail), the same 60/25/15 split of known, unknown and mistyped domains."""
    rng = random.Random(seed)
    pool = recipients(known, count, seed=seed)
    domains_ = [a.rpartition("@")[2] for a in pool]
    weights = [1.0 / (rank + 1) for rank in range(len(domains_))]
    return [f"user{i}@{d}" for i, d in enumerate(rng.choices(domains_, weights=weights, k=count))]
