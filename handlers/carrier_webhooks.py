"""POST /webhooks/<carrier>: one flow for every carrier's webhooks (CARRIERS.md §2, §3).

Verify the signature → parse into a neutral event → join the process's batch of webhooks
(server/services/webhook_batch.py: one transaction for the batch, its after-commit
follow-ups enqueued) → answer 2xx once the batch committed, 503 if it could not. The
carrier module handed to the route (server/carriers/<carrier>.py) owns everything
carrier-specific: signature, payload format, status map and the body the carrier wants
back; sample payloads are in its docstring. The answer comes only after the commit, so a
carrier that got a 2xx never needs to retry (ARCHITECTURE.md §5); duplicates it sends
anyway are deduplicated.
"""
from __future__ import annotations

from handlers.base import ApiHandler
from server.carriers import Carrier, WebhookRequest, storable
from server.deps import Deps
from server.platform.errors import Unauthorized
from server.platform.metrics import describe
from server.services.webhook_batch import batcher_for

WEBHOOKS_METRIC = "ywm_carrier_webhooks_total"
describe(WEBHOOKS_METRIC, "counter",
         "Carrier webhooks by provider and outcome (stored, duplicate, unknown_number, "
         "unmatched, held, ignored, unauthorized).")


class CarrierWebhookHandler(ApiHandler):
    auth = "none"
    rate_limit = None  # carriers are not throttled here; the signature is the gate

    def initialize(self, deps: Deps, carrier: Carrier) -> None:  # type: ignore[override]
        super().initialize(deps)
        self.carrier = carrier

    async def post(self) -> None:
        deps, carrier = self.deps, self.carrier
        request = WebhookRequest(
            url=deps.settings.public_url.rstrip("/") + self.request.uri,
            headers=self.request.headers, body=self.request.body,
            form=tuple((name, value.decode("utf-8", "replace"))
                       for name, values in self.request.body_arguments.items()
                       for value in values))
        if not carrier.verify(deps.settings, request):
            self.count("unauthorized")
            raise Unauthorized(carrier.UNAUTHORIZED)
        event = storable(carrier.parse(request))
        outcome = await batcher_for(deps).submit(event)
        self.count(outcome)
        reply = carrier.WEBHOOK_REPLY
        if reply is None:
            self.write_data({"outcome": outcome})
        else:
            self.set_header("Content-Type", reply.content_type)
            self.finish(reply.body)

    def count(self, outcome: str) -> None:
        """Unknown numbers and duplicates must be visible: count every webhook's outcome."""
        self.deps.metrics.inc(WEBHOOKS_METRIC, provider=self.carrier.NAME, outcome=outcome)
