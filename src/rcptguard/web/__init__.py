"""The web front: the sender's confirmation page, the admin pages and the JSON check API (FastAPI + Jinja2).

    from rcptguard.web import create_app, serve
    serve(create_app(quarantine=..., links=..., guard_provider=..., next_hop=..., secret=...,
                     settings=WebSettings(...)), "127.0.0.1", 8025)

The names are imported when first used, so that reading `rcptguard.web.settings` (every command that checks a
config file does) does not load FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["create_app", "csrf_token", "serve"]

_WHERE = {"create_app": "rcptguard.web.app", "csrf_token": "rcptguard.web.app", "serve": "rcptguard.web.server"}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the module holds
    if name not in _WHERE:
        raise AttributeError(f"module 'rcptguard.web' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
