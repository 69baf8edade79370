"""`deploy/local/cluster.sh`: a local cluster of N boxes behind NGINX, to start and break.

    cluster.sh up [--boxes N] [--db NAME]   shared PostgreSQL (through PgBouncer), Redis with
                                           one replica and three Sentinels, the carrier
                                           simulator, N boxes, NGINX in front; prints
                                           URL=, ADMIN_TOKEN=, BOXES= once /ready answers
    cluster.sh kill-box K                  SIGKILL every process of box K
    cluster.sh start-box K                 start box K again (returns once it serves)
    cluster.sh restart-box K               graceful: out of NGINX, drain, stop, start, back in
    cluster.sh failover-redis              SENTINEL FAILOVER to the replica
    cluster.sh status                      one JSON line
    cluster.sh down                        stop everything started here

A box is what one machine runs in production: `supervisord -c supervisor/supervisord.conf`
(the repository's own file: `ywm web` x YWM_WEB_PROCESSES on one port, `ywm worker`, the
scheduler), its own var directory and metrics, on its own address (every box on the same
port, as on separate machines): when this user may create network namespaces (root with
iproute2's `ip netns`, probed by creating one), box K runs in the namespace
`ywm-<cluster id>-boxK` behind a veth pair (10.213.S.4K+1 on the host, 10.213.S.4K+2 in
the namespace, S a /24 chosen free on the first `up`), and the shared services (PgBouncer,
Redis and its Sentinels, the carrier simulator) listen on a hub address 10.213.S.254 of
the host that every namespace routes to; otherwise (or with YWM_CLUSTER_NETNS=0) box K
listens on the loopback address 127.0.1.K and the shared services on 127.0.0.1. The mode
is chosen on the first `up` and kept until `down`, which deletes the namespaces and links
it created (and only those). PostgreSQL is the one DATABASE_URL
names (the database --db, created and migrated here); the boxes reach it through a
private PgBouncer in transaction mode (deploy/pgbouncer/pgbouncer.ini). Redis is
server/devtools/redis_group.py; the boxes find the master through the Sentinels
(YWM_REDIS_SENTINELS). NGINX runs deploy/nginx/ywm.conf rendered by deploy/nginx/render.py.
The caller's YWM_* variables (carrier keys among them) reach every box unchanged.

Everything runs detached from this command, in its own session, and is recorded under the
state directory (var/cluster/ or YWM_CLUSTER_DIR, given by cluster.sh as --state-dir)
with its pid and start time, so later commands stop exactly those processes (a reused pid
is never signalled) and nothing else. Every wait is bounded; `up` is idempotent.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import os
import pathlib
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from server.devtools import dev, netns, processes
from server.devtools.processes import ClusterError
from server.devtools.redis_group import RedisGroup
from server.platform.metrics import reset_directory
from server.platform.settings import Settings, environment_for_children

ROOT = dev.ROOT
SUPERVISORD_CONF = ROOT / "supervisor" / "supervisord.conf"
PGBOUNCER_INI = ROOT / "deploy" / "pgbouncer" / "pgbouncer.ini"
PGBOUNCER_INSTALL = ROOT / "deploy" / "pgbouncer" / "install.sh"
DEFAULT_DB = "ywm_cluster"
BOX_NET = "127.0.1."  # loopback mode: box K listens on 127.0.1.K
NETNS_NET = "10.213."  # namespace mode: the cluster's /24 is 10.213.S.0/24
NETNS_SWITCH = "YWM_CLUSTER_NETNS"  # "0": loopback addresses even where namespaces work
BOX_START_SECONDS = 90.0  # imports, pools and the first /health of every web process
BOX_STOP_SECONDS = 60.0  # above the web drain (20 s) and the worker grace (30 s)
READY_SECONDS = 60.0
# Server connections PgBouncer opens to PostgreSQL for the cluster's database: the boxes'
# pools multiplex onto these (transaction mode), as on a real deployment.
PGBOUNCER_POOL = 40
# What `app_env` decides for every box, over the caller's environment.
CLUSTER_KEYS = ("DATABASE_URL", "YWM_MIGRATE_DATABASE_URL", "REDIS_URL", "YWM_REDIS_SENTINELS",
                "YWM_REDIS_SERVICE", "YWM_PUBLIC_URL", "YWM_TRUST_PROXY_HEADERS")


# ---- small helpers --------------------------------------------------------------------
def _free_port(*hosts: str) -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if all(_bindable(host, port) for host in hosts):
            return port


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False


def _get(url: str, cafile: str | None = None, timeout: float = 2.0) -> int:
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ywm_nginx_render",
                                                  ROOT / "deploy" / "nginx" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_db(url: str, name: str, host: str | None = None, port: int | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if host is not None:
        user = parts.username or "postgres"
        netloc = f"{user}@{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{name}"))


# ---- the cluster ----------------------------------------------------------------------
class Cluster:
    def __init__(self, state_dir: pathlib.Path) -> None:
        self.dir = state_dir.resolve()
        self.state_path = self.dir / "state.json"
        self.state: dict[str, Any] = (json.loads(self.state_path.read_text())
                                      if self.state_path.exists() else {})

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.state_path)

    # ---- layout ---------------------------------------------------------------------
    def _layout(self, boxes: int, db: str) -> None:
        """Ports and names, chosen on the first `up` and kept, so `up` is idempotent."""
        ports = self.state.setdefault("ports", {})
        if "web" not in ports:
            ports["web"] = _free_port(*[f"{BOX_NET}{k}" for k in range(1, 10)])
        for name in ("https", "http", "sim", "pgbouncer"):
            ports.setdefault(name, _free_port())
        ports.setdefault("redis", [_free_port() for _ in range(5)])
        self.state.setdefault("db", db)
        if self.state["db"] != db:
            raise ClusterError(f"this cluster runs on database {self.state['db']}; "
                               f"`down` it first to use {db}")
        self.state["boxes"] = boxes
        self.state.setdefault("records", {})
        if "net" not in self.state:
            self._choose_network()

    def _choose_network(self) -> None:
        """Namespaces when they can be created (and not switched off), else loopback."""
        cluster_id = hashlib.sha1(str(self.dir).encode()).hexdigest()[:6]
        wanted = self._caller().get(NETNS_SWITCH, "").strip().lower() not in (
            "0", "false", "no", "off")
        net: dict[str, Any] = {"mode": "loopback"}
        # A cluster already running from before modes were recorded keeps its addresses.
        running = any(processes.alive(record) for record in self.records.values())
        if wanted and not running and netns.possible(cluster_id):
            net = {"mode": "netns", "id": cluster_id, "slot": netns.free_slot(cluster_id),
                   "namespaces": [], "links": []}
        self.state["net"] = net
        # Sentinel keeps the addresses it learnt in its file: another address starts afresh.
        for conf in (self.dir / "redis").glob("sentinel-*.conf"):
            if f"\nbind {self.shared_host()}\n" not in conf.read_text():
                conf.unlink()

    @property
    def netns(self) -> bool:
        return bool(self.state.get("net", {}).get("mode") == "netns")

    def _net_address(self, last: int) -> str:
        return f"{NETNS_NET}{self.state['net']['slot']}.{last}"

    def namespace(self, box: int) -> str:
        return f"ywm-{self.state['net']['id']}-box{box}"

    def shared_host(self) -> str:
        """Where the boxes reach PgBouncer, Redis, the Sentinels and the simulator."""
        return self._net_address(254) if self.netns else "127.0.0.1"

    def _ensure_network(self, boxes: list[int]) -> None:
        """The hub address and each box's namespace and veth pair (idempotent)."""
        if not self.netns:
            return
        net, prefix = self.state["net"], f"ywm{self.state['net']['id']}"
        hub = f"{prefix}hub"
        if not netns.link_exists(hub):  # a veth pair kept on the host: it only holds the address
            netns.ip_ok("link", "add", hub, "type", "veth", "peer", "name", f"{prefix}hup")
            net["links"] = sorted(set(net["links"]) | {hub})
            self.save()
            netns.ip_ok("addr", "add", f"{self.shared_host()}/32", "dev", hub)
            netns.ip_ok("link", "set", f"{prefix}hup", "up")
            netns.ip_ok("link", "set", hub, "up")
        for box in boxes:
            namespace, outside = self.namespace(box), f"{prefix}h{box}"
            if netns.exists(namespace) and netns.link_exists(outside):
                continue
            if not netns.exists(namespace):
                netns.ip_ok("netns", "add", namespace)
            net["namespaces"] = sorted(set(net["namespaces"]) | {namespace})
            self.save()
            if netns.link_exists(outside):
                netns.ip_ok("link", "del", outside)
            inside = f"{prefix}n{box}"
            netns.ip_ok("link", "add", outside, "type", "veth", "peer", "name", inside,
                        "netns", namespace)
            netns.ip_ok("addr", "add", f"{self._net_address(4 * box + 1)}/30", "dev", outside)
            netns.ip_ok("link", "set", outside, "up")
            netns.ip_ok("-n", namespace, "addr", "add", f"{self.box_address(box)}/30",
                        "dev", inside)
            netns.ip_ok("-n", namespace, "link", "set", inside, "up")
            netns.ip_ok("-n", namespace, "link", "set", "lo", "up")
            netns.ip_ok("-n", namespace, "route", "add", "default", "via",
                        self._net_address(4 * box + 1))

    def _remove_network(self) -> None:
        """Delete exactly the namespaces and links `up` recorded creating."""
        net = self.state.get("net", {})
        for namespace in net.get("namespaces", []):  # takes its veth pair along
            if netns.exists(namespace):
                netns.ip_ok("netns", "del", namespace)
        for link in net.get("links", []):
            if netns.link_exists(link):
                netns.ip_ok("link", "del", link)
        self.state.pop("net", None)

    @property
    def records(self) -> dict[str, Any]:
        return self.state.setdefault("records", {})

    def url(self) -> str:
        return f"https://127.0.0.1:{self.state['ports']['https']}"

    def box_address(self, box: int) -> str:
        return self._net_address(4 * box + 2) if self.netns else f"{BOX_NET}{box}"

    def sim_url(self) -> str:
        return f"http://{self.shared_host()}:{self.state['ports']['sim']}"

    def redis_group(self) -> RedisGroup:
        return RedisGroup(self.dir / "redis", tuple(self.state["ports"]["redis"]),
                          host=self.shared_host())

    def certificate(self) -> str:
        return str(self.dir / "tls" / "ywm-local.crt")

    # ---- settings and environment ---------------------------------------------------
    def _caller(self) -> dict[str, str]:
        env = environment_for_children()
        env.setdefault("YWM_ENV", "development")
        return env

    def direct_database_url(self) -> str:
        base = Settings.from_env(self._caller()).database_url
        return _with_db(base, self.state["db"])

    def served_database_url(self) -> str:
        if not self.state.get("pgbouncer"):
            if self.netns:
                raise ClusterError("the boxes' namespaces reach PostgreSQL only through "
                                   f"PgBouncer; without it, run with {NETNS_SWITCH}=0")
            return self.direct_database_url()
        return _with_db(self.direct_database_url(), self.state["db"], self.shared_host(),
                        self.state["ports"]["pgbouncer"])

    def app_env(self) -> dict[str, str]:
        """What every box, the simulator and the seeding see: the caller's YWM_* and
        carrier variables, plus the cluster's addresses."""
        env = self._caller()
        env.update(self.redis_group().env())
        env["DATABASE_URL"] = self.served_database_url()
        env["YWM_MIGRATE_DATABASE_URL"] = self.direct_database_url()
        env.setdefault("YWM_PUBLIC_URL", self.url())
        # The boxes sit behind NGINX only (ywm.conf's set_real_ip_from story).
        env["YWM_TRUST_PROXY_HEADERS"] = "true"
        return env

    def settings(self) -> Settings:
        return Settings.from_env(self.app_env())

    def box_env(self, box: int) -> dict[str, str]:
        settings = self.settings()
        var = self.dir / f"box-{box}"
        var.mkdir(parents=True, exist_ok=True)
        env = dev.child_env(settings, self.state["ports"]["web"], self.state["ports"]["sim"],
                            var)
        # child_env starts from this process's environment: the cluster's own values win.
        app = self.app_env()
        env.update({key: app[key] for key in CLUSTER_KEYS})
        env.update({"YWM_BIND": self.box_address(box), "YWM_METRICS_DIR": str(var / "metrics")})
        if self.netns:  # the simulator, as child_env names it, seen from the namespace
            local = f"http://127.0.0.1:{self.state['ports']['sim']}/"
            for key in ("YWM_TELNYX_API_BASE", "YWM_TWILIO_API_BASE"):
                env[key] = env[key].replace(local, self.sim_url() + "/")
        return env

    # ---- up -------------------------------------------------------------------------
    def up(self, boxes: int, db: str) -> None:
        self._layout(boxes, db)
        self.save()
        self._ensure_network(list(range(1, boxes + 1)))
        self.save()
        self._start_pgbouncer()
        self.save()
        group = self.redis_group()
        group.start()
        settings = self.settings()
        dev.prepare_database(settings.replace(database_url=self.direct_database_url()))
        login = asyncio.run(dev.seed(settings))
        self._start_sim()
        for box in range(1, boxes + 1):
            self.start_box(box, wait=False)
        for box in range(1, boxes + 1):
            self._wait_box(box)
        for box in [int(k.split("-")[1]) for k in list(self.records) if k.startswith("box-")]:
            if box > boxes:  # fewer boxes than the last `up`
                self.stop_box(box)
        self._start_nginx()
        processes.wait_for(lambda: _get(self.url() + "/ready", self.certificate()) == 200,
                           READY_SECONDS, f"/ready through NGINX at {self.url()}")
        print(f"URL={self.url()}")
        print(f"ADMIN_TOKEN={settings.admin_token}")
        print(f"BOXES={boxes}")
        print(f"LOGIN={login.email} / {login.password}")
        print(f"CA_CERT={self.certificate()}", flush=True)

    def _start_pgbouncer(self) -> None:
        if processes.alive(self.records.get("pgbouncer")):
            return
        found = subprocess.run([str(PGBOUNCER_INSTALL)], capture_output=True, text=True,
                               timeout=600)
        if found.returncode != 0:
            print("cluster: PgBouncer could not be installed; the boxes connect to "
                  f"PostgreSQL directly:\n{found.stderr}", file=sys.stderr)
            self.state["pgbouncer"] = False
            return
        binary = found.stdout.strip().splitlines()[-1]
        directory = self.dir / "pgbouncer"
        directory.mkdir(parents=True, exist_ok=True)
        direct = urlsplit(self.direct_database_url())
        user = direct.username or "postgres"
        listen = "127.0.0.1" + (f",{self.shared_host()}" if self.netns else "")
        ini = _pgbouncer_ini(directory, self.state["ports"]["pgbouncer"],
                             direct.hostname or "127.0.0.1", direct.port or 5432, user, listen)
        command = [binary]
        if os.geteuid() == 0:  # PgBouncer refuses root: the PostgreSQL service user
            owner = pwd.getpwnam("postgres")
            os.chown(directory, owner.pw_uid, owner.pw_gid)
            command += ["-u", owner.pw_name]
        self.records["pgbouncer"] = processes.spawn(command + [str(ini)],
                                                    directory / "pgbouncer.log")
        self.state["pgbouncer"] = True
        port = self.state["ports"]["pgbouncer"]
        processes.wait_for(lambda: not _bindable("127.0.0.1", port) or not processes.alive(
            self.records["pgbouncer"]), 15, "PgBouncer to listen")
        if not processes.alive(self.records["pgbouncer"]):
            raise ClusterError(f"PgBouncer did not start; see {directory / 'pgbouncer.log'}")

    def _start_sim(self) -> None:
        if processes.alive(self.records.get("sim")):
            return
        env = self.app_env()
        env.setdefault("YWM_LOG_LEVEL", "WARNING")
        # Its webhooks go to NGINX over TLS: trust the local certificate (aiohttp uses
        # Python's default context, which reads SSL_CERT_FILE).
        _load_render().ensure_certificate(self.dir / "tls")
        env["SSL_CERT_FILE"] = self.certificate()
        command = [sys.executable, "-m", "server", "carrier-sim",
                   "--port", str(self.state["ports"]["sim"]), "--callback-url", self.url(),
                   "--address", self.shared_host()]
        self.records["sim"] = processes.spawn(command, self.dir / "carrier-sim.log", env)
        self.save()
        processes.wait_for(lambda: _get(f"{self.sim_url()}/control/received?limit=1") == 200,
                           30, "the carrier simulator")

    # ---- boxes ----------------------------------------------------------------------
    def start_box(self, box: int, wait: bool = True) -> None:
        key = f"box-{box}"
        if not processes.alive(self.records.get(key)):
            env = self.box_env(box)
            processes.signal_session(self.records.get(key), signal.SIGKILL)  # leftovers of a kill
            reset_directory(env["YWM_METRICS_DIR"])
            command = [sys.executable, "-m", "supervisor.supervisord",
                       "-c", str(SUPERVISORD_CONF)]
            if self.netns:  # `ip netns exec` execs in place: the record is supervisord's
                self._ensure_network([box])
                command = ["ip", "netns", "exec", self.namespace(box)] + command
            self.records[key] = processes.spawn(command, self.dir / f"box-{box}" / "box.log", env)
            self.save()
        if wait:
            self._wait_box(box)

    def _wait_box(self, box: int) -> None:
        record = self.records[f"box-{box}"]
        health = f"http://{self.box_address(box)}:{self.state['ports']['web']}/health"
        processes.wait_for(lambda: _get(health) == 200 or not processes.alive(record),
                           BOX_START_SECONDS, f"box {box} to answer {health}")
        if not processes.alive(record):
            raise ClusterError(f"box {box} exited; see {record['log']}")
        processes.wait_for(lambda: self._programs_running(box), BOX_START_SECONDS,
                           f"every program of box {box} to run")

    def _programs_running(self, box: int) -> bool:
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(SUPERVISORD_CONF),
             "status"], env=self.box_env(box), capture_output=True, text=True, timeout=30)
        return result.returncode == 0

    def kill_box(self, box: int) -> None:
        record = self.records.get(f"box-{box}")
        if record is None:
            raise ClusterError(f"no box {box} in this cluster")
        processes.signal_session(record, signal.SIGKILL)
        processes.wait_for(lambda: not processes.session_members(record),
                           processes.STOP_SECONDS, f"box {box}'s processes to die")

    def stop_box(self, box: int) -> None:
        """supervisord's own stop: web drains and closes sockets 1001, workers finish."""
        processes.stop(self.records.pop(f"box-{box}", None), signal.SIGTERM, BOX_STOP_SECONDS)
        self.save()

    def restart_box(self, box: int) -> None:
        """Rolling-deploy step: NGINX stops sending new requests to the box (reload
        without it; open WebSockets stay), the box drains and stops (its sockets close
        1001 and resume on the others), starts again, and NGINX takes it back."""
        others = [k for k in range(1, self.state["boxes"] + 1) if k != box]
        if others:
            self._start_nginx(others)
        self.stop_box(box)
        self.start_box(box)
        self._start_nginx()

    # ---- nginx ----------------------------------------------------------------------
    def _start_nginx(self, boxes: list[int] | None = None) -> None:
        render = _load_render()
        if boxes is None:
            boxes = list(range(1, self.state["boxes"] + 1))
        prefix = self.dir / "nginx"
        cert, key = render.ensure_certificate(self.dir / "tls")
        render.write_prefix(
            prefix, upstreams=[f"{self.box_address(k)}:{self.state['ports']['web']}"
                               for k in boxes],
            https_listen=f"127.0.0.1:{self.state['ports']['https']}",
            http_listen=f"127.0.0.1:{self.state['ports']['http']}", certificate=cert,
            certificate_key=key, worker_processes=os.cpu_count() or 1,
            # The machine's own clients (a load test on loopback) are not rate limited.
            unlimited_clients=["127.0.0.1"])
        record = self.records.get("nginx")
        if processes.alive(record):
            check = subprocess.run(render.nginx_command(prefix)[:-2] + ["-t"],
                                   capture_output=True, text=True, timeout=30)
            if check.returncode != 0:
                raise ClusterError(f"nginx -t failed:\n{check.stderr}")
            os.kill(int(record["pid"]), signal.SIGHUP)  # graceful reload
            time.sleep(0.5)  # the new workers take over within milliseconds
            return
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        subprocess.run([str(ROOT / "deploy" / "nginx" / "ensure-nginx.sh")], check=True,
                       timeout=900)
        command = [nginx if part == "nginx" else part for part in render.nginx_command(prefix)]
        self.records["nginx"] = processes.spawn(command, self.dir / "nginx.log")
        self.save()
        port = self.state["ports"]["https"]
        processes.wait_for(lambda: not _bindable("127.0.0.1", port)
                           or not processes.alive(self.records["nginx"]), 15, "NGINX to listen")
        if not processes.alive(self.records["nginx"]):
            raise ClusterError(f"NGINX did not start; see {prefix / 'error.log'}")

    # ---- redis, status, down --------------------------------------------------------
    def failover_redis(self) -> str:
        host, port = self.redis_group().failover()
        return f"{host}:{port}"

    def status(self) -> dict[str, Any]:
        ports = self.state.get("ports", {})
        boxes = []
        for box in range(1, self.state.get("boxes", 0) + 1):
            record = self.records.get(f"box-{box}")
            address = f"{self.box_address(box)}:{ports.get('web')}"
            boxes.append({"box": box, "address": address, "running": processes.alive(record),
                          "namespace": self.namespace(box) if self.netns else None,
                          "health": _get(f"http://{address}/health", timeout=1) == 200
                          if processes.alive(record) else False})
        ready = _get(self.url() + "/ready", self.certificate(), 2) == 200 if ports else False
        redis: Any = self.redis_group().status() if ports else None
        return {"url": self.url() if ports else None, "ready": ready,
                "network": self.state.get("net", {}).get("mode"), "boxes": boxes,
                "nginx": processes.alive(self.records.get("nginx")),
                "pgbouncer": processes.alive(self.records.get("pgbouncer")),
                "carrier_sim": processes.alive(self.records.get("sim")), "redis": redis,
                "db": self.state.get("db")}

    def down(self) -> None:
        processes.stop(self.records.pop("nginx", None), signal.SIGQUIT)  # graceful: finish requests
        for key in [k for k in list(self.records) if k.startswith("box-")]:
            processes.stop(self.records.pop(key), signal.SIGTERM, BOX_STOP_SECONDS)
        processes.stop(self.records.pop("sim", None), signal.SIGINT)
        if self.state.get("ports"):
            self.redis_group().stop()
        processes.stop(self.records.pop("pgbouncer", None), signal.SIGINT)
        self.save()
        self._remove_network()
        self.save()


def _pgbouncer_ini(directory: pathlib.Path, port: int, host: str, server_port: int,
                   user: str, listen: str = "127.0.0.1") -> pathlib.Path:
    """deploy/pgbouncer/pgbouncer.ini with only the addresses, auth and pool changed."""
    import configparser
    config = configparser.ConfigParser(interpolation=None, comment_prefixes=(";",),
                                       inline_comment_prefixes=None, strict=True)
    config.optionxform = str  # type: ignore[assignment,method-assign]
    config.read(PGBOUNCER_INI)
    config.remove_section("databases")
    config.add_section("databases")
    config["databases"]["*"] = f"host={host} port={server_port}"
    config["pgbouncer"].update({
        "listen_addr": listen, "listen_port": str(port), "unix_socket_dir": "",
        # the local PostgreSQL trusts loopback (as `make run` and the tests use it)
        "auth_type": "trust", "auth_file": str(directory / "userlist.txt"),
        "default_pool_size": str(PGBOUNCER_POOL), "max_db_connections": str(PGBOUNCER_POOL),
        "logfile": "", "pidfile": ""})
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    path = directory / "pgbouncer.ini"
    with path.open("w") as out:
        config.write(out)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=pathlib.Path, default=ROOT / "var" / "cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up")
    up.add_argument("--boxes", type=int, default=2)
    up.add_argument("--db", default=DEFAULT_DB)
    for name in ("kill-box", "start-box", "restart-box"):
        commands.add_parser(name).add_argument("box", type=int)
    for name in ("failover-redis", "status", "down"):
        commands.add_parser(name)
    args = parser.parse_args(argv)
    cluster = Cluster(args.state_dir)
    try:
        return _run(cluster, args)
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1


def _run(cluster: Cluster, args: argparse.Namespace) -> int:
    if args.command == "up":
        if args.boxes < 1 or args.boxes > 9:
            raise ClusterError("--boxes must be between 1 and 9")
        cluster.up(args.boxes, args.db)
        return 0
    if not cluster.state.get("ports"):
        if args.command in ("down", "status"):
            print(json.dumps({"url": None, "boxes": []}) if args.command == "status" else
                  "cluster: nothing to stop")
            return 0
        raise ClusterError("no cluster here: run `cluster.sh up` first")
    if args.command in ("kill-box", "start-box", "restart-box"):
        if not 1 <= args.box <= cluster.state["boxes"]:
            raise ClusterError(f"box must be 1..{cluster.state['boxes']}")
        {"kill-box": cluster.kill_box, "start-box": cluster.start_box,
         "restart-box": cluster.restart_box}[args.command](args.box)
        cluster.save()
    elif args.command == "failover-redis":
        print(f"REDIS_MASTER={cluster.failover_redis()}")
    elif args.command == "status":
        print(json.dumps(cluster.status(), separators=(",", ":")))
    elif args.command == "down":
        cluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
