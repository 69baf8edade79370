"""Phones typed in other scripts' digits are the same phone (issue 10 item 9).

A member created as `４１５５５５２６７１` (fullwidth) or `٤١٥٥٥٥٢٦٧١` (Arabic-Indic) is stored as
+14155552671: the duplicate check sees it, and a STOP from the real number reaches them.
"""
from __future__ import annotations

from typing import Any

import pytest

from server.platform import queue
from tests.carriers.webhook_kit import HANDSET, church_with_number, telnyx_headers, telnyx_inbound
from tests.factories import login

M = "/api/v1/members"
SPELLINGS = [("fullwidth", "４１５５５５２６７１"), ("fullwidth with plus", "＋１ ４１５ ５５５ ２６７１"),
             ("arabic-indic", "٤١٥٥٥٥٢٦٧١"), ("extended arabic-indic", "۴۱۵-۵۵۵-۲۶۷۱")]
assert HANDSET == "+14155552671"


@pytest.fixture(autouse=True)
def _run_queue(settings: Any) -> None:
    """The STOP confirmation is enqueued on this run's own queue."""
    queue.configure(settings)


@pytest.mark.parametrize("label, spelling", SPELLINGS, ids=[s[0] for s in SPELLINGS])
@pytest.mark.gen_test(timeout=60)
async def test_other_digits_are_the_same_phone_end_to_end(api: Any, deps: Any, label: str,
                                                          spelling: str) -> None:
    setup = await church_with_number(deps, "telnyx")
    owner = await login(api, setup["owner"]["email"])
    token = owner["access_token"]
    body = {"first_name": "Ada", "last_name": "Lovelace", "phone": spelling}
    status, created, _ = await api.post(M, json=body, token=token)
    assert status == 201, created
    member = created["data"]
    assert member["phone"] == HANDSET

    # The same phone in ASCII, and the same spelling again, are duplicates.
    for again in (HANDSET, "(415) 555-2671", spelling):
        status, data, _ = await api.post(M, json={**body, "phone": again}, token=token)
        assert status == 409 and data["error"]["code"] == "conflict", (again, data)

    # A STOP from the real number opts out that member, and creates no second one.
    stop = telnyx_inbound("STOP", handset=HANDSET)
    status, data, _ = await api.request("POST", "/webhooks/telnyx", body=stop,
                                        headers=telnyx_headers(stop), token="")
    assert status == 200 and data["data"]["outcome"] == "stored", data
    status, read, _ = await api.get(f"{M}/{member['id']}", token=token)
    assert status == 200 and read["data"]["opt_in_sms"] is False
    assert read["data"]["opted_out_at"] is not None
    count = await deps.db.fetch_one("SELECT count(*) AS n FROM members WHERE church_id = %(c)s",
                                    {"c": setup["church_id"]})
    assert count is not None and count["n"] == 1
