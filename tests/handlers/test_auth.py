"""Register, login, me, refresh rotation, logout, expired tokens, stream tickets."""
import time
import uuid

import jwt
import pytest

from server.auth import sessions as auth
from server.platform.errors import Unauthorized
from tests.factories import DEFAULT_PASSWORD, login, register

API = "/api/v1"


@pytest.mark.gen_test
async def test_register_creates_church_and_owner(api):
    status, body, headers = await api.post(f"{API}/auth/register", json={
        "church_name": "Grace Chapel", "email": "Pat@Example.org",
        "password": DEFAULT_PASSWORD, "name": "Pat"})
    assert status == 201
    data = body["data"]
    assert data["user"]["role"] == "owner" and data["user"]["email"] == "Pat@Example.org"
    assert data["church"]["name"] == "Grace Chapel"
    assert set(data["church"]) == {"id", "name", "timezone", "help_text",
                                   "unknown_sender_opt_in", "created_at"}
    assert data["church"]["created_at"].endswith("Z")
    claims = jwt.decode(data["access_token"], options={"verify_signature": False})
    assert claims["church_id"] == data["church"]["id"] and claims["role"] == "owner"
    assert claims["exp"] - claims["iat"] <= 900
    status, me, _ = await api.get(f"{API}/auth/me", token=data["access_token"])
    assert status == 200 and me["data"]["user"]["id"] == data["user"]["id"]


@pytest.mark.gen_test
async def test_duplicate_email_is_conflict_case_insensitive(api):
    owner = await register(api, email="dup@example.org")
    status, body, _ = await api.post(f"{API}/auth/register", json={
        "church_name": "Other", "email": "DUP@example.org", "password": DEFAULT_PASSWORD,
        "name": "Sam"})
    assert status == 409 and body["error"]["code"] == "conflict"
    # The first account still signs in; no second church appeared.
    assert (await login(api, owner["email"]))["church_id"] == owner["church_id"]


@pytest.mark.gen_test
async def test_login_returns_tokens_and_sets_cookies(api):
    owner = await register(api)
    status, body, headers = await api.post(f"{API}/auth/login", json={
        "email": owner["email"].upper(), "password": owner["password"]})
    assert status == 200
    assert body["data"]["user"]["id"] == owner["user_id"]
    cookies = headers.get_list("Set-Cookie")
    session = next(c for c in cookies if c.startswith("ywm_session="))
    csrf = next(c for c in cookies if c.startswith("ywm_csrf="))
    assert "httponly" in session.lower() and "samesite=lax" in session.lower()
    assert "httponly" not in csrf.lower() and "samesite=lax" in csrf.lower()
    assert "secure" not in session.lower()  # plain-HTTP public URL in tests


@pytest.mark.gen_test
async def test_wrong_password_and_unknown_email_look_the_same(api):
    owner = await register(api)
    s1, wrong, _ = await api.post(f"{API}/auth/login",
                                  json={"email": owner["email"], "password": "nope-nope"})
    s2, unknown, _ = await api.post(f"{API}/auth/login",
                                    json={"email": "nobody@example.org", "password": "x" * 9})
    assert s1 == s2 == 401
    assert wrong["error"] == unknown["error"]


@pytest.mark.gen_test
async def test_refresh_rotates_and_old_refresh_token_dies(api):
    owner = await register(api)
    status, body, _ = await api.post(f"{API}/auth/refresh",
                                     json={"refresh_token": owner["refresh_token"]})
    assert status == 200
    new = body["data"]
    assert new["refresh_token"] != owner["refresh_token"]
    status, _, _ = await api.get(f"{API}/auth/me", token=new["access_token"])
    assert status == 200
    status, body, _ = await api.post(f"{API}/auth/refresh",
                                     json={"refresh_token": owner["refresh_token"]})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    # Reusing a rotated token is a theft signal: the whole session ended, the new pair too
    # (issue 10 item 6; tests/handlers/test_session_revocation.py covers it in full).
    status, _, _ = await api.post(f"{API}/auth/refresh",
                                  json={"refresh_token": new["refresh_token"]})
    assert status == 401


@pytest.mark.gen_test
async def test_garbage_refresh_token_is_401(api):
    for token in ("garbage", f"{uuid.uuid4()}.nosuchsid.secret"):
        status, body, _ = await api.post(f"{API}/auth/refresh", json={"refresh_token": token})
        assert status == 401 and body["error"]["code"] == "unauthorized"


@pytest.mark.gen_test
async def test_logout_kills_access_and_refresh_at_once(api):
    owner = await register(api)
    other = await login(api, owner["email"])  # a second session of the same user
    status, _, _ = await api.post(f"{API}/auth/logout", token=owner["access_token"])
    assert status == 204
    status, body, _ = await api.get(f"{API}/auth/me", token=owner["access_token"])
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, _, _ = await api.post(f"{API}/auth/refresh",
                                  json={"refresh_token": owner["refresh_token"]})
    assert status == 401
    # Only that session ended.
    status, _, _ = await api.get(f"{API}/auth/me", token=other["access_token"])
    assert status == 200


@pytest.mark.gen_test
async def test_expired_access_token_is_401(api, settings):
    owner = await register(api)
    claims = jwt.decode(owner["access_token"], options={"verify_signature": False})
    claims.update(iat=int(time.time()) - 2000, exp=int(time.time()) - 60)
    expired = jwt.encode(claims, settings.secret_key, algorithm="HS256")
    status, body, _ = await api.get(f"{API}/auth/me", token=expired)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    # Same claims, valid exp: accepted, so the expiry is what was refused.
    claims["exp"] = int(time.time()) + 60
    status, _, _ = await api.get(f"{API}/auth/me",
                                 token=jwt.encode(claims, settings.secret_key, "HS256"))
    assert status == 200


@pytest.mark.gen_test
async def test_token_signed_with_another_key_is_401(api):
    owner = await register(api)
    claims = jwt.decode(owner["access_token"], options={"verify_signature": False})
    forged = jwt.encode(claims, "x" * 40, algorithm="HS256")
    status, _, _ = await api.get(f"{API}/auth/me", token=forged)
    assert status == 401


@pytest.mark.gen_test
async def test_no_credentials_is_401(api):
    status, body, _ = await api.get(f"{API}/auth/me")
    assert status == 401 and body["error"]["code"] == "unauthorized"


@pytest.mark.gen_test
async def test_stream_ticket_is_single_use(api, deps):
    owner = await register(api)
    status, body, _ = await api.post(f"{API}/stream/ticket", token=owner["access_token"])
    assert status == 200
    ticket = body["data"]["ticket"]
    actor = await auth.redeem_stream_ticket(deps.redis, ticket)
    assert str(actor.user_id) == owner["user_id"]
    with pytest.raises(Unauthorized):
        await auth.redeem_stream_ticket(deps.redis, ticket)
