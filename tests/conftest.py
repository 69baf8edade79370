"""Shared fixtures: a private PostgreSQL database and Redis DB per test run, real servers.

Each run creates `ywm_test_<pid>_<n>` (dropped at the end) and migrates it to head once;
it takes a free Redis DB number by a lock key in DB 0, so concurrent runs never collide.
Handler tests commit for real against a Tornado server on loopback; after each test every
table is truncated and the Redis DB flushed.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from typing import Any, Iterator
from urllib.parse import urlencode

import psycopg2
import pytest
import redis
import tornado.httpclient
import ujson

import schema
from db.tables import metadata
from server.app import make_app
from server.deps import Deps, close_deps, open_deps
from server.platform import queue
from server.platform.metrics import close_metrics
from server.platform.settings import Settings

# Every process a test starts copies this environment: all of them run in test mode, on the
# development secrets, which an unset YWM_ENV (production) refuses.
os.environ["YWM_ENV"] = "test"
ADMIN_DSN = os.environ.get("YWM_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("YWM_TEST_REDIS", "redis://127.0.0.1:6379")
TRUNCATE = "TRUNCATE {} RESTART IDENTITY CASCADE"


def _admin_connection() -> Any:
    conn = psycopg2.connect(ADMIN_DSN)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"ywm_test_{os.getpid()}_{secrets.token_hex(3)}"
    conn = _admin_connection()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    from db.migrate import upgrade
    from tests.pgbouncer import served
    upgrade(url)  # migrations connect directly, as `ywm migrate` does
    with served(url) as served_url:  # YWM_TEST_THROUGH_PGBOUNCER=1: through PgBouncer
        yield served_url
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    control = redis.Redis.from_url(f"{REDIS_BASE}/0")
    owner = f"{os.getpid()}-{secrets.token_hex(4)}"
    for number in range(1, 16):
        if control.set(f"ywm:testdb:{number}", owner, nx=True, ex=4 * 3600):
            break
    else:
        raise RuntimeError("no free Redis DB number for tests (1-15 are all taken)")
    url = f"{REDIS_BASE}/{number}"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()
    if control.get(f"ywm:testdb:{number}") == owner.encode():
        control.delete(f"ywm:testdb:{number}")
    control.close()


@pytest.fixture(scope="session")
def metrics_dir() -> Iterator[str]:
    """This test run's box: prometheus_client's multiprocess files of this process."""
    path = tempfile.mkdtemp(prefix="ywm-test-metrics-")
    yield path
    close_metrics()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, metrics_dir: str) -> Settings:
    value = Settings.from_env({
        "YWM_ENV": "test", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "YWM_QUEUE_NAME": f"ywm-test-{os.getpid()}", "YWM_WEBHOOK_ALLOW_PRIVATE": "true",
        "YWM_LOG_LEVEL": "WARNING", "YWM_METRICS_DIR": metrics_dir,
        # Hundreds of sign-ins per run: the cheapest argon2id here; the production
        # strength has its own tests (tests/services/test_passwords.py).
        "YWM_PASSWORD_HASH_PROFILE": "test",
    })
    queue.configure(value)  # as `ywm` does: the run's one Settings, handed to Huey
    return value


def reset_state(database_url: str, redis_url: str) -> None:
    """Empty every table and the Redis DB (courier's ResetDB/ResetValkey)."""
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(TRUNCATE.format(names))
    conn.close()
    redis.Redis.from_url(redis_url).flushdb()


@pytest.fixture
def clean(database_url: str, redis_url: str) -> Iterator[None]:
    yield
    reset_state(database_url, redis_url)


@pytest.fixture
def deps(io_loop: Any, settings: Settings, clean: None) -> Iterator[Deps]:
    value = io_loop.run_sync(lambda: open_deps(settings))
    yield value
    io_loop.run_sync(lambda: close_deps(value))


@pytest.fixture
def app(deps: Deps) -> Any:
    return make_app(deps)


def _path_template(path: str) -> str | None:
    for template in schema.openapi_document()["paths"]:
        pattern = "^/api/v1" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) or re.match("^" + re.sub(r"\{[^/]+\}", "[^/]+", template)
                                               + "$", path):
            return template
    return None


class Api:
    """A JSON client for handler tests; checks each response against the OpenAPI document."""

    def __init__(self, http_client: Any, base_url: str) -> None:
        self.http = http_client
        self.base_url = base_url
        self.token: str | None = None

    async def request(self, method: str, path: str, json: Any = None, body: Any = None,
                      headers: dict[str, str] | None = None, token: str | None = None,
                      params: dict[str, Any] | None = None, check_schema: bool = True
                      ) -> tuple[int, Any, Any]:
        full_headers = {"Content-Type": "application/json"}
        bearer = token if token is not None else self.token
        if bearer:
            full_headers["Authorization"] = f"Bearer {bearer}"
        full_headers.update(headers or {})
        if json is not None:
            body = ujson.dumps(json)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        url = self.base_url + path + (("?" + urlencode(params)) if params else "")
        response = await self.http.fetch(url, method=method, body=body, headers=full_headers,
                                         raise_error=False, follow_redirects=False,
                                         request_timeout=60,
                                         # DELETE /groups/{id}/members carries a body
                                         allow_nonstandard_methods=method == "DELETE")
        raw = response.body or b""
        data = ujson.loads(raw) if raw and response.headers.get(
            "Content-Type", "").startswith("application/json") else raw
        template = _path_template(path)
        if check_schema and template is not None and isinstance(data, dict):
            schema.validate_response(method, template, response.code, data)
        return response.code, data, response.headers

    async def get(self, path: str, **kw: Any) -> tuple[int, Any, Any]:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> tuple[int, Any, Any]:
        return await self.request("POST", path, json=json, **kw)

    async def patch(self, path: str, json: Any = None, **kw: Any) -> tuple[int, Any, Any]:
        return await self.request("PATCH", path, json=json, **kw)

    async def delete(self, path: str, **kw: Any) -> tuple[int, Any, Any]:
        return await self.request("DELETE", path, **kw)


@pytest.fixture
def api(http_client: Any, base_url: str) -> Api:
    return Api(http_client, base_url)


@pytest.fixture(autouse=True)
def _close_default_http_clients() -> Iterator[None]:
    yield
    tornado.httpclient.AsyncHTTPClient._async_clients().clear()  # type: ignore[attr-defined]
