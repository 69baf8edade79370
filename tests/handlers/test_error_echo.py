"""A 422 names the field and the rule, never the value sent: a too-short password, a bad
phone or an unknown role must not come back in the error (nor in any other field)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.factories import register


@pytest.mark.gen_test(timeout=30)
async def test_validation_errors_never_repeat_the_value_sent(api: Any) -> None:
    owner = await register(api)
    secret = "Pw2!x"  # too short
    cases = [
        ("/api/v1/users", {"email": "kim@example.org", "name": "Kim", "role": "staff",
                           "password": secret}, "$.password", "Must be at least 8 characters."),
        ("/api/v1/auth/register", {"church_name": "C", "email": "a@example.org",
                                   "name": "A", "password": secret},
         "$.password", "Must be at least 8 characters."),
        ("/api/v1/users", {"email": "kim@example.org", "name": "Kim", "role": "Pw2!x-role",
                           "password": "long enough pw"}, "$.role",
         "Must be one of: owner, admin, staff."),
        ("/api/v1/users", {"email": "kim@example.org", "name": "Kim", "role": "staff",
                           "password": "Pw2!x" * 60}, "$.password",
         "Must be at most 256 characters."),
    ]
    for path, payload, field, sentence in cases:
        status, body, _ = await api.post(path, json=payload, token=owner["access_token"])
        assert status == 422, (path, body)
        assert {"field": field, "message": sentence} in body["error"]["details"], body
        assert "Pw2!x" not in json.dumps(body), body
