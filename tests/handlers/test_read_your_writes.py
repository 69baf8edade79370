"""Read-your-writes through the API, on a real primary and streaming replica.

The web app here runs with `YWM_DATABASE_REPLICA_URLS` naming the replica of
tests/replica.py. Which server answered a list is shown by its data: with the replica's
replay paused, the replica lacks what was written since, so a list without the new row
came from the replica and a list with it from the primary.
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Iterator

import pytest
import redis

from db.replicas import ReplicaReader
from server.deps import close_deps, open_deps, start
from server.platform.redis import wrote_at_key
from server.platform.settings import Settings
from tests.factories import add_user, register
from tests.replica import ReplicaPair, query, replica_pair  # noqa: F401 - the fixture
from tests.stream_client import close_sockets  # noqa: F401 - autouse fixture
from tests.stream_client import connect, stream_url, ticket_for

M = "/api/v1/members"
WAIT_SECONDS = 30.0


@pytest.fixture
def settings(replica_pair: ReplicaPair, redis_url: str, metrics_dir: str  # noqa: F811
             ) -> Settings:
    return Settings.from_env({
        "YWM_ENV": "test", "DATABASE_URL": replica_pair.primary_url,
        "YWM_DATABASE_REPLICA_URLS": replica_pair.replica_url,
        # Paused replay must not take the replica out of rotation during a test.
        "YWM_REPLICA_MAX_LAG_SECONDS": "300",
        "REDIS_URL": redis_url, "YWM_LOG_LEVEL": "WARNING", "YWM_METRICS_DIR": metrics_dir,
        "YWM_PASSWORD_HASH_PROFILE": "test", "YWM_WEBHOOK_ALLOW_PRIVATE": "true"})


@pytest.fixture
def deps(io_loop: Any, settings: Settings, replica_pair: ReplicaPair,  # noqa: F811
         redis_url: str) -> Iterator[Any]:
    async def opened() -> Any:
        value = await open_deps(settings)
        await start(value)  # as `ywm web` does: the hub and the replica watcher
        assert value.replicas is not None and (await value.replicas.check())[0].in_rotation
        return value
    value = io_loop.run_sync(opened)
    yield value
    io_loop.run_sync(lambda: close_deps(value))
    replica_pair.reset()
    redis.Redis.from_url(redis_url).flushdb()


async def _church(api: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """An owner (the writer) and a staff user of the same church (another caller)."""
    owner = await register(api)
    staff = await add_user(api, owner["access_token"], "staff")
    return owner, staff


async def _add_member(api: Any, token: str, n: int) -> str:
    status, body, _ = await api.post(M, json={
        "first_name": f"New{n}", "last_name": "Member", "phone": f"+1415555{n:04d}"},
        token=token)
    assert status == 201, body
    return str(body["data"]["id"])


async def _member_ids(api: Any, token: str) -> set[str]:
    status, body, _ = await api.get(M, token=token, params={"limit": 100})
    assert status == 200, body
    return {m["id"] for m in body["data"]}


async def _until(check: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def _blocking(fn: Any) -> Any:
    return asyncio.get_running_loop().run_in_executor(None, fn)


@pytest.mark.gen_test(timeout=120)
async def test_a_write_then_an_immediate_read_always_sees_it(api: Any, deps: Any) -> None:
    owner, _ = await _church(api)
    token = owner["access_token"]
    for n in range(15):
        member_id = await _add_member(api, token, n)
        assert member_id in await _member_ids(api, token)
        status, body, _ = await api.post("/api/v1/groups", json={"name": f"G{n}"}, token=token)
        assert status == 201, body
        status, groups, _ = await api.get("/api/v1/groups", token=token,
                                          params={"limit": 100})
        assert body["data"]["id"] in {g["id"] for g in groups["data"]}


@pytest.mark.gen_test(timeout=120)
async def test_paused_replica_serves_others_while_the_writer_reads_its_writes(
        api: Any, deps: Any, replica_pair: ReplicaPair) -> None:  # noqa: F811
    owner, staff = await _church(api)
    before = await _add_member(api, owner["access_token"], 1)
    await _blocking(replica_pair.wait_replayed)
    await _blocking(replica_pair.pause_replay)

    written = await _add_member(api, owner["access_token"], 2)
    # The writer reads its write (the primary, since the replica has not replayed it)...
    assert await _member_ids(api, owner["access_token"]) == {before, written}
    # ...while another caller of the same church is served by the replica, which lacks it.
    assert await _member_ids(api, staff["access_token"]) == {before}
    [status] = deps.replicas.status()
    assert status.in_rotation

    await _blocking(replica_pair.resume_replay)

    async def caught_up() -> bool:
        return await _member_ids(api, staff["access_token"]) == {before, written}
    await _until(caught_up, "the replica to serve the new member")


@pytest.mark.gen_test(timeout=120)
async def test_the_stream_replays_a_write_the_paused_replica_lacks(
        api: Any, base_url: str, deps: Any, replica_pair: ReplicaPair) -> None:  # noqa: F811
    owner, staff = await _church(api)
    church = owner["church_id"]

    def head() -> int:
        return int(query(replica_pair.primary_url,
                         "SELECT last_event_id FROM churches WHERE id = %s", (church,))[0][0])
    await _blocking(replica_pair.wait_replayed)
    await _blocking(replica_pair.pause_replay)
    seen = head()
    status, body, _ = await api.patch(f"{M}/{await _add_member(api, owner['access_token'], 3)}",
                                      json={"opt_in_sms": False}, token=owner["access_token"])
    assert status == 200, body
    assert head() > seen  # the opt-out wrote an event, which the replica lacks

    # The writer, and another caller whose replica lacks events the stream has passed
    # (its ticket's POST is forgotten, so only the stream's own check keeps it whole).
    for who in (owner, staff):
        ticket = await ticket_for(api, who["access_token"])
        if who is staff:
            await deps.redis.delete(wrote_at_key(staff["church_id"], f"user:{staff['user_id']}"))
        ws = await connect(stream_url(base_url, ticket=ticket, last_event_id=str(seen)))
        hello = json.loads(await asyncio.wait_for(ws.read_message(), 10))
        assert hello == {"type": "hello", "last_event_id": str(seen)}
        frames = [json.loads(await asyncio.wait_for(ws.read_message(), 10))
                  for _ in range(head() - seen)]
        assert [int(f["id"]) for f in frames] == list(range(seen + 1, head() + 1)), frames


@pytest.mark.gen_test(timeout=180)
async def test_killing_the_replica_gives_no_error_answers_and_it_comes_back(
        api: Any, deps: Any, replica_pair: ReplicaPair) -> None:  # noqa: F811
    owner, staff = await _church(api)
    known = {await _add_member(api, owner["access_token"], n) for n in range(3)}
    await _blocking(replica_pair.wait_replayed)
    answers: list[int] = []
    stop = asyncio.Event()

    async def reader(token: str) -> None:
        while not stop.is_set():
            status, body, _ = await api.get(M, token=token, params={"limit": 100})
            answers.append(status)
            assert status == 200, body
            assert {m["id"] for m in body["data"]} >= known

    readers = [asyncio.ensure_future(reader(t)) for t in
               (owner["access_token"], staff["access_token"], staff["access_token"])]
    await asyncio.sleep(0.3)
    await _blocking(replica_pair.kill_replica)
    killed_at = len(answers)

    async def out_and_read_on() -> bool:
        return not deps.replicas.status()[0].in_rotation and len(answers) > killed_at + 10
    try:
        await _until(out_and_read_on, "the dead replica to leave the rotation")
    finally:
        stop.set()
        await asyncio.gather(*readers)
    assert answers and set(answers) == {200}

    await _blocking(replica_pair.start_replica)

    async def back() -> bool:
        return bool(deps.replicas.status()[0].in_rotation)
    await _until(back, "the restarted replica to rejoin the rotation")
    # Served by the replica again: with replay paused it lacks the next write.
    await _blocking(replica_pair.wait_replayed)
    await _blocking(replica_pair.pause_replay)
    later = await _add_member(api, owner["access_token"], 9)
    assert later not in await _member_ids(api, staff["access_token"])
    assert later in await _member_ids(api, owner["access_token"])


@pytest.mark.gen_test(timeout=60)
async def test_replica_lag_is_exported(api: Any, deps: Any,
                                       replica_pair: ReplicaPair) -> None:  # noqa: F811
    await deps.replicas.check()
    status, body, _ = await api.get("/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else str(body)
    name = re.escape(f"127.0.0.1:{replica_pair.replica_port}/ywm")
    lag = re.search(rf'^ywm_db_replica_lag_seconds\{{replica="{name}"\}} (\S+)$', text, re.M)
    assert lag is not None, text
    assert 0.0 <= float(lag[1]) <= deps.settings.replica_max_lag_seconds
    assert re.search(rf'^ywm_db_replica_in_rotation\{{replica="{name}"\}} 1\.0$', text, re.M)


@pytest.mark.gen_test(timeout=60)
async def test_every_list_routed_to_replicas_answers_there(api: Any, deps: Any) -> None:
    owner, staff = await _church(api)
    await _add_member(api, owner["access_token"], 4)
    token = staff["access_token"]  # no write of its own: every read below may use the replica
    missing = "00000000-0000-4000-8000-000000000000"
    for path, params, expected in [
            (M, {"q": "New4"}, 200), ("/api/v1/groups", None, 200),
            ("/api/v1/messages", None, 200), (f"/api/v1/messages/{missing}/recipients", None, 404),
            ("/api/v1/conversations", None, 200),
            (f"/api/v1/conversations/{missing}/messages", None, 404)]:
        assert isinstance(await deps.replicas.reader(), ReplicaReader)
        status, body, _ = await api.get(path, token=token, params=params)
        assert status == expected, (path, body)
