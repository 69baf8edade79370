"""The Tornado application factory: pure, no I/O; used by `server.main` and tests alike."""
from __future__ import annotations

from typing import Any

import tornado.httputil
import tornado.web

import workers  # noqa: F401  (each task module registers how its follow-ups are enqueued)
from handlers.base import BoundedBody, NotFoundHandler, PayloadTooLargeHandler, body_limit
from handlers.routes import routes
from server.deps import Deps


class Application(tornado.web.Application):
    """Tornado's Application, reading no more of a body than its route accepts
    (handlers/base.py `BoundedBody`)."""

    def __init__(self, deps: Deps, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deps = deps

    def get_handler_delegate(  # type: ignore[override]
            self, request: tornado.httputil.HTTPServerRequest,
            target_class: type[tornado.web.RequestHandler],
            target_kwargs: dict[str, Any] | None = None, path_args: list[bytes] | None = None,
            path_kwargs: dict[str, bytes] | None = None) -> tornado.httputil.HTTPMessageDelegate:
        inner = super().get_handler_delegate(request, target_class, target_kwargs, path_args,
                                             path_kwargs)
        limit = body_limit(target_class, self.deps.settings)
        refusal = super().get_handler_delegate
        return BoundedBody(
            inner, limit,
            # Tornado's own marker of @stream_request_body handlers (the CSV import)
            streams=getattr(target_class, "_stream_request_body", False),
            refusal=lambda: refusal(request, PayloadTooLargeHandler,
                                    {"deps": self.deps, "limit": limit}))


def make_app(deps: Deps) -> tornado.web.Application:
    handlers = [tornado.web.url(pattern, handler, {"deps": deps, **(extra[0] if extra else {})})
                for pattern, handler, *extra in routes()]
    return Application(
        deps, handlers,
        default_handler_class=NotFoundHandler,
        default_handler_args={"deps": deps},
        cookie_secret=deps.settings.secret_key,
        xsrf_cookies=False,  # CSRF is our double-submit check in handlers/base.py
        websocket_ping_interval=20,
        websocket_ping_timeout=20,  # Tornado caps it at the interval anyway
        compress_response=True,
    )
