"""A private Redis master, one replica and three Sentinels on loopback (development only).

Used by `deploy/local/cluster.sh` (server/devtools/cluster.py) and by the tests that fail
Redis over. Every process is Debian's own binary (`redis-server`, `redis-sentinel` from
the `redis-sentinel` package, installed by deploy/redis/ensure-sentinel.sh), daemonized
with its pid file, log and config under one directory, so a later command (or a test's
teardown) stops exactly what was started here and nothing else. Every wait is bounded.

    group = RedisGroup(pathlib.Path("var/cluster/redis"), ports=(7300, 7301, 7302, 7303, 7304))
    group.start()            # returns once all three Sentinels watch the master and replica
    group.env()              # YWM_REDIS_SENTINELS / YWM_REDIS_SERVICE / REDIS_URL for the app
    group.failover()         # SENTINEL FAILOVER; returns once every Sentinel names the new master
    group.stop()
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import time
from typing import Any, Callable, TypeVar

import redis

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENSURE_SENTINEL = ROOT / "deploy" / "redis" / "ensure-sentinel.sh"
SERVICE = "ywm"
# Sentinel marks a master down after this much silence; 3 s keeps a real outage's
# failover within seconds on loopback (production uses 5-30 s, docs/operations.md).
DOWN_AFTER_MS = 3000
FAILOVER_TIMEOUT_MS = 10000
START_SECONDS = 30.0
FAILOVER_SECONDS = 60.0
STOP_SECONDS = 10.0
T = TypeVar("T")


class RedisGroupError(RuntimeError):
    """The group did not reach the state asked for within its bound."""


def ensure_sentinel() -> str:
    """The redis-sentinel binary (installing Debian's package when missing)."""
    result = subprocess.run([str(ENSURE_SENTINEL)], capture_output=True, text=True,
                            timeout=900)
    if result.returncode != 0:
        raise RedisGroupError(f"redis-sentinel could not be installed:\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def _wait(check: Callable[[], T], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = check()
        except (redis.RedisError, OSError):
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            raise RedisGroupError(f"timed out after {seconds:.0f}s waiting for {what}")
        time.sleep(0.1)


class RedisGroup:
    """Master + replica + 3 Sentinels; `ports` = (master, replica, s1, s2, s3)."""

    def __init__(self, directory: pathlib.Path, ports: tuple[int, ...],
                 host: str = "127.0.0.1", service: str = SERVICE, db: int = 0) -> None:
        if len(ports) != 5:
            raise ValueError("ports: master, replica and three Sentinels")
        self.dir = directory.resolve()
        self.host = host
        self.service = service
        self.db = db
        self.data_ports = ports[:2]
        self.sentinel_ports = ports[2:]

    @property
    def protected_mode(self) -> str:
        """Off on a non-loopback address (a cluster's private hub address, which only this
        host's network namespaces route to): protected mode would refuse those clients."""
        return "yes" if self.host.startswith("127.") else "no"

    # ---- what the app is given -------------------------------------------------------
    def sentinels(self) -> str:
        return ",".join(f"{self.host}:{port}" for port in self.sentinel_ports)

    def env(self) -> dict[str, str]:
        # REDIS_URL: only its database number counts behind Sentinel; the host names the
        # first master for tools that cannot ask a Sentinel.
        return {"YWM_REDIS_SENTINELS": self.sentinels(), "YWM_REDIS_SERVICE": self.service,
                "REDIS_URL": f"redis://{self.host}:{self.data_ports[0]}/{self.db}"}

    # ---- start -----------------------------------------------------------------------
    def start(self) -> None:
        """Start whatever is not running yet (idempotent) and wait until it is watched."""
        sentinel_bin = ensure_sentinel()
        self.dir.mkdir(parents=True, exist_ok=True)
        master_port, replica_port = self.data_ports
        fresh = not any(self._alive(f"redis-{p}") for p in self.data_ports)
        for port in self.data_ports:
            if not self._alive(f"redis-{port}"):
                # A node that comes back follows whoever is master now (Sentinel also
                # reconfigures it, but only after several seconds).
                master = self.master() if not fresh else (self.host, master_port)
                self._start_data_node(port, None if master == (self.host, port) or (
                    fresh and port == master_port) else master)
        _wait(lambda: all(self._ping(p) for p in self.data_ports), START_SECONDS,
              "the Redis master and replica")
        for port in self.sentinel_ports:
            if not self._alive(f"sentinel-{port}"):
                self._start_sentinel(sentinel_bin, port, master_port)
        _wait(self._watched, START_SECONDS,
              "three Sentinels that see the master, its replica and each other")

    def _start_data_node(self, port: int, replica_of: tuple[str, int] | None) -> None:
        node = self.dir / f"redis-{port}"
        node.mkdir(exist_ok=True)
        command = ["redis-server", "--port", str(port), "--bind", self.host,
                   "--daemonize", "yes", "--pidfile", str(self.dir / f"redis-{port}.pid"),
                   "--logfile", str(self.dir / f"redis-{port}.log"), "--dir", str(node),
                   "--save", "", "--appendonly", "no",
                   # the replica syncs at once instead of waiting 5 s for more replicas
                   "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            command += ["--replicaof", replica_of[0], str(replica_of[1])]
        if self.protected_mode == "no":
            command += ["--protected-mode", "no"]
        subprocess.run(command, check=True, timeout=30)

    def _start_sentinel(self, binary: str, port: int, master_port: int) -> None:
        conf = self.dir / f"sentinel-{port}.conf"
        if not conf.exists():  # Sentinel rewrites its file with what it learnt: keep it
            conf.write_text(
                f"port {port}\nbind {self.host}\nprotected-mode {self.protected_mode}\n"
                f"daemonize yes\n"
                f"pidfile {self.dir / f'sentinel-{port}.pid'}\n"
                f"logfile {self.dir / f'sentinel-{port}.log'}\ndir {self.dir}\n"
                f"sentinel monitor {self.service} {self.host} {master_port} 2\n"
                f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {self.service} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {self.service} 1\n")
        subprocess.run([binary, str(conf)], check=True, timeout=30)

    def _watched(self) -> bool:
        for port in self.sentinel_ports:
            with self._client(port) as client:
                state = client.sentinel_master(self.service)
            if (state.get("num-slaves", 0) < 1 or state.get("num-other-sentinels", 0) < 2
                    or state.get("is_sdown") or state.get("is_odown")):
                return False
        replica = self.replica()
        return replica is not None and self._role(replica[1]) == "slave" and \
            self._link_up(replica[1])

    # ---- state -----------------------------------------------------------------------
    def master(self) -> tuple[str, int]:
        """The master the first answering Sentinel names."""
        for port in self.sentinel_ports:
            try:
                with self._client(port) as client:
                    host, master_port = client.sentinel_get_master_addr_by_name(self.service)
                return str(host), int(master_port)
            except (redis.RedisError, OSError, TypeError):
                continue
        raise RedisGroupError("no Sentinel answers")

    def replica(self) -> tuple[str, int] | None:
        master = self.master()
        others = [p for p in self.data_ports if (self.host, p) != master]
        return (self.host, others[0]) if others else None

    def status(self) -> dict[str, Any]:
        try:
            master: Any = "%s:%s" % self.master()
        except RedisGroupError:
            master = None
        nodes = {str(p): (self._role(p) if self._alive(f"redis-{p}") else "down")
                 for p in self.data_ports}
        sentinels = sum(1 for p in self.sentinel_ports if self._alive(f"sentinel-{p}"))
        return {"master": master, "nodes": nodes, "sentinels": sentinels}

    def _role(self, port: int) -> str | None:
        try:
            with redis.Redis(host=self.host, port=port, socket_timeout=1) as client:
                return str(client.execute_command("ROLE")[0].decode())
        except (redis.RedisError, OSError):
            return None

    def _link_up(self, port: int) -> bool:
        with redis.Redis(host=self.host, port=port, socket_timeout=1) as client:
            return client.info("replication").get("master_link_status") == "up"

    def _ping(self, port: int) -> bool:
        with redis.Redis(host=self.host, port=port, socket_timeout=1) as client:
            return bool(client.ping())

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host=self.host, port=port, socket_timeout=2, decode_responses=True)

    # ---- failover --------------------------------------------------------------------
    def failover(self) -> tuple[str, int]:
        """Promote the replica (SENTINEL FAILOVER); returns the new master once every
        Sentinel names it, it answers as master and the old one follows it."""
        old = self.master()

        def asked() -> bool:
            with self._client(self.sentinel_ports[0]) as client:
                return bool(client.execute_command("SENTINEL FAILOVER", self.service))
        _wait(asked, FAILOVER_SECONDS, "Sentinel to accept the failover")

        def switched() -> tuple[str, int] | None:
            names = set()
            for port in self.sentinel_ports:
                with self._client(port) as client:
                    host, master_port = client.sentinel_get_master_addr_by_name(self.service)
                names.add((str(host), int(master_port)))
            if len(names) != 1:
                return None
            (new,) = names
            return new if new != old and self._role(new[1]) == "master" else None
        new = _wait(switched, FAILOVER_SECONDS, "every Sentinel to name the new master")
        # Sentinel turns the old master into a replica of the new one a few seconds later;
        # a second failover needs that replica.
        _wait(self._watched, FAILOVER_SECONDS, "the old master to follow the new one")
        return new

    # ---- stop ------------------------------------------------------------------------
    def _pid(self, name: str) -> int | None:
        try:
            pid = int((self.dir / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:  # only while it is still a redis process (pids are reused)
            comm = pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return None
        return pid if comm.startswith("redis") else None

    def _alive(self, name: str) -> bool:
        return self._pid(name) is not None

    def stop(self, remove: bool = False) -> None:
        names = [f"sentinel-{p}" for p in self.sentinel_ports] + [
            f"redis-{p}" for p in self.data_ports]
        for name in names:
            pid = self._pid(name)
            if pid is not None:
                os.kill(pid, 15)
        for name in names:
            try:
                _wait(lambda: not self._alive(name), STOP_SECONDS, f"{name} to stop")
            except RedisGroupError:
                pid = self._pid(name)
                if pid is not None:
                    os.kill(pid, 9)
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
