"""Why a text failed, in neutral words whatever the carrier (a case table): the carrier
modules map their own codes; our HTTP layer's codes and bare HTTP statuses map to the
same words; our own sentences carry no code and so no reason."""
from __future__ import annotations

import pytest

from server.carriers import failure_reason

CASES = [
    ("telnyx", "40008: Undeliverable", "unreachable"),
    ("telnyx", "40300 Blocked due to STOP message", "opted_out"),
    ("telnyx", "40001: Not routable", "not_mobile"),
    ("twilio", "30003: Unreachable destination handset", "unreachable"),
    ("twilio", "21610 Attempt to send to unsubscribed recipient", "opted_out"),
    ("twilio", "21614 'To' number is not a valid mobile number", "not_mobile"),
    (None, "30006", "not_mobile"),  # a conversation message without its provider
    ("telnyx", "404 HTTP 404", "carrier_refused"),
    ("twilio", "503 HTTP 503", "carrier_unavailable"),
    ("telnyx", "timeout timeout", "no_answer"),
    ("telnyx", "network ConnectionRefusedError", "carrier_unavailable"),
    ("telnyx", "The member has opted out.", None),
    ("twilio", None, None),
]


@pytest.mark.parametrize("provider, error, reason", CASES)
def test_failure_reason(provider: str | None, error: str | None, reason: str | None) -> None:
    assert failure_reason(provider, error) == reason
