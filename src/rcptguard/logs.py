"""Structured logs: one JSON object a line on stderr, no message content ever."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rcptguard.model import Verdict


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("rcptguard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


def decision(logger: logging.Logger, verdict: Verdict, **context: object) -> None:
    """The line every door writes for every recipient it decides: `"event": "decision"`, the verdict, the domain
    it resembles, the score and the signals' names, with the door's own `context` (sender, recipient, client...).
    Nothing is worked out when the level leaves it out: a door decides thousands of recipients a second."""
    if not logger.isEnabledFor(logging.INFO):
        return
    fields = {**context, "verdict": str(verdict.action), "intended": verdict.intended,
              "score": round(verdict.score, 2), "signals": [s.name for s in verdict.signals]}
    logger.info("decision", extra={"fields": fields})
