"""Refresh src/rcptguard/data/tlds-alpha-by-domain.txt, the root zone's top-level domains, from IANA.

Usage: python scripts/refresh_tlds.py [SOURCE] [--out FILE] [--check]

SOURCE is a URL or a file in IANA's format (one top-level domain a line, upper case, a `# Version ...` first
line); the default is https://data.iana.org/TLD/tlds-alpha-by-domain.txt. The file written holds the labels
in lower case A-label form, sorted, under a header naming the source, IANA's version line and the date.
`--check` writes nothing and exits 1 if the shipped file differs from SOURCE (a CI job can run it).

A list much shorter than the shipped one is refused: a truncated download must not make real suffixes look
non-existent (the guard would hold mail to them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import urllib.request
from pathlib import Path

IANA = "https://data.iana.org/TLD/tlds-alpha-by-domain.txt"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "rcptguard" / "data" / "tlds-alpha-by-domain.txt"
_LABEL = re.compile(r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})\Z")
MIN_SHARE = 0.9  # of the shipped list's size, below which a new list is refused


def read(source: str) -> str:
    if re.match(r"https?://", source):
        with urllib.request.urlopen(source, timeout=30) as answer:  # noqa: S310 - the URL is IANA's or the caller's
            return str(answer.read().decode("ascii"))
    return Path(source).read_text("ascii")


def parse(text: str) -> tuple[str, list[str]]:
    """IANA's version line and the labels, lower case, sorted; raise ValueError on anything else."""
    version = ""
    labels = set()
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        if entry.startswith("#"):
            version = version or entry.lstrip("# ")
            continue
        label = entry.lower()
        if not _LABEL.match(label):
            raise ValueError(f"line {number}: {entry!r} is not a top-level domain")
        labels.add(label)
    return version, sorted(labels)


def shipped(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text("ascii").splitlines() if line and not line.startswith("#")]


def render(source: str, version: str, labels: list[str]) -> str:
    header = [
        "# The IANA root zone's top-level domains, one a line, lower case (A-labels).",
        f"# Source: {source}" + (f" ({version})" if version else ""),
        f"# Taken {dt.datetime.now(dt.UTC).date().isoformat()} by scripts/refresh_tlds.py.",
    ]
    return "\n".join(header + labels) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default=IANA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    version, labels = parse(read(args.source))
    old = shipped(args.out)
    if args.check:
        added, removed = sorted(set(labels) - set(old)), sorted(set(old) - set(labels))
        print(f"{len(added)} added: {' '.join(added[:20])}\n{len(removed)} removed: {' '.join(removed[:20])}")
        return 1 if added or removed else 0
    if len(labels) < MIN_SHARE * len(old):
        print(f"refused: {len(labels)} top-level domains, the shipped list has {len(old)}", file=sys.stderr)
        return 1
    args.out.write_text(render(args.source, version, labels), "ascii")
    print(f"{args.out}: {len(labels)} top-level domains ({version or 'no version line'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
