"""What a benchmark borrows from the machine: a fresh database, a free Redis DB number,
and the CPU its child processes used."""
from __future__ import annotations

import os
import pathlib
import secrets

import psycopg2
import redis

ADMIN_DSN = os.environ.get("YWM_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("YWM_TEST_REDIS", "redis://127.0.0.1:6379")
REDIS_LOCK_SECONDS = 3 * 3600


def url_for_database(name: str) -> str:
    """The URL of database `name` on the admin DSN's server."""
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    """Drop `url`'s database, closing whatever is still connected to it."""
    admin = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    admin.close()


def fresh_database(url: str) -> str:
    """`url`'s database dropped if it exists, created again and migrated to head."""
    from db.migrate import ensure_database, upgrade
    drop_database(url)
    ensure_database(url)
    upgrade(url)
    return url


def reserve_redis_db() -> tuple[str, str]:
    """A flushed Redis DB nobody else holds, and the lock key to release it with (the test
    fixtures take numbers from the bottom, benchmarks from the top)."""
    control = redis.Redis.from_url(f"{REDIS_BASE}/0")
    owner = f"bench-{os.getpid()}-{secrets.token_hex(3)}"
    for number in range(15, 0, -1):
        if control.set(f"ywm:testdb:{number}", owner, nx=True, ex=REDIS_LOCK_SECONDS):
            url = f"{REDIS_BASE}/{number}"
            redis.Redis.from_url(url).flushdb()
            return url, f"ywm:testdb:{number}"
    raise RuntimeError("no free Redis DB")


def release_redis_db(url: str, lock_key: str) -> None:
    redis.Redis.from_url(url).flushdb()
    redis.Redis.from_url(f"{REDIS_BASE}/0").delete(lock_key)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of processes (a process already gone counts nothing):
    robust to a busy machine, unlike wall time."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


class BackendCpu:
    """CPU seconds of one database's PostgreSQL backends over a run, from samples:
    `sample()` as often as the run allows (a backend that exits counts up to its last
    sample); the first sample is the baseline, backends born later count from zero."""

    def __init__(self, database_url: str) -> None:
        self._conn = psycopg2.connect(database_url)
        self._conn.autocommit = True
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._sampled = False

    def sample(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")
            pids = [row[0] for row in cur.fetchall()]
        for pid in pids:
            value = cpu_seconds([pid])
            self._base.setdefault(pid, value if not self._sampled else 0.0)
            self._last[pid] = value
        self._sampled = True

    def seconds(self) -> float:
        return sum(self._last[pid] - self._base[pid] for pid in self._last)

    def close(self) -> None:
        self._conn.close()
