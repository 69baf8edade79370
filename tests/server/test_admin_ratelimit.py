"""The operator routes (/api/v1/admin/*) sit behind the Redis rate limiter like every other
route: a per-IP bucket charged before the operator token is checked, so guessing the token
is as slow as guessing a password."""
from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from handlers.base import ApiHandler
from handlers.routes import routes
from server.app import make_app

API = "/api/v1"
ADMIN_ROUTES = [("GET", "/admin/cache"), ("GET", "/admin/queues"),
                ("GET", "/admin/dead-letters"),
                ("POST", f"/admin/dead-letters/{uuid.uuid4()}/requeue")]


@pytest.fixture
def app(deps: Any) -> Any:
    # A slow refill (one token per 100 s) makes the counts exact, whatever the speed.
    tight = deps.settings.replace(auth_rate_burst=3, auth_rate_per_second=0.01)
    return make_app(dataclasses.replace(deps, settings=tight))


def test_every_admin_route_is_rate_limited_per_ip() -> None:
    admin = [handler for _, handler, *_ in routes()
             if isinstance(handler, type) and issubclass(handler, ApiHandler)
             and handler.auth == "admin"]
    assert len(admin) == len(ADMIN_ROUTES)
    assert {handler.rate_limit for handler in admin} == {"admin"}


async def _call(api: Any, method: str, path: str, token: str) -> tuple[int, Any, Any]:
    if method == "GET":
        return await api.get(API + path, token=token)  # type: ignore[no-any-return]
    return await api.post(API + path, token=token, json={})  # type: ignore[no-any-return]


@pytest.mark.gen_test
@pytest.mark.parametrize("method, path", ADMIN_ROUTES)
async def test_wrong_tokens_run_out_and_then_the_right_one_waits_too(api: Any, deps: Any,
                                                                     method: str,
                                                                     path: str) -> None:
    statuses = [(await _call(api, method, path, "guess-" + str(n)))[0] for n in range(3)]
    assert statuses == [401, 401, 401]
    status, body, headers = await _call(api, method, path, "guess-4")
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1
    # The bucket is the client's, whatever token it sends: guessing cannot go on.
    status, _, _ = await _call(api, method, path, deps.settings.admin_token)
    assert status == 429


@pytest.mark.gen_test
async def test_the_operator_within_the_limit_is_served(api: Any, deps: Any) -> None:
    for _ in range(3):
        status, _, _ = await api.get(f"{API}/admin/cache", token=deps.settings.admin_token)
        assert status == 200
    status, _, _ = await api.get(f"{API}/admin/cache", token=deps.settings.admin_token)
    assert status == 429
