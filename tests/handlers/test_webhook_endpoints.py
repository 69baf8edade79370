"""Webhook endpoints over the API: owner-only management, secrets shown once and sealed,
test events and redeliveries to a real receiver verified with the documented snippet,
rotation's two signatures, bad input (nothing stored) and isolation between churches."""
from __future__ import annotations

import uuid
from typing import Any

import psycopg2
import pytest

from server.services import webhook_delivery
from tests.factories import add_user, register
from tests.webhook_kit import start_receiver, stop_receiver

W = "/api/v1/webhook-endpoints"


def stored_endpoints(deps: Any) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(deps.settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT url, secret_enc FROM webhook_endpoints")
            return cur.fetchall()
    finally:
        conn.close()


@pytest.mark.gen_test(timeout=60)
async def test_create_list_change_delete(api: Any, deps: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    status, body, _ = await api.post(W, json={
        "url": "http://127.0.0.1:9/hook", "events": ["member.opted_out", "message.received",
                                                     "member.opted_out"]}, token=token)
    assert status == 201, body
    created = body["data"]
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["member.opted_out", "message.received"]
    assert created["disabled"] is False and created["disabled_reason"] is None
    # Sealed at rest: the secret's bytes are nowhere in the row.
    [(url, sealed)] = stored_endpoints(deps)
    assert url == "http://127.0.0.1:9/hook" and created["secret"].encode() not in bytes(sealed)
    status, body, _ = await api.get(W, token=token)
    assert status == 200 and [e["id"] for e in body["data"]] == [created["id"]]
    assert "secret" not in body["data"][0]
    status, body, _ = await api.patch(f"{W}/{created['id']}", json={
        "events": ["broadcast.completed"], "disabled": True}, token=token)
    assert status == 200, body
    assert body["data"]["events"] == ["broadcast.completed"]
    assert body["data"]["disabled"] is True and body["data"]["disabled_reason"] == "manual"
    status, body, _ = await api.patch(f"{W}/{created['id']}", json={"disabled": False},
                                      token=token)
    assert body["data"]["disabled"] is False and body["data"]["disabled_at"] is None
    status, _, _ = await api.delete(f"{W}/{created['id']}", token=token)
    assert status == 204
    status, _, _ = await api.get(f"{W}/{created['id']}", token=token)
    assert status == 404
    assert stored_endpoints(deps) == []


@pytest.mark.gen_test(timeout=60)
async def test_bad_input_is_refused_and_nothing_stored(api: Any, deps: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    cases = [
        ({"url": "http://127.0.0.1:9/a", "events": ["message.deleted"]}, 422, "$.events[0]"),
        ({"url": "http://127.0.0.1:9/a", "events": []}, 422, "$.events"),
        ({"url": "http://127.0.0.1:9/a"}, 422, "$.events"),
        ({"events": ["message.status"]}, 422, "$.url"),
        ({"url": "ftp://example.org/x", "events": ["message.status"]}, 422, "$.url"),
        ({"url": "/relative", "events": ["message.status"]}, 422, "$.url"),
        ({"url": "http://user:pw@127.0.0.1:9/a", "events": ["message.status"]}, 422, "$.url"),
        ({"url": "http://127.0.0.1:9/a", "events": ["message.status"], "secret": "x"}, 422,
         "$.secret"),
    ]
    for request, code, field in cases:
        status, body, _ = await api.post(W, json=request, token=token)
        assert status == code, (request, body)
        assert field in [d["field"] for d in body["error"]["details"]], (request, body)
    # Private, loopback and link-local addresses, once development's allowance is off.
    allowing = deps.settings
    deps.settings = allowing.replace(webhook_allow_private=False)
    try:
        for url in ("http://127.0.0.1:8080/x", "http://localhost/x", "http://10.1.2.3/x",
                    "http://192.168.0.10/x", "http://169.254.169.254/latest/meta-data/",
                    "http://[::1]/x", "http://0.0.0.0/x", "http://224.0.0.1/x",
                    "http://[::ffff:10.0.0.1]/x", "http://100.64.0.1/x",
                    "http://2130706433/x"):
            status, body, _ = await api.post(W, json={"url": url, "events": ["message.status"]},
                                             token=token)
            assert status == 422, (url, body)
            assert body["error"]["details"][0]["field"] == "$.url", body
        # Production: https only (checked before the address).
        deps.settings = allowing.replace(env="production")
        status, body, _ = await api.post(W, json={"url": "http://127.0.0.1:9/x",
                                                  "events": ["message.status"]}, token=token)
        assert status == 422 and "https" in body["error"]["details"][0]["message"], body
    finally:
        deps.settings = allowing
    assert stored_endpoints(deps) == []
    # A second endpoint with the same URL: 409, and the first one stays alone.
    first = {"url": "http://127.0.0.1:9/same", "events": ["message.status"]}
    status, _, _ = await api.post(W, json=first, token=token)
    assert status == 201
    status, body, _ = await api.post(W, json={**first, "events": ["member.opted_in"]},
                                     token=token)
    assert status == 409 and body["error"]["details"][0]["field"] == "$.url", body
    assert len(stored_endpoints(deps)) == 1
    status, body, _ = await api.post(W, json={"url": "http://127.0.0.1:9/other",
                                              "events": ["message.status"]}, token=token)
    status, body, _ = await api.patch(f"{W}/{body['data']['id']}", json=first, token=token)
    assert status == 409, body
    status, body, _ = await api.patch(f"{W}/{uuid.uuid4()}", json={}, token=token)
    assert status == 422, body  # an empty change is refused before the lookup


@pytest.mark.gen_test(timeout=60)
async def test_only_the_owner_and_only_their_church(api: Any) -> None:
    a, b = await register(api, "A"), await register(api, "B")
    admin = await add_user(api, a["access_token"], "admin")
    status, body, _ = await api.post(W, json={"url": "http://127.0.0.1:9/a",
                                              "events": ["message.status"]},
                                     token=a["access_token"])
    endpoint_id = body["data"]["id"]
    status, _, _ = await api.get(W, token=admin["access_token"])
    assert status == 403
    status, _, _ = await api.post(W, json={"url": "http://127.0.0.1:9/b",
                                           "events": ["message.status"]},
                                  token=admin["access_token"])
    assert status == 403
    other = b["access_token"]
    delivery = uuid.uuid4()
    for method, path in [("GET", f"{W}/{endpoint_id}"), ("PATCH", f"{W}/{endpoint_id}"),
                         ("DELETE", f"{W}/{endpoint_id}"),
                         ("POST", f"{W}/{endpoint_id}/rotate-secret"),
                         ("POST", f"{W}/{endpoint_id}/test"),
                         ("GET", f"{W}/{endpoint_id}/deliveries"),
                         ("POST", f"{W}/{endpoint_id}/deliveries/{delivery}/redeliver"),
                         ("GET", f"{W}/not-a-uuid")]:
        status, body, _ = await api.request(method, path, token=other,
                                            json={"disabled": True} if method == "PATCH"
                                            else None)
        assert status == 404, (method, path, body)
    status, body, _ = await api.get(W, token=other)
    assert body["data"] == []
    # An API key never manages endpoints, whatever its scopes.
    status, body, _ = await api.post("/api/v1/api-keys", token=a["access_token"], json={
        "name": "Sync", "scopes": ["messages:read", "messages:write", "members:read",
                                   "members:write", "stats:read"]})
    assert status == 201, body
    key = body["data"]["key"]
    for method, path in [("GET", W), ("POST", W), ("GET", f"{W}/{endpoint_id}"),
                         ("POST", f"{W}/{endpoint_id}/rotate-secret")]:
        status, body, _ = await api.request(method, path, token=key, json={
            "url": "http://127.0.0.1:9/k", "events": ["message.status"]}
            if method == "POST" and path == W else None)
        assert status == 403, (method, path, body)


@pytest.mark.gen_test(timeout=90)
async def test_test_event_rotation_and_redelivery(api: Any, deps: Any) -> None:
    owner = await register(api)
    token = owner["access_token"]
    receiver = await start_receiver()
    try:
        status, body, _ = await api.post(W, json={"url": receiver.url,
                                                  "events": ["member.opted_out"]}, token=token)
        endpoint_id, first_secret = body["data"]["id"], body["data"]["secret"]
        receiver.secrets = [first_secret]
        status, body, _ = await api.post(f"{W}/{endpoint_id}/test", token=token)
        assert status == 200, body
        test_delivery = body["data"]
        assert test_delivery["status"] == "delivered" and test_delivery["status_code"] == 200
        assert test_delivery["attempt"] == 1 and test_delivery["latency_ms"] is not None
        [got] = receiver.received
        assert got.verified and got.event["type"] == "webhook.test"
        assert got.event["church_id"] == owner["church_id"]
        assert got.event["id"] == test_delivery["event_id"]
        assert got.headers["Ywm-Signature"].count("v1=") == 1
        # Rotation: the new secret and the old one both sign, as two v1= values.
        status, body, _ = await api.post(f"{W}/{endpoint_id}/rotate-secret", token=token)
        assert status == 200, body
        second_secret = body["data"]["secret"]
        assert second_secret != first_secret and body["data"]["previous_secret_expires_at"]
        receiver.secrets = [second_secret, first_secret]
        status, body, _ = await api.post(f"{W}/{endpoint_id}/test", token=token)
        assert body["data"]["status"] == "delivered", body
        latest = receiver.received[-1]
        assert latest.headers["Ywm-Signature"].count("v1=") == 2 and latest.verified
        # Redeliver the first test: a new pending delivery of the same event id, sent by
        # the delivery round a worker runs.
        status, body, _ = await api.post(
            f"{W}/{endpoint_id}/deliveries/{test_delivery['id']}/redeliver", token=token)
        assert status == 202, body
        again = body["data"]
        assert again["status"] == "pending" and again["event_id"] == test_delivery["event_id"]
        assert again["id"] != test_delivery["id"]
        sent = await webhook_delivery.deliver_round(deps, uuid.UUID(owner["church_id"]),
                                                    uuid.UUID(endpoint_id))
        assert sent == 1
        assert [r.event["id"] for r in receiver.received].count(test_delivery["event_id"]) == 2
        assert receiver.received[-1].verified
        status, body, _ = await api.get(f"{W}/{endpoint_id}/deliveries", token=token,
                                        params={"limit": 2})
        assert status == 200 and len(body["data"]) == 2 and body["meta"]["next_cursor"]
        assert body["data"][0]["id"] == again["id"]
        assert body["data"][0]["status"] == "delivered" and body["data"][0]["attempt"] == 1
        status, body, _ = await api.get(f"{W}/{endpoint_id}/deliveries", token=token,
                                        params={"cursor": body["meta"]["next_cursor"]})
        assert [d["id"] for d in body["data"]][-1] == test_delivery["id"]
        # A receiver that refuses: the test says so and is not retried.
        receiver.respond = lambda event, attempt: 500
        status, body, _ = await api.post(f"{W}/{endpoint_id}/test", token=token)
        assert body["data"]["status"] == "failed" and body["data"]["status_code"] == 500
        assert body["data"]["error"].startswith("HTTP 500")
        assert body["data"]["next_retry_at"] is None
    finally:
        await stop_receiver(receiver)
