"""Sending numbers: register, list and remove a church's numbers.

A number belongs to exactly one church (a second claim is 409, whichever church holds it),
and only a number the platform's carrier account holds can be claimed at all (422
otherwise; 503 when the carrier cannot be asked): inbound texts are routed by number, so
claiming a number the platform does not hold would hand a church texts meant for someone
else once the platform acquired it. New numbers start `pending`; linking them to the
carrier's messaging configuration (server/services/number_linking.py) moves them on.

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
from server.carriers import account_owns
from server.services.number_linking import MAX_LINK_ATTEMPTS
from server.sms import phones
from server.platform.errors import Conflict, NotFound, Unavailable, ValidationFailed
from server.platform.jsonenc import iso_time
from server.platform.settings import Settings

TAKEN = "This number is already registered."
NOT_OURS = "The platform's carrier account does not hold this number."

DEFAULT_MPS = {
    ("telnyx", "toll_free"): 20,
    ("telnyx", "long_code"): 1,
    ("twilio", "toll_free"): 3,
    ("twilio", "long_code"): 1,
}


def default_mps(provider: str, e164: str) -> int:
    kind = "toll_free" if phones.is_toll_free(e164) else "long_code"
    return DEFAULT_MPS[(provider, kind)]


# A number's state in words for the Numbers screen and API customers: (why, what to do).
READY = ("Ready: texts go out from this number.", None)
SETTING_UP = ("Being set up with the carrier.",
              "Nothing to do: this usually takes about a minute.")
NO_PROFILE = ("The carrier account has this number, but it is not attached to a messaging "
              "profile, so the carrier may refuse its texts.",
              "Attach it to a messaging profile in the Telnyx portal, or enter its "
              "messaging profile id here; then check again.")
STILL_TRYING = ("The carrier could not set up this number yet ({error}).",
                "Nothing to do: we try again every minute.")
GAVE_UP = ("The carrier refused to set up this number ({error}).",
           "Check the messaging profile id, then check again. If it keeps failing, "
           "contact support with this message.")


def status_words(row: dict[str, Any]) -> tuple[str, str | None]:
    """Why a number is in its state and what the owner should do (plain words)."""
    if row["status"] == "linked":
        return READY
    error = (row.get("last_link_error") or "").strip()
    if row["status"] == "pending" or not error:
        return SETTING_UP
    if error.split(" ", 1)[0] == "no_profile":
        return NO_PROFILE
    template = STILL_TRYING if row["link_attempts"] < MAX_LINK_ATTEMPTS else GAVE_UP
    return template[0].format(error=error), template[1]


def public_number(row: dict[str, Any], default: bool = False) -> dict[str, Any]:
    reason, action = status_words(row)
    return {"id": str(row["id"]), "phone": row["phone"], "provider": row["provider"],
            "messaging_profile_id": row["messaging_profile_id"], "mps": row["mps"],
            "provider_handles_opt_out": row["provider_handles_opt_out"],
            "status": row["status"], "status_reason": reason, "status_action": action,
            "link_error": row.get("last_link_error"), "is_default": default,
            "created_at": iso_time(row["created_at"])}


async def create_number(db: Database, settings: Settings, church_id: UUID,
                        body: dict[str, Any]) -> dict[str, Any]:
    """POST /numbers: a number no church has, held by the platform's carrier account."""
    phone = _phone(body)
    async with db.acquire() as conn:
        if await q.get_number_by_phone(conn, phone) is not None:
            raise _taken()
    ownership = await account_owns(settings, body["provider"], phone)
    if ownership == "unknown":
        raise Unavailable("The carrier could not confirm this number; try again shortly.")
    if ownership == "not_owned":
        raise ValidationFailed.field("$.phone", NOT_OURS)
    return await register_number(db, church_id, {**body, "phone": phone})


async def register_number(db: Database, church_id: UUID, body: dict[str, Any]
                          ) -> dict[str, Any]:
    """Store a number without asking the carrier: for `create_number` once it has, and
    for the demo seed, whose number the simulator's account holds from start-up."""
    phone = _phone(body)
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
        if row is None:  # another church registered it while the carrier was asked
            raise _taken()
        oldest = (await q.list_numbers(conn, church_id))[0]
    return public_number(row, default=oldest["id"] == row["id"])


def _phone(body: dict[str, Any]) -> str:
    try:
        return phones.normalize(body["phone"])
    except phones.InvalidPhone as exc:
        raise ValidationFailed.field("$.phone", str(exc)) from None


def _taken() -> Conflict:
    return Conflict(TAKEN, [{"field": "$.phone", "message": TAKEN}])


async def list_numbers(db: Database, church_id: UUID) -> list[dict[str, Any]]:
    """Oldest first; the oldest is the default sender (API.md §5)."""
    async with db.acquire() as conn:
        rows = await q.list_numbers(conn, church_id)
    return [public_number(r, default=i == 0) for i, r in enumerate(rows)]


async def update_number(db: Database, church_id: UUID, number_id: UUID | None,
                        changes: dict[str, Any]) -> dict[str, Any]:
    """PATCH /numbers/{id}: change the profile id or MPS; either way the number is set up
    with the carrier again (`pending`), which is also how an owner asks to check again
    after fixing it at the carrier."""
    async with db.transaction() as conn:
        current = await q.get_number(conn, church_id, number_id) if number_id else None
        if current is None:
            raise NotFound("No such number.")
        profile = changes.get("messaging_profile_id", current["messaging_profile_id"])
        row = await q.update_number(conn, church_id, current["id"], (profile or "").strip()
                                    or None, changes.get("mps", current["mps"]))
        oldest = (await q.list_numbers(conn, church_id))[0]
    assert row is not None
    return public_number(row, default=oldest["id"] == row["id"])


async def delete_number(db: Database, church_id: UUID, number_id: UUID | None) -> None:
    async with db.acquire() as conn:
        deleted = await q.delete_number(conn, church_id, number_id) if number_id else False
    if not deleted:
        raise NotFound("No such number.")
