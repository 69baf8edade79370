"""A scratch database per test for migration tests that must start from nothing."""
from __future__ import annotations

import secrets
from typing import Iterator

import psycopg2
import pytest

from tests.conftest import ADMIN_DSN, _admin_connection


@pytest.fixture
def scratch_url() -> Iterator[str]:
    name = f"ywm_test_scratch_{secrets.token_hex(4)}"
    conn = _admin_connection()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()
