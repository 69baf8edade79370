"""The Tornado application factory: pure, no I/O; used by `server.main` and tests alike."""
from __future__ import annotations

import tornado.web

import workers  # noqa: F401  (each task module registers how its follow-ups are enqueued)
from handlers.base import NotFoundHandler
from handlers.routes import routes
from server.deps import Deps


def make_app(deps: Deps) -> tornado.web.Application:
    handlers = [tornado.web.url(pattern, handler, {"deps": deps, **(extra[0] if extra else {})})
                for pattern, handler, *extra in routes()]
    return tornado.web.Application(
        handlers,
        default_handler_class=NotFoundHandler,
        default_handler_args={"deps": deps},
        cookie_secret=deps.settings.secret_key,
        xsrf_cookies=False,  # CSRF is our double-submit check in handlers/base.py
        websocket_ping_interval=20,
        websocket_ping_timeout=20,  # Tornado caps it at the interval anyway
        compress_response=True,
    )
