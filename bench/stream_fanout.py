"""Issue 5 benchmark: inbound webhook → WebSocket frame latency, memory and CPU per frame.

`python -m bench.stream_fanout [--sockets 1000,10000] [--churches 100] [--rate 200]
                               [--duration 20] [--processes 2]`

A private database and Redis DB; `--churches` churches, each with an owner session and a
Telnyx number; `--processes` `ywm web` processes on one port (SO_REUSEPORT, as in
production). For each socket count a load client runs in its OWN process
(`--client` mode), opens the sockets spread evenly over the churches (bearer header), and
records, for every frame, now − the send time stamped in the text. The driver then posts
signed Telnyx `message.received` webhooks at `--rate` per second (round robin over the
churches), each the full inbound path (verify, one transaction with the event row,
commit, PUBLISH); the hub of every web process fans out to its sockets of that church.

Reported per socket count: latency p50/p99/max (webhook POST start → frame parsed in the
client), frames expected vs delivered, server RSS per socket (web processes' RSS after
connecting minus before, divided by sockets), and the web processes' CPU seconds per
1,000 delivered frames. Results: var/bench/stream_fanout.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time
from typing import Any

import redis
import ujson

from bench.carriers_inbound import (OUT, REDIS_BASE, ROOT, _create_db, _drop_db,
                                    _start_web, _take_redis_db)
from bench.procs import exit_on_sigterm, stop_processes

CONNECT_CONCURRENCY = 200
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- the load client (its own process) ------------------------------------------------
async def _client(port: int, tokens: list[str], sockets: int, out: pathlib.Path) -> None:
    import tornado.httpclient
    import tornado.websocket
    latencies: list[int] = []
    per_church = [0] * len(tokens)  # frames received, by church (token) index
    closes: dict[str, int] = {}
    conns: list[Any] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(index: int) -> None:
        request = tornado.httpclient.HTTPRequest(
            f"ws://127.0.0.1:{port}/api/v1/stream",
            headers={"Authorization": f"Bearer {tokens[index % len(tokens)]}"},
            connect_timeout=60, request_timeout=60)
        async with gate:
            ws = await tornado.websocket.websocket_connect(request)
            await ws.read_message()  # hello
        conns.append(ws)
        while (raw := await ws.read_message()) is not None:
            now = time.monotonic_ns()
            body = ujson.loads(raw)["data"]["message"]["body"]
            latencies.append(now - int(body.split("t=", 1)[1]))
            per_church[index % len(tokens)] += 1
        key = str(ws.close_code)
        closes[key] = closes.get(key, 0) + 1

    tasks = [asyncio.ensure_future(one(i)) for i in range(sockets)]
    while len(conns) < sockets:
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        await asyncio.sleep(0.1)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, stop.set)
    progress = out.with_suffix(".progress")
    while not stop.is_set():
        progress.write_text(str(len(latencies)))
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    out.write_text(json.dumps({"frames": len(latencies), "latencies_ns": latencies,
                               "closed_early": closes, "per_church": per_church}))
    for ws in conns:
        ws.close()
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


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def _short_churches(per_church: list[int], sent: int, sockets: int) -> dict[int, int]:
    """Church index → frames missing (events go round robin over the churches)."""
    churches = len(per_church)
    short = {}
    for index, got in enumerate(per_church):
        events = sent // churches + (1 if index < sent % churches else 0)
        listeners = sockets // churches + (1 if index < sockets % churches else 0)
        if got < events * listeners:
            short[index] = events * listeners - got
    return short


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
         "--tokens", str(tokens_file), "--sockets", str(sockets), "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        connect_started = time.monotonic()
        assert client.stdout is not None
        line = client.stdout.readline().strip()
        if line != "READY":
            raise RuntimeError(f"load client failed: {line!r}")
        connect_s = time.monotonic() - connect_started
        time.sleep(1.0)  # let the server settle its buffers
        rss_after = _rss_kb(pids)
        cpu_before = _cpu_s(pids)
        client_cpu_before = _cpu_s([client.pid])
        inject_started = time.monotonic()
        if args.source == "webhook":
            sent, answered = asyncio.run(_inject(args.port, phones, args.rate, args.duration))
        else:
            sent, answered = asyncio.run(_inject_direct(
                args.database_url, args.redis_url, church_ids, args.rate, args.duration))
        inject_s = time.monotonic() - inject_started
        expected = int(sum(1 for a in answered if a >= 0) * sockets / len(phones))
        _wait_for_frames(out.with_suffix(".progress"), expected, args.stall)
        cpu_used = _cpu_s(pids) - cpu_before
        client_cpu = _cpu_s([client.pid]) - client_cpu_before
        wall = time.monotonic() - inject_started
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
            "short_churches": _short_churches(result["per_church"], sent, sockets),
            "p50_ms": round(_pct(latencies, 0.50), 2), "p99_ms": round(_pct(latencies, 0.99), 2),
            "max_ms": round(latencies[-1] / 1e6, 2) if latencies else None,
            "inject_failed": sum(1 for a in answered if a < 0),
            "achieved_rate_per_s": round(sum(1 for a in answered if a >= 0) / inject_s, 1),
            "inject_p50_ms": round(_pct(sorted(a for a in answered if a >= 0), 0.50), 2),
            "inject_p99_ms": round(_pct(sorted(a for a in answered if a >= 0), 0.99), 2),
            "load_avg_1m": os.getloadavg()[0],
            "connect_s": round(connect_s, 1),
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
    parser.add_argument("--stall", type=float, default=30.0,
                        help="stop waiting for frames after this long without one")
    parser.add_argument("--source", choices=("webhook", "direct"), default="webhook",
                        help="signed webhooks to the web processes, or events committed "
                             "and published by the driver (the stream path alone)")
    args = parser.parse_args(argv)
    if args.client:
        tokens = ujson.loads(pathlib.Path(args.tokens).read_text())
        asyncio.run(_client(args.port, tokens, int(args.sockets), pathlib.Path(args.out)))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    database_url = _create_db()
    redis_url, redis_lock = _take_redis_db()
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
        procs = _start_web(env, args.port, args.processes)
        pids = [p.pid for p in procs]
        reports = []
        for sockets in (int(s) for s in args.sockets.split(",")):
            report = _run_one(args, sockets, tokens_file, phones, church_ids, pids)
            print(json.dumps(report), flush=True)
            reports.append(report)
        (OUT / f"stream_fanout_{args.source}.json").write_text(json.dumps(reports, indent=2))
        return 0
    finally:
        stop_processes(procs)
        _drop_db(database_url)
        redis.Redis.from_url(redis_url).flushdb()
        redis.Redis.from_url(f"{REDIS_BASE}/0").delete(redis_lock)


if __name__ == "__main__":
    sys.exit(main())
