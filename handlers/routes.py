"""Every URL the web process serves, in one list."""
from __future__ import annotations

from typing import Any

from handlers import health

API = r"/api/v1"


def routes() -> list[tuple[str, type, dict[str, Any]] | tuple[str, type]]:
    """(pattern, handler class) pairs; `server.app` adds `deps` to each."""
    return [
        (r"/health", health.HealthHandler),
        (r"/ready", health.ReadyHandler),
    ]
