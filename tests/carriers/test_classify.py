"""Each carrier's send answers → the neutral outcomes (courier's handlers/errors.go): the
codes table of each carrier module, answer by answer, without the network."""
from __future__ import annotations

from typing import Any

import pytest

from server.carriers import telnyx, twilio


def telnyx_error(code: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "title": "t"}]}


def twilio_error(code: int) -> dict[str, Any]:
    return {"code": code, "message": "m", "status": 400}


# (label, status, body, headers) → (outcome, error_code, retry_after)
TELNYX = [
    ("accepted", 200, {"data": {"id": "m1"}}, {}, ("sent", None, None)),
    ("accepted without an id", 200, {"data": {}}, {}, ("permanent", "bad_response", None)),
    ("STOP block", 400, telnyx_error("40300"), {}, ("opted_out", "40300", None)),
    ("rate limited", 429, telnyx_error("10011"), {"x-ratelimit-reset": "3"},
     ("retryable", "10011", 3.0)),
    ("landline", 400, telnyx_error("40001"), {}, ("undeliverable", "40001", None)),
    ("undeliverable", 422, telnyx_error("40008"), {}, ("undeliverable", "40008", None)),
    ("invalid 'to'", 400, telnyx_error("40310"), {}, ("undeliverable", "40310", None)),
    ("not E.164", 400, telnyx_error("10016"), {}, ("permanent", "10016", None)),
    ("invalid 'from'", 400, telnyx_error("40305"), {}, ("permanent", "40305", None)),
    ("bad credentials", 401, telnyx_error("10009"), {}, ("permanent", "10009", None)),
    ("server error", 503, telnyx_error("10007"), {"Retry-After": "2"},
     ("retryable", "10007", 2.0)),
    ("no body", 502, None, {}, ("retryable", "502", None)),
    ("unknown 4xx", 400, {"nope": 1}, {}, ("permanent", "400", None)),
]
TWILIO = [
    ("accepted", 201, {"sid": "SM1"}, {}, ("sent", None, None)),
    ("accepted without a sid", 201, {}, {}, ("permanent", "bad_response", None)),
    ("unsubscribed recipient", 400, twilio_error(21610), {}, ("opted_out", "21610", None)),
    ("rate limited", 429, twilio_error(20429), {"Retry-After": "2.5"},
     ("retryable", "20429", 2.5)),
    ("429 without a code", 429, None, {}, ("retryable", "429", None)),
    ("invalid 'To'", 400, twilio_error(21211), {}, ("undeliverable", "21211", None)),
    ("not a mobile number", 400, twilio_error(21614), {}, ("undeliverable", "21614", None)),
    ("landline", 400, twilio_error(21214), {}, ("undeliverable", "21214", None)),
    ("invalid 'From'", 400, twilio_error(21212), {}, ("permanent", "21212", None)),
    ("body too long", 400, twilio_error(21617), {}, ("permanent", "21617", None)),
    ("bad credentials", 401, twilio_error(20003), {}, ("permanent", "20003", None)),
    ("server error", 500, twilio_error(20500), {}, ("retryable", "20500", None)),
]


@pytest.mark.parametrize("module, status, body, headers, expected", [
    *[(telnyx, *case[1:]) for case in TELNYX], *[(twilio, *case[1:]) for case in TWILIO]],
    ids=[f"telnyx: {c[0]}" for c in TELNYX] + [f"twilio: {c[0]}" for c in TWILIO])
def test_send_answers(module: Any, status: int, body: Any, headers: dict[str, str],
                      expected: tuple[str, str | None, float | None]) -> None:
    result = module.classify(status, body, headers)
    assert (result.outcome, result.error_code, result.retry_after) == expected
    assert result.opted_out is (expected[0] == "opted_out")
