"""One runner for every carrier's webhook case table (courier's handlertest, in Python).

A `Case` is: the carrier, the raw webhooks posted in order (the last one is the one under
test), how the last one is signed, what may exist before (a sent reply or a broadcast
recipient carrying a provider id), and what must follow: HTTP status, the outcome counted
in the webhook metric (and echoed in Telnyx's JSON answer), and the rows and events the
webhooks left. `run_case` runs one against the real app, database and Redis.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from server.carriers import carrier, telnyx
from tests.carriers.webhook_kit import (church_with_number, dedupe_count, sent_reply,
                                        snapshot, telnyx_headers, twilio_request)

OTHER_TELNYX_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # CARRIERS.md vector seed
Payload = bytes | dict[str, str]  # Telnyx: the raw JSON body; Twilio: the form fields
Check = Callable[[dict[str, Any]], None]


@dataclass
class Case:
    label: str
    carrier: str
    webhooks: list[Payload]
    # How the last webhook is signed: ok, upper_case_headers, missing, tampered, wrong_key,
    # old, future, garbage (Telnyx); ok, missing, tampered, wrong_key, other_url (Twilio).
    signature: str = "ok"
    production: bool = False         # the public development key / token must be refused
    carrier_handles_opt_out: bool = False  # the number's carrier answers keywords itself
    # What exists before: "reply" (an outbound conversation message) or "broadcast" (a
    # broadcast recipient), carrying the provider id `PROVIDER_ID`; either needs a
    # member, so the first webhook should be an inbound text.
    before: str | None = None
    before_status: str = "sent"
    status: int = 200
    outcome: str | None = "stored"   # counted for the last webhook; None = not counted
    messages: list[tuple[str, str]] | None = None  # (direction, status) in order
    events: list[str] | None = None  # event types in order
    ledger: list[str] | None = None  # consent ledger actions in order
    opted_in: bool | None = None     # the (only) member's opt_in_sms
    nothing_stored: bool = False     # no member, message, event or dedupe row at all
    error_code: str | None = None    # the API error code of a 4xx
    checks: list[Check] = field(default_factory=list)  # anything else, on the snapshot


PROVIDER_ID = "provider-msg-1"


def label(case: Case) -> str:
    return f"{case.carrier}: {case.label}"


def sign(settings: Any, case: Case, payload: Payload, how: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one webhook, signed (or mis-signed) as `how` says."""
    if case.carrier == "telnyx":
        assert isinstance(payload, bytes)
        return _telnyx_signed(payload, how)
    assert isinstance(payload, dict)
    return _twilio_signed(settings, payload, how)


def _telnyx_signed(body: bytes, how: str) -> tuple[bytes, dict[str, str]]:
    headers = telnyx_headers(body)
    variants: dict[str, Callable[[], tuple[bytes, dict[str, str]]]] = {
        "ok": lambda: (body, headers),
        "upper_case_headers": lambda: (body, {k.upper(): v for k, v in headers.items()}),
        "missing": lambda: (body, {"Content-Type": "application/json"}),
        "tampered": lambda: (body.replace(b"Hello", b"Hellp"), headers),
        "wrong_key": lambda: (body, telnyx_headers(body, key=OTHER_TELNYX_KEY)),
        "old": lambda: (body, telnyx_headers(body, at=time.time() - 301)),
        "future": lambda: (body, telnyx_headers(body, at=time.time() + 360)),
        "garbage": lambda: (body, dict(headers, **{telnyx.SIGNATURE_HEADER: "x"})),
    }
    return variants[how]()


def _twilio_signed(settings: Any, params: dict[str, str], how: str
                   ) -> tuple[bytes, dict[str, str]]:
    body, headers = twilio_request(settings, params)
    variants: dict[str, Callable[[], tuple[bytes, dict[str, str]]]] = {
        "ok": lambda: (body, headers),
        "missing": lambda: (body, {"Content-Type": headers["Content-Type"]}),
        "tampered": lambda: (body.replace(b"Hello", b"Hellp"), headers),
        "wrong_key": lambda: twilio_request(settings, params, token="not-the-token"),
        # Signed over another URL (e.g. the server's own address), not YWM_PUBLIC_URL.
        "other_url": lambda: twilio_request(
            settings.replace(public_url="https://elsewhere.example.org"), params,
            token=settings.twilio_auth_token),
    }
    return variants[how]()


async def post(api: Any, deps: Any, case: Case, payload: Payload, how: str = "ok"
               ) -> tuple[int, Any]:
    body, headers = sign(deps.settings, case, payload, how)
    status, data, _ = await api.request("POST", f"/webhooks/{case.carrier}", body=body,
                                        headers=headers, token="")
    return status, data


def counted(deps: Any, case: Case, outcome: str) -> float:
    return deps.metrics.counted("ywm_carrier_webhooks_total", provider=case.carrier,
                                outcome=outcome)


def expected_answer(case: Case, outcome: str) -> Any:
    """What the carrier gets back on success: its fixed reply, or our JSON outcome."""
    reply = carrier(case.carrier).WEBHOOK_REPLY
    if reply is not None:
        return reply.body.encode()
    return {"data": {"outcome": outcome}, "meta": {}}


async def run_case(api: Any, deps: Any, case: Case) -> dict[str, Any]:
    """Post the case's webhooks, check every expectation; returns the final snapshot."""
    setup = await church_with_number(deps, case.carrier,
                                     provider_handles_opt_out=case.carrier_handles_opt_out)
    *earlier, last = case.webhooks
    for index, payload in enumerate(earlier):
        assert (await post(api, deps, case, payload))[0] == 200
        if index == 0 and case.before:
            await BEFORE[case.before](deps, setup, case)
    if case.production:
        deps.settings = deps.settings.replace(env="production")
    before = counted(deps, case, case.outcome) if case.outcome else 0
    status, answer = await post(api, deps, case, last, case.signature)
    assert status == case.status, (status, answer)
    if case.error_code is not None:
        assert answer["error"]["code"] == case.error_code
    if case.outcome is not None:
        assert counted(deps, case, case.outcome) == before + 1
        if status == 200:
            assert answer == expected_answer(case, case.outcome)
    rows = await snapshot(deps, setup["church_id"])
    _check_rows(case, rows)
    if case.nothing_stored:
        assert rows["members"] == [] and rows["messages"] == [] and rows["events"] == []
        assert await dedupe_count(deps) == 0
    for check in case.checks:
        check(rows)
    return rows


def _check_rows(case: Case, rows: dict[str, Any]) -> None:
    if case.messages is not None:
        assert [(m["direction"], m["status"]) for m in rows["messages"]] == case.messages
    if case.events is not None:
        assert [e["type"] for e in rows["events"]] == case.events
    if case.ledger is not None:
        assert [r["action"] for r in rows["ledger"]] == case.ledger
    if case.opted_in is not None:
        assert len(rows["members"]) == 1 and rows["members"][0]["opt_in_sms"] is case.opted_in


async def _sent_reply(deps: Any, setup: dict[str, Any], case: Case) -> None:
    await sent_reply(deps, setup, case.carrier, PROVIDER_ID, case.before_status)


async def _broadcast_recipient(deps: Any, setup: dict[str, Any], case: Case) -> None:
    """The member as a recipient of a broadcast, sent with `PROVIDER_ID`."""
    church = setup["church_id"]
    async with deps.db.acquire() as conn:
        member = await conn.fetch_one("SELECT id, phone_enc, phone_hash FROM members "
                                      "WHERE church_id = %(c)s", {"c": church})
        message = await conn.fetch_one(
            "INSERT INTO messages (church_id, body, status) VALUES (%(c)s, 'Hi all', "
            "'sending') RETURNING id", {"c": church})
        await conn.execute(
            "INSERT INTO message_recipients (church_id, message_id, member_id, phone_enc, "
            "phone_hash, status, provider, provider_message_id) VALUES (%(c)s, %(m)s, "
            "%(mem)s, %(pe)s, %(ph)s, %(s)s, %(p)s, %(pid)s)",
            {"c": church, "m": message["id"], "mem": member["id"], "pe": member["phone_enc"],
             "ph": member["phone_hash"], "s": case.before_status, "p": case.carrier,
             "pid": PROVIDER_ID})


BEFORE: dict[str, Callable[[Any, dict[str, Any], Case], Awaitable[None]]] = {
    "reply": _sent_reply, "broadcast": _broadcast_recipient}

