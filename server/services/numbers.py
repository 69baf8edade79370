"""Sending numbers: register, list and remove a church's numbers.

A number belongs to exactly one church (a second claim is 409, whichever church holds it).
New numbers start `pending`: linking a number to the carrier (messaging profile, webhook
URLs) is a later issue's job, which moves it to `linked` or `failed`.

Default MPS (messages per second) when the request gives none, by provider and number
type. Telnyx (CARRIERS.md §1.5): toll-free 20 MPS per number; long codes 0.1 MPS for
non-US traffic, while US 10DLC throughput is set per campaign (lowest AT&T class "T" is
75 SMS/min = 1.25/s), so we default a long code to 1 MPS, the whole number at or under
every class. Twilio is not covered by CARRIERS.md; its long-code and toll-free defaults
are commonly documented as 1 and 3 MPS, which we use.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

from db.engine import Database
from db.queries import numbers as q
from server.sms import phones
from server.platform.errors import Conflict, NotFound, ValidationFailed
from server.platform.jsonenc import iso_time

DEFAULT_MPS = {
    ("telnyx", "toll_free"): 20,
    ("telnyx", "long_code"): 1,
    ("twilio", "toll_free"): 3,
    ("twilio", "long_code"): 1,
}


def default_mps(provider: str, e164: str) -> int:
    kind = "toll_free" if phones.is_toll_free(e164) else "long_code"
    return DEFAULT_MPS[(provider, kind)]


def public_number(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "phone": row["phone"], "provider": row["provider"],
            "messaging_profile_id": row["messaging_profile_id"], "mps": row["mps"],
            "provider_handles_opt_out": row["provider_handles_opt_out"],
            "status": row["status"], "created_at": iso_time(row["created_at"])}


async def create_number(db: Database, church_id: UUID, body: dict[str, Any]) -> dict[str, Any]:
    try:
        phone = phones.normalize(body["phone"])
    except phones.InvalidPhone as exc:
        raise ValidationFailed.field("$.phone", str(exc)) from None
    provider = body["provider"]
    values = {
        "church_id": church_id, "phone": phone, "provider": provider,
        "messaging_profile_id": body.get("messaging_profile_id") or None,
        "mps": body.get("mps") or default_mps(provider, phone),
        "provider_handles_opt_out": bool(body.get("provider_handles_opt_out", False)),
        "status": "pending",
    }
    async with db.acquire() as conn:
        row = await q.insert_number(conn, values)
    if row is None:
        raise Conflict("This number is already registered.",
                       [{"field": "$.phone", "message": "This number is already registered."}])
    return public_number(row)


async def list_numbers(db: Database, church_id: UUID) -> list[dict[str, Any]]:
    async with db.acquire() as conn:
        return [public_number(r) for r in await q.list_numbers(conn, church_id)]


async def delete_number(db: Database, church_id: UUID, number_id: UUID | None) -> None:
    async with db.acquire() as conn:
        deleted = await q.delete_number(conn, church_id, number_id) if number_id else False
    if not deleted:
        raise NotFound("No such number.")
