"""ApiHandler: the one place for request plumbing.

Request id, security headers, body-size guard, JSON parsing and schema validation,
authentication, CSRF, rate limits, the success envelope, and the single `write_error`
that renders every `AppError` as the API.md §2 body (anything else: a logged 500 with no
stack trace in the response).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from typing import Any

import psycopg2
import redis.exceptions
import tornado.web
import ujson

import schema
from db import paging
from server.platform import ratelimit
from server.auth.sessions import (CSRF_COOKIE, SESSION_COOKIE, Actor, actor_from_access_token,
                         actor_from_session, bearer_token, parse_session_cookie)
from server.deps import Deps
from server.platform.errors import (AppError, CsrfFailed, Forbidden, InvalidJson, MethodNotAllowed,
                           NotFound, PayloadTooLarge, Unauthorized, Unavailable,
                           ValidationFailed)
from server.platform.logging import request_id_var

log = logging.getLogger("ywm.http")

UNSAFE_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))
API_KEY_PREFIX = "ywm_"
# A dependency that does not answer: the request is 503 unavailable, not a 500.
UNAVAILABLE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                      psycopg2.OperationalError, psycopg2.InterfaceError)
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def dumps(value: Any) -> str:
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False,
                       default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


class BaseHandler(tornado.web.RequestHandler):
    """Plumbing shared by JSON and non-JSON handlers (health, docs, static pages)."""

    deps: Deps

    def initialize(self, deps: Deps) -> None:  # type: ignore[override]
        self.deps = deps
        self.started = time.perf_counter()
        deps.metrics.request_started()  # in-flight count: the SIGTERM drain waits for zero
        self.actor: Actor | None = None
        incoming = self.request.headers.get("X-Request-ID", "")
        self.request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() \
            else uuid.uuid4().hex
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
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = self._as_app_error(status_code, kwargs.get("exc_info"))
        for name, value in error.headers().items():
            self.set_header(name, value)
        self.clear_header("Content-Disposition")
        self.set_status(error.http_status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(dumps(error.to_body()))

    def _as_app_error(self, status_code: int, exc_info: Any) -> AppError:
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, AppError):
            return exc
        if isinstance(exc, paging.InvalidPage):
            return ValidationFailed.field(exc.field, exc.message)
        if isinstance(exc, tornado.web.HTTPError) or exc is None:
            return _from_status(status_code)
        if isinstance(exc, UNAVAILABLE_ERRORS):
            return Unavailable()
        return AppError()

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
        log.info("request", extra={
            "method": self.request.method, "path": self.request.path,
            "status": self.get_status(), "duration_ms": duration_ms,
            "request_id": self.request_id, "remote_ip": self.request.remote_ip,
            "church_id": str(actor.church_id) if actor else None,
            "user_id": str(actor.user_id) if actor and actor.user_id else None})


def _from_status(status_code: int) -> AppError:
    if status_code == 404:
        return NotFound("There is nothing at this path.")
    if status_code == 405:
        return MethodNotAllowed()
    if status_code == 413:
        return PayloadTooLarge()
    if status_code == 400:
        return InvalidJson("The request could not be read.")
    if status_code == 503:
        return Unavailable()
    return AppError()


class ApiHandler(BaseHandler):
    """Base for `/api/v1` JSON handlers.

    Class attributes: `auth` is "user" (session or API key), "admin" (operator token) or
    "none"; `rate_limit` is "user", "auth" (per IP) or None.
    """

    auth = "user"
    rate_limit: str | None = "user"

    async def prepare(self) -> None:
        self._check_body_size()
        if self.auth == "user":
            self.actor = await self.authenticate()
        elif self.auth == "admin":
            self.require_admin_token()
        if self.rate_limit:
            await self.apply_rate_limit()

    async def authenticate(self) -> Actor:
        """Bearer JWT, else API key, else the session cookie (with CSRF on unsafe methods)."""
        token = bearer_token(self.request.headers)
        api_key = self.request.headers.get("X-API-Key")
        if api_key or (token and token.startswith(API_KEY_PREFIX)):
            return await self.authenticate_api_key(api_key or token or "")
        if token is not None:
            return await actor_from_access_token(self.deps.redis, self.deps.settings, token)
        cookie = self.get_signed_cookie(SESSION_COOKIE, min_version=2)
        if cookie is None:
            raise Unauthorized()
        church_id, sid = parse_session_cookie(cookie.decode())
        actor, csrf = await actor_from_session(self.deps.redis, self.deps.settings,
                                               church_id, sid)
        if self.request.method in UNSAFE_METHODS:
            self.check_csrf(csrf)
        return actor

    async def authenticate_api_key(self, presented: str) -> Actor:
        """Extension point for API keys (API.md §8, a later issue).

        That issue replaces this body with a call to its service (look the key up by
        prefix, compare the keyed hash, return an Actor with `api_key_id`, `scopes` and
        `rate_limit_per_minute`). Until then no API key is valid.
        """
        raise Unauthorized("API keys are not accepted yet.")

    def check_csrf(self, session_csrf: str) -> None:
        """Double submit: header == cookie == the session's token (API.md §3)."""
        header = self.request.headers.get("X-CSRF-Token", "")
        cookie = self.get_cookie(CSRF_COOKIE) or ""
        if not (header and session_csrf
                and hmac.compare_digest(header.encode(), cookie.encode())
                and hmac.compare_digest(header.encode(), session_csrf.encode())):
            raise CsrfFailed()

    def require_admin_token(self) -> None:
        token = bearer_token(self.request.headers) or ""
        if not hmac.compare_digest(token.encode(), self.deps.settings.admin_token.encode()):
            raise Unauthorized("This route needs the operator token.")

    async def apply_rate_limit(self) -> None:
        """Token bucket in Redis: "auth" per client IP, "user" per user or API key."""
        settings = self.deps.settings
        if self.rate_limit == "auth":
            await ratelimit.enforce(self.deps.redis, "auth", self.request.remote_ip or "-",
                                    ratelimit.auth_limit(settings))
        elif self.rate_limit == "user" and self.actor is not None:
            await ratelimit.enforce(self.deps.redis, "user",
                                    ratelimit.actor_subject(self.actor),
                                    ratelimit.actor_limit(settings, self.actor))

    def _check_body_size(self) -> None:
        declared = self.request.headers.get("Content-Length")
        limit = self.deps.settings.max_body_bytes
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        if len(self.request.body or b"") > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")

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
        return value

    def require_role(self, role: str) -> Actor:
        actor = self.require_actor()
        if not actor.has_role(role):
            raise Forbidden(f"This needs the {role} role or higher.")
        return actor

    def require_actor(self) -> Actor:
        if self.actor is None:
            raise Unauthorized()
        return self.actor

    def query_arg(self, name: str, default: str | None = None) -> str | None:
        return self.get_query_argument(name, default)

    def page_limit(self) -> int:
        """`?limit=` of a list (API.md §2); `?cursor=` goes to the query as it came."""
        return paging.parse_limit(self.query_arg("limit"))

    def write_data(self, data: Any, meta: dict[str, Any] | None = None,
                   status: int = 200) -> None:
        self.write_json({"data": data, "meta": meta or {}}, status)

    def write_no_content(self) -> None:
        self.set_status(204)
        self.finish()

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
