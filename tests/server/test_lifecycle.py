"""One lifecycle (server/deps.py) for the web process and the worker threads: a worker
thread closes what it opened, carrier connections included."""
from __future__ import annotations

import concurrent.futures
from typing import Any

from server.carriers import http as carrier_http
from server.deps import Deps
from server.services.dispatch import dispatcher_for
from workers import runtime


def _worker_thread() -> dict[str, Any]:
    """What Huey does in each worker thread: startup hook, tasks, shutdown hook."""
    runtime.open_runtime()

    async def send_path(deps: Deps) -> dict[str, Any]:
        dispatcher_for(deps).client("telnyx")  # what the first send of the thread makes
        return {"deps": deps, "session": carrier_http.session(),
                "hub": deps.hub, "dispatcher": deps.dispatcher}

    opened = runtime.run(send_path)
    runtime.close_runtime()
    return opened


def test_a_worker_thread_closes_its_carrier_connections_and_pools(settings, clean):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        opened = pool.submit(_worker_thread).result(timeout=60)
    deps = opened["deps"]
    assert opened["hub"] is None  # live streams are the web role's alone
    assert opened["dispatcher"] is not None and deps.dispatcher is None
    assert opened["session"].closed
    assert deps.db.pool.closed
