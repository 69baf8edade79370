"""The two carrier wire protocols as the simulator speaks them (CARRIERS.md §1, §3, §7).

Sends: auth check, E.164 check, opted-out pairs refused (Telnyx 40300, Twilio 21610),
configured 429/5xx faults and per-number MPS limit, then an accepted answer and, in the
background, signed status webhooks. Inbound: a text "from a handset" becomes a signed
`message.received` (Telnyx) or form post (Twilio); STOP/START keywords add or lift the
carrier's own block rule and record its auto-reply, as the real carriers do (§4.3).
"""
from __future__ import annotations

import asyncio
import base64
import email.utils
import secrets
import time
import uuid
from typing import Any

import tornado.web
import ujson

from server.carriers.simulator.state import E164, SimState, now
from server.carriers.simulator.webhooks import DELIVERY_FAILURE, TELNYX_ACCOUNT_CARRIER, iso
from server.sms.keywords import keyword_action

STOP_REPLY = ("You have successfully been unsubscribed. You will not receive any more "
              "messages from this number. Reply START to resubscribe.")
START_REPLY = "You have successfully been re-subscribed to messages from this number."
HELP_REPLY = "Reply STOP to unsubscribe. Msg&Data Rates May Apply."


class SimHandler(tornado.web.RequestHandler):
    def initialize(self, sim: Any) -> None:  # type: ignore[override]
        self.sim = sim
        self.state: SimState = sim.state

    def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.set_status(status)
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(ujson.dumps(body, ensure_ascii=False, escape_forward_slashes=False))

    def log_exception(self, *args: Any) -> None:  # quiet: faults are the point here
        return

    def twilio_authorized(self, path_sid: str) -> bool:
        """Basic auth with the simulated Twilio account's SID and token."""
        header = self.request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (user == path_sid == self.sim.twilio_sid
                and secrets.compare_digest(password, self.sim.twilio_token))

    async def fault(self, from_number: str) -> str | None:
        """Latency, then the injected failure for this request, if any."""
        config = self.state.config
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if self.state.chance(config.rate_429) or self.state.over_mps(from_number, now()):
            self.state.counters["rejected_429"] += 1
            return "429"
        if self.state.chance(config.rate_5xx):
            self.state.counters["rejected_5xx"] += 1
            return "5xx"
        return None

    async def stall(self) -> None:
        """After accepting: hold the answer back if a stall was asked for."""
        config = self.state.config
        if config.stall_sends > 0 and config.stall_ms > 0:
            config.stall_sends -= 1
            self.state.counters["stalled"] += 1
            await asyncio.sleep(config.stall_ms / 1000)


# ----- Telnyx ------------------------------------------------------------------------

def telnyx_error(code: str, title: str, detail: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "title": title}
    if detail:
        error["detail"] = detail
    return {"errors": [error]}


def telnyx_message(message_id: str, from_number: str, to: str, text: str, status: str,
                   direction: str = "outbound") -> dict[str, Any]:
    return {"record_type": "message", "id": message_id, "direction": direction,
            "type": "SMS", "from": {"phone_number": from_number,
                                    "carrier": TELNYX_ACCOUNT_CARRIER, "line_type": "VoIP"},
            "to": [{"phone_number": to, "status": status, "carrier": "T-MOBILE USA, INC.",
                    "line_type": "Wireless"}],
            "text": text, "encoding": "GSM-7", "parts": 1, "errors": [],
            "received_at": iso(now()), "sent_at": None, "completed_at": None,
            "valid_until": None, "wait_seconds": 0.0}


class TelnyxMessagesHandler(SimHandler):
    """POST /telnyx/v2/messages"""

    async def post(self) -> None:
        if self.request.headers.get("Authorization") != f"Bearer {self.sim.telnyx_api_key}":
            return self.json(401, telnyx_error("10009", "Authentication failed"))
        try:
            body = ujson.loads(self.request.body or b"")
            from_number, to, text = body.get("from", ""), body.get("to", ""), body.get("text")
        except (ValueError, AttributeError):
            return self.json(400, telnyx_error("10015", "Bad Request"))
        injected = await self.fault(from_number)
        if injected == "429":
            reset = str(max(1, int(self.state.config.retry_after + 0.999)))
            return self.json(429, telnyx_error(
                "10011", "Too many requests",
                "You have exceeded the maximum number of allowed requests."),
                {"x-ratelimit-limit": "1", "x-ratelimit-remaining": "0",
                 "x-ratelimit-reset": reset})
        if injected == "5xx":
            return self.json(503, telnyx_error("10007", "Unexpected error"))
        if not isinstance(to, str) or not E164.match(to):
            return self.json(400, telnyx_error("10016", "Phone number must be +E.164",
                                               "The 'to' number is not +E.164."))
        if not text:
            return self.json(400, telnyx_error("10004", "Missing required parameter"))
        if (from_number, to) in self.state.blocked:
            return self.json(403, telnyx_error(
                "40300", "Blocked due to STOP message",
                f"Messages cannot be sent from '{from_number}' to '{to}' due to an existing "
                "block rule."))
        message_id = str(uuid.uuid4())
        self.state.record_send("telnyx", message_id, from_number, to, text, now())
        await self.stall()
        self.json(200, {"data": telnyx_message(message_id, from_number, to, text, "queued")})
        if self.state.config.status_webhooks:
            self.sim.webhooks.spawn(emit_telnyx_statuses(
                self.sim, message_id, from_number, to, text, body.get("webhook_url"),
                body.get("webhook_failover_url")))


async def emit_telnyx_statuses(sim: Any, message_id: str, from_number: str, to: str,
                               text: str, url: str | None, failover: str | None) -> None:
    state: SimState = sim.state
    await asyncio.sleep(state.config.status_delay_ms / 1000)
    target = url or sim.webhooks.telnyx_url()
    sent = telnyx_message(message_id, from_number, to, text, "sent")
    sent["sent_at"] = iso(now())
    final = dict(sent)
    final["completed_at"] = iso(now())
    if state.rng.random() < state.config.delivered_ratio:
        final["to"] = [dict(sent["to"][0], status="delivered")]
    else:
        code, title = DELIVERY_FAILURE["telnyx"]
        final["to"] = [dict(sent["to"][0], status="delivery_failed")]
        final["errors"] = [{"code": code, "title": title}]
    order = [("message.sent", sent), ("message.finalized", final)]
    if state.chance(state.config.reorder_rate):
        order.reverse()
    for event_type, payload in order:
        await sim.webhooks.deliver_telnyx(event_type, payload, target, failover)


# ----- Twilio ------------------------------------------------------------------------

def twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def twilio_sid(prefix: str = "SM") -> str:
    return prefix + secrets.token_hex(16)


class TwilioMessagesHandler(SimHandler):
    """POST /twilio/2010-04-01/Accounts/{sid}/Messages.json"""

    async def post(self, path_sid: str) -> None:
        if not self.twilio_authorized(path_sid):
            return self.json(401, twilio_error(20003, "Authenticate", 401))
        args = {k: self.get_body_argument(k, "") for k in
                ("To", "From", "Body", "StatusCallback", "MessagingServiceSid")}
        from_number = args["From"] or args["MessagingServiceSid"]
        injected = await self.fault(from_number)
        if injected == "429":
            return self.json(429, twilio_error(20429, "Too Many Requests", 429),
                             {"Retry-After": str(self.state.config.retry_after)})
        if injected == "5xx":
            return self.json(500, twilio_error(20500, "Internal Server Error", 500))
        if not E164.match(args["To"]):
            return self.json(400, twilio_error(
                21211, f"The 'To' number {args['To']} is not a valid phone number.", 400))
        if not from_number:
            return self.json(400, twilio_error(21606, "The 'From' phone number is required",
                                               400))
        if not args["Body"]:
            return self.json(400, twilio_error(21602, "Message body is required.", 400))
        if (from_number, args["To"]) in self.state.blocked:
            return self.json(400, twilio_error(
                21610, "Attempt to send to unsubscribed recipient", 400))
        sid = twilio_sid()
        self.state.record_send("twilio", sid, from_number, args["To"], args["Body"], now())
        await self.stall()
        self.json(201, twilio_message(sid, self.sim.twilio_sid, from_number, args["To"],
                                      args["Body"]))
        if self.state.config.status_webhooks:
            self.sim.webhooks.spawn(emit_twilio_statuses(
                self.sim, sid, from_number, args["To"], args["StatusCallback"]))


def twilio_message(sid: str, account_sid: str, from_number: str, to: str, body: str
                   ) -> dict[str, Any]:
    date = email.utils.formatdate(usegmt=True)
    return {"sid": sid, "account_sid": account_sid, "messaging_service_sid": None,
            "from": from_number, "to": to, "body": body, "status": "queued",
            "direction": "outbound-api", "num_segments": "1", "num_media": "0",
            "price": None, "price_unit": "USD", "error_code": None, "error_message": None,
            "date_created": date, "date_updated": date, "date_sent": None,
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{account_sid}/Messages/"
                                          f"{sid}/Media.json"}}


async def emit_twilio_statuses(sim: Any, sid: str, from_number: str, to: str,
                               callback: str) -> None:
    state: SimState = sim.state
    await asyncio.sleep(state.config.status_delay_ms / 1000)
    url = callback or sim.webhooks.twilio_url()
    base = {"MessageSid": sid, "SmsSid": sid, "From": from_number, "To": to,
            "ApiVersion": "2010-04-01"}
    final = dict(base, MessageStatus="delivered", SmsStatus="delivered",
                 RawDlrDoneDate=time.strftime("%y%m%d%H%M", time.gmtime()))
    if state.rng.random() >= state.config.delivered_ratio:
        final.update(MessageStatus="undelivered", SmsStatus="undelivered",
                     ErrorCode=DELIVERY_FAILURE["twilio"][0])
    order = [dict(base, MessageStatus="sent", SmsStatus="sent"), final]
    if state.chance(state.config.reorder_rate):
        order.reverse()
    for params in order:
        await sim.webhooks.deliver_twilio("status", params, url)


# ----- inbound -----------------------------------------------------------------------

def carrier_keyword(state: SimState, provider: str, handset: str, our_number: str,
                    text: str) -> str | None:
    """The carrier's own keyword handling: block rule, auto-reply; returns the type."""
    matched = keyword_action(text)
    if matched is None or matched[0] == "review":
        return None
    action = matched[0]
    if action == "opt_out":
        state.blocked.add((our_number, handset))
        reply, kind = STOP_REPLY, "stop"
    elif action == "opt_in":
        state.blocked.discard((our_number, handset))
        reply, kind = START_REPLY, "start"
    else:
        reply, kind = HELP_REPLY, "help"
    state.auto_replies.append({"provider": provider, "from": our_number, "to": handset,
                               "text": reply, "type": kind})
    return kind


async def inject_inbound(sim: Any, provider: str, handset: str, our_number: str, text: str,
                         media_urls: list[str]) -> dict[str, Any]:
    kind = carrier_keyword(sim.state, provider, handset, our_number, text)
    sim.state.counters["inbound"] += 1
    if provider == "telnyx":
        message_id = str(uuid.uuid4())
        payload = telnyx_message(message_id, handset, our_number, text, "webhook_delivered",
                                 direction="inbound")
        payload["from"] = {"phone_number": handset, "carrier": "T-MOBILE USA, INC.",
                           "line_type": "Wireless"}
        payload["to"] = [{"phone_number": our_number, "status": "webhook_delivered",
                          "carrier": TELNYX_ACCOUNT_CARRIER, "line_type": "VoIP"}]
        payload["media"] = [{"url": u, "content_type": "image/jpeg", "hash_sha256": None,
                             "size": None} for u in media_urls]
        if kind:
            payload["autoresponse_type"] = kind
        result = await sim.webhooks.deliver_telnyx("message.received", payload,
                                                   sim.webhooks.telnyx_url())
        return dict(result, message_id=message_id)
    sid = twilio_sid()
    params = {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "From": handset,
              "To": our_number, "Body": text, "NumMedia": str(len(media_urls)),
              "NumSegments": "1", "ApiVersion": "2010-04-01"}
    for index, url in enumerate(media_urls):
        params[f"MediaUrl{index}"] = url
        params[f"MediaContentType{index}"] = "image/jpeg"
    result = await sim.webhooks.deliver_twilio("inbound", params, sim.webhooks.twilio_url())
    return dict(result, message_id=sid)
