"""Builders for inbox tests: a church number and inbound texts, through the real services.

Texts go through `server.services.inbound.record_inbound` (what the carrier webhooks
call), so conversations, messages and their `message.received` events are exactly what
production writes.
"""
from __future__ import annotations

import secrets
from typing import Any
from uuid import UUID

from db.queries import events as events_q
from server.events.log import unseal
from server.services import inbound, numbers


def random_phone() -> str:
    return f"+1202555{secrets.randbelow(10_000):04d}"


async def add_number(deps: Any, church_id: Any, provider: str = "telnyx") -> dict[str, Any]:
    phone = f"+1415555{secrets.randbelow(10_000):04d}"
    # Registered as the carrier's own number would be (no carrier is asked here).
    return await numbers.register_number(deps.db, UUID(str(church_id)),
                                         {"phone": phone, "provider": provider, "mps": 10})


async def text_in(deps: Any, number: dict[str, Any], from_phone: str, body: str = "Hello"
                  ) -> inbound.InboundResult:
    """One inbound text from `from_phone` to our `number`; creates member + conversation."""
    event_id = secrets.token_hex(8)
    result = await inbound.record_inbound(deps.db, deps.redis, deps.settings, inbound.InboundText(
        provider=number["provider"], event_id=event_id, message_id=f"msg-{event_id}",
        from_number=from_phone, to_number=number["phone"], body=body))
    assert result.outcome == "stored", result
    return result


async def conversation_with(deps: Any, church_id: Any, body: str = "Hello",
                            number: dict[str, Any] | None = None,
                            from_phone: str | None = None) -> dict[str, Any]:
    """A conversation started by one inbound text; returns the message.received data."""
    number = number or await add_number(deps, church_id)
    result = await text_in(deps, number, from_phone or random_phone(), body)
    received = [e for e in result.events if e["type"] == "message.received"]
    return received[0]["data"] | {"number": number}


async def church_events(deps: Any, church_id: Any, after: int = 0) -> list[dict[str, Any]]:
    """Event rows as the stream replays them (phones unsealed)."""
    async with deps.db.acquire() as conn:
        rows = await events_q.events_after(conn, church_id, after, 1000)
    return [{**row, "data": unseal(deps.settings, row["data"], church_id)} for row in rows]


async def event_head(deps: Any, church_id: Any) -> int:
    async with deps.db.acquire() as conn:
        return await events_q.last_event_id(conn, church_id)

