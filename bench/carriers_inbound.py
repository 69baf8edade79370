"""Issue 4/11 benchmark: sustained signed, durable carrier webhooks/s on all cores, with p99.

`python -m bench.carriers_inbound [--mix inbound|receipts|mixed] [--carrier telnyx|twilio]
[--duration 20] [--connections 32] [--churches 20] [--otel off|sink]`

A private database (migrated, dropped at the end) and Redis DB; `--churches` churches with
one number each; `--processes` web processes (default: cores) bound to one port with
SO_REUSEPORT, exactly as production runs them. Every webhook is pre-signed (Telnyx
Ed25519, or Twilio HMAC-SHA1 over the public URL) and sent once (unique event ids):

- inbound: `message.received` from `--handsets` distinct phones, so the run mixes
  new-member creation with conversation upserts. Full path: verify, one transaction
  (dedupe row, number → church, member, conversation upsert, message, event row),
  commit, PUBLISH.
- receipts: delivery receipts for outbound rows seeded with provider message ids (3 of 4
  broadcast recipients, 1 of 4 conversation messages, status `sending`): a `sent` then a
  `delivered` receipt per row (Telnyx `message.sent` / `message.finalized`, Twilio status
  callbacks), the `delivered` ones a block later in the file, as a carrier posts them.
- mixed (default): the issue's "inbound + receipts mixed", 1 inbound : 2 receipts.

The run checks itself: every webhook answered 2xx must have its dedupe row (committed),
and every committed receipt must have moved its row (a `sent` receipt leaves it `sent` or
`delivered`, a `delivered` one `delivered`); the report's `check` says so and the exit
status is 1 when it fails.

`--otel sink` turns tracing on in the web processes (YWM_OTEL_ENDPOINT) and points it at
a stand-in collector in this process that decodes each OTLP/HTTP export, counts its
spans and drops them: the web processes then pay for spans, their batching and export
(protobuf encoding and HTTP posts), which the CPU columns measure against `--otel off`.
"""
from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import uuid

import psycopg2
import psycopg2.extras
import ujson

from bench.procs import exit_on_sigterm, start_webs, stop_processes
from bench.resources import (cpu_seconds, drop_database, fresh_database,
                             release_redis_db, reserve_redis_db, url_for_database)

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"
TWILIO_SID = "ACdev00000000000000000000000000000"  # Settings default (YWM_TWILIO_ACCOUNT_SID)
RECEIPT_BLOCK = 500  # rows whose `sent` receipts precede their `delivered` ones


async def _seed(database_url: str, churches: int, provider: str = "telnyx") -> list[str]:
    from db.engine import Database
    from db.queries import churches as churches_q
    from db.queries import numbers as numbers_q
    db = await Database.connect(database_url)
    phones = []
    async with db.transaction() as conn:
        for index in range(churches):
            church = await churches_q.insert_church(conn, f"Bench church {index}")
            phone = f"+1844555{index:04d}"
            await numbers_q.insert_number(conn, {
                "church_id": church["id"], "phone": phone, "provider": provider,
                "messaging_profile_id": None, "mps": 10, "provider_handles_opt_out": False,
                "status": "linked"})
            phones.append(phone)
    await db.close()
    return phones


# Outbound rows the receipts move, per church: one broadcast with its recipients and one
# conversation message per conversation, all `sending` with a provider id, as the send
# worker leaves them once the carrier accepted. md5 bytes stand in for ciphertexts.
_SEED_OUTBOUND = """
WITH n AS (SELECT church_id, id FROM numbers WHERE phone = %(phone)s),
b AS (INSERT INTO messages (church_id, number_id, body, status, recipient_count)
      SELECT church_id, id, 'Service moved to 11am', 'sending', %(recipients)s FROM n
      RETURNING church_id, id, number_id),
r AS (INSERT INTO message_recipients (church_id, message_id, member_id, number_id, phone_enc,
                                      phone_hash, status, provider, provider_message_id,
                                      attempts)
      SELECT b.church_id, b.id, gen_random_uuid(), b.number_id,
             decode(md5('r' || i || b.id::text), 'hex'),
             decode(md5('h' || i || b.id::text), 'hex'), 'sending', %(provider)s,
             %(prefix)s || replace(gen_random_uuid()::text, '-', ''), 1
        FROM b, generate_series(1, %(recipients)s) AS i
      RETURNING church_id, provider_message_id),
m AS (INSERT INTO members (church_id, first_name, last_name, phone_enc, phone_hash)
      SELECT n.church_id, 'Bench', 'Member ' || i, decode(md5('m' || i || n.id::text), 'hex'),
             decode(md5('p' || i || n.id::text), 'hex')
        FROM n, generate_series(1, %(conversations)s) AS i
      RETURNING church_id, id),
c AS (INSERT INTO conversations (church_id, member_id, number_id)
      SELECT m.church_id, m.id, n.id FROM m, n RETURNING church_id, id, number_id),
cm AS (INSERT INTO conversation_messages (church_id, conversation_id, direction, body,
                                          status, number_id, provider, provider_message_id,
                                          attempts)
       SELECT c.church_id, c.id, 'outbound', 'See you Sunday', 'sending', c.number_id,
              %(provider)s, %(prefix)s || replace(gen_random_uuid()::text, '-', ''), 1
         FROM c
       RETURNING church_id, provider_message_id)
SELECT church_id, provider_message_id FROM r
UNION ALL SELECT church_id, provider_message_id FROM cm
"""


def _seed_outbound(database_url: str, numbers: list[str], rows: int, provider: str
                   ) -> list[tuple[str, str, str]]:
    """`rows` outbound rows spread over the churches' numbers: (church id, our number,
    provider message id), interleaved across churches."""
    per_church = -(-rows // len(numbers))
    conversations = per_church // 4
    conn = psycopg2.connect(database_url)
    by_number: list[list[tuple[str, str, str]]] = []
    with conn, conn.cursor() as cur:
        for phone in numbers:
            cur.execute(_SEED_OUTBOUND, {
                "phone": phone, "recipients": per_church - conversations,
                "conversations": conversations, "provider": provider,
                "prefix": "SM" if provider == "twilio" else ""})
            by_number.append([(str(church), phone, pid) for church, pid in cur.fetchall()])
        cur.execute("ANALYZE")
    conn.close()
    mixed = [row for group in zip(*by_number) for row in group]
    return mixed[:rows]


def _telnyx_line(body: bytes, timestamp: str) -> str:
    from server.carriers.telnyx import sign as telnyx_sign
    from server.platform.settings import DEV_TELNYX_PRIVATE_KEY
    sig = telnyx_sign(DEV_TELNYX_PRIVATE_KEY, timestamp, body)
    return (f"/webhooks/telnyx\tapplication/json\ttelnyx-signature-ed25519\t{sig}\t"
            f"telnyx-timestamp\t{timestamp}\t{body.decode()}\n")


def _twilio_line(params: dict[str, str], public_url: str) -> str:
    from urllib.parse import urlencode
    from server.carriers import twilio
    from server.platform.settings import DEV_TWILIO_AUTH_TOKEN
    sig = twilio.signature(DEV_TWILIO_AUTH_TOKEN, public_url + "/webhooks/twilio", params)
    return (f"/webhooks/twilio\tapplication/x-www-form-urlencoded\t{twilio.SIGNATURE_HEADER}"
            f"\t{sig}\t-\t-\t{urlencode(params)}\n")


def _inbound(carrier: str, i: int, numbers: list[str], handsets: int, timestamp: str,
             public_url: str) -> tuple[str, str]:
    """One signed inbound text line and the event id our server dedupes it by."""
    handset, ours = f"+1415{2000000 + i % handsets:07d}", numbers[i % len(numbers)]
    text = f"See you Sunday, message {i}"
    if carrier == "twilio":
        sid = "SM" + uuid.uuid4().hex
        return _twilio_line({"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
                             "AccountSid": TWILIO_SID, "From": handset, "To": ours,
                             "Body": text, "NumMedia": "0", "NumSegments": "1",
                             "SmsStatus": "received", "ApiVersion": "2010-04-01"},
                            public_url), sid
    payload = {"record_type": "message", "id": str(uuid.uuid4()), "direction": "inbound",
               "type": "SMS", "from": {"phone_number": handset},
               "to": [{"phone_number": ours, "status": "webhook_delivered"}],
               "text": text, "media": []}
    event_id = str(uuid.uuid4())
    return _telnyx_line(_telnyx_envelope("message.received", event_id, payload),
                        timestamp), event_id


def _telnyx_envelope(event_type: str, event_id: str, payload: dict) -> bytes:
    return ujson.dumps({"data": {"record_type": "event", "event_type": event_type,
                                 "id": event_id, "occurred_at": "2026-01-01T00:00:00Z",
                                 "payload": payload}, "meta": {"attempt": 1}},
                       escape_forward_slashes=False).encode()


def _receipt(carrier: str, row: tuple[str, str, str], status: str, i: int, timestamp: str,
             public_url: str) -> tuple[str, str]:
    """One signed receipt line for `row` and the event id our server dedupes it by."""
    _, ours, pid = row
    handset = f"+1415{3000000 + i:07d}"
    if carrier == "twilio":
        params = {"MessageSid": pid, "SmsSid": pid, "AccountSid": TWILIO_SID, "From": ours,
                  "To": handset, "MessageStatus": status, "SmsStatus": status,
                  "ApiVersion": "2010-04-01"}
        return _twilio_line(params, public_url), f"{pid}:{status}"
    # The simulator's payload shape (server/carriers/simulator/carriers.py telnyx_message).
    payload = {"record_type": "message", "id": pid, "direction": "outbound", "type": "SMS",
               "from": {"phone_number": ours, "carrier": "TELNYX LLC", "line_type": "VoIP"},
               "to": [{"phone_number": handset, "status": status,
                       "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"}],
               "text": "Service moved to 11am", "encoding": "GSM-7", "parts": 1,
               "errors": [], "sent_at": "2026-01-01T00:00:00.000+00:00",
               "completed_at": None if status == "sent" else "2026-01-01T00:00:01.000+00:00"}
    event_id = str(uuid.uuid4())
    event_type = "message.sent" if status == "sent" else "message.finalized"
    return _telnyx_line(_telnyx_envelope(event_type, event_id, payload), timestamp), event_id


def _write_webhooks(path: pathlib.Path, count: int, numbers: list[str], handsets: int,
                    mix: str = "inbound", carrier: str = "telnyx",
                    rows: list[tuple[str, str, str]] | None = None, public_url: str = ""
                    ) -> list[tuple[str, str | None, str | None, str]]:
    """Write `count` signed webhooks in `mix`; returns every event written as (event id,
    church id, provider message id, status), the last three None/"inbound" for inbound
    texts, for the correctness check."""
    timestamp = str(int(time.time()) + 60)  # valid for the whole run (300 s window)
    events: list[tuple[str, str | None, str | None, str]] = []
    pending = _receipt_order(rows or [])
    with path.open("w") as out:
        for i in range(count):
            if mix == "inbound" or (mix == "mixed" and i % 3 == 0) or not pending:
                line, event_id = _inbound(carrier, i, numbers, handsets, timestamp, public_url)
                out.write(line)
                events.append((event_id, None, None, "inbound"))
                continue
            row, status = pending.pop()
            line, event_id = _receipt(carrier, row, status, i, timestamp, public_url)
            out.write(line)
            events.append((event_id, row[0], row[2], status))
    return events


def _receipt_order(rows: list[tuple[str, str, str]]) -> list[tuple[tuple[str, str, str], str]]:
    """Receipts in carrier order, reversed for pop(): per block of rows, every `sent`, then
    every `delivered` (a delivery report follows its `sent` by a moment, so other texts'
    receipts come in between)."""
    order = []
    for start in range(0, len(rows), RECEIPT_BLOCK):
        block = rows[start:start + RECEIPT_BLOCK]
        order += [(row, "sent") for row in block] + [(row, "delivered") for row in block]
    order.reverse()
    return order


def _wrk(port: int, webhooks: pathlib.Path, threads: int, connections: int,
         duration: int) -> dict[str, float]:
    env = dict(os.environ, WRK_WEBHOOKS=str(webhooks), WRK_THREADS=str(threads))
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
         "-s", str(ROOT / "bench" / "carrier_webhooks.lua"), f"http://127.0.0.1:{port}"],
        env=env, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    return json.loads(line[len("WRK_JSON "):])


def _backend_pids(database_url: str) -> list[int]:
    conn = psycopg2.connect(database_url)
    with conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()")
        pids = [row[0] for row in cur.fetchall()]
    conn.close()
    return pids


def _count(database_url: str) -> dict[str, int]:
    conn = psycopg2.connect(database_url)
    with conn.cursor() as cur:
        counts = {}
        for table in ("inbound_dedupe", "conversation_messages", "members", "conversations",
                      "events", "early_receipts"):
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
        cur.execute("SELECT status, count(*) FROM message_recipients GROUP BY 1 ORDER BY 1")
        counts.update({f"recipients_{status}": n for status, n in cur.fetchall()})
    conn.close()
    return counts


# Committed receipts (their dedupe row exists) whose row is not where the receipt moves it.
_UNMOVED = """
SELECT b.status, count(*) AS committed,
       count(*) FILTER (WHERE COALESCE(r.status, m.status, 'missing') <> ALL(
           CASE b.status WHEN 'sent' THEN ARRAY['sent', 'delivered'] ELSE ARRAY['delivered']
           END)) AS unmoved
  FROM bench_events b
  JOIN inbound_dedupe d ON d.provider = %(provider)s AND d.provider_event_id = b.event_id
  LEFT JOIN message_recipients r
         ON r.church_id = b.church_id AND r.provider_message_id = b.pid
  LEFT JOIN conversation_messages m
         ON m.church_id = b.church_id AND m.provider_message_id = b.pid
 WHERE b.status <> 'inbound'
 GROUP BY b.status
"""

# Dedupe rows that are none of the events this run wrote (another run's events reaching
# our port would make every other figure meaningless).
_FOREIGN = """
SELECT count(*) FROM inbound_dedupe d
 WHERE NOT EXISTS (SELECT 1 FROM bench_events b WHERE b.event_id = d.provider_event_id)
"""


def _load_events(database_url: str, events: list[tuple[str, str | None, str | None, str]]
                 ) -> None:
    """The events the run may send, in a table of the bench's private database."""
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE bench_events (event_id text PRIMARY KEY, church_id uuid, "
                    "pid text, status text)")
        psycopg2.extras.execute_values(
            cur, "INSERT INTO bench_events VALUES %s", events, page_size=5000)
    conn.close()


def _check(database_url: str, provider: str, answered_2xx: int, dedupe_new: int,
           sent_once: bool, receipts_sent: bool) -> dict[str, object]:
    """Nothing answered 2xx is lost: every 2xx has its dedupe row (so its transaction
    committed), every committed receipt moved its row forward, none was held for a row
    that did not exist (every row was seeded before the run), and only this run's
    events arrived."""
    conn = psycopg2.connect(database_url)
    with conn.cursor() as cur:
        cur.execute(_UNMOVED, {"provider": provider})
        by_status = {status: {"committed": committed, "unmoved": unmoved}
                     for status, committed, unmoved in cur.fetchall()}
        cur.execute(_FOREIGN)
        foreign = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM early_receipts")
        held = cur.fetchone()[0]
    conn.close()
    unmoved = sum(v["unmoved"] for v in by_status.values())
    committed = sum(v["committed"] for v in by_status.values())
    # Requests cut off at the end of the run may have committed unanswered: hence >=.
    # Only meaningful when every event went out once (a resent one is a 2xx duplicate).
    durable = dedupe_new >= answered_2xx or not sent_once
    ok = (durable and unmoved == 0 and foreign == 0 and held == 0
          and (committed > 0 or not receipts_sent))
    return {"ok": ok, "answered_2xx": answered_2xx,
            "dedupe_rows_new": dedupe_new, "every_event_sent_once": sent_once,
            "receipts": by_status, "receipts_unmoved": unmoved, "receipts_held": held,
            "foreign_events": foreign}


class _OtlpSink(http.server.BaseHTTPRequestHandler):
    """A collector that accepts OTLP/HTTP trace exports, counts their spans, keeps none."""
    spans = 0
    exports = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = ExportTraceServiceRequest.FromString(body)
        _OtlpSink.exports += 1
        _OtlpSink.spans += sum(len(scope.spans) for resource in request.resource_spans
                               for scope in resource.scope_spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _start_sink() -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtlpSink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mix", choices=("inbound", "receipts", "mixed"), default="mixed",
                        help="inbound texts, delivery receipts, or 1 inbound : 2 receipts")
    parser.add_argument("--carrier", choices=("telnyx", "twilio"), default="telnyx")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--churches", type=int, default=20)
    parser.add_argument("--handsets", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--webhooks", type=int, default=0,
                        help="pre-signed events, each sent at most once (default: "
                             "4,000 per second of --duration)")
    parser.add_argument("--keep-db", action="store_true",
                        help="leave the private database behind (to look into a failed check)")
    parser.add_argument("--otel", choices=("off", "sink"), default="off",
                        help="tracing in the web processes: off, or on and exported to a "
                             "collector stand-in that drops the spans")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is required (apt-get install wrk)", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    count = args.webhooks or max(60000, 4000 * args.duration)
    public_url = f"http://127.0.0.1:{args.port}"
    database_url = fresh_database(url_for_database(f"ywm_bench_carriers_{os.getpid()}"))
    redis_url, redis_lock = reserve_redis_db()
    procs: list[subprocess.Popen] = []
    sink = None
    files: list[pathlib.Path] = []
    try:
        numbers = asyncio.run(_seed(database_url, args.churches, args.carrier))
        receipt_share = {"inbound": 0, "receipts": 1, "mixed": 2 / 3}[args.mix]
        rows = _seed_outbound(database_url, numbers, int(count * receipt_share / 2) + 1,
                              args.carrier) if receipt_share else []
        # Per run: two runs at once must never send each other's events.
        webhooks = OUT / f"{args.carrier}_webhooks-{os.getpid()}.tsv"
        files.append(webhooks)
        events = _write_webhooks(webhooks, count, numbers, args.handsets, args.mix,
                                 args.carrier, rows, public_url)
        env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url,
                   YWM_ENV="test", YWM_LOG_LEVEL="WARNING", YWM_OTEL_ENDPOINT="",
                   YWM_PUBLIC_URL=public_url)
        if args.otel == "sink":
            sink, env["YWM_OTEL_ENDPOINT"] = _start_sink()
        web_log = OUT / "carriers_inbound_web.log"
        web_log.write_text("")
        procs = start_webs(env, args.port, args.processes, web_log)
        # Warm-up: fills the pools (so every backend exists before we read CPU times).
        warmup = OUT / f"{args.carrier}_warmup-{os.getpid()}.tsv"
        files.append(warmup)
        events += _write_webhooks(warmup, 3000, numbers, args.handsets, "inbound",
                                  args.carrier, public_url=public_url)
        _load_events(database_url, events)
        _wrk(args.port, warmup, 2, args.connections, 3)
        web_pids = [p.pid for p in procs]
        pg_pids = _backend_pids(database_url)
        load_before = os.getloadavg()
        dedupe_before = _count(database_url)["inbound_dedupe"]
        web_before, pg_before = cpu_seconds(web_pids), cpu_seconds(pg_pids)
        result = _wrk(args.port, webhooks, 2, args.connections, args.duration)
        web_cpu, pg_cpu = cpu_seconds(web_pids) - web_before, cpu_seconds(pg_pids) - pg_before
        counts = _count(database_url)
        stop_processes(procs)  # on exit, each web process exports the spans it still holds
        procs = []
        errors = result["connect_errors"] + result["read_errors"] + result["write_errors"] \
            + result["timeouts"]
        check = _check(database_url, args.carrier, result["requests"] - result["non_2xx"],
                       counts["inbound_dedupe"] - dedupe_before, result["requests"] <= count,
                       args.mix != "inbound")
        rate = result["requests"] / (result["duration_us"] / 1e6)
        per = 1000 / max(1, result["requests"])
        report = {"mix": args.mix, "carrier": args.carrier, "processes": args.processes,
                  "connections": args.connections, "churches": args.churches,
                  "rate_per_s": round(rate, 1),
                  "p50_ms": result["p50_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
                  "max_ms": result["max_us"] / 1000, "requests": result["requests"],
                  "non_2xx": result["non_2xx"], "errors": errors,
                  "web_cpu_ms_per_webhook": round(web_cpu * per, 2),
                  "pg_cpu_ms_per_webhook": round(pg_cpu * per, 2),
                  "total_cpu_ms_per_webhook": round((web_cpu + pg_cpu) * per, 2),
                  "rows": counts, "check": check, "otel": args.otel,
                  "load_before": " ".join(f"{x:.2f}" for x in load_before),
                  "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                  "spans_exported": _OtlpSink.spans if sink else None}
        print(json.dumps(report))
        name = f"carriers_inbound-{args.mix}" + ("" if args.carrier == "telnyx"
                                                 else f"-{args.carrier}")
        name += "" if args.otel == "off" else f"-otel-{args.otel}"
        (OUT / f"{name}.json").write_text(json.dumps(report, indent=2))
        if not check["ok"]:
            print("CHECK FAILED: a webhook answered 2xx is not in PostgreSQL or did not "
                  "move its row", file=sys.stderr)
            return 1
        return 0
    finally:
        stop_processes(procs)
        for path in files:
            path.unlink(missing_ok=True)
        if sink is not None:
            sink.shutdown()
        if not args.keep_db:
            drop_database(database_url)
        release_redis_db(redis_url, redis_lock)


if __name__ == "__main__":
    sys.exit(main())
