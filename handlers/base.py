"""ApiHandler: the one place for request plumbing.

Request id, security headers, the body-size bound (`BoundedBody`: each route's limit is
enforced before its body is buffered), JSON parsing and schema validation,
sign-in (through `server.auth.authenticate`, shared with the stream), rate limits, the
success and list envelopes, and `render_error`, the one function that writes the API.md
§2 error body for every handler, static files and the stream alike (anything that is not
an `AppError`: a logged 500 with no stack trace in the response).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from typing import Any, Awaitable, Callable

import psycopg2
import redis.exceptions
import tornado.httputil
import tornado.iostream
import tornado.web
import ujson

import schema
from db import paging
from server.auth import snapshot
from server.auth.api_keys import check_scope
from server.auth.authenticate import Credentials, admit, authenticate
from server.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, Actor, bearer_token
from server.deps import Deps
from server.platform import ratelimit
from server.platform.errors import (AppError, Forbidden, InvalidJson, MethodNotAllowed, NotFound,
                                    PayloadTooLarge, Unauthorized, Unavailable, ValidationFailed)
from server.platform.jsonenc import to_json
from server.platform.logging import log_request, request_id_var
from server.platform.settings import Settings
from server.services import reads

log = logging.getLogger("ywm.http")

# A dependency that does not answer: the request is 503 unavailable, not a 500.
UNAVAILABLE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                      psycopg2.OperationalError, psycopg2.InterfaceError)
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def render_error(handler: tornado.web.RequestHandler, error: AppError) -> None:
    """The one renderer of the API.md §2 error body, for every handler and the stream."""
    for name, value in error.headers().items():
        handler.set_header(name, value)
    handler.clear_header("Content-Disposition")
    handler.set_status(error.http_status)
    handler.set_header("Content-Type", "application/json; charset=UTF-8")
    handler.finish(to_json(error.to_body()))


def as_app_error(status_code: int, exc: BaseException | None) -> AppError:
    """The API error for what ended a request: an `AppError` as raised, anything else
    mapped once here (an unexpected exception is a 500 that names nothing inside)."""
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, paging.InvalidPage):
        return ValidationFailed.field(exc.field, exc.message)
    if isinstance(exc, tornado.web.HTTPError) or exc is None:
        return _from_status(status_code)
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return Unavailable()
    return AppError()


def _from_status(status_code: int) -> AppError:
    if status_code in (403, 404):
        # Tornado's static file handlers answer 403 for a path outside their root.
        return NotFound("There is nothing at this path.")
    if status_code == 405:
        return MethodNotAllowed()
    if status_code == 413:
        return PayloadTooLarge()
    if status_code == 503:
        return Unavailable()
    if 400 <= status_code < 500:  # Tornado's own refusals: a missing argument, a bad range
        return InvalidJson("The request could not be read.")
    return AppError()


def _nul_path(value: Any, path: str = "$") -> str | None:
    """The JSON path of the first string (or key) holding U+0000 in a parsed body."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return path
            if (found := _nul_path(item, f"{path}.{key}")) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _nul_path(item, f"{path}[{index}]")) is not None:
                return found
    return None


def read_credentials(handler: tornado.web.RequestHandler, stream_ticket: str | None = None
                     ) -> Credentials:
    """What the request presented, for `server.auth.authenticate` (REST and the stream)."""
    cookie = handler.get_signed_cookie(SESSION_COOKIE, min_version=2)
    headers = handler.request.headers
    return Credentials(method=handler.request.method or "GET",
                       bearer=bearer_token(headers), api_key=headers.get("X-API-Key"),
                       session_cookie=cookie.decode() if cookie is not None else None,
                       csrf_header=headers.get("X-CSRF-Token", ""),
                       csrf_cookie=handler.get_cookie(CSRF_COOKIE) or "",
                       stream_ticket=stream_ticket)


class JsonErrors(tornado.web.RequestHandler):
    """Mixed into every handler (static files too): errors leave as the API.md body."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        render_error(self, as_app_error(status_code, exc_info[1] if exc_info else None))


class BaseHandler(JsonErrors):
    """Plumbing shared by JSON and non-JSON handlers (health, docs, static pages)."""

    deps: Deps

    def initialize(self, deps: Deps) -> None:  # type: ignore[override]
        self.deps = deps
        self.started = time.perf_counter()
        deps.metrics.request_started()  # in-flight count: the SIGTERM drain waits for zero
        self.actor: Actor | None = None
        incoming = self.request.headers.get("X-Request-ID", "")
        # 128 random bits as 32 hex digits, like uuid4().hex without building a UUID.
        self.request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() \
            else os.urandom(16).hex()
        request_id_var.set(self.request_id)
        self.set_default_headers()  # Tornado calls it before initialize(), without deps

    def set_default_headers(self) -> None:
        if not hasattr(self, "request_id"):
            return
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Content-Security-Policy", CSP)
        if self.deps.settings.secure_cookies:
            self.set_header("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        self.set_header("X-Request-ID", self.request_id)

    def write_json(self, body: Any, status: int = 200) -> None:
        self.write_json_text(to_json(body), status)

    def write_json_text(self, text: str, status: int = 200) -> None:
        """A body already serialised (a cached answer such as the /auth/me snapshot)."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(text)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, AppError):
            return  # an answer, not a fault
        if isinstance(value, tornado.web.HTTPError):
            return
        log.error("unhandled error in %s %s", self.request.method, self.request.path,
                  exc_info=(typ, value, tb))

    def on_finish(self) -> None:
        duration_ms = round((time.perf_counter() - self.started) * 1000, 2)
        actor = self.actor
        self.deps.metrics.observe_request(self.request.method or "", self.get_status(),
                                          duration_ms)
        log_request(log, {
            "method": self.request.method, "path": self.request.path,
            "status": self.get_status(), "duration_ms": duration_ms,
            "request_id": self.request_id, "remote_ip": self.request.remote_ip,
            "church_id": str(actor.church_id) if actor else None,
            "user_id": str(actor.user_id) if actor and actor.user_id else None})


# Buckets keyed by the client's IP: the routes that take a password or the operator token.
PER_IP_LIMITS = ("auth", "admin")


class ApiHandler(BaseHandler):
    """Base for `/api/v1` JSON handlers.

    Class attributes: `auth` is "user" (session or API key), "admin" (operator token) or
    "none"; `rate_limit` is "user", "auth" (per IP), "admin" (per IP, its own bucket) or
    None. A per-IP bucket is charged before the credentials are checked, so wrong guesses
    at a token are limited too.
    """

    auth = "user"
    rate_limit: str | None = "user"
    # True on the route that answers from the user and church snapshot (GET /auth/me): the
    # sign-in call reads it too, so the answer needs no second round trip.
    wants_snapshot = False
    seen: snapshot.Seen | None = None

    async def prepare(self) -> None:
        if self.rate_limit in PER_IP_LIMITS:
            await self.apply_rate_limit()
        if self.auth == "user":
            # Sign-in and the "user" rate limit in one Redis call (server/auth/gate.py).
            admission = await admit(self.deps.db, self.deps.redis, self.deps.settings,
                                    read_credentials(self), limit=self.rate_limit == "user",
                                    want_snapshot=self.wants_snapshot)
            self.actor, self.seen = admission.actor, admission.seen
        elif self.auth == "admin":
            self.require_admin_token()
        method = self.request.method or "GET"
        if self.actor is not None and self.actor.api_key_id is not None:
            # An API key needs the operation's scope (API.md §8).
            check_scope(self.actor, schema.api_key_scope(method, self.request.path))
        # The query string must match the operation's declared parameters (schema/).
        schema.validate_query(method, self.request.path, self.request.query_arguments)

    async def authenticate(self) -> Actor:
        """Sign-in without spending the rate limit (a route that signs in on its own)."""
        return await authenticate(self.deps.db, self.deps.redis, self.deps.settings,
                                  read_credentials(self))

    def require_admin_token(self) -> None:
        token = bearer_token(self.request.headers) or ""
        if not hmac.compare_digest(token.encode(), self.deps.settings.admin_token.encode()):
            raise Unauthorized("This route needs the operator token.")

    async def apply_rate_limit(self) -> None:
        """Token bucket in Redis for "auth" and "admin", per client IP (at the auth routes'
        rate); "user" is spent by the sign-in call itself (`prepare`)."""
        await ratelimit.enforce(self.deps.redis, self.rate_limit or "auth",
                                self.request.remote_ip or "-",
                                ratelimit.auth_limit(self.deps.settings))

    def json_body(self, schema_name: str | None = None, default: Any = None) -> Any:
        """Parse the body as JSON and validate it against `schema/` when named."""
        raw = self.request.body
        if not raw:
            if default is not None:
                return default
            raise InvalidJson("The request body is empty; send a JSON object.")
        content_type = self.request.headers.get("Content-Type", "application/json")
        if content_type.split(";")[0].strip().lower() not in ("application/json", ""):
            raise InvalidJson("Send the body as JSON with Content-Type: application/json.")
        try:
            value = ujson.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidJson() from None
        if schema_name:
            schema.validate(schema_name, value)
        nul = _nul_path(value)
        if nul is not None:  # PostgreSQL text cannot hold it: a 422, never a 500
            raise ValidationFailed.field(nul, "Text may not contain the NUL character.")
        return value

    def require_role(self, role: str) -> Actor:
        """The signed-in caller if their role is `role` or higher; every route that acts for
        a tenant calls this, and "staff" (the lowest role) means anyone signed in."""
        if self.actor is None:
            raise Unauthorized()
        if not self.actor.has_role(role):
            raise Forbidden(f"This needs the {role} role or higher.")
        return self.actor

    def query_arg(self, name: str, default: str | None = None) -> str | None:
        return self.get_query_argument(name, default)

    def page_limit(self) -> int:
        """`?limit=` of a list (API.md §2)."""
        return paging.parse_limit(self.query_arg("limit"))

    def page_cursor(self) -> str | None:
        """`?cursor=` of a list, opaque here: the list's query reads it (db/paging.py)."""
        return self.query_arg("cursor")

    def write_page(self, items: list[Any], next_cursor: str | None) -> None:
        """A list's body: the items and `meta.next_cursor` (None on the last page)."""
        self.write_data(items, {"next_cursor": next_cursor})

    def write_data(self, data: Any, meta: dict[str, Any] | None = None,
                   status: int = 200) -> None:
        self.write_json({"data": data, "meta": meta or {}}, status)

    def write_no_content(self) -> None:
        self.set_status(204)
        self.finish()

    async def reader(self) -> reads.Reader:
        """The pool for this request's stale-tolerant reads (lists, search, history, stats):
        a replica unless the caller's own recent write is not on one yet."""
        return await reads.reader(self.deps, self.actor)

    _held: "asyncio.Future[None] | None" = None

    def finish(self, chunk: Any = None) -> "asyncio.Future[None]":
        # Read-your-writes: the answer to a request that may have written leaves only once
        # the primary's WAL position is recorded for its caller (server/services/reads.py).
        if self._held is None and reads.records_writes(self.deps, self.actor,
                                                       self.request.method):
            self._held = asyncio.ensure_future(self._finish_after_recording())
        if self._held is not None and not self._held.done():
            if chunk is not None:
                self.write(chunk)
            return self._held
        return super().finish(chunk)

    async def _finish_after_recording(self) -> None:
        assert self.actor is not None
        await reads.record_write(self.deps, self.actor)
        if self._finished:
            return
        try:
            await super().finish()
        except tornado.iostream.StreamClosedError:
            pass  # the client left; nothing to answer

    async def _execute(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # PostgreSQL's statement_timeout reaches us as CancelledError from aiopg
        # (LIBRARIES.md §2); only a cancellation of this task itself is re-raised.
        try:
            await super()._execute(*args, **kwargs)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            if not self._finished:
                self.send_error(503, exc_info=(Unavailable, Unavailable(), None))


class NotFoundHandler(ApiHandler):
    """Every unknown path: the JSON 404 body instead of Tornado's HTML page."""

    auth = "none"
    rate_limit = None

    async def prepare(self) -> None:
        raise NotFound("There is nothing at this path.")


def body_limit(target: type, settings: Settings) -> int:
    """The most body bytes a route reads: its class's `body_limit(settings)` where it
    declares one (the streamed CSV import), else the API's limit (API.md §2)."""
    declared: Callable[[Settings], int] | None = getattr(target, "body_limit", None)
    return declared(settings) if declared is not None else settings.max_body_bytes


@tornado.web.stream_request_body  # answers from prepare(), before any body byte is read
class PayloadTooLargeHandler(BaseHandler):
    """Stands in for a route whose request body is over that route's limit."""

    def initialize(self, deps: Deps, limit: int) -> None:  # type: ignore[override]
        super().initialize(deps)
        self.limit = limit

    def prepare(self) -> None:
        raise PayloadTooLarge(f"The request body is larger than {self.limit} bytes.")

    def data_received(self, chunk: bytes) -> None:
        pass  # never reached: Tornado diverts the rest once the answer is finished


class BoundedBody(tornado.httputil.HTTPMessageDelegate):
    """Tornado's message delegate for one request, reading at most `limit` body bytes.

    Tornado buffers a whole body (up to the server's `max_body_size`, set for the one
    large route) before any handler code runs, so a check in `prepare()` comes too late
    for an unauthenticated POST. This sits in front of the route's delegate: a declared
    `Content-Length` over the limit is refused before the body is read, and a chunked
    body is refused as soon as it passes the limit (the chunks held so far are dropped).
    The refusal is the API.md body from `render_error`, then the connection closes, so
    the rest of the body is never read. A streaming route (the CSV import) sees its
    chunks as they come; the server's `max_body_size` bounds it.
    """

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate, limit: int,
                 streams: bool, refusal: Callable[[], tornado.httputil.HTTPMessageDelegate]
                 ) -> None:
        self.inner, self.limit, self.streams, self.refusal = inner, limit, streams, refusal
        self.refused: tornado.httputil.HTTPMessageDelegate | None = None
        self.received = 0
        self.start_line: Any = None
        self.headers = tornado.httputil.HTTPHeaders()

    def headers_received(self, start_line: Any, headers: tornado.httputil.HTTPHeaders
                         ) -> Awaitable[None] | None:
        self.start_line, self.headers = start_line, headers
        declared = headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.limit:
            return self._refuse()
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.refused is not None:
            return None
        self.received += len(chunk)
        if self.received > self.limit and not self.streams:
            self.inner.on_connection_close()  # drops the chunks it buffered
            return self._refuse()
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        (self.refused or self.inner).finish()

    def on_connection_close(self) -> None:
        (self.refused or self.inner).on_connection_close()

    def _refuse(self) -> Awaitable[None] | None:
        self.refused = self.refusal()
        return self.refused.headers_received(self.start_line, self.headers)
