"""Per-account login back-off (issue 10 item 7): after repeated failures on one email,
that email gets 429 `rate_limited` with Retry-After, doubling each time; an unknown email
gets exactly the same answers. Lock expiry is real Redis expiry, brought forward with
PEXPIRE instead of waiting."""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from server.app import make_app
from server.auth import login_backoff
from server.platform import redis as keys
from tests.factories import create_church, unique_email

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def app(deps: Any) -> Any:
    # A generous per-IP bucket, so only the per-account back-off answers 429 here.
    roomy = deps.settings.replace(auth_rate_burst=1000, login_free_failures=3)
    return make_app(dataclasses.replace(deps, settings=roomy))


async def _attempt(api: Any, email: str, password: str) -> tuple[int, Any, str | None]:
    status, body, headers = await api.post(LOGIN, json={"email": email, "password": password},
                                           token="")
    return status, body, headers.get("Retry-After")


def _lock_key(deps: Any, email: str) -> str:
    return keys.login_lock_key(login_backoff.email_digest(deps.settings, email))


async def _expire_lock(deps: Any, email: str) -> None:
    """Let the lock run out now (PEXPIRE 1 ms), and wait until Redis has dropped it."""
    key = _lock_key(deps, email)
    assert await deps.redis.pexpire(key, 1)
    for _ in range(200):
        if not await deps.redis.exists(key):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the lock did not expire")


def _shape(result: tuple[int, Any, str | None]) -> tuple[Any, ...]:
    status, body, retry_after = result
    error = body["error"] if isinstance(body, dict) and "error" in body else {}
    return status, error.get("code"), error.get("message"), retry_after


@pytest.mark.gen_test(timeout=60)
async def test_failures_back_off_exponentially_and_unknown_emails_look_the_same(
        api: Any, deps: Any) -> None:
    owner = await create_church(deps)
    known, unknown = owner["email"], unique_email("nobody")
    password = owner["password"]

    # Three failures are free, the fourth locks for 1 s: 401 each time for both emails.
    for _ in range(4):
        a, b = await _attempt(api, known, "wrong"), await _attempt(api, unknown, "wrong")
        assert _shape(a) == _shape(b) and a[0] == 401
    # Locked: even the right password is refused, before any check, with Retry-After.
    locked = await _attempt(api, known, password)
    assert _shape(locked) == _shape(await _attempt(api, unknown, password))
    assert locked[0] == 429 and locked[1]["error"]["code"] == "rate_limited"
    assert locked[2] == "1"
    assert 0 < await deps.redis.pttl(_lock_key(deps, known)) <= 1000

    # Each failure past the free ones doubles the lock: 2 s, then 4 s.
    for expected_ms in (2000, 4000):
        for email in (known, unknown):
            await _expire_lock(deps, email)
            assert (await _attempt(api, email, "wrong"))[0] == 401
            assert expected_ms / 2 < await deps.redis.pttl(_lock_key(deps, email)) \
                <= expected_ms
        a, b = await _attempt(api, known, password), await _attempt(api, unknown, password)
        assert _shape(a) == _shape(b) and a[0] == 429 and a[2] == str(expected_ms // 1000)

    # Once the lock runs out the right password works and forgets the failures.
    await _expire_lock(deps, known)
    status, body, _ = await _attempt(api, known, password)
    assert status == 200, body
    digest = login_backoff.email_digest(deps.settings, known)
    assert not await deps.redis.exists(keys.login_failures_key(digest))
    assert (await _attempt(api, known, "wrong"))[0] == 401  # a fresh count: free again
    assert not await deps.redis.exists(_lock_key(deps, known))


@pytest.mark.gen_test(timeout=60)
async def test_the_back_off_is_per_email_and_ignores_case(api: Any, deps: Any) -> None:
    a, b = await create_church(deps, "A"), await create_church(deps, "B")
    for _ in range(4):
        assert (await _attempt(api, a["email"].upper(), "wrong"))[0] == 401
    assert (await _attempt(api, a["email"], a["password"]))[0] == 429
    # Another account from the same client is not held back.
    assert (await _attempt(api, b["email"], b["password"]))[0] == 200


@pytest.mark.gen_test(timeout=60)
async def test_the_lock_is_capped(deps: Any) -> None:
    capped = deps.settings.replace(login_free_failures=0, login_backoff_max_seconds=5.0)
    email = unique_email("capped")
    for _ in range(12):  # uncapped, the 12th failure would lock for 2**11 s
        await login_backoff.record_failure(deps.redis, capped, email)
    assert 0 < await deps.redis.pttl(_lock_key(deps, email)) <= 5000
    assert await deps.redis.ttl(keys.login_failures_key(
        login_backoff.email_digest(capped, email))) <= capped.login_failure_window_seconds
