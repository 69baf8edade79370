"""A private primary and a real streaming replica for the read-replica tests.

The machine's own cluster has no `replication` line in its pg_hba.conf, so `ReplicaPair`
builds its own: `initdb` a primary (trust on loopback, `wal_level = replica`, a
replication line) in a temporary directory on a free port, `pg_basebackup -R` a replica
from it, and start it as a second postmaster on another free port; then create the
database and migrate it on the primary (the replica gets everything by streaming). Run as
root, every PostgreSQL program runs as the `postgres` user (PostgreSQL refuses root), as
deploy/local/services.sh does. Every wait is bounded; `stop()` stops both postmasters
(immediate) and removes the directory, whatever state they are in.

`replica_pair` (session scope) is one pair for the whole run, started on first use; import
it into a test module. `fsync = off`: a test cluster, rebuilt every run.
"""
from __future__ import annotations

import atexit
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Callable, Iterator

import psycopg2
import pytest

BIN = pathlib.Path(os.environ.get("YWM_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "ywm"
COMMAND_TIMEOUT_SECONDS = 120.0  # initdb, pg_basebackup, pg_ctl start/stop
WAIT_SECONDS = 30.0  # replication and replay to catch up
POLL_SECONDS = 0.05

PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
wal_level = replica
max_wal_senders = 5
hot_standby = on
fsync = off
full_page_writes = off
max_connections = 60
shared_buffers = 32MB
log_min_messages = warning
"""
HBA = """
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float = WAIT_SECONDS,
               what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_SECONDS)


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(url, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


class ReplicaPair:
    def __init__(self) -> None:
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="ywm-replica-"))
        self.primary_dir = self.root / "primary"
        self.replica_dir = self.root / "replica"
        self.primary_port = 0
        self.replica_port = 0
        self.owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self.owner = pwd.getpwnam("postgres")
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)

    # ---- URLs ------------------------------------------------------------------------
    def url(self, port: int, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def replica_url(self) -> str:
        return self.url(self.replica_port)

    # ---- processes -------------------------------------------------------------------
    def _run(self, *command: str) -> None:
        argv = list(command)
        if self.owner is not None:
            argv = ["runuser", "-u", self.owner.pw_name, "--", *argv]
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=COMMAND_TIMEOUT_SECONDS, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed:\n{done.stdout.decode(errors='replace')}"
                               f"\n{self.log_tail()}")

    def _pg_ctl(self, data: pathlib.Path, *args: str) -> None:
        self._run(str(BIN / "pg_ctl"), "-D", str(data), "-w",
                  "-t", str(int(COMMAND_TIMEOUT_SECONDS)), *args)

    def log_tail(self) -> str:
        parts = []
        for name in ("primary.log", "replica.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def start(self) -> None:
        self.primary_port, self.replica_port = free_port(), free_port()
        self._run(str(BIN / "initdb"), "-D", str(self.primary_dir), "-U", "postgres",
                  "--auth=trust", "-N", "-E", "UTF8", "--locale=C")
        with open(self.primary_dir / "postgresql.conf", "a") as conf:
            conf.write(PRIMARY_CONF.format(port=self.primary_port, sockets=self.root))
        (self.primary_dir / "pg_hba.conf").write_text(HBA)
        self._pg_ctl(self.primary_dir, "-l", str(self.root / "primary.log"), "start")
        self._run(str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary_port),
                  "-U", "postgres", "-D", str(self.replica_dir), "-R", "-X", "stream",
                  "-c", "fast")
        with open(self.replica_dir / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.replica_port}\n")
        self.start_replica()
        query(self.url(self.primary_port, "postgres"), f'CREATE DATABASE "{DATABASE}"')
        from db.migrate import upgrade
        upgrade(self.primary_url)
        self.wait_replayed()

    def start_replica(self) -> None:
        self._pg_ctl(self.replica_dir, "-l", str(self.root / "replica.log"), "start")
        wait_until(self._streaming, what="the replica to stream from the primary")

    def kill_replica(self) -> None:
        """Stop the replica the hard way (SIGQUIT: no checkpoint, connections cut)."""
        self._pg_ctl(self.replica_dir, "-m", "immediate", "stop")

    def _streaming(self) -> bool:
        rows = query(self.url(self.primary_port, "postgres"),
                     "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        return bool(rows[0][0])

    def stop(self) -> None:
        for data in (self.replica_dir, self.primary_dir):
            if (data / "postmaster.pid").exists():
                try:
                    self._pg_ctl(data, "-m", "immediate", "stop")
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- replication -----------------------------------------------------------------
    def primary_lsn(self) -> str:
        return str(query(self.primary_url, "SELECT pg_current_wal_lsn()::text")[0][0])

    def replica_has(self, lsn: str) -> bool:
        rows = query(self.replica_url,
                     "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
        return bool(rows[0][0])

    def wait_replayed(self) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        lsn = self.primary_lsn()
        wait_until(lambda: self.replica_has(lsn), what=f"the replica to replay {lsn}")

    def pause_replay(self) -> None:
        query(self.replica_url, "SELECT pg_wal_replay_pause()")
        wait_until(lambda: query(self.replica_url, "SELECT pg_get_wal_replay_pause_state()")
                   [0][0] == "paused", what="replay to pause")

    def resume_replay(self) -> None:
        query(self.replica_url, "SELECT pg_wal_replay_resume()")

    def reset(self) -> None:
        """Between tests: replay running, the replica up and caught up, tables empty."""
        if not (self.replica_dir / "postmaster.pid").exists():
            self.start_replica()
        self.resume_replay()
        from db.tables import metadata
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        query(self.primary_url, f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        self.wait_replayed()


_pair: ReplicaPair | None = None


def _stop_pair() -> None:
    global _pair
    if _pair is not None:
        _pair.stop()
        _pair = None


@pytest.fixture(scope="session")
def replica_pair() -> Iterator[ReplicaPair]:
    """One primary + streaming replica for the run (started by the first module that
    asks; stopped at the end of the session, or at exit if the run is interrupted)."""
    global _pair
    if _pair is None:
        pair = ReplicaPair()
        atexit.register(_stop_pair)
        try:
            pair.start()
        except BaseException:
            pair.stop()
            raise
        _pair = pair
    yield _pair
    _stop_pair()
