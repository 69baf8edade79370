"""deploy/local/services.sh: starts a private PostgreSQL and Redis when none answers at the
configured URLs, records them under its var directory, and `services.sh stop` stops exactly
those. The machine's shared PostgreSQL and Redis are never started or stopped here: the
URLs point at free ports, so the private instances are the only ones touched."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Iterator

import psycopg2
import pytest
import redis

from tests.server.ops_support import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICES = ROOT / "deploy" / "local" / "services.sh"


@pytest.fixture
def var() -> Iterator[pathlib.Path]:
    # Not pytest's tmp_path (0700 under root's directory): run as root, the private
    # PostgreSQL belongs to the postgres user, who must reach its data directory.
    path = pathlib.Path(tempfile.mkdtemp(prefix="ywm-services-"))
    path.chmod(0o755)
    yield path
    subprocess.run([str(SERVICES), "stop"], env=_env(path), timeout=120)  # after a failure
    shutil.rmtree(path, ignore_errors=True)


def _env(var: pathlib.Path, **urls: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, "YWM_VAR_DIR": str(var), **urls}


def _pg_answers(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


def _redis_answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def test_private_services_are_recorded_and_stopped_and_shared_ones_are_left(var, settings):
    pg_url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    assert not _pg_answers(pg_url) and not _redis_answers(redis_url)
    up = subprocess.run([str(SERVICES)], env=_env(var, DATABASE_URL=pg_url,
                                                  REDIS_URL=redis_url),
                        capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert _pg_answers(pg_url) and _redis_answers(redis_url)
    kinds = [line.split()[0] for line in (var / "services.started").read_text().splitlines()]
    assert kinds == ["pg", "redis"]

    down = subprocess.run([str(SERVICES), "stop"], env=_env(var), capture_output=True,
                          text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not _pg_answers(pg_url) and not _redis_answers(redis_url)
    assert not (var / "services.started").exists()
    # The shared services this test run uses are still there.
    assert _pg_answers(settings.database_url) and _redis_answers(settings.redis_url)


def test_services_already_running_are_not_recorded_so_never_stopped(var, settings):
    up = subprocess.run([str(SERVICES)], env=_env(var, DATABASE_URL=settings.database_url,
                                                  REDIS_URL=settings.redis_url),
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "starting" not in up.stdout
    assert not (var / "services.started").exists()
    subprocess.run([str(SERVICES), "stop"], env=_env(var), check=True, timeout=120)
    assert _pg_answers(settings.database_url) and _redis_answers(settings.redis_url)
