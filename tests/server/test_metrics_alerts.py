"""/metrics exports every series deploy/prometheus/alerts.yml reads (but the other
exporters' own), and the backlog gauges say what is waiting: the oldest Huey task, the
most overdue outbox work (not paced broadcast rows), dead letters by kind."""
from __future__ import annotations

import asyncio
import pathlib
import re
from typing import Any

import pytest

from server.platform import queue
from server.services import broadcasts, queue_admin
from tests.deploy.test_prometheus import _alert_metrics, _recorded
from tests.workers.bulk import seed_church, sql
from tests.workers.test_dispatch import queued_reply

OPERATIONS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "operations.md"
# Series other exporters provide (docs/operations.md, "Alerts", names each exporter).
OTHER_EXPORTERS = {"up": "Prometheus", "pg_up": "postgres_exporter",
                   "redis_up": "redis_exporter", "pgbouncer_up": "pgbouncer_exporter"}
# Set only on a box that reads from replicas (YWM_DATABASE_REPLICA_URLS).
REPLICAS_ONLY = {"ywm_db_replica_lag_seconds"}


@pytest.fixture
def test_queue(settings: Any, clean: None) -> Any:
    assert queue.settings() is settings  # the session's queue (tests/conftest.py)
    yield queue.huey
    queue.huey.flush()


def _exported(text: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def _value(text: str, series: str) -> float:
    match = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    assert match, f"{series} not in /metrics"
    return float(match.group(1))


def _upkeep_in_a_worker_thread() -> None:
    from workers import ops, runtime
    try:
        ops.upkeep_partitions.call_local()  # sets ywm_db_default_partition_rows
    finally:
        runtime.close_runtime()


@pytest.mark.gen_test(timeout=60)
async def test_metrics_export_every_series_the_alerts_read(api: Any, deps: Any,
                                                           test_queue: Any) -> None:
    # What a box does in its first minutes: a carrier webhook, the partition upkeep.
    status, _, _ = await api.post("/webhooks/telnyx", body=b"{}")
    assert status == 401
    await asyncio.get_running_loop().run_in_executor(None, _upkeep_in_a_worker_thread)
    status, body, _ = await api.get("/metrics")
    assert status == 200
    exported = _exported(body.decode())
    wanted = _alert_metrics() - _recorded() - set(OTHER_EXPORTERS) - REPLICAS_ONLY
    assert wanted, "the alerts read no series of ours?"
    assert wanted - exported == set(), "alerts read series /metrics does not export"
    docs = OPERATIONS.read_text().split("## Alerts", 1)[1]
    for name, exporter in OTHER_EXPORTERS.items():
        if name in _alert_metrics() and name != "up":
            assert f"`{name}`" in docs and exporter in docs, f"{name}: which exporter?"


@pytest.mark.gen_test(timeout=60)
async def test_backlog_gauges_report_what_waits(api: Any, deps: Any,
                                                test_queue: Any) -> None:
    church = seed_church(deps.settings, members=4)
    accepted = await broadcasts.accept(deps.db, deps.settings, church.id, None, {
        "body": "Hi", "group_ids": [str(church.group_id)]}, None)
    message_id = accepted.body["data"]["id"]
    # Queued broadcast rows long due are paced work, not a backlog; a lease that ran
    # out 90 s ago is.
    sql(deps.settings, "UPDATE message_recipients SET next_attempt_at = now() - "
                       "interval '1 hour' WHERE message_id = %s", (message_id,))
    sql(deps.settings, "UPDATE message_recipients SET status = 'sending', next_attempt_at "
                       "= now() - interval '90 seconds' WHERE member_id = %s",
        (church.member_ids[0],))
    sql(deps.settings, "INSERT INTO dead_letters (church_id, kind, ref, error) VALUES "
                       "(%s, 'broadcast_recipient', '{}', 'x'), "
                       "(%s, 'broadcast_recipient', '{}', 'y')", (church.id, church.id))
    from workers import ops
    ops.ping("waiting")  # no consumer runs: it waits
    status, body, _ = await api.get("/metrics")
    text = body.decode()
    outbox = _value(text, 'ywm_queue_oldest_age_seconds{queue="outbox"}')
    assert 90 <= outbox < 3600
    assert _value(text, 'ywm_queue_oldest_age_seconds{queue="huey"}') >= 0
    assert _value(text, 'ywm_dead_letters{kind="broadcast_recipient"}') == 2
    assert _value(text, 'ywm_dead_letters{kind="conversation_reply"}') == 0
    # A reply queued two minutes ago is the oldest overdue work now.
    reply = queued_reply(deps.settings, church, 1, "See you Sunday")
    sql(deps.settings, "UPDATE conversation_messages SET next_attempt_at = now() - "
                       "interval '120 seconds' WHERE id = %s", (reply,))
    ages, _ = await queue_admin.backlog(deps.db)
    assert 120 <= ages["outbox"] < 3600


def test_huey_age_is_the_oldest_waiting_task(test_queue: Any) -> None:
    from workers import ops
    assert queue.oldest_waiting_age() == 0.0  # nothing waits
    ops.ping("first")
    ops.ping("second")
    first = test_queue.deserialize_task(test_queue.storage.enqueued_items(1)[0])
    assert first.args == ("first",)
    assert queue.oldest_waiting_age(now=first.enqueued_at + 7) == pytest.approx(7)
    # A scheduled task that fell due 30 s ago and no scheduler moved is waiting too.
    test_queue.flush()
    import datetime as dt
    late = ops.ping.s("late")
    late.eta = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(
        seconds=30)
    test_queue.add_schedule(late)
    assert 30 <= queue.oldest_waiting_age() < 3600
    # A task queued by an older release carries no enqueue time: no claim about its age.
    test_queue.flush()
    test_queue.storage.enqueue(test_queue.serialize_task(ops.ping.s("old")).replace(
        b',"ywm":', b',"x-old":'))
    assert queue.oldest_waiting_age() is None
