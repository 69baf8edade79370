"""Simulated Telnyx number provisioning: `PATCH /telnyx/v2/phone_numbers/{number}/messaging`.

Assigns a messaging profile to one of "our" numbers. Faults for tests: set
`sim.link_failures = n` and the next n calls answer 503 (a provisioning outage).
Linked numbers are kept in `sim.linked` (number → profile id).
"""
from __future__ import annotations

import urllib.parse
from typing import Any

import tornado.web
import ujson


class TelnyxNumberMessagingHandler(tornado.web.RequestHandler):
    def initialize(self, sim: Any) -> None:  # type: ignore[override]
        self.sim = sim

    def _json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(ujson.dumps(body))

    def patch(self, raw_number: str) -> None:
        if self.request.headers.get("Authorization") != f"Bearer {self.sim.telnyx_api_key}":
            return self._json(401, {"errors": [{"code": "10009",
                                                "title": "Authentication failed"}]})
        if getattr(self.sim, "link_failures", 0) > 0:
            self.sim.link_failures -= 1
            return self._json(503, {"errors": [{"code": "10007", "title": "Unexpected error"}]})
        try:
            profile = ujson.loads(self.request.body or b"{}").get("messaging_profile_id")
        except (ValueError, AttributeError):
            profile = None
        if not profile:
            return self._json(422, {"errors": [{"code": "10015", "title": "Bad Request",
                                                "detail": "messaging_profile_id is required"}]})
        number = urllib.parse.unquote(raw_number)
        linked = getattr(self.sim, "linked", None)
        if linked is None:
            linked = self.sim.linked = {}
        linked[number] = profile
        self._json(200, {"data": {"record_type": "messaging_settings", "phone_number": number,
                                  "messaging_profile_id": profile}})
