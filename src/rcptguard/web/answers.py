"""An HTTP answer raised as an exception: a page's handler stops there, and the application renders it."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["PageError"]


class PageError(Exception):
    """Stop handling a page request and answer with an HTML page (title and text) and this status."""

    def __init__(self, status: int, title: str, text: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.text = text
        self.headers = dict(headers or {})
