"""A local carrier that speaks Telnyx v2 and Twilio Messaging (CARRIERS.md §7).

Run it as `ywm carrier-sim --port 8900`, or in-process with `await start_simulator(...)`
(tests, benchmarks). Paths: `/telnyx/v2/messages`,
`/twilio/2010-04-01/Accounts/{sid}/Messages.json`, and the control API in
`server/carriers/simulator/control.py`. Credentials and the Telnyx signing key come from
`Settings` (YWM_TELNYX_API_KEY, YWM_TWILIO_ACCOUNT_SID/AUTH_TOKEN,
YWM_SIM_TELNYX_PRIVATE_KEY), so the simulator accepts exactly what our clients send.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from server.carriers.simulator import control
from server.carriers.simulator.carriers import TelnyxMessagesHandler, TwilioMessagesHandler
from server.carriers.simulator.numbers import (TelnyxNumberMessagingHandler,
                                               TelnyxPhoneNumbersHandler,
                                               TwilioIncomingNumbersHandler)
from server.carriers.simulator.state import SimConfig, SimState
from server.carriers.simulator.webhooks import WebhookSender
from server.platform.settings import Settings

log = logging.getLogger("ywm.carrier_sim")

__all__ = ["Simulator", "SimConfig", "start_simulator", "make_sim_app"]


class Simulator:
    """State, config and webhook client of one simulator; the app's handlers share it."""

    def __init__(self, settings: Settings, config: SimConfig) -> None:
        self.telnyx_api_key = settings.telnyx_api_key
        self.twilio_sid = settings.twilio_account_sid
        self.twilio_token = settings.twilio_auth_token
        # A copy with its own lists: tests change `account_numbers` in place.
        self._initial = dataclasses.replace(
            config, account_numbers=list(config.account_numbers),
            unattached_numbers=list(config.unattached_numbers))
        self.state = SimState(config=config)
        self.state.reseed()
        self.webhooks = WebhookSender(self.state, settings.sim_telnyx_private_key,
                                      self.twilio_sid, self.twilio_token)
        self.server: tornado.httpserver.HTTPServer | None = None
        self.port = 0

    @property
    def config(self) -> SimConfig:
        return self.state.config

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings_for_clients(self, settings: Settings) -> Settings:
        """`settings` with the carrier API bases pointing at this simulator."""
        return settings.replace(telnyx_api_base=f"{self.url}/telnyx/v2",
                                twilio_api_base=f"{self.url}/twilio")

    def reset(self) -> None:
        self.state.config = dataclasses.replace(
            self._initial, account_numbers=list(self._initial.account_numbers),
            unattached_numbers=list(self._initial.unattached_numbers))
        self.state.reset()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued webhook has been delivered or given up."""
        await self.webhooks.drain(timeout)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            await self.server.close_all_connections()
        await self.webhooks.close()


def _quiet(handler: tornado.web.RequestHandler) -> None:
    """No access log: one line per message would cost more than the simulation itself."""


def make_sim_app(sim: Simulator) -> tornado.web.Application:
    args = {"sim": sim}
    return tornado.web.Application([
        (r"/telnyx/v2/messages", TelnyxMessagesHandler, args),
        (r"/twilio/2010-04-01/Accounts/([^/]+)/Messages\.json", TwilioMessagesHandler, args),
        (r"/control/inbound", control.InboundHandler, args),
        (r"/control/received", control.ReceivedHandler, args),
        (r"/control/webhooks", control.WebhookLogHandler, args),
        (r"/control/config", control.ConfigHandler, args),
        (r"/control/block", control.BlockHandler, args),
        (r"/control/reset", control.ResetHandler, args),
        (r"/telnyx/v2/phone_numbers/([^/]+)/messaging", TelnyxNumberMessagingHandler, args),
        (r"/telnyx/v2/phone_numbers", TelnyxPhoneNumbersHandler, args),
        (r"/twilio/2010-04-01/Accounts/([^/]+)/IncomingPhoneNumbers\.json",
         TwilioIncomingNumbersHandler, args),
    ], log_function=_quiet)


async def start_simulator(settings: Settings, port: int = 0, address: str = "127.0.0.1",
                          **config: Any) -> Simulator:
    """Listen on `port` (0 = any free port) and return the running simulator."""
    values: dict[str, Any] = {"callback_base": settings.public_url}
    values.update(config)
    sim = Simulator(settings, SimConfig(**values))
    sockets = tornado.netutil.bind_sockets(port, address)
    sim.port = sockets[0].getsockname()[1]
    sim.server = tornado.httpserver.HTTPServer(make_sim_app(sim), idle_connection_timeout=75)
    sim.server.add_sockets(sockets)
    return sim


async def serve_forever(settings: Settings, port: int, address: str,
                        **config: Any) -> None:
    sim = await start_simulator(settings, port, address, **config)
    log.info("carrier simulator on %s:%s, webhooks to %s", address, sim.port,
             sim.config.callback_base)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
