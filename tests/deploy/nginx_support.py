"""Real NGINX (Debian's package) in front of real `ywm web` processes, for the deploy tests.

NGINX runs as a foreground child (`daemon off;`) from a private prefix directory with its
own pid, logs, temp and cache paths and a self-signed certificate, on free loopback ports;
every wait is bounded and every process is stopped by the fixture that started it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from types import ModuleType
from typing import Any, Sequence

from tests.server.ops_support import answers, free_port, wait_until

REPO = pathlib.Path(__file__).resolve().parents[2]
ENSURE_NGINX = REPO / "deploy" / "nginx" / "ensure-nginx.sh"
START_SECONDS = 30  # a web process imports the app and opens its pools; NGINX is instant


def ensure_nginx() -> str:
    """The nginx binary, installed from Debian's package when missing (a failed install
    fails the test with the installer's words, it never skips)."""
    result = subprocess.run([str(ENSURE_NGINX)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"nginx could not be installed:\n{result.stderr}"
    return shutil.which("nginx") or "/usr/sbin/nginx"


def load_render() -> ModuleType:
    """deploy/nginx/render.py as a module (deploy/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("ywm_nginx_render",
                                                  REPO / "deploy" / "nginx" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a stuck child must not outlive the test
            process.kill()
            process.wait(timeout=15)


def _json_lines(path: pathlib.Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue  # a line still being written
    return lines


class WebBox:
    """One `ywm web` process (a box's web port) logging its JSON request lines to a file."""

    def __init__(self, settings: Any, workdir: pathlib.Path, **env: str) -> None:
        self.port = free_port()
        self.log = workdir / f"web-{self.port}.log"
        metrics_dir = workdir / f"metrics-{self.port}"  # a box's own, as on a real box
        metrics_dir.mkdir()
        self.env = dict(os.environ, DATABASE_URL=settings.database_url,
                        REDIS_URL=settings.redis_url, YWM_ENV="test", YWM_LOG_LEVEL="INFO",
                        PYTHONUNBUFFERED="1", YWM_METRICS_DIR=str(metrics_dir), **env)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "wb") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server", "web", "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        assert self.process is not None
        process = self.process
        assert wait_until(lambda: answers(self.port) or process.poll() is not None,
                          START_SECONDS), f"web on {self.port} did not answer"
        assert process.poll() is None, self.log.read_text()

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def requests(self) -> list[dict[str, Any]]:
        """The app's own request log lines (handlers/base.py `on_finish`)."""
        return [line for line in _json_lines(self.log) if line.get("msg") == "request"]

    def request_with_id(self, request_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """The log line of that request; the app logs it just after answering, so wait."""
        def find() -> dict[str, Any] | None:
            return next((r for r in self.requests() if r.get("request_id") == request_id),
                        None)
        return wait_until(find, timeout)


class Nginx:
    """deploy/nginx/ywm.conf rendered for `upstreams`, run in the foreground."""

    def __init__(self, nginx: str, upstreams: Sequence[str], **render_lists: Sequence[str]
                 ) -> None:
        self.nginx = nginx
        self.render = load_render()
        self.prefix = pathlib.Path(tempfile.mkdtemp(prefix="ywm-nginx-"))
        self.https_port, self.http_port = free_port(), free_port()
        self.certificate, key = self.render.ensure_certificate(self.prefix / "tls")
        self.render.write_prefix(
            self.prefix, upstreams=upstreams, https_listen=f"127.0.0.1:{self.https_port}",
            http_listen=f"127.0.0.1:{self.http_port}", certificate=self.certificate,
            certificate_key=key, **render_lists)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def command(self) -> list[str]:
        return [self.nginx if part == "nginx" else part
                for part in self.render.nginx_command(self.prefix)]

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the rendered files."""
        command = [part for part in self.command() if part not in ("-g", "daemon off;")]
        return subprocess.run(command + ["-t"], capture_output=True, text=True, timeout=30)

    def start(self) -> None:
        with open(self.prefix / "stderr.log", "wb") as out:
            self.process = subprocess.Popen(self.command(), stdout=out,
                                            stderr=subprocess.STDOUT)
        process = self.process
        assert wait_until(lambda: _accepts(self.https_port) or process.poll() is not None,
                          START_SECONDS), "nginx did not listen"
        assert process.poll() is None, self.errors()

    def errors(self) -> str:
        logs = [self.prefix / "stderr.log", self.prefix / "error.log"]
        return "\n".join(p.read_text(errors="replace") for p in logs if p.exists())

    def access_log(self) -> list[dict[str, Any]]:
        path = self.prefix / "logs" / "access.log"
        return _json_lines(path) if path.exists() else []

    def access_with_id(self, request_id: str, timeout: float = 10.0) -> dict[str, Any] | None:
        return wait_until(lambda: next((r for r in self.access_log()
                                        if r.get("request_id") == request_id), None), timeout)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
        shutil.rmtree(self.prefix, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class DyingBox:
    """A box that dies in the middle of every request: it reads the request head, then
    drops the connection without answering (what NGINX sees when a box is SIGKILLed
    while handling a request). Records the X-Request-ID of every request it swallowed."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.server.settimeout(0.2)  # so the loop notices stop() without a connection
        self.seen: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                except OSError:
                    continue
                self.seen.append(_request_id(head))

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self.server.close()


def _request_id(head: bytes) -> str:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-request-id":
            return value.strip()
    return ""
