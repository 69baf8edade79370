"""The application behind PgBouncer in transaction mode (Debian's 1.18, our shipped config).

These tests start their own PgBouncer with ONE server connection, so every client takes
turns on the same PostgreSQL session: what one client leaves in the session, the next one
sees. They show that this really happens (so `make test`'s second run through PgBouncer
can catch a statement that relies on session state), and that our engine gets its
statement timeout and UTC in every transaction without relying on, or leaving, any.
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from typing import Any, Iterator
from urllib.parse import urlsplit

import psycopg2
import psycopg2.errors
import pytest

from db.engine import STATEMENT_TIMEOUT_MS, Database
from tests.conftest import ADMIN_DSN
from tests.pgbouncer import POOL_SIZE, PgBouncer, running, shipped_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
APP_PACKAGES = ("db", "server", "workers", "handlers")
# The one place allowed session state: `ywm migrate`, which connects directly.
DIRECT_ONLY = {ROOT / "db" / "migrations" / "env.py"}
SESSION_STATE = {
    "session advisory lock": re.compile(r"pg_advisory_(?:try_)?lock(?:_shared)?\s*\("),
    "LISTEN": re.compile(r"\bLISTEN\s+\w"),
    "server-side prepared statement": re.compile(r"\bPREPARE\s+\w+\s*(?:\(|AS\b)", re.I),
    "session SET": re.compile(r"""["']\s*SET\s+(?!LOCAL\b)(?:SESSION\s+)?\w+\s*(?:=|TO\b)""",
                              re.I),
    "set_config for the session": re.compile(r"set_config\([^)]*,\s*false\s*\)", re.I),
    "libpq options at connect": re.compile(r"""\boptions\s*=\s*f?["']-c|["']options["']\s*:"""),
}


def _direct(database_url: str) -> str:
    """The run's database on PostgreSQL itself, even when the run goes through PgBouncer."""
    return ADMIN_DSN.rsplit("/", 1)[0] + urlsplit(database_url).path


@pytest.fixture
def bouncer(database_url: str) -> Iterator[PgBouncer]:
    with running(_direct(database_url), pool_size=1) as value:
        yield value


@pytest.fixture
def pooled_url(bouncer: PgBouncer, database_url: str) -> str:
    return bouncer.url_for(_direct(database_url))


def _autocommit(url: str, **kw: Any) -> Any:
    conn = psycopg2.connect(url, **kw)
    conn.autocommit = True
    return conn


def _show(url: str, name: str) -> str:
    conn = _autocommit(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SHOW {name}")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


def test_the_shipped_config_pools_transactions_and_resets_nothing() -> None:
    settings = shipped_config()["pgbouncer"]
    assert settings["pool_mode"] == "transaction"
    assert settings["server_reset_query"] == ""
    # Dropping `options` would silently lose the timeout and UTC: it must stay refused.
    assert "options" not in settings.get("ignore_startup_parameters", "")


def test_pgbouncer_refuses_libpq_options(pooled_url: str) -> None:
    with pytest.raises(psycopg2.OperationalError, match="unsupported startup parameter"):
        psycopg2.connect(pooled_url, options="-c statement_timeout=1000")


def test_a_session_setting_leaks_to_the_next_client(pooled_url: str) -> None:
    """The premise of the second test run: with the shipped config, session state left by
    one client is what the next client of that server connection gets."""
    default = _show(pooled_url, "statement_timeout")
    first = _autocommit(pooled_url)
    with first.cursor() as cur:
        cur.execute("SET statement_timeout = '4321ms'")
    assert default != "4321ms"
    assert _show(pooled_url, "statement_timeout") == "4321ms"  # another client, same session
    first.close()


def test_one_clients_statements_move_between_sessions(database_url: str) -> None:
    """The pool of the second test run: what a session-state statement would meet there."""
    direct = _direct(database_url)
    with running(direct, pool_size=POOL_SIZE) as shared:
        shared.fill_pool(direct)
        conn = _autocommit(shared.url_for(direct))
        try:
            with conn.cursor() as cur:
                backends = set()
                for _ in range(POOL_SIZE):
                    cur.execute("SELECT pg_backend_pid()")
                    backends.add(cur.fetchone()[0])
                cur.execute("SET statement_timeout = '4321ms'")
                cur.execute("SHOW statement_timeout")
                own_setting = cur.fetchone()[0]
                cur.execute("PREPARE ywm_probe AS SELECT 1")
                with pytest.raises(psycopg2.errors.InvalidSqlStatementName):
                    cur.execute("EXECUTE ywm_probe")
        finally:
            conn.close()
    assert len(backends) == POOL_SIZE
    assert own_setting != "4321ms"  # the client's own SET stayed on the other session


@pytest.mark.gen_test(timeout=30)
async def test_engine_sets_utc_and_its_timeout_in_every_transaction(pooled_url: str) -> None:
    poison = _autocommit(pooled_url)
    with poison.cursor() as cur:
        cur.execute("SET statement_timeout = '4321ms'; SET timezone = 'America/Chicago'")
    db = await Database.connect(pooled_url, maxsize=2)
    try:
        async with db.transaction() as conn:
            inside = await conn.fetch_one(
                "SELECT current_setting('timezone') AS tz, "
                "current_setting('statement_timeout') AS timeout, now() AS at")
        alone = await db.fetch_one("SELECT current_setting('timezone') AS tz, "
                                   "current_setting('statement_timeout') AS timeout")
    finally:
        await db.close()
        poison.close()
    expected_timeout = f"{STATEMENT_TIMEOUT_MS // 1000}s"
    assert inside is not None and alone is not None
    assert (inside["tz"], inside["timeout"]) == ("UTC", expected_timeout)
    assert inside["at"].utcoffset().total_seconds() == 0
    assert (alone["tz"], alone["timeout"]) == ("UTC", expected_timeout)


@pytest.mark.gen_test(timeout=30)
async def test_engine_leaves_no_session_state(pooled_url: str) -> None:
    before = _show(pooled_url, "statement_timeout")
    db = await Database.connect(pooled_url, maxsize=2)
    try:
        async with db.transaction() as conn:
            await conn.fetch_val("SELECT 1")
        assert await db.fetch_one("SELECT 1 AS one") == {"one": 1}
    finally:
        await db.close()
    assert before != f"{STATEMENT_TIMEOUT_MS // 1000}s"
    assert _show(pooled_url, "statement_timeout") == before


def test_upkeep_creates_partitions_through_pgbouncer(pooled_url: str) -> None:
    """The periodic partition upkeep connects with DATABASE_URL, so through PgBouncer."""
    from db.partitions import ensure_partitions
    assert ensure_partitions(pooled_url) == []  # migrate made them; the run is what counts
    assert _show(pooled_url, "lock_timeout") == "0"  # its SET LOCAL ended with it


def test_ywm_migrate_connects_with_the_migrate_url(scratch_url: str) -> None:
    """Behind PgBouncer, DATABASE_URL names the pooler; `ywm migrate` must not use it."""
    env = dict(os.environ, YWM_ENV="test", YWM_MIGRATE_DATABASE_URL=scratch_url,
               DATABASE_URL="postgresql://postgres@127.0.0.1:1/no_pooler_here")
    done = subprocess.run([sys.executable, "-m", "server", "migrate"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    conn = _autocommit(scratch_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM alembic_version")
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()


def _python_files() -> Iterator[pathlib.Path]:
    for package in APP_PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_code_relies_on_session_state() -> None:
    """A static net under the run through PgBouncer, for paths the tests may not take."""
    found = []
    for path in _python_files():
        if path in DIRECT_ONLY:
            continue
        text = path.read_text()
        for what, pattern in SESSION_STATE.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert found == []


@pytest.mark.parametrize("sample, what", [
    ('conn.execute("SELECT pg_advisory_lock(42)")', "session advisory lock"),
    ("cur.execute('LISTEN ywm_events')", "LISTEN"),
    ('"PREPARE fetch_member (uuid) AS SELECT 1"', "server-side prepared statement"),
    ('text("SET statement_timeout = 5000")', "session SET"),
    ("\"SELECT set_config('timezone', 'UTC', false)\"", "set_config for the session"),
    ('create_pool(dsn, options="-c timezone=UTC")', "libpq options at connect"),
])
def test_the_static_net_catches_each_kind(sample: str, what: str) -> None:
    assert SESSION_STATE[what].search(sample)
    harmless = ['"SET LOCAL statement_timeout = 5000"', '"UPDATE members SET name = %s"',
                '"SELECT pg_advisory_xact_lock(1)"']
    assert not any(SESSION_STATE[what].search(h) for h in harmless)
