"""Webhook dedupe rows live at least 72 h, then the hourly task prunes them."""
from __future__ import annotations

from typing import Any

import pytest

from server.services import inbound


@pytest.mark.gen_test
async def test_prune_keeps_72_hours(deps: Any) -> None:
    await deps.db.execute(
        "INSERT INTO inbound_dedupe (provider, provider_event_id, received_at) VALUES "
        "('telnyx', 'old', now() - interval '73 hours'), "
        "('telnyx', 'recent', now() - interval '71 hours'), ('twilio', 'new', now())", {})
    assert await inbound.prune_dedupe(deps.db) == 1
    rows = await deps.db.fetch_all("SELECT provider_event_id FROM inbound_dedupe "
                                   "ORDER BY provider_event_id", {})
    assert [r["provider_event_id"] for r in rows] == ["new", "recent"]


def test_the_task_is_registered() -> None:
    import workers
    names = list(workers.huey._registry._registry)  # type: ignore[attr-defined]
    assert any(name.endswith("inbound.prune_dedupe") for name in names)
