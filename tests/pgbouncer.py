"""A private PgBouncer for a test run: Debian's binary, our shipped configuration, a free port.

`running(direct_url)` starts `pgbouncer` as a child process (not a daemon) from a temporary
copy of deploy/pgbouncer/pgbouncer.ini, changing only where it listens, where PostgreSQL is,
authentication (trust, as the test cluster) and the pool size, and yields the URL of the same
database through it. The pool is deliberately tiny, handed out in turn, and
`server_reset_query` stays empty (as shipped): clients take turns on the same server
connections, and even one client's consecutive transactions move between them, so a
statement that relied on session state would miss its own or see another client's.

`YWM_TEST_THROUGH_PGBOUNCER=1` makes tests/conftest.py's `database_url` hand out that URL
(`make test` runs the database-heavy tests a second time this way).
"""
from __future__ import annotations

import configparser
import contextlib
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg2

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED_INI = ROOT / "deploy" / "pgbouncer" / "pgbouncer.ini"
INSTALL_SCRIPT = ROOT / "deploy" / "pgbouncer" / "install.sh"
ENV_FLAG = "YWM_TEST_THROUGH_PGBOUNCER"
# Fewer server connections than the clients a test opens, so clients share them; more
# than one, so one client's transactions move between sessions.
POOL_SIZE = 2
START_TIMEOUT_SECONDS = 15.0  # a cold start takes well under a second
STOP_TIMEOUT_SECONDS = 10.0
INSTALL_TIMEOUT_SECONDS = 300.0  # apt-get on a fresh machine
# A test that waits this long for a server connection fails instead of hanging the run.
QUERY_WAIT_TIMEOUT_SECONDS = 60


def enabled() -> bool:
    return os.environ.get(ENV_FLAG, "").strip().lower() in ("1", "true")


def binary() -> str:
    """The pgbouncer binary, installed by the project's script if this machine lacks it."""
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)
    if found:
        return found
    done = subprocess.run([str(INSTALL_SCRIPT)], stdout=subprocess.PIPE, text=True,
                          timeout=INSTALL_TIMEOUT_SECONDS, check=True)
    return done.stdout.strip().splitlines()[-1]


def shipped_config() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";",),
                                       inline_comment_prefixes=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # names keep case
    parser.read(SHIPPED_INI)
    return parser


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_config(directory: pathlib.Path, port: int, server_host: str, server_port: int,
                  user: str, pool_size: int) -> pathlib.Path:
    config = shipped_config()
    config.remove_section("databases")
    config.add_section("databases")
    # Every database name maps to the same name on the test cluster (the run's own DB).
    config["databases"]["*"] = f"host={server_host} port={server_port}"
    config["pgbouncer"].update({
        "listen_addr": "127.0.0.1", "listen_port": str(port), "unix_socket_dir": "",
        "auth_type": "trust", "auth_file": str(directory / "userlist.txt"),
        "default_pool_size": str(pool_size), "reserve_pool_size": "0",
        "max_db_connections": str(pool_size), "min_pool_size": str(pool_size),
        # Hand out server connections in turn (not the most recently used first), so even
        # a lone client's consecutive transactions land on different sessions.
        "server_round_robin": "1",
        "query_wait_timeout": str(QUERY_WAIT_TIMEOUT_SECONDS),
        "logfile": "", "pidfile": "",
    })
    # Even with trust, PgBouncer only admits users named in the auth file.
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    path = directory / "pgbouncer.ini"
    with path.open("w") as out:
        config.write(out)
    return path


def _service_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):  # Debian's PostgreSQL user, else any unprivileged
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("pgbouncer will not run as root, and no postgres or nobody user exists")


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class PgBouncer:
    """One running child process; `url_for(direct_url)` rewrites a URL to go through it."""

    def __init__(self, direct_url: str, pool_size: int = POOL_SIZE) -> None:
        parts = urlsplit(direct_url)
        self.user = parts.username or "postgres"
        self.server = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.pool_size = pool_size
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="ywm-pgbouncer-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> pathlib.Path:
        return self.directory / "pgbouncer.log"

    def url_for(self, direct_url: str) -> str:
        parts = urlsplit(direct_url)
        netloc = f"{self.user}@127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def start(self) -> None:
        command = [binary()]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; hand it the cluster's service user.
            owner = _service_user()
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            command += ["-u", owner.pw_name]
        self.port = _free_port()
        ini = _write_config(self.directory, self.port, *self.server, self.user, self.pool_size)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command + [str(ini)], stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pgbouncer did not start:\n{self.log_text()}")
            time.sleep(0.05)

    def fill_pool(self, direct_url: str) -> None:
        """Open every server connection of the database's pool now: `min_pool_size` fills
        it only in the background, and until then all clients share one session."""
        held = [psycopg2.connect(self.url_for(direct_url)) for _ in range(self.pool_size)]
        try:
            for conn in held:  # each opens a transaction, which holds a server connection
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
            for conn in held:
                conn.rollback()  # back to the pool cleanly (a client closing mid-transaction
                # would make PgBouncer close that server connection instead)
        finally:
            for conn in held:
                conn.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # immediate shutdown: drops server conns
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def running(direct_url: str, pool_size: int = POOL_SIZE) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(direct_url, pool_size)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@contextlib.contextmanager
def served(direct_url: str) -> Iterator[str]:
    """`direct_url`, or the same database through a private PgBouncer when enabled()."""
    if not enabled():
        yield direct_url
        return
    with running(direct_url) as bouncer:
        bouncer.fill_pool(direct_url)
        yield bouncer.url_for(direct_url)
