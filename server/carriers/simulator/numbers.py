"""Simulated number inventory and provisioning of the platform's carrier accounts.

- `GET /telnyx/v2/phone_numbers?filter[phone_number]=` and
  `GET /twilio/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json?PhoneNumber=`: the
  account's numbers matching one phone (`SimConfig.account_numbers`; tests add numbers
  through `POST /control/config` or `sim.config.account_numbers`).
- `PATCH /telnyx/v2/phone_numbers/{number}/messaging`: assigns a messaging profile to
  one of "our" numbers. Faults for tests: set `sim.link_failures = n` and the next n calls
  answer 503 (a provisioning outage). Linked numbers are kept in `sim.linked`
  (number → profile id).
- `GET /telnyx/v2/phone_numbers/{number}/messaging`: the number's messaging settings. The
  account's numbers come attached to ACCOUNT_PROFILE (set up in the portal), except those
  in `SimConfig.unattached_numbers`; a number the account does not hold is 404.
"""
from __future__ import annotations

import urllib.parse
from typing import Any

import tornado.web
import ujson

from server.carriers.simulator.carriers import SimHandler, twilio_error


def _telnyx_number(phone: str) -> dict[str, Any]:
    return {"record_type": "phone_number", "id": str(abs(hash(phone))), "phone_number": phone,
            "status": "active", "messaging_profile_id": None}


class TelnyxPhoneNumbersHandler(SimHandler):
    """GET /telnyx/v2/phone_numbers"""

    def get(self) -> None:
        if self.request.headers.get("Authorization") != f"Bearer {self.sim.telnyx_api_key}":
            return self.json(401, {"errors": [{"code": "10009",
                                               "title": "Authentication failed"}]})
        wanted = self.get_query_argument("filter[phone_number]", None)
        owned = [p for p in self.state.config.account_numbers if wanted in (None, p)]
        self.json(200, {"data": [_telnyx_number(p) for p in owned],
                        "meta": {"total_results": len(owned), "page_number": 1,
                                 "page_size": 20, "total_pages": 1}})


class TwilioIncomingNumbersHandler(SimHandler):
    """GET /twilio/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json"""

    def get(self, path_sid: str) -> None:
        if not self.twilio_authorized(path_sid):
            return self.json(401, twilio_error(20003, "Authenticate", 401))
        wanted = self.get_query_argument("PhoneNumber", None)
        owned = [p for p in self.state.config.account_numbers if wanted in (None, p)]
        self.json(200, {"incoming_phone_numbers": [
            {"sid": "PN" + format(abs(hash(p)), "032x")[:32], "account_sid": path_sid,
             "phone_number": p, "friendly_name": p} for p in owned],
            "page": 0, "page_size": 50, "start": 0, "end": max(0, len(owned) - 1)})


ACCOUNT_PROFILE = "sim-profile"  # the profile the simulated account's numbers come with


class TelnyxNumberMessagingHandler(tornado.web.RequestHandler):
    def initialize(self, sim: Any) -> None:  # type: ignore[override]
        self.sim = sim

    def _json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(ujson.dumps(body))

    def get(self, raw_number: str) -> None:
        if self.request.headers.get("Authorization") != f"Bearer {self.sim.telnyx_api_key}":
            return self._json(401, {"errors": [{"code": "10009",
                                                "title": "Authentication failed"}]})
        number = urllib.parse.unquote(raw_number)
        config = self.sim.state.config
        profile = (getattr(self.sim, "linked", None) or {}).get(number)
        if profile is None and number in config.account_numbers:
            profile = None if number in config.unattached_numbers else ACCOUNT_PROFILE
        elif profile is None:
            return self._json(404, {"errors": [{"code": "10005",
                                                "title": "Resource not found"}]})
        self._json(200, {"data": {"record_type": "messaging_settings", "phone_number": number,
                                  "messaging_profile_id": profile}})

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
