"""Issues 5 and 11: inbound webhook → WebSocket frame latency, loss, memory and CPU per
frame, and connection storms.

`python -m bench.stream_fanout [--sockets 1000,10000] [--churches 100] [--rate 200]
    [--duration 20] [--processes 2] [--source webhook|direct] [--connect-concurrency 200]
    [--server-tree DIR]`

Issue 11's rows: `--source webhook --sockets 1000 --churches 50 --rate 200`;
`--source webhook --sockets 10000 --churches 100 --rate 100`; the storm adds
`--connect-concurrency 0` (every socket opened at once). A baseline in the same run:
`git archive <commit> | tar -x -C /tmp/base` then `--server-tree /tmp/base`.

A private database and Redis DB; `--churches` churches, each with an owner session and a
Telnyx number; `--processes` web processes on one port (SO_REUSEPORT, as in production).
For each socket count a load client runs in its OWN process (`--client` mode; a minimal
RFC 6455 client on raw asyncio transports, so it stays cheap), opens the sockets spread
evenly over the churches (bearer header), and records, for every frame, now − the send
time stamped in the text. A socket closed with 1001/1011/1013 reconnects with
`last_event_id` (after 0.5–2 s for 1013), as the web app does. The driver then posts
signed Telnyx `message.received` webhooks at `--rate` per second (round robin over the
churches), or commits and publishes the events itself (`--source direct`: the stream path
alone).

Reported per socket count: latency p50/p99/max (send stamp → frame parsed in the client);
`lost` and `duplicated` counted per socket (ids are gapless per church: every id after a
socket's first hello up to its church's final head must arrive exactly once, across its
resumes); `resumes`, `sockets_closed_early` by close code, `open_failed` (HTTP errors
before the upgrade) and `never_opened` (no hello by `--open-deadline`); server RSS per
socket; the web processes' CPU seconds per 1,000 delivered frames; and the load client's
CPU, for the open phase and the send phase, separately. Results:
var/bench/stream_fanout_<source>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import secrets
import signal
import subprocess
import sys
import time
from typing import Any

import redis
import ujson

from bench.procs import exit_on_sigterm, start_webs, stop_processes
from bench.resources import (cpu_seconds, drop_database, fresh_database, release_redis_db,
                             reserve_redis_db, url_for_database)

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"

CONNECT_CONCURRENCY = 200


# ---- the load client (its own process) ------------------------------------------------
# A socket the server sheds or restarts (1013 try again later, 1001 going away, 1011
# interrupted) reconnects with `last_event_id`, as the web app does; anything else ends it.
# API.md §7: 1008 (missed pings, slow consumer) and 1011 resume too; a connection lost
# without a close frame (None) is retried the same way. Only 4001 (sign in again) ends.
RESUME_CODES = (1001, 1008, 1011, 1013, None)
RECONNECT_DELAY_S = 0.05
# After 1013 the server is busy: come back after a random 0.5–2 s, so the shed sockets
# return spread out rather than as a second storm.
SHED_DELAY_S = (0.5, 2.0)


class _Socket:
    """One client socket: checks every event id follows the last (per church ids are
    gapless), so a lost frame, a duplicate and a resume that skipped are all counted."""

    __slots__ = ("index", "church", "start", "last", "frames", "dup", "gaps", "resumes",
                 "resyncs", "closed", "code", "stats")

    def __init__(self, index: int, church: int, stats: dict[str, Any]) -> None:
        self.index, self.church, self.stats = index, church, stats
        self.start: int | None = None  # the first hello's id
        self.last: int | None = None  # the last event id seen (the resume point)
        self.frames = self.dup = self.gaps = self.resumes = self.resyncs = 0
        self.closed: asyncio.Future | None = None
        self.code: int | None = None

    def on_message(self, raw: str | bytes | None) -> None:
        if raw is None:
            if self.closed is not None and not self.closed.done():
                self.closed.set_result(None)
            return
        assert isinstance(raw, str)
        if raw.startswith('{"id":"'):  # an event: parse only what we count (cheap client)
            event_id = int(raw[7:raw.index('"', 7)])
            last = self.last if self.last is not None else event_id - 1
            if event_id <= last:
                self.dup += 1
                return
            self.gaps += event_id - last - 1
            self.last = event_id
            self.frames += 1
            mark = raw.rfind("bench t=")
            if mark >= 0:
                stop = mark + 8
                while raw[stop].isdigit():
                    stop += 1
                self.stats["latencies"].append(time.monotonic_ns() - int(raw[mark + 8:stop]))
            return
        frame = ujson.loads(raw)
        if frame.get("type") == "hello":
            hello = int(frame["last_event_id"])
            if self.start is None:
                self.start = self.last = hello
            elif hello != self.last:  # a resume must start exactly where we stopped
                self.gaps += max(0, hello - (self.last or 0))
                self.last = hello
        elif frame.get("type") == "resync_required":
            self.resyncs += 1


class _OpenFailed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Wire(asyncio.Protocol):
    """A minimal RFC 6455 client on a raw asyncio transport: the upgrade request, then
    unmasked server frames parsed straight from the receive buffer. Tornado's client costs
    a coroutine step and a future per frame; at 10,000 sockets that made the load client,
    on the same cores, the bottleneck of what it measured."""

    def __init__(self, request: bytes, sock: _Socket) -> None:
        self.request, self.sock = request, sock
        self.buffer = bytearray()
        self.upgraded = False
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = int(bytes(self.buffer[:self.buffer.find(b"\r\n")]).split()[1])
            del self.buffer[:end + 4]
            if status != 101:
                self.opened.set_exception(_OpenFailed(status))
                self.transport.close()
                return
            self.upgraded = True
            self.opened.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buffer, pos, size = self.buffer, 0, len(self.buffer)
        while size - pos >= 2:
            opcode, length, head = buffer[pos] & 0x0F, buffer[pos + 1] & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buffer[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buffer[pos + 2:pos + 10], "big"), 10
            if size - pos < head + length:
                break
            payload = bytes(buffer[pos + head:pos + head + length])
            pos += head + length
            if opcode == 0x1:  # the server never fragments its frames
                self.sock.on_message(payload.decode())
            elif opcode == 0x9:
                self._send(0xA, payload)  # pong
            elif opcode == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 \
                    else 1005
                self._send(0x8, payload[:2])
                self.transport.close()
        del buffer[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)  # client frames are masked; control payloads are < 126 B
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the upgrade"))
        self.sock.on_message(None)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def _client(port: int, tokens: list[str], sockets: int, out: pathlib.Path,
                  concurrency: int, open_deadline: float) -> None:
    import base64
    stats: dict[str, Any] = {"latencies": [], "closes": {}, "open_failed": 0,
                             "open_errors": {}}
    socks = [_Socket(i, i % len(tokens), stats) for i in range(sockets)]
    stopping = False
    gate = asyncio.Semaphore(concurrency) if concurrency > 0 else None

    async def connect(sock: _Socket) -> Any:
        query = f"?last_event_id={sock.last}" if sock.last is not None else ""
        request = (f"GET /api/v1/stream{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                   f"Authorization: Bearer {tokens[sock.church]}\r\n\r\n").encode()
        loop = asyncio.get_running_loop()
        _, wire = await asyncio.wait_for(loop.create_connection(
            lambda: _Wire(request, sock), "127.0.0.1", port), 120)
        try:
            await asyncio.wait_for(asyncio.shield(wire.opened), 120)
        except BaseException:
            wire.close()
            raise
        return wire

    async def run(sock: _Socket) -> None:
        sheds = 0
        while not stopping:
            sock.closed = asyncio.get_running_loop().create_future()
            try:
                if gate is not None:
                    async with gate:
                        ws = await connect(sock)
                else:
                    ws = await connect(sock)
            except Exception as exc:  # noqa: BLE001 - an open that failed: counted, retried
                stats["open_failed"] += 1
                key = type(exc).__name__ + (f" {exc.code}" if hasattr(exc, "code") else "")
                stats["open_errors"][key] = stats["open_errors"].get(key, 0) + 1
                await asyncio.sleep(RECONNECT_DELAY_S)
                continue
            await sock.closed
            code = str(ws.close_code)
            stats["closes"][code] = stats["closes"].get(code, 0) + 1
            if stopping or ws.close_code not in RESUME_CODES:
                return
            sock.resumes += 1
            if ws.close_code == 1013:  # busy: back off, longer each time in a row
                sheds += 1
                await asyncio.sleep(random.uniform(*SHED_DELAY_S) * min(2 ** (sheds - 1), 8))
            else:
                sheds = 0
                await asyncio.sleep(RECONNECT_DELAY_S)
        return

    tasks = [asyncio.ensure_future(run(s)) for s in socks]
    started = time.monotonic()
    # Every socket has had its hello, or the open deadline passed (those never opened
    # are reported: a socket left without hello or close is a failed open too).
    while any(s.start is None for s in socks) and time.monotonic() - started < open_deadline:
        await asyncio.sleep(0.1)
    stats["never_opened"] = sum(1 for s in socks if s.start is None)
    print(f"READY {time.monotonic() - started:.2f}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, stop.set)
    progress = out.with_suffix(".progress")
    while not stop.is_set():
        progress.write_text(str(sum(s.frames for s in socks)))
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    stopping = True
    out.write_text(json.dumps({
        "frames": sum(s.frames for s in socks), "latencies_ns": stats["latencies"],
        "closed_early": stats["closes"], "open_failed": stats["open_failed"],
        "open_errors": stats["open_errors"], "never_opened": stats["never_opened"],
        "sockets": [[s.church, s.start, s.last, s.frames, s.dup, s.gaps, s.resumes,
                     s.resyncs] for s in socks]}))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print("DONE", flush=True)


# ---- the driver ----------------------------------------------------------------------
async def _seed(database_url: str, redis_url: str, churches: int
                ) -> tuple[list[str], list[str], list[str]]:
    """Churches with an owner session and a Telnyx number: (tokens, numbers, ids)."""
    from db.engine import Database
    from db.queries import churches as churches_q
    from db.queries import numbers as numbers_q
    from db.queries import users as users_q
    from server.auth.sessions import create_session
    from server.platform.settings import Settings
    settings = Settings.from_env({"YWM_ENV": "test", "DATABASE_URL": database_url,
                                  "REDIS_URL": redis_url})
    db = await Database.connect(database_url)
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    tokens, phones, ids = [], [], []
    for index in range(churches):
        async with db.transaction() as conn:
            church = await churches_q.insert_church(conn, f"Bench church {index}")
            user = await users_q.insert_user(conn, church["id"], f"o{index}@bench.example",
                                             "Owner", "owner", "scrypt$unused")
            phone = f"+1844666{index:04d}"
            await numbers_q.insert_number(conn, {
                "church_id": church["id"], "phone": phone, "provider": "telnyx",
                "messaging_profile_id": None, "mps": 10, "provider_handles_opt_out": False,
                "status": "linked"})
        assert user is not None
        pair = await create_session(client, settings, church["id"], user["id"], "owner")
        tokens.append(pair.access_token)
        phones.append(phone)
        ids.append(str(church["id"]))
    await client.aclose()
    await db.close()
    return tokens, phones, ids


async def _inject_direct(database_url: str, redis_url: str, church_ids: list[str],
                         rate: float, duration: float) -> tuple[int, list[int]]:
    """Events committed and published by this process (no webhook path): isolates the
    stream's own cost (hub, fan-out, sockets) from inbound processing."""
    from db.engine import Database
    from server.events.log import append_event, publish_events
    from server.platform.redis import connect_async
    db = await Database.connect(database_url, maxsize=8)
    client = connect_async(redis_url)
    answered: list[int] = []
    pending: set[asyncio.Future] = set()

    async def one(church_id: str) -> None:
        started = time.monotonic_ns()
        try:
            async with db.transaction() as conn:
                event = await append_event(conn, church_id, "message.received", {
                    "message": {"body": f"bench t={started}"}})
        except Exception:  # noqa: BLE001 - counted as failed (-1): the box is saturated
            answered.append(-1)
            return
        await publish_events(client, [event])
        answered.append(time.monotonic_ns() - started)

    sent = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < duration:
        while sent < int(elapsed * rate):
            future = asyncio.ensure_future(one(church_ids[sent % len(church_ids)]))
            pending.add(future)
            future.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*pending)
    await client.aclose()
    await db.close()
    return sent, answered


async def _inject(port: int, phones: list[str], rate: float, duration: float
                  ) -> tuple[int, list[int]]:
    """Signed Telnyx inbound webhooks at `rate`/s; each text carries its send time."""
    import tornado.httpclient

    from server.carriers.telnyx import signed_headers as telnyx_headers
    from server.platform.settings import DEV_TELNYX_PRIVATE_KEY
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=256)
    pending: set[asyncio.Future] = set()
    answered: list[int] = []  # webhook response times, ns
    sent = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < duration:
        due = int(elapsed * rate)
        while sent < due:
            payload = {"record_type": "message", "id": secrets.token_hex(8),
                       "direction": "inbound", "type": "SMS",
                       "from": {"phone_number": f"+1415{3000000 + sent % 5000:07d}"},
                       "to": [{"phone_number": phones[sent % len(phones)]}],
                       "text": f"bench t={time.monotonic_ns()}", "media": []}
            body = ujson.dumps({"data": {"record_type": "event",
                                         "event_type": "message.received",
                                         "id": secrets.token_hex(8),
                                         "occurred_at": "2026-01-01T00:00:00Z",
                                         "payload": payload}}).encode()
            headers = dict(telnyx_headers(DEV_TELNYX_PRIVATE_KEY, body),
                           **{"Content-Type": "application/json"})
            future = asyncio.ensure_future(_timed(http.fetch(
                f"http://127.0.0.1:{port}/webhooks/telnyx", method="POST", body=body,
                headers=headers, raise_error=True, request_timeout=120), answered))
            pending.add(future)
            future.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*pending)
    http.close()
    return sent, answered


async def _timed(awaitable: Any, into: list[int]) -> None:
    started = time.monotonic_ns()
    try:
        await awaitable
    except Exception:  # noqa: BLE001 - counted as a failed webhook (-1)
        into.append(-1)
        return
    into.append(time.monotonic_ns() - started)


def _rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


async def _heads(database_url: str, church_ids: list[str]) -> list[int]:
    """Each church's last committed event id, in `church_ids` order."""
    from db.engine import Database
    from db.queries import events as q
    db = await Database.connect(database_url, maxsize=2)
    try:
        async with db.acquire() as conn:
            return [await q.last_event_id(conn, church) for church in church_ids]
    finally:
        await db.close()


def _socket_counts(sockets: list[list[Any]], heads: list[int]) -> dict[str, int]:
    """Per socket: ids are gapless per church, so every id after its first hello up to the
    church's head must have arrived exactly once."""
    lost = dup = resumes = resyncs = 0
    for church, start, last, frames, dups, gaps, sock_resumes, sock_resyncs in sockets:
        if start is None:
            continue
        lost += gaps + max(0, heads[church] - (last if last is not None else start))
        dup += dups
        resumes += sock_resumes
        resyncs += sock_resyncs
    return {"lost": lost, "duplicated": dup, "resumes": resumes, "resyncs": resyncs}


def _wait_for_frames(progress: pathlib.Path, expected: int, stall_s: float = 5.0) -> None:
    """Until the client has every frame, or its count stops growing for `stall_s`."""
    last, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < stall_s:
        try:
            count = int(progress.read_text() or 0)
        except (OSError, ValueError):
            count = last
        if count >= expected:
            return
        if count != last:
            last, last_change = count, time.monotonic()
        time.sleep(0.2)


def _pct(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1e6


def _run_one(args: argparse.Namespace, sockets: int, tokens_file: pathlib.Path,
             phones: list[str], church_ids: list[str], pids: list[int]) -> dict[str, Any]:
    out = OUT / f"stream_client_{sockets}.json"
    rss_before = _rss_kb(pids)
    client = subprocess.Popen(
        [sys.executable, "-m", "bench.stream_fanout", "--client", "--port", str(args.port),
         "--tokens", str(tokens_file), "--sockets", str(sockets), "--out", str(out),
         "--connect-concurrency", str(args.connect_concurrency),
         "--open-deadline", str(args.open_deadline)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        connect_started = time.monotonic()
        assert client.stdout is not None
        line = client.stdout.readline().strip()
        if not line.startswith("READY"):
            raise RuntimeError(f"load client failed: {line!r}")
        connect_s = time.monotonic() - connect_started
        client_connect_cpu = cpu_seconds([client.pid])
        time.sleep(1.0)  # let the server settle its buffers
        rss_after = _rss_kb(pids)
        cpu_before = cpu_seconds(pids)
        client_cpu_before = cpu_seconds([client.pid])
        inject_started = time.monotonic()
        if args.source == "webhook":
            sent, answered = asyncio.run(_inject(args.port, phones, args.rate, args.duration))
        else:
            sent, answered = asyncio.run(_inject_direct(
                args.database_url, args.redis_url, church_ids, args.rate, args.duration))
        inject_s = time.monotonic() - inject_started
        expected = int(sum(1 for a in answered if a >= 0) * sockets / len(phones))
        _wait_for_frames(out.with_suffix(".progress"), expected, args.stall)
        cpu_used = cpu_seconds(pids) - cpu_before
        client_cpu = cpu_seconds([client.pid]) - client_cpu_before
        wall = time.monotonic() - inject_started
        heads = asyncio.run(_heads(args.database_url, church_ids))
        client.send_signal(signal.SIGUSR1)
        client.stdout.readline()
        client.wait(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
    result = ujson.loads(out.read_text())
    latencies = sorted(result["latencies_ns"])
    per_church = sockets / len(phones)
    frames = result["frames"]
    return {"source": args.source, "sockets": sockets, "churches": len(phones),
            "rate_per_s": args.rate,
            "duration_s": args.duration, "webhooks": sent,
            "frames_expected": int(sum(1 for a in answered if a >= 0) * per_church),
            "frames_delivered": frames, "sockets_closed_early": result["closed_early"],
            "open_failed": result["open_failed"], "open_errors": result["open_errors"],
            "never_opened": result["never_opened"],
            **_socket_counts(result["sockets"], heads),
            "p50_ms": round(_pct(latencies, 0.50), 2), "p99_ms": round(_pct(latencies, 0.99), 2),
            "max_ms": round(latencies[-1] / 1e6, 2) if latencies else None,
            "inject_failed": sum(1 for a in answered if a < 0),
            "achieved_rate_per_s": round(sum(1 for a in answered if a >= 0) / inject_s, 1),
            "inject_p50_ms": round(_pct(sorted(a for a in answered if a >= 0), 0.50), 2),
            "inject_p99_ms": round(_pct(sorted(a for a in answered if a >= 0), 0.99), 2),
            "load_avg_1m": os.getloadavg()[0],
            "connect_s": round(connect_s, 1), "connect_concurrency": args.connect_concurrency,
            "client_connect_cpu_s": round(client_connect_cpu, 2),
            "rss_per_socket_kb": round((rss_after - rss_before) / sockets, 1),
            "web_cpu_s": round(cpu_used, 2), "wall_s": round(wall, 1),
            "client_cpu_s": round(client_cpu, 2),
            "cpu_ms_per_1000_frames": round(cpu_used * 1000 / max(frames, 1) * 1000, 1)}


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--sockets", default="1000,10000")
    parser.add_argument("--churches", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--port", type=int, default=8890)
    parser.add_argument("--connect-concurrency", type=int, default=CONNECT_CONCURRENCY,
                        help="sockets the client opens at a time; 0: all at once (a storm)")
    parser.add_argument("--open-deadline", type=float, default=300.0,
                        help="stop waiting for every socket's hello after this long")
    parser.add_argument("--server-tree", default=str(ROOT),
                        help="run the web processes from this source tree (a baseline)")
    parser.add_argument("--stall", type=float, default=30.0,
                        help="stop waiting for frames after this long without one")
    parser.add_argument("--source", choices=("webhook", "direct"), default="webhook",
                        help="signed webhooks to the web processes, or events committed "
                             "and published by the driver (the stream path alone)")
    args = parser.parse_args(argv)
    if args.client:
        tokens = ujson.loads(pathlib.Path(args.tokens).read_text())
        asyncio.run(_client(args.port, tokens, int(args.sockets), pathlib.Path(args.out),
                            args.connect_concurrency, args.open_deadline))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    database_url = fresh_database(url_for_database(f"ywm_bench_stream_{os.getpid()}"))
    redis_url, redis_lock = reserve_redis_db()
    procs: list[subprocess.Popen] = []
    try:
        tokens, phones, church_ids = asyncio.run(_seed(database_url, redis_url,
                                                       args.churches))
        args.database_url, args.redis_url = database_url, redis_url
        tokens_file = OUT / "stream_tokens.json"
        tokens_file.write_text(ujson.dumps(tokens))
        env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url,
                   YWM_ENV="test", YWM_LOG_LEVEL="WARNING",
                   YWM_USER_RATE_BURST="1000000", YWM_AUTH_RATE_BURST="1000000")
        web_log = OUT / "stream_fanout_web.log"
        web_log.write_text("")
        procs = start_webs(env, args.port, args.processes, web_log,
                           pathlib.Path(args.server_tree))
        print(f"web pids {[p.pid for p in procs]}; log {web_log}", flush=True)
        pids = [p.pid for p in procs]
        reports = []
        for sockets in (int(s) for s in args.sockets.split(",")):
            report = _run_one(args, sockets, tokens_file, phones, church_ids, pids)
            report["server_tree"] = args.server_tree
            print(json.dumps(report), flush=True)
            reports.append(report)
        (OUT / f"stream_fanout_{args.source}.json").write_text(json.dumps(reports, indent=2))
        return 0
    finally:
        stop_processes(procs)
        drop_database(database_url)
        release_redis_db(redis_url, redis_lock)


if __name__ == "__main__":
    sys.exit(main())
