"""Test builders: churches and users made through the real API (or the service layer).

HTTP helpers take the `api` fixture (tests/conftest.py) and return plain dicts:
`{"church_id", "user_id", "access_token", "refresh_token", "email", "password", "role"}`.
They send no bearer token of their own, whatever `api.token` holds.

Note: /auth/register and /auth/login are rate limited per IP (settings.auth_rate_burst,
20 by default); a test can make about 20 of these calls in a burst before 429s. The Redis
DB is flushed after each test, so every test starts with a full bucket.
"""
from __future__ import annotations

import secrets
from typing import Any

DEFAULT_PASSWORD = "correct horse battery"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(5)}@example.org"


def _identity(data: dict[str, Any], email: str, password: str) -> dict[str, Any]:
    return {
        "church_id": data["church"]["id"],
        "user_id": data["user"]["id"],
        "role": data["user"]["role"],
        "access_token": data["access_token"],
        "refresh_token": data["refresh_token"],
        "email": email,
        "password": password,
    }


async def register(api: Any, church_name: str = "Grace", email: str | None = None,
                   password: str = DEFAULT_PASSWORD, name: str = "Pat") -> dict[str, Any]:
    """Register a new church and its owner; returns the owner's identity and tokens."""
    email = email or unique_email("owner")
    status, body, _ = await api.post("/api/v1/auth/register", json={
        "church_name": church_name, "email": email, "password": password, "name": name},
        token="")
    assert status == 201, body
    return _identity(body["data"], email, password)


async def login(api: Any, email: str, password: str = DEFAULT_PASSWORD) -> dict[str, Any]:
    """Sign in by email and password; returns the identity and a fresh token pair."""
    status, body, _ = await api.post("/api/v1/auth/login",
                                     json={"email": email, "password": password}, token="")
    assert status == 200, body
    return _identity(body["data"], email, password)


async def add_user(api: Any, owner_token: str, role: str, email: str | None = None,
                   password: str = DEFAULT_PASSWORD, name: str | None = None
                   ) -> dict[str, Any]:
    """The owner adds a user with `role` (POST /users), who then signs in."""
    email = email or unique_email(role)
    status, body, _ = await api.post("/api/v1/users", json={
        "email": email, "name": name or role.title(), "role": role, "password": password},
        token=owner_token)
    assert status == 201, body
    return await login(api, email, password)


async def create_church(deps: Any, church_name: str = "Grace", email: str | None = None,
                        password: str = DEFAULT_PASSWORD, name: str = "Pat"
                        ) -> dict[str, Any]:
    """Service-level twin of `register` for tests that use `deps` without HTTP."""
    from server.services import accounts
    email = email or unique_email("owner")
    result = await accounts.register(deps.db, deps.redis, deps.settings,
                                     church_name=church_name, email=email,
                                     password=password, name=name)
    return _identity(result.public(), email, password)
