"""The process-local live-stream hub: sockets per church fed by ONE Redis subscription.

The role of Zulip's `event_queue.py`. Each web process holds one `Hub` (in
`deps.hub`) with one redis.asyncio pub/sub connection, subscribed only to the
churches that have sockets here: the first socket of a church subscribes, the last one to
leave unsubscribes.

No gap, no duplicate. Event ids are gapless per church and committed in id order (the
`churches` row lock in `server.events.log`), so:
- the hub keeps, per church, `last_id`: the highest id it has fanned out contiguously. It
  is read from PostgreSQL once the SUBSCRIBE is confirmed, so every later event reaches us
  by pub/sub or by the gap fill below;
- a live event above `last_id + 1` means a publish was lost or overtaken: the hub reads
  the missing rows from PostgreSQL first (they are committed: a larger id commits later);
- a (re)confirmed subscription after a Redis drop triggers the same fill from `last_id`,
  so what pub/sub dropped while Redis was away is replayed from the durable log;
- a socket joins after the subscription is ready, replays from the database, then flushes
  the live events it held meanwhile, dropping ids it already sent.

Opening many sockets at once (a connection storm, every client reconnecting after a
deploy). A join never races a timer: it waits for its church's subscription, which
`_subscriber` sends for every church that needs one in ONE SUBSCRIBE command, and the
reader confirms by reading the church's head id once. A socket without `last_event_id`
then needs no database read at all (the hub's head is its start), and one resuming within
the hub's last `RECENT_FRAMES` frames of its church is replayed from memory
(`StreamClient.catch_up_from_hub`); only an older resume reads PostgreSQL. The session
re-check after subscribing is batched too (`session_alive`: one pipeline for the sockets
of a loop turn). The process bounds the sockets still opening (`admit`, `max_opening`):
past it a socket is closed with 1013 at once, and the client resumes shortly after with
`last_event_id`, losing nothing.

Redis gone for longer than `down_grace` seconds: every socket is closed with 1011, so
clients resume with `last_event_id` rather than sit silently on a dead stream.

Redis behind Sentinel. After a failover, publishers reconnect to the new master while
a subscribed connection (which never writes, so never sees READONLY) would stay on the
demoted one until Sentinel reconfigures it, seconds later. The reader therefore asks
Sentinel for the master every `MASTER_CHECK_SECONDS`; when it moved, the subscription is
rebuilt there, and its confirmations fill from PostgreSQL whatever was published
meanwhile. Until Sentinel demotes the old master, processes still connected to it (a
worker's open connection) publish there, where nobody listens any more; so for
`AFTER_MOVE_FILL_SECONDS` after a move the reader also fills every church from
PostgreSQL once a second, and such an event reaches its sockets within a second.

Ended sessions. The church's channel also carries control messages (a `control` key,
never an `id`): `session.revoked` names session ids and/or a user id, published by
`publish_session_revoked` after the session keys are deleted. Every process closes its
matching sockets with 4001, so logout, removal, a role or password change and refresh-token
reuse end open streams on every box, not only new requests. A socket that joins later
re-checks its session once its subscription is live (handlers/stream.py), so no
revocation falls between the credential check and the subscription.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable
from uuid import UUID

import redis.exceptions
import ujson

from db.engine import Database
from db.queries import events as q
from server.events.log import encode_event, event_frame
from server.platform.redis import current_master, events_channel, session_key
from server.platform.settings import Settings
from server.realtime.client import (CLOSE_GOING_AWAY, CLOSE_INTERNAL, CLOSE_SESSION_ENDED,
                                    REPLAY_BATCH, Frame, StreamClient)

log = logging.getLogger("ywm.realtime")

FANOUT_YIELD_EVERY = 100  # LIBRARIES.md §18: ~50 µs a socket, yield every ~5 ms
# Sockets of one process between their request and live (authenticating, waiting for
# their subscription, replaying); more are shed with 1013. Only a process that cannot keep
# up reaches it: a socket there has waited seconds already. At 4,000 a quiet box shed
# 40 % of a 10,000-socket storm it could open in 5.7 s without shedding
# (docs/benchmarks.md, issue 11).
MAX_OPENING = 8000
# Stream credential checks in flight at once: well under the Redis pool (200, 10 s wait),
# so a storm of opens queues here, without a deadline, instead of failing with 500 there.
AUTH_CONCURRENCY = 64
# Session re-checks batched into one pipeline (one round trip for a storm's sockets).
SESSION_CHECK_BATCH = 500
# Frames of each church kept for resumes from memory: a client shed with 1013 or moved by
# a restart resumes within a few seconds, well inside this at Sunday-morning rates.
RECENT_FRAMES = 1000
REDIS_DOWN_GRACE = 5.0  # seconds without Redis before sockets are closed to resume
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
# Behind Sentinel: how often the reader checks that its subscription is on the master.
MASTER_CHECK_SECONDS = 1.0
# Sentinel demotes the old master (and cuts its clients) seconds after the switch; fill
# from PostgreSQL each second for well over that.
AFTER_MOVE_FILL_SECONDS = 30.0

SESSION_REVOKED = "session.revoked"


@dataclass
class _Church:
    ready: asyncio.Future
    clients: set[StreamClient] = field(default_factory=set)
    last_id: int | None = None  # None until the subscription is confirmed
    # The last frames fanned out, contiguous up to `last_id`: (id, frame).
    recent: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_FRAMES))


class Hub:
    """Sockets per church, one pub/sub connection, gap fill from PostgreSQL."""

    def __init__(self, db: Database, redis: Any, settings: Settings,
                 down_grace: float = REDIS_DOWN_GRACE) -> None:
        self.db = db
        self.redis = redis
        self.settings = settings
        self.down_grace = down_grace
        self._pubsub: Any = None
        self._churches: dict[str, _Church] = {}
        self._reader: asyncio.Task | None = None
        self._wake = asyncio.Event()
        # redis-py's PubSub.connect() races when two coroutines subscribe before it has a
        # connection (each takes one; a SUBSCRIBE can land on a connection nobody reads).
        self._sub_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        # Churches whose SUBSCRIBE is not sent yet: `_subscriber` sends them together.
        self._to_subscribe: set[str] = set()
        self._subscribe_wake = asyncio.Event()
        self._subscriber_task: asyncio.Task | None = None
        self.max_opening = MAX_OPENING
        self.opening = 0
        self.auth_gate = asyncio.Semaphore(AUTH_CONCURRENCY)
        self._session_checks: list[tuple[str, asyncio.Future]] = []

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        if self._reader is None or self._reader.done():
            self._stopping = False
            self._pubsub = self.redis.pubsub()
            self._reader = asyncio.get_running_loop().create_task(self._run())
        if self._subscriber_task is None or self._subscriber_task.done():
            self._subscriber_task = asyncio.get_running_loop().create_task(self._subscriber())

    async def drain(self) -> None:
        """Shutdown: close every socket with 1001 (going away); clients resume elsewhere."""
        for client in self.clients():
            client.close(CLOSE_GOING_AWAY, "server restarting")

    async def stop(self) -> None:
        self._stopping = True
        await self.drain()
        for task in (self._reader, self._subscriber_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._reader = self._subscriber_task = None
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_pubsub()

    def clients(self) -> list[StreamClient]:
        return [c for state in self._churches.values() for c in state.clients]

    def subscribed_churches(self) -> list[str]:
        return list(self._churches)

    def head(self, church_id: str) -> int:
        """The highest event id of `church_id` fanned out here (0: none yet)."""
        state = self._churches.get(church_id)
        return state.last_id if state is not None and state.last_id is not None else 0

    def recent(self, church_id: str, after: int | None
               ) -> tuple[int, list[tuple[int, Frame]]] | None:
        """(head, the frames after `after`) from memory, or None when this hub cannot
        cover `after` (not confirmed yet, older than its recent frames, or ahead of it)."""
        state = self._churches.get(church_id)
        if state is None or state.last_id is None:
            return None
        head = state.last_id
        if after is None or after == head:
            return head, []
        floor = state.recent[0][0] - 1 if state.recent else head
        if not floor <= after < head:
            return None  # older than memory, or ahead of this hub: the log decides
        return head, [item for item in state.recent if item[0] > after]

    def clear_for_tests(self) -> None:
        self._churches.clear()

    # ---- sockets ---------------------------------------------------------------------
    def admit(self) -> bool:
        """Count one more socket opening here; False (not counted) past the bound: the
        caller sheds it with 1013 and the client resumes shortly."""
        if self.opening >= self.max_opening:
            return False
        self.opening += 1
        return True

    def opened(self) -> None:
        """One admitted socket is live, shed or gone."""
        self.opening -= 1

    async def join(self, client: StreamClient) -> None:
        """Register a socket; returns once its church's subscription is live.

        Waits as long as the subscription takes, with no timer to race: a Redis outage
        fails it (`_subscriber`) or closes the church after `down_grace` (`_recover`), and
        a socket closed meanwhile leaves."""
        await self.start()
        client.hub = self
        state = self._churches.get(client.church_id)
        if state is None:
            state = _Church(ready=asyncio.get_running_loop().create_future())
            self._churches[client.church_id] = state
            self._to_subscribe.add(client.church_id)
            self._subscribe_wake.set()
        state.clients.add(client)
        if state.ready.done() and not state.ready.cancelled() and \
                state.ready.exception() is None:
            return
        try:
            await asyncio.shield(state.ready)
        except BaseException:
            self.leave(client)
            raise

    async def session_alive(self, church_id: str, session_id: str) -> bool:
        """Whether the session still exists (server.auth.sessions.session_alive), asked
        together with every other socket opening now: one pipeline, one round trip."""
        future = asyncio.get_running_loop().create_future()
        self._session_checks.append((session_key(church_id, session_id), future))
        if len(self._session_checks) == 1:
            self._spawn(self._check_sessions())
        return bool(await future)

    async def _check_sessions(self) -> None:
        await asyncio.sleep(0)  # let the sockets of this loop turn join the batch
        batch, self._session_checks = self._session_checks[:SESSION_CHECK_BATCH], \
            self._session_checks[SESSION_CHECK_BATCH:]
        if self._session_checks:
            self._spawn(self._check_sessions())
        for attempt in range(2):  # a pooled connection from before a Redis restart fails once
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key, _ in batch:
                        pipe.exists(key)
                    found = await pipe.execute()
                break
            except REDIS_ERRORS as exc:
                if attempt:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    return
        for (_, future), exists in zip(batch, found):
            if not future.done():
                future.set_result(bool(exists))

    def leave(self, client: StreamClient) -> None:
        state = self._churches.get(client.church_id)
        if state is None or client not in state.clients:
            return
        state.clients.discard(client)
        if not state.clients:
            del self._churches[client.church_id]
            if not state.ready.done():
                state.ready.cancel()
            self._spawn(self._unsubscribe(client.church_id))

    async def _unsubscribe(self, church_id: str) -> None:
        try:
            async with self._sub_lock:
                # Checked under the lock: a socket that came back meanwhile subscribed
                # first, and an UNSUBSCRIBE sent after it would silence its church.
                if church_id in self._churches or self._pubsub is None:
                    return
                await self._pubsub.unsubscribe(events_channel(church_id))
        except REDIS_ERRORS:
            pass  # the connection is being rebuilt without this channel

    async def _subscriber(self) -> None:
        """Send the SUBSCRIBE of every church that needs one, many in one command: a storm
        of first sockets costs a few round trips, not one per church behind a lock."""
        while not self._stopping:
            await self._subscribe_wake.wait()
            self._subscribe_wake.clear()
            churches = [c for c in self._to_subscribe if c in self._churches]
            self._to_subscribe.clear()
            if not churches:
                continue
            try:
                async with self._sub_lock:
                    await self._pubsub.subscribe(*(events_channel(c) for c in churches))
            except Exception as exc:  # noqa: BLE001 - Redis away, or the reader rebuilt
                # the connection under us: these joins fail now (1011, the client resumes)
                # rather than wait on a connection the reader may not have.
                log.warning("stream subscribe failed", exc_info=True)
                for church_id in churches:
                    state = self._churches.get(church_id)
                    if state is not None and not state.ready.done():
                        state.ready.set_exception(exc)
                        state.ready.exception()  # retrieved: a join may have left already
                        self._close_church(state, CLOSE_INTERNAL, "stream unavailable")
                continue
            self._wake.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the reader --------------------------------------------------------------------
    async def _run(self) -> None:
        if self._pubsub.connection is None and not self._churches:
            try:
                # Connected at process start: under a storm of opens the loop is too busy
                # for a fresh connect to meet its timeout (seen: every first join of a
                # process failed). Without Redis now, the first SUBSCRIBE connects.
                async with self._sub_lock:
                    await self._pubsub.connect()
            except REDIS_ERRORS:
                log.warning("redis pub/sub not reachable at start", exc_info=True)
        next_check = time.monotonic() + MASTER_CHECK_SECONDS
        fill_until = 0.0
        while not self._stopping:
            if not self._churches or self._pubsub.connection is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + MASTER_CHECK_SECONDS
                if await self._master_moved():
                    fill_until = time.monotonic() + AFTER_MOVE_FILL_SECONDS
                    await self._recover()
                    continue
                if time.monotonic() < fill_until:
                    await self._fill_all()
            try:
                message = await self._pubsub.get_message(timeout=MASTER_CHECK_SECONDS)
            except REDIS_ERRORS:
                log.warning("redis pub/sub lost; reconnecting", exc_info=True)
                await self._recover()
                continue
            if message is None:
                continue
            batch = [message]
            ready: set[str] = set()
            if message.get("type") == "subscribe":
                ready = await self._confirm_together(batch)
            for message in batch:
                if message.get("type") == "subscribe" and \
                        _church_of(message.get("channel") or "") in ready:
                    continue
                try:
                    await self._handle(message)
                except Exception:  # noqa: BLE001 - one bad message must not stop the hub
                    log.exception("stream message handling failed")

    async def _confirm_together(self, batch: list[dict[str, Any]]) -> set[str]:
        """First confirmations of a storm's SUBSCRIBE arrive together: take every message
        already received into `batch` (kept in order, handled after) and read the head ids
        of the newly confirmed churches concurrently, not one loop-starved query after the
        other. The heads are read after every message of `batch` arrived, so those
        messages are at or below them, as with one confirmation. Returns the churches
        made ready here."""
        while len(batch) < SESSION_CHECK_BATCH:
            try:
                more = await self._pubsub.get_message(timeout=0)
            except REDIS_ERRORS:
                break  # the next get_message reports it
            if more is None:
                break
            batch.append(more)
        firsts: dict[str, _Church] = {}
        for message in batch:
            church_id = _church_of(message.get("channel") or "") \
                if message.get("type") == "subscribe" else None
            state = self._churches.get(church_id) if church_id else None
            if state is not None and state.last_id is None:
                firsts[church_id or ""] = state
        heads = await asyncio.gather(*(self._head(c) for c in firsts), return_exceptions=True)
        ready = set()
        for (church_id, state), head in zip(firsts.items(), heads):
            if self._churches.get(church_id) is not state or state.last_id is not None:
                continue
            if isinstance(head, BaseException):
                log.warning("stream subscription setup failed", exc_info=head)
                if not state.ready.done():
                    state.ready.set_exception(head)
                    state.ready.exception()  # retrieved: its joins leave on their own
                self._close_church(state, CLOSE_INTERNAL, "stream interrupted")
            else:
                state.last_id = head
                if not state.ready.done():
                    state.ready.set_result(None)
            ready.add(church_id)
        return ready

    async def _head(self, church_id: str) -> int:
        async with self.db.acquire() as conn:
            return await q.last_event_id(conn, church_id)

    async def _master_moved(self) -> bool:
        """Behind Sentinel: whether the subscription sits on a server that is no longer
        the master (never true for a plain REDIS_URL client)."""
        connection = self._pubsub.connection if self._pubsub is not None else None
        if connection is None:
            return False
        try:
            master = await current_master(self.redis)
        except REDIS_ERRORS:
            return False  # no Sentinel answers: keep the subscription we have
        if master is None or (str(connection.host), int(connection.port)) == master:
            return False
        log.warning("redis master moved to %s:%s; resubscribing there", *master)
        return True

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel") or ""
        church_id = _church_of(channel)
        state = self._churches.get(church_id) if church_id else None
        if kind == "subscribe":
            if state is None:
                self._spawn(self._unsubscribe(church_id or ""))
                return
            await self._subscription_ready(church_id or "", state)
        elif kind == "message" and state is not None:
            data = message["data"]
            payload = ujson.loads(data)
            if "control" in payload:
                self._control(state, payload)
                return
            if state.last_id is None:
                return  # the head id read at confirmation covers it
            event_id = int(payload["id"])
            if event_id <= state.last_id:
                return
            if event_id > state.last_id + 1:
                try:
                    await self._fill(church_id or "", state)  # includes this event
                except Exception:  # noqa: BLE001 - cannot fill the gap: make them resume
                    log.warning("stream gap fill failed", exc_info=True)
                    self._close_church(state, CLOSE_INTERNAL, "stream interrupted")
                return
            await self._fanout(state, event_id, Frame(data))

    def _control(self, state: _Church, payload: dict[str, Any]) -> None:
        """A control message on the church's channel; unknown kinds are ignored so an
        older process survives a newer publisher."""
        if payload.get("control") != SESSION_REVOKED:
            return
        sids = set(payload.get("sids") or ())
        user_id = payload.get("user_id")
        for client in list(state.clients):
            if (client.session_id is not None and client.session_id in sids) or (
                    user_id is not None and client.user_id == user_id):
                client.close(CLOSE_SESSION_ENDED, "session ended")

    async def _subscription_ready(self, church_id: str, state: _Church) -> None:
        """First confirmation: note the head id. A re-confirmation: fill what was missed."""
        try:
            if state.last_id is None:
                async with self.db.acquire() as conn:
                    state.last_id = await q.last_event_id(conn, church_id)
                if not state.ready.done():
                    state.ready.set_result(None)
            else:
                await self._fill(church_id, state)
        except Exception as exc:  # noqa: BLE001 - the database is away: sockets resume
            log.warning("stream subscription setup failed", exc_info=True)
            if not state.ready.done():
                state.ready.set_exception(exc)
            self._close_church(state, CLOSE_INTERNAL, "stream interrupted")

    async def _fill(self, church_id: str, state: _Church) -> None:
        """Fan out committed events after `state.last_id` from the durable log."""
        while state.last_id is not None and self._churches.get(church_id) is state:
            async with self.db.acquire() as conn:
                rows = await q.events_after(conn, church_id, state.last_id, REPLAY_BATCH)
            for row in rows:
                await self._fanout(state, int(row["id"]),
                                   Frame(encode_event(event_frame(row, self.settings))))
            if len(rows) < REPLAY_BATCH:
                return

    async def _fill_all(self) -> None:
        """Fill every confirmed church from the log (publishes lost to a demoted master)."""
        for church_id, state in list(self._churches.items()):
            if state.last_id is None:
                continue
            try:
                await self._fill(church_id, state)
            except Exception:  # noqa: BLE001 - the next tick tries again
                log.warning("stream fill after a master move failed", exc_info=True)
                return

    async def _fanout(self, state: _Church, event_id: int, frame: Frame) -> None:
        """Event `event_id` (the next one after `state.last_id`) to every socket of the
        church: the same Frame, so its wire bytes are built once."""
        state.recent.append((event_id, frame))  # before the yields: a join sees it as sent
        state.last_id = event_id
        for index, client in enumerate(list(state.clients)):
            client.deliver(event_id, frame)
            if index % FANOUT_YIELD_EVERY == FANOUT_YIELD_EVERY - 1:
                await asyncio.sleep(0)

    async def _recover(self) -> None:
        """Rebuild the pub/sub connection; its confirmations trigger the gap fills."""
        down_since = time.monotonic()
        delay = 0.05
        closed = False
        while not self._stopping:
            await self._close_pubsub()
            self._pubsub = self.redis.pubsub()
            channels = [events_channel(c) for c in self._churches]
            try:
                if channels:
                    async with self._sub_lock:
                        await self._pubsub.subscribe(*channels)
                return
            except REDIS_ERRORS:
                pass
            if not closed and time.monotonic() - down_since > self.down_grace:
                log.warning("redis down for %.1fs: closing stream sockets so they resume",
                            time.monotonic() - down_since)
                for state in list(self._churches.values()):
                    self._close_church(state, CLOSE_INTERNAL, "stream interrupted")
                closed = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _close_church(self, state: _Church, code: int, reason: str) -> None:
        for client in list(state.clients):
            client.close(code, reason)
            self.leave(client)

    async def _close_pubsub(self) -> None:
        if self._pubsub is None:
            return
        try:
            await self._pubsub.aclose()
        except Exception:  # noqa: BLE001 - closing a broken connection
            log.debug("pubsub close failed", exc_info=True)


def _church_of(channel: str) -> str | None:
    # `ywm:{<church_id>}:events`
    start, end = channel.find("{"), channel.find("}")
    return channel[start + 1:end] if 0 <= start < end else None


async def publish_session_revoked(redis: Any, church_id: UUID | str, *,
                                  sids: Iterable[str] = (),
                                  user_id: UUID | str | None = None) -> None:
    """Tell every web process to close the sockets of these sessions (or of every session
    of `user_id`, including ones an index no longer lists). Call after the session keys
    are gone, so a socket that checks its session after subscribing cannot miss both."""
    payload: dict[str, Any] = {"control": SESSION_REVOKED, "sids": sorted(map(str, sids))}
    if user_id is not None:
        payload["user_id"] = str(user_id)
    await redis.publish(events_channel(church_id), ujson.dumps(payload))


def hub_for(deps: Any) -> Hub:
    """The process's hub (`deps.hub`), created on first use; the Deps lifecycle
    (server/deps.py) starts, drains and stops it."""
    if deps.hub is None:
        deps.hub = Hub(deps.db, deps.redis, deps.settings)
    return deps.hub  # type: ignore[no-any-return]
