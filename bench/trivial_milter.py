"""A milter that does nothing, with pymilter: the reference for what any Python milter costs Postfix here
(bench_milter.py --reference). It is asked about each recipient and answers "continue" to every step it is asked
about; like every pymilter, it tells Postfix at negotiation to skip the steps it does not handle.

    python bench/trivial_milter.py unix:/path/to/socket
"""

from __future__ import annotations

import sys

import Milter


class Nothing(Milter.Base):  # type: ignore[misc]  # pymilter has no type information
    def envrcpt(self, to: str, *words: str) -> int:  # noqa: ARG002 - the recipient, as a real milter reads it
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        return int(Milter.CONTINUE)


def main() -> None:
    Milter.factory = Nothing
    Milter.runmilter("nothing", sys.argv[1], 60)


if __name__ == "__main__":
    main()
