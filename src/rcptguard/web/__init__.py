"""The web front: the sender's confirmation page, the admin pages and the JSON check API (FastAPI + Jinja2).

    from rcptguard.web import create_app, serve
    serve(create_app(quarantine=..., links=..., guard_provider=..., next_hop=..., secret=..., admin_user=None,
                     admin_password=None), "127.0.0.1", 8025)
"""

from __future__ import annotations

from rcptguard.web.app import create_app, csrf_token
from rcptguard.web.server import serve

__all__ = ["create_app", "csrf_token", "serve"]
