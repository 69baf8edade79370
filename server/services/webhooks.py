"""Customer webhook endpoints (API.md §8): the owner's management of them.

An endpoint is a URL, the event types it wants (server/events/webhooks.py) and a signing
secret shown once, stored sealed (AES-GCM bound to its table, column and church). Its
cursor starts at the church's newest event, so it receives what happens after it was
made. Rotating the secret keeps the old one signing for `webhook_secret_overlap_seconds`.
A disabled endpoint (by the owner, or after failing for `webhook_disable_after_seconds`)
receives nothing and its cursor stays; enabling it again moves the cursor to the newest
event, so it is not flooded with what happened meanwhile (pending retries do resume).
Delivery itself is server/services/webhook_delivery.py.
"""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from db.engine import Connection, Database, Row
from db.queries import events as eq
from db.queries import webhooks as wq
from server.events import webhooks as catalogue
from server.events.log import reseal_stale
from server.platform import crypto, webhook_http
from server.platform.errors import Conflict, NotFound, ValidationFailed
from server.platform.jsonenc import iso_time, jsonable, to_json
from server.platform.settings import Settings
from server.services import webhook_delivery
from server.services.webhook_delivery import secret_place

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # 256 bits, the HMAC-SHA256 block's worth of key
DUPLICATE = "This church already has an endpoint with this URL."
NO_ENDPOINT = "No such webhook endpoint."


def endpoint_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "url": row["url"], "events": list(row["events"]),
            "disabled": not row["active"], "disabled_reason": row["disabled_reason"],
            "disabled_at": iso_time(row["disabled_at"]),
            "failing_since": iso_time(row["failing_since"]),
            "previous_secret_expires_at": iso_time(row["previous_secret_expires_at"]),
            "created_at": iso_time(row["created_at"])}


def delivery_view(row: dict[str, Any]) -> dict[str, Any]:
    payload = row["payload"] or {}
    return {"id": str(row["id"]), "endpoint_id": str(row["endpoint_id"]),
            "event_id": payload.get("id"), "event_type": row["event_type"],
            "status": row["status"], "attempt": row["attempts"],
            "status_code": row["last_status_code"], "latency_ms": row["latency_ms"],
            "error": row["last_error"],
            "next_retry_at": iso_time(row["next_attempt_at"]) if row["status"] == "pending"
            else None,
            "delivered_at": iso_time(row["delivered_at"]),
            "created_at": iso_time(row["created_at"])}


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


async def _checked_url(settings: Settings, url: str) -> str:
    try:
        await webhook_http.check_url(url, settings.webhook_allow_private,
                                     require_https=settings.production)
    except webhook_http.UnsafeUrl as exc:
        raise ValidationFailed.field("$.url", str(exc)) from None
    return url


def _events(events: list[str]) -> list[str]:
    # The schema lists the catalogue; keep the caller's order, once each.
    return list(dict.fromkeys(events))


async def access_endpoint(conn: Connection, church_id: UUID, endpoint_id: UUID | None,
                          lock: bool = False) -> Row:
    row = await wq.get_endpoint(conn, church_id, endpoint_id, lock) if endpoint_id else None
    if row is None:
        raise NotFound(NO_ENDPOINT)
    return row


async def create_endpoint(db: Database, settings: Settings, church_id: UUID,
                          body: dict[str, Any]) -> dict[str, Any]:
    """POST /webhook-endpoints: the endpoint and its secret (the only time it is shown)."""
    url = await _checked_url(settings, body["url"])
    secret = _new_secret()
    sealed = crypto.encrypt(settings, secret, secret_place(church_id))
    async with db.transaction() as conn:
        row = await wq.insert_endpoint(conn, church_id, url, _events(body["events"]), sealed)
    if row is None:
        raise Conflict(DUPLICATE, [{"field": "$.url", "message": DUPLICATE}])
    return {**endpoint_view(row), "secret": secret}


async def list_endpoints(db: Database, church_id: UUID, limit: int, cursor: str | None
                         ) -> tuple[list[dict[str, Any]], str | None]:
    async with db.acquire() as conn:
        return (await wq.list_endpoints(conn, church_id, limit, cursor)).view(endpoint_view)


async def get_endpoint(db: Database, church_id: UUID, endpoint_id: UUID | None
                       ) -> dict[str, Any]:
    async with db.acquire() as conn:
        return endpoint_view(await access_endpoint(conn, church_id, endpoint_id))


async def update_endpoint(db: Database, settings: Settings, church_id: UUID,
                          endpoint_id: UUID | None, body: dict[str, Any]) -> dict[str, Any]:
    """PATCH: url, events, disabled (true: stop now; false: resume from the newest event)."""
    url = await _checked_url(settings, body["url"]) if "url" in body else None
    async with db.transaction() as conn:
        row = await access_endpoint(conn, church_id, endpoint_id, lock=True)
        values: dict[str, Any] = {}
        if url is not None and url != row["url"]:
            if await wq.url_taken(conn, church_id, url, row["id"]):
                raise Conflict(DUPLICATE, [{"field": "$.url", "message": DUPLICATE}])
            values["url"] = url
        if "events" in body:
            values["events"] = _events(body["events"])
        if body.get("disabled") is True and row["active"]:
            values.update(active=False, disabled_at=datetime.now(timezone.utc),
                          disabled_reason="manual")
        elif body.get("disabled") is False and not row["active"]:
            values.update(active=True, disabled_at=None, disabled_reason=None,
                          failing_since=None,
                          last_event_id=await eq.last_event_id(conn, church_id))
        if values:
            row = await wq.update_endpoint(conn, church_id, row["id"], values)
    return endpoint_view(row)


async def delete_endpoint(db: Database, church_id: UUID, endpoint_id: UUID | None) -> None:
    async with db.transaction() as conn:
        deleted = await wq.delete_endpoint(conn, church_id, endpoint_id) if endpoint_id \
            else False
    if not deleted:
        raise NotFound(NO_ENDPOINT)


async def rotate_secret(db: Database, settings: Settings, church_id: UUID,
                        endpoint_id: UUID | None) -> dict[str, Any]:
    """A new secret; the current one keeps signing (a second `v1=`) until it expires."""
    secret = _new_secret()
    expires = datetime.now(timezone.utc) + timedelta(
        seconds=settings.webhook_secret_overlap_seconds)
    async with db.transaction() as conn:
        row = await access_endpoint(conn, church_id, endpoint_id, lock=True)
        current = crypto.decrypt(settings, row["secret_enc"], secret_place(church_id))
        row = await wq.update_endpoint(conn, church_id, row["id"], {
            "secret_enc": crypto.encrypt(settings, secret, secret_place(church_id)),
            "previous_secret_enc": crypto.encrypt(settings, current,
                                                  secret_place(church_id, previous=True)),
            "previous_secret_expires_at": expires})
    return {**endpoint_view(row), "secret": secret}


async def list_deliveries(db: Database, church_id: UUID, endpoint_id: UUID | None,
                          limit: int, cursor: str | None
                          ) -> tuple[list[dict[str, Any]], str | None]:
    async with db.acquire() as conn:
        row = await access_endpoint(conn, church_id, endpoint_id)
        page = await wq.list_deliveries(conn, church_id, row["id"], limit, cursor)
    return page.view(delivery_view)


async def redeliver(db: Database, church_id: UUID, endpoint_id: UUID | None,
                    delivery_id: UUID | None) -> dict[str, Any]:
    """A new delivery of the same event (same payload and id), due now."""
    async with db.transaction() as conn:
        endpoint = await access_endpoint(conn, church_id, endpoint_id)
        original = await wq.get_delivery(conn, church_id, endpoint["id"], delivery_id) \
            if delivery_id else None
        if original is None:
            raise NotFound("No such delivery.")
        row = await wq.insert_delivery(conn, {
            "church_id": church_id, "endpoint_id": endpoint["id"],
            "event_id": original["event_id"], "event_type": original["event_type"],
            "payload": original["payload"], "status": "pending", "attempts": 0,
            "next_attempt_at": datetime.now(timezone.utc)})
    return delivery_view(row)


async def send_test(db: Database, settings: Settings, church_id: UUID,
                    endpoint_id: UUID | None) -> dict[str, Any]:
    """POST .../test: a `webhook.test` event sent now, once (no retries), and recorded."""
    async with db.acquire() as conn:
        endpoint = await access_endpoint(conn, church_id, endpoint_id)
    now = datetime.now(timezone.utc)
    event = catalogue.payload(f"test_{uuid.uuid4().hex}", catalogue.TEST, iso_time(now),
                              str(church_id), {"endpoint_id": str(endpoint["id"]),
                                               "message": "A test event from YWMessaging."})
    outcome = await webhook_delivery.attempt(settings, endpoint, event, now)
    async with db.transaction() as conn:
        row = await wq.insert_delivery(conn, {
            "church_id": church_id, "endpoint_id": endpoint["id"], "event_id": None,
            "event_type": catalogue.TEST, "payload": jsonable(event),
            "status": "delivered" if outcome.ok else "failed", "attempts": 1,
            "next_attempt_at": None, **outcome.columns()})
    return delivery_view(row)


RESEAL_BATCH = 500  # rows per transaction in `reseal`


async def reseal(db: Database, settings: Settings, write: bool = True) -> int:
    """`ywm rotate-keys` for webhooks: endpoint secrets and the sealed values inside
    delivery payloads re-sealed under the newest field key. Returns how many values were
    re-sealed (`write`) or are stale (`write=False`, the `remaining` count)."""
    total, after = 0, None
    while True:
        async with (db.transaction() if write else db.acquire()) as conn:
            rows = await wq.list_endpoint_secrets(conn, after, RESEAL_BATCH, lock=write)
            for row in rows:
                total += await _reseal_secrets(conn, settings, row, write)
        if not rows:
            break
        after = (rows[-1]["church_id"], rows[-1]["id"])
    after = None
    while True:
        async with (db.transaction() if write else db.acquire()) as conn:
            rows = await wq.list_sealed_deliveries(conn, after, RESEAL_BATCH, lock=write)
            for row in rows:
                payload, count = reseal_stale(settings, row["payload"], row["church_id"])
                total += count
                if count and write:
                    await wq.rewrite_payload(conn, row["church_id"], row["id"], to_json(payload))
        if not rows:
            return total
        after = (rows[-1]["church_id"], rows[-1]["id"])


async def _reseal_secrets(conn: Connection, settings: Settings, row: Row, write: bool) -> int:
    church_id = row["church_id"]
    current, previous = row["secret_enc"], row["previous_secret_enc"]
    stale = int(not crypto.is_current(settings, current)) + int(
        previous is not None and not crypto.is_current(settings, previous))
    if stale and write:
        await wq.rewrite_secrets(
            conn, church_id, row["id"],
            crypto.reseal(settings, current, secret_place(church_id)),
            crypto.reseal(settings, previous, secret_place(church_id, previous=True))
            if previous is not None else None)
    return stale
