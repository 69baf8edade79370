"""Load and bookkeeping for the fault tests and bench/cluster_faults.py, against a cluster
that deploy/local/cluster.sh started (the real script, in its own state directory).

- `LocalCluster`: runs cluster.sh commands (bounded) and reads its URL and certificate.
- `seed`: churches straight into PostgreSQL (tests/workers/bulk.py), with sessions
  written through the Sentinels, as a box would.
- `Fleet`: WebSocket clients through NGINX that resume from their last event id whenever
  their socket closes, recording per client every id received, gaps, duplicates, and
  how long each resume took (close seen → `hello` on the new socket).
- `Texts`: signed Telnyx inbound webhooks through NGINX at a fixed rate, recording each
  answer, so a test can check that every text answered 2xx is stored.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import secrets
import subprocess
import time
from typing import Any
from uuid import UUID

import tornado.httpclient
import tornado.websocket
import ujson

from server.platform.settings import Settings
from tests.workers.bulk import Church, seed_church, sql

REPO = pathlib.Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "deploy" / "local" / "cluster.sh"
FINAL = ("delivered", "failed", "canceled", "opted_out", "undelivered")
RESUME_SECONDS = 60.0  # one client keeps trying to resume this long
CONNECT_CONCURRENCY = 50


class LocalCluster:
    """cluster.sh in `state_dir` on database `db`."""

    def __init__(self, state_dir: pathlib.Path, db: str, env: dict[str, str] | None = None
                 ) -> None:
        self.state_dir = state_dir
        self.db = db
        self.env = dict(os.environ, YWM_CLUSTER_DIR=str(state_dir), **(env or {}))
        self.values: dict[str, str] = {}

    def run(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([str(CLUSTER_SH), *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        assert result.returncode == 0, f"cluster.sh {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def up(self, boxes: int) -> None:
        out = self.run("up", "--boxes", str(boxes), "--db", self.db, timeout=600)
        self.values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        assert self.values["BOXES"] == str(boxes)

    @property
    def url(self) -> str:
        return self.values["URL"]

    @property
    def ca_cert(self) -> str:
        return self.values["CA_CERT"]

    def status(self) -> dict[str, Any]:
        return ujson.loads(self.run("status").strip())  # type: ignore[no-any-return]

    def settings(self) -> Settings:
        """The boxes' settings, with PostgreSQL direct (assertions, seeding)."""
        from server.devtools.cluster import Cluster
        cluster = Cluster(self.state_dir)
        return Settings.from_env({**cluster.app_env(), "YWM_ENV": "test",
                                  "DATABASE_URL": cluster.direct_database_url()})

    def down(self) -> None:
        self.run("down", timeout=300)


# ---- seeding --------------------------------------------------------------------------
@dataclasses.dataclass
class Seeded:
    churches: list[Church]
    tokens: list[str]


async def seed(settings: Settings, churches: int, members: int = 5, bulk_members: int = 0,
               bulk_mps: int = 50) -> Seeded:
    """`churches` churches (the first with `bulk_members` extra members for a bulk send,
    its number sending `bulk_mps` a second, so the send lasts a while), each with a
    number and an admin session in the cluster's Redis."""
    from server.auth.sessions import create_session
    from server.platform.redis import client_for
    seeded = [seed_church(settings, members + (bulk_members if i == 0 else 0),
                          mps=bulk_mps if i == 0 else 1000, block=40 + i)
              for i in range(churches)]
    redis = client_for(settings)
    try:
        tokens = [(await create_session(redis, settings, church.id, UUID(int=index + 1),
                                        "admin")).access_token
                  for index, church in enumerate(seeded)]
    finally:
        await redis.aclose()
    return Seeded(seeded, tokens)


def heads(settings: Settings, churches: list[Church]) -> dict[str, int]:
    """The last committed event id of each church (PostgreSQL is the truth)."""
    rows = sql(settings, "SELECT church_id::text, max(id) FROM events WHERE church_id = "
               "ANY(%s::uuid[]) GROUP BY church_id", ([str(c.id) for c in churches],))
    found = {church: int(last) for church, last in rows}
    return {str(c.id): found.get(str(c.id), 0) for c in churches}


# ---- stream clients -------------------------------------------------------------------
@dataclasses.dataclass
class Client:
    church: str
    token: str
    start: int = -1  # the hello id of the first socket
    last: int = -1
    ids: list[int] = dataclasses.field(default_factory=list)
    gaps: int = 0
    duplicates: int = 0
    resyncs: int = 0
    resumes: int = 0
    failed: bool = False


class Fleet:
    def __init__(self, url: str, ca_cert: str) -> None:
        self.url = url.replace("https://", "wss://") + "/api/v1/stream"
        self.ca_cert = ca_cert
        self.clients: list[Client] = []
        self.resume_ms: list[float] = []
        self.replayed = 0
        self.close_codes: dict[str, int] = {}
        self.resume_errors: dict[str, int] = {}  # failed resume attempts, by error
        self._tasks: list[asyncio.Task[None]] = []
        self._gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self._stopping = False
        self._sockets: set[Any] = set()
        # the highest id any client of the church has seen (for "replayed")
        self.church_seen: dict[str, int] = {}

    async def open(self, seeded: Seeded, sockets: int) -> None:
        ready = []
        for index in range(sockets):
            church = seeded.churches[index % len(seeded.churches)]
            client = Client(str(church.id), seeded.tokens[index % len(seeded.tokens)])
            self.clients.append(client)
            started = asyncio.get_running_loop().create_future()
            ready.append(started)
            self._tasks.append(asyncio.ensure_future(self._run(client, started)))
        await asyncio.wait_for(asyncio.gather(*ready), 120)

    async def _connect(self, client: Client) -> Any:
        query = "" if client.last < 0 else f"?last_event_id={client.last}"
        request = tornado.httpclient.HTTPRequest(
            self.url + query, headers={"Authorization": f"Bearer {client.token}"},
            ca_certs=self.ca_cert, connect_timeout=20, request_timeout=20)
        async with self._gate:
            ws = await tornado.websocket.websocket_connect(request)
            try:
                raw = await asyncio.wait_for(ws.read_message(), 20)
            except BaseException:
                ws.close()
                raise
        hello = ujson.loads(raw) if raw is not None else {"type": "closed"}
        if hello["type"] != "hello":
            ws.close()
            raise ConnectionError(f"no hello: {hello}")
        if client.last < 0:
            client.start = client.last = int(hello["last_event_id"])
        return ws

    async def _run(self, client: Client, started: asyncio.Future[None]) -> None:
        try:
            ws = await self._connect(client)
        except Exception as exc:  # noqa: BLE001 - reported by open()
            started.set_exception(exc)
            return
        started.set_result(None)
        while True:
            self._sockets.add(ws)
            await self._read(client, ws)
            ws.close()  # closed by the server: release it on our side too
            self._sockets.discard(ws)
            code = str(ws.close_code)
            self.close_codes[code] = self.close_codes.get(code, 0) + 1
            if self._stopping or code == "4001":
                return
            ws = await self._resume(client)
            if ws is None:
                return

    async def _read(self, client: Client, ws: Any) -> None:
        while (raw := await ws.read_message()) is not None:
            frame = ujson.loads(raw)
            if frame["type"] == "resync_required":
                client.resyncs += 1
                continue
            if "id" not in frame:
                continue
            event_id = int(frame["id"])
            if event_id <= client.last:
                client.duplicates += 1
                continue
            if event_id != client.last + 1:
                client.gaps += 1
            client.last = event_id
            client.ids.append(event_id)
            if event_id > self.church_seen.get(client.church, 0):
                self.church_seen[client.church] = event_id

    async def _resume(self, client: Client) -> Any:
        closed_at = time.monotonic()
        before = client.last
        delay = 0.05
        while time.monotonic() - closed_at < RESUME_SECONDS and not self._stopping:
            try:
                ws = await self._connect(client)
            except Exception as exc:  # noqa: BLE001 - the cluster is still switching: retry
                kind = f"{type(exc).__name__} {getattr(exc, 'code', '')}".strip()
                self.resume_errors[kind] = self.resume_errors.get(kind, 0) + 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            self.resume_ms.append((time.monotonic() - closed_at) * 1000)
            client.resumes += 1
            # What this client had missed and the server replays: events its church's
            # other clients had already seen when this one came back.
            self.replayed += max(0, self.church_seen.get(client.church, 0) - before)
            return ws
        client.failed = True
        return None

    async def wait_caught_up(self, target: dict[str, int], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(c.last >= target[c.church] for c in self.clients if not c.failed):
                return True
            await asyncio.sleep(0.2)
        return False

    async def close(self) -> None:
        self._stopping = True
        for ws in list(self._sockets):
            ws.close()
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 60)

    def report(self, target: dict[str, int]) -> dict[str, Any]:
        """Every client must have received exactly the ids after its first hello."""
        missing = sum(len(set(range(c.start + 1, target[c.church] + 1)) - set(c.ids))
                      for c in self.clients)
        return {"sockets": len(self.clients), "resumes": sum(c.resumes for c in self.clients),
                "gaps": sum(c.gaps for c in self.clients), "missing": missing,
                "duplicates": sum(c.duplicates for c in self.clients),
                "resyncs": sum(c.resyncs for c in self.clients),
                "failed_clients": sum(1 for c in self.clients if c.failed),
                "replayed": self.replayed, "resume_ms": percentiles(self.resume_ms),
                "close_codes": dict(self.close_codes),
                "resume_errors": dict(self.resume_errors)}


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)
    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 1)}


# ---- inbound texts through NGINX --------------------------------------------------------
class Texts:
    def __init__(self, url: str, ca_cert: str, churches: list[Church]) -> None:
        self.url = url + "/webhooks/telnyx"
        self.ca_cert = ca_cert
        self.numbers = [c.number_phone for c in churches]
        self.answers: list[tuple[str, int]] = []  # (message id, HTTP status or 599)
        self.http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=64)

    async def send(self, rate: float, seconds: float | None = None,
                   until: asyncio.Future[Any] | None = None) -> None:
        """`rate` texts a second for `seconds`, or until `until` is done. A text falls due
        every 1/rate s; when this process stalls (its own sockets' reconnect storm), the
        texts that fell due meanwhile go out at once, so the count offered is exact."""
        pending: set[asyncio.Future[None]] = set()
        started, sent = time.monotonic(), 0

        def running(elapsed: float) -> bool:
            return (seconds is None or elapsed < seconds) and (until is None or not until.done())
        while True:
            elapsed = time.monotonic() - started
            due = int(min(elapsed, seconds if seconds is not None else elapsed) * rate)
            while sent < due:
                future = asyncio.ensure_future(self._one(sent))
                pending.add(future)
                future.add_done_callback(pending.discard)
                sent += 1
            if not running(elapsed):
                break
            await asyncio.sleep(0.01)
        await asyncio.gather(*pending)

    async def _one(self, index: int) -> None:
        from server.carriers.telnyx import signed_headers
        from server.platform.settings import DEV_TELNYX_PRIVATE_KEY
        message_id = f"fault-{secrets.token_hex(8)}"
        payload = {"record_type": "message", "id": message_id, "direction": "inbound",
                   "type": "SMS", "from": {"phone_number": f"+1415{5000000 + index:07d}"},
                   "to": [{"phone_number": self.numbers[index % len(self.numbers)]}],
                   "text": f"fault text {index}", "media": []}
        body = ujson.dumps({"data": {"record_type": "event", "event_type": "message.received",
                                     "id": secrets.token_hex(8),
                                     "occurred_at": "2026-01-01T00:00:00Z",
                                     "payload": payload}}).encode()
        headers = dict(signed_headers(DEV_TELNYX_PRIVATE_KEY, body),
                       **{"Content-Type": "application/json"})
        try:
            response = await self.http.fetch(self.url, method="POST", body=body,
                                             headers=headers, ca_certs=self.ca_cert,
                                             raise_error=False, request_timeout=60)
            self.answers.append((message_id, response.code))
        except Exception:  # noqa: BLE001 - no answer at all: counted as failed
            self.answers.append((message_id, 599))

    def accepted(self) -> list[str]:
        return [message_id for message_id, code in self.answers if 200 <= code < 300]

    def failed(self) -> int:
        return sum(1 for _, code in self.answers if not 200 <= code < 300)

    def lost(self, settings: Settings) -> int:
        """Texts answered 2xx that PostgreSQL does not hold."""
        accepted = self.accepted()
        stored = sql(settings, "SELECT count(DISTINCT provider_message_id) FROM "
                               "conversation_messages WHERE provider_message_id = ANY(%s)",
                     (accepted,))[0][0]
        return len(accepted) - int(stored)

    def close(self) -> None:
        self.http.close()


# ---- bulk send ------------------------------------------------------------------------
async def start_bulk(url: str, ca_cert: str, church: Church, token: str) -> str:
    http = tornado.httpclient.AsyncHTTPClient()
    response = await http.fetch(
        url + "/api/v1/messages", method="POST", ca_certs=ca_cert, raise_error=False,
        # Its own text, so the carrier's duplicate count (same from, to, text) is this send's.
        body=ujson.dumps({"body": f"Service moved to 11am ({secrets.token_hex(3)})",
                          "group_ids": [str(church.group_id)]}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "Idempotency-Key": secrets.token_hex(8)}, request_timeout=60)
    assert response.code == 202, response.body
    return str(ujson.loads(response.body)["data"]["id"])


def recipients_by_status(settings: Settings, message_id: str) -> dict[str, int]:
    rows = sql(settings, "SELECT status, count(*) FROM message_recipients WHERE "
                         "message_id = %s GROUP BY status", (message_id,))
    return {status: int(n) for status, n in rows}


async def wait_bulk_final(settings: Settings, message_id: str, seconds: float
                          ) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while True:
        counts = recipients_by_status(settings, message_id)
        if all(status in FINAL for status in counts) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.5)


def _sim(cluster: LocalCluster, path: str, body: Any = None) -> Any:
    import urllib.request

    from server.devtools.cluster import Cluster
    request = urllib.request.Request(
        Cluster(cluster.state_dir).sim_url() + path, method="GET" if body is None else "POST",
        data=None if body is None else ujson.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return ujson.loads(response.read())


def sim_duplicates(cluster: LocalCluster) -> int:
    """Texts the carrier simulator received more than once (same from, to and text)."""
    return int(_sim(cluster, "/control/received?limit=0")["duplicates"]["count"])


def sim_patient(cluster: LocalCluster) -> None:
    """Receipts keep coming through a busy or failing box: the simulator waits longer for
    a 2xx and tries more often than Telnyx's 2 s and 3 attempts (a shared test machine
    can take seconds to answer while a box restarts)."""
    _sim(cluster, "/control/config", {"webhook_timeout": 30.0, "webhook_attempts": 10,
                                      "webhook_retry_delay_ms": 1000.0})


# ---- scenarios (tests/deploy/test_cluster_faults.py, bench/cluster_faults.py) -----------
CATCH_UP_SECONDS = 90.0


async def run_fault(cluster: LocalCluster, seeded: Seeded, fault: list[str], sockets: int,
                    rate: float, seconds: float, bulk: bool = False) -> dict[str, Any]:
    """Sockets open, texts flowing (and a bulk send), then `cluster.sh <fault>` mid-load;
    returns what the clients saw once every socket caught up with PostgreSQL."""
    settings = cluster.settings()
    fleet = Fleet(cluster.url, cluster.ca_cert)
    texts = Texts(cluster.url, cluster.ca_cert, seeded.churches)
    loop = asyncio.get_running_loop()
    try:
        await fleet.open(seeded, sockets)
        bulk_id = await start_bulk(cluster.url, cluster.ca_cert, seeded.churches[0],
                                   seeded.tokens[0]) if bulk else None
        load = asyncio.ensure_future(texts.send(rate, seconds))
        await asyncio.sleep(min(1.5, seconds / 3))  # the fault lands mid-load (and mid-send)
        await loop.run_in_executor(None, lambda: cluster.run(*fault))
        await load
        report: dict[str, Any] = {}
        if bulk_id is not None:
            report["bulk"] = await wait_bulk_final(settings, bulk_id, 120)
            report["carrier_duplicates"] = sim_duplicates(cluster)
        return await _finish(fleet, texts, settings, seeded, report)
    finally:
        await fleet.close()
        texts.close()


async def run_rolling(cluster: LocalCluster, seeded: Seeded, sockets: int, rate: float
                      ) -> dict[str, Any]:
    """`restart-box` of every box in turn while texts flow the whole time."""
    settings = cluster.settings()
    fleet = Fleet(cluster.url, cluster.ca_cert)
    texts = Texts(cluster.url, cluster.ca_cert, seeded.churches)
    loop = asyncio.get_running_loop()

    async def every_box() -> None:
        for box in range(1, len(cluster.status()["boxes"]) + 1):
            await loop.run_in_executor(None, lambda: cluster.run("restart-box", str(box)))
    try:
        await fleet.open(seeded, sockets)
        restarts = asyncio.ensure_future(every_box())
        # Closed loop: each second's texts are answered before the next second's go, so a
        # machine too busy for `rate` slows the senders down instead of timing them out.
        while not restarts.done():
            await texts.send(rate, 1.0)
        await restarts
        return await _finish(fleet, texts, settings, seeded, {})
    finally:
        await fleet.close()
        texts.close()


async def _finish(fleet: Fleet, texts: Texts, settings: Settings, seeded: Seeded,
                  report: dict[str, Any]) -> dict[str, Any]:
    target = heads(settings, seeded.churches)
    caught_up = await fleet.wait_caught_up(target, CATCH_UP_SECONDS)
    report.update(fleet.report(target), caught_up=caught_up, texts=len(texts.answers),
                  texts_failed=texts.failed(), texts_lost=texts.lost(settings),
                  failed_answers=[a for a in texts.answers if not 200 <= a[1] < 300][:10])
    return report
