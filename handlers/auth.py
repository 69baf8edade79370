"""Auth routes (API.md §3): register, login, refresh, logout, me, stream tickets.

Login and register also set the browser cookies: `ywm_session` (signed, httpOnly,
SameSite=Lax, Secure over TLS) naming the Redis session, and `ywm_csrf` (readable by the
page) holding the session's CSRF token for the double-submit check in handlers/base.py.
"""
from __future__ import annotations

from uuid import UUID

from handlers.base import ApiHandler
from server.auth import sessions as auth
from server.auth import snapshot
from server.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, TokenPair
from server.platform.errors import Unauthorized
from server.services import accounts

COOKIE_DAYS = 30  # the Redis session (24 h sliding) decides; the cookie only points at it


class AuthHandler(ApiHandler):
    """Shared cookie plumbing for the auth routes."""

    def set_session_cookies(self, church_id: UUID, tokens: TokenPair) -> None:
        secure = self.deps.settings.secure_cookies
        self.set_signed_cookie(SESSION_COOKIE,
                               auth.session_cookie_value(church_id, tokens.session_id),
                               expires_days=COOKIE_DAYS, httponly=True, samesite="Lax",
                               secure=secure, path="/")
        self.set_csrf_cookie(tokens.csrf_token)

    def set_csrf_cookie(self, csrf: str) -> None:
        self.set_cookie(CSRF_COOKIE, csrf, expires_days=COOKIE_DAYS, samesite="Lax",
                        secure=self.deps.settings.secure_cookies, path="/")

    def clear_session_cookies(self) -> None:
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.clear_cookie(CSRF_COOKIE, path="/")

    def cookie_session(self) -> tuple[UUID, str] | None:
        value = self.get_signed_cookie(SESSION_COOKIE, min_version=2)
        if value is None:
            return None
        try:
            return auth.parse_session_cookie(value.decode())
        except Unauthorized:
            return None


class RegisterHandler(AuthHandler):
    auth = "none"
    rate_limit = "auth"

    async def post(self) -> None:
        body = self.json_body("RegisterRequest")
        signin = await accounts.register(
            self.deps.db, self.deps.redis, self.deps.settings,
            church_name=body["church_name"], email=body["email"],
            password=body["password"], name=body["name"])
        self.set_session_cookies(signin.church["id"], signin.tokens)
        self.write_data(signin.public(), status=201)


class LoginHandler(AuthHandler):
    auth = "none"
    rate_limit = "auth"

    async def post(self) -> None:
        body = self.json_body("LoginRequest")
        signin = await accounts.login(self.deps.db, self.deps.redis, self.deps.settings,
                                      body["email"], body["password"])
        self.set_session_cookies(signin.church["id"], signin.tokens)
        self.write_data(signin.public())


class RefreshHandler(AuthHandler):
    """`{refresh_token}` in the body, or (browsers) the session cookie plus X-CSRF-Token."""

    auth = "none"
    rate_limit = "auth"

    async def post(self) -> None:
        body = self.json_body("RefreshRequest", default={})
        if "refresh_token" in body:
            tokens = await accounts.refresh(self.deps.redis, self.deps.settings,
                                            body["refresh_token"])
            if self.cookie_session() == (self._church_of(tokens), tokens.session_id):
                self.set_csrf_cookie(tokens.csrf_token)  # the rotation replaced it
        else:
            self.actor = await self.authenticate()
            if not self.actor.via_cookie:
                raise Unauthorized("Send refresh_token in the body, or the session cookie.")
            tokens = await accounts.refresh_cookie_session(self.deps.redis,
                                                           self.deps.settings, self.actor)
            self.set_session_cookies(self.actor.church_id, tokens)
        self.write_data(accounts.token_body(tokens))

    @staticmethod
    def _church_of(tokens: TokenPair) -> UUID:
        return UUID(tokens.refresh_token.split(".", 1)[0])


class LogoutHandler(AuthHandler):
    async def post(self) -> None:
        await accounts.logout(self.deps.redis, self.require_role("staff"))
        self.clear_session_cookies()
        self.write_no_content()


class MeHandler(ApiHandler):
    """Answered from the user and church snapshot the sign-in call read (no PostgreSQL
    query); a missing snapshot is rebuilt from PostgreSQL (server/auth/snapshot.py)."""

    wants_snapshot = True

    async def get(self) -> None:
        actor = self.require_role("staff")
        if self.seen is None or actor.user_id is None:  # an API key: nothing cached
            self.write_data(await accounts.me(self.deps.db, actor))
            return
        self.write_json_text(await snapshot.me_body(
            self.deps.redis, actor.church_id, actor.user_id, self.seen,
            lambda: accounts.me(self.deps.db, actor)))


class StreamTicketHandler(ApiHandler):
    async def post(self) -> None:
        ticket = await auth.issue_stream_ticket(self.deps.redis, self.require_role("staff"))
        self.write_data({"ticket": ticket, "expires_in": auth.STREAM_TICKET_TTL})
