"""The `[content]` section: when the sensitivity scanner runs in the mail path, and what its findings change.

    [content]
    enabled = true         # scan a message that has a recipient the guard warns about or holds
    raise_at = "medium"    # a warned recipient of a message this sensitive or more is held instead
    seconds = 1.0          # time spent reading one message's parts (text, HTML, PDF, DOCX, XLSX)
    text_chars = 1000000   # characters of text looked at in one message
    part_octets = 10000000 # decoded octets of one part read at most

Content does not make a slip more likely; it raises the stakes. A message to a recipient that passes is never
scanned; a held one is scanned too, so that its notice, page and the admin list say what it carries.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcptguard.content.extract import Limits
from rcptguard.content.model import Severity
from rcptguard.settings import Settings, invalid


@dataclass(frozen=True, slots=True)
class ContentSettings(Settings):
    enabled: bool = True
    raise_at: str = "medium"
    seconds: float = 1.0
    text_chars: int = 1_000_000
    part_octets: int = 10_000_000

    def check(self) -> None:
        try:
            level = Severity.parse(self.raise_at)
        except ValueError as exc:
            raise invalid("raise_at", str(exc)) from None
        if level is Severity.NONE:
            raise invalid("raise_at", "'none' would hold every warned message: say low, medium or high")

    @property
    def threshold(self) -> Severity:
        return Severity.parse(self.raise_at)

    @property
    def limits(self) -> Limits:
        return Limits(part_octets=self.part_octets, text_chars=self.text_chars, seconds=self.seconds)
