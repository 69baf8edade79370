"""The simulator's control API (not part of any carrier protocol).

- `POST /control/inbound` `{provider, from, to, text, media_urls?, wait?}`: a handset texts
  one of our numbers; with `wait` (default true) the answer says how our server replied.
- `GET /control/received?limit=`: accepted sends, per-number per-second counts, duplicate
  sends (same from/to/text), carrier block rules, auto-replies, counters, pending webhooks.
- `GET /control/webhooks`: the most recent webhook attempts and our server's statuses.
- `POST /control/config` `{...SimConfig fields}`: faults and timing; answers the config.
- `POST /control/block` `{from, to, blocked}`: add or lift a carrier block rule.
- `POST /control/reset`: forget everything and restore the start-up config.
"""
from __future__ import annotations

from typing import Any

import tornado.web
import ujson

from server.carriers.simulator.carriers import SimHandler, inject_inbound
from server.carriers.simulator.state import E164


class ControlHandler(SimHandler):
    def body(self) -> dict[str, Any]:
        try:
            value = ujson.loads(self.request.body or b"{}")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            self.json(400, {"error": "send a JSON object"})
            raise tornado.web.Finish()
        return value


class InboundHandler(ControlHandler):
    async def post(self) -> None:
        body = self.body()
        provider = body.get("provider", "telnyx")
        handset, ours, text = body.get("from", ""), body.get("to", ""), body.get("text", "")
        if provider not in ("telnyx", "twilio") or not E164.match(str(handset)) \
                or not E164.match(str(ours)) or not isinstance(text, str):
            return self.json(400, {"error": "need provider telnyx|twilio, from, to (E.164), "
                                            "text"})
        media = [str(u) for u in body.get("media_urls") or []]
        if body.get("wait", True):
            result = await inject_inbound(self.sim, provider, handset, ours, text, media)
            return self.json(200, result)
        self.sim.webhooks.spawn(inject_inbound(self.sim, provider, handset, ours, text, media))
        self.json(202, {"queued": True})


class ReceivedHandler(ControlHandler):
    def get(self) -> None:
        limit = self.get_query_argument("limit", None)
        summary = self.state.summary(int(limit) if limit is not None else None)
        summary["pending_webhooks"] = self.sim.webhooks.pending
        self.json(200, summary)


class WebhookLogHandler(ControlHandler):
    def get(self) -> None:
        self.json(200, {"deliveries": list(self.state.deliveries),
                        "pending": self.sim.webhooks.pending})


class ConfigHandler(ControlHandler):
    def get(self) -> None:
        self.json(200, self.state.config.as_dict())

    def post(self) -> None:
        changes = self.body()
        try:
            self.state.config.update(changes)
        except ValueError as exc:
            return self.json(400, {"error": str(exc)})
        if "seed" in changes:
            self.state.reseed()
        self.json(200, self.state.config.as_dict())


class BlockHandler(ControlHandler):
    def post(self) -> None:
        body = self.body()
        pair = (str(body.get("from", "")), str(body.get("to", "")))
        if body.get("blocked", True):
            self.state.blocked.add(pair)
        else:
            self.state.blocked.discard(pair)
        self.json(200, {"blocked": sorted([list(p) for p in self.state.blocked])})


class ResetHandler(ControlHandler):
    def post(self) -> None:
        self.sim.reset()
        self.json(200, {"reset": True})
