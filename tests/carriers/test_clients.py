"""Carrier clients against the simulator: every outcome class, for both carriers."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from server.carriers.simulator import Simulator, start_simulator
from server.carriers import client_for
from server.carriers import http as carrier_http
from server.platform.settings import Settings

OURS, HANDSET = "+18445550001", "+14155552671"
PROVIDERS = ("telnyx", "twilio")


@pytest.fixture
def sim(io_loop: Any) -> Iterator[Simulator]:
    settings = Settings.from_env({"YWM_ENV": "test"})
    value = io_loop.run_sync(lambda: start_simulator(settings, status_webhooks=False, seed=1))
    yield value
    io_loop.run_sync(value.stop)
    io_loop.run_sync(carrier_http.close)


def make_client(sim: Simulator, provider: str, **options: float) -> Any:
    settings = sim.settings_for_clients(Settings.from_env({"YWM_ENV": "test"}))
    return client_for(provider, settings, **options)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.gen_test
async def test_sent_with_provider_id(sim: Simulator, provider: str) -> None:
    client = make_client(sim, provider)
    result = await client.send(from_number=OURS, to=HANDSET, body="Hello")
    assert result.outcome == "sent" and result.provider_message_id
    received = sim.state.summary()
    assert received["messages"][0]["id"] == result.provider_message_id
    assert received["messages"][0]["text"] == "Hello"
    if provider == "twilio":
        assert result.provider_message_id.startswith("SM")


@pytest.mark.parametrize("provider, profile", [("telnyx", None), ("twilio", None),
                                               ("twilio", "MG+1 & 2")])
@pytest.mark.gen_test
async def test_text_and_sender_arrive_as_written(sim: Simulator, provider: str,
                                                 profile: str | None) -> None:
    # The bodies are encoded by hand for speed: every character class must survive.
    text = "Café & co: 1+1=2? 100% / ok;\n\"quoted\" 😀"
    result = await make_client(sim, provider).send(
        from_number=OURS, to=HANDSET, body=text, messaging_profile_id=profile,
        recipient="r 1&2")
    assert result.outcome == "sent"
    received = sim.state.summary()["messages"][0]
    assert (received["text"], received["to"]) == (text, HANDSET)
    if provider == "twilio":
        assert received["from"] == (profile or OURS)


@pytest.mark.parametrize("provider, retry_after", [("telnyx", 3.0), ("twilio", 2.5)])
@pytest.mark.gen_test
async def test_429_is_retryable_with_rate_limit_headers(
        sim: Simulator, provider: str, retry_after: float) -> None:
    sim.config.update({"rate_429": 1.0, "retry_after": retry_after})
    client = make_client(sim, provider)
    result = await client.send(from_number=OURS, to=HANDSET, body="Hello")
    assert result.outcome == "retryable"
    assert result.error_code == ("10011" if provider == "telnyx" else "20429")
    # Telnyx announces x-ratelimit-reset in whole seconds; Twilio a Retry-After.
    assert result.retry_after == (3.0 if provider == "telnyx" else 2.5)
    assert sim.state.summary()["count"] == 0


@pytest.mark.gen_test
async def test_mps_limit_answers_429_past_the_limit(sim: Simulator) -> None:
    sim.config.update({"mps_limit": 2})
    client = make_client(sim, "telnyx")
    outcomes = [(await client.send(from_number=OURS, to=HANDSET, body=f"m{i}")).outcome
                for i in range(3)]
    # All three land in one second on a loaded box only most of the time: assert on counts.
    summary = sim.state.summary()
    assert max(summary["max_per_second"].values()) <= 2
    assert outcomes.count("sent") == summary["count"]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.gen_test
async def test_5xx_is_retryable(sim: Simulator, provider: str) -> None:
    sim.config.update({"rate_5xx": 1.0})
    client = make_client(sim, provider)
    result = await client.send(from_number=OURS, to=HANDSET, body="Hello")
    assert result.outcome == "retryable" and result.error_code in ("10007", "20500")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.gen_test
async def test_timeout_after_the_request_is_unconfirmed(sim: Simulator,
                                                        provider: str) -> None:
    # The request was written: the carrier may have it, so this is no plain retry.
    sim.config.update({"latency_ms": 1500})
    client = make_client(sim, provider, request_timeout=0.3)
    result = await client.send(from_number=OURS, to=HANDSET, body="Hello")
    assert result.outcome == "unconfirmed" and result.error_code == "timeout"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.gen_test
async def test_connection_refused_is_retryable(sim: Simulator, provider: str) -> None:
    settings = Settings.from_env({"YWM_ENV": "test"}).replace(
        telnyx_api_base="http://127.0.0.1:9/telnyx/v2", twilio_api_base="http://127.0.0.1:9")
    client = client_for(provider, settings, connect_timeout=1.0)
    result = await client.send(from_number=OURS, to=HANDSET, body="Hello")
    assert result.outcome == "retryable" and result.error_code == "network"


# Telnyx's "must be +E.164" is a bad request; Twilio's 21211 says the 'To' is invalid.
@pytest.mark.parametrize("provider, code, outcome", [("telnyx", "10016", "permanent"),
                                                     ("twilio", "21211", "undeliverable")])
@pytest.mark.gen_test
async def test_invalid_number_is_not_retried(sim: Simulator, provider: str, code: str,
                                             outcome: str) -> None:
    client = make_client(sim, provider)
    result = await client.send(from_number=OURS, to="4155552671", body="Hello")
    assert result.outcome == outcome and result.error_code == code
    assert not result.opted_out


@pytest.mark.parametrize("provider, code", [("telnyx", "40300"), ("twilio", "21610")])
@pytest.mark.gen_test
async def test_opted_out_pair_is_an_opt_out(sim: Simulator, provider: str,
                                            code: str) -> None:
    sim.state.blocked.add((OURS, HANDSET))
    client = make_client(sim, provider)
    result = await client.send(from_number=OURS, to=HANDSET, body="Hello")
    other = await client.send(from_number=OURS, to="+14155550123", body="Hello")
    assert (result.outcome, result.error_code, result.opted_out) == ("opted_out", code, True)
    assert other.outcome == "sent"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.gen_test
async def test_bad_credentials_are_permanent(sim: Simulator, provider: str) -> None:
    settings = sim.settings_for_clients(Settings.from_env({"YWM_ENV": "test"})).replace(
        telnyx_api_key="wrong", twilio_auth_token="wrong")
    client = client_for(provider, settings)
    result = await client.send(from_number=OURS, to=HANDSET, body="Hello")
    assert result.outcome == "permanent" and result.error_code in ("10009", "20003")


@pytest.mark.gen_test
async def test_duplicate_sends_are_counted(sim: Simulator) -> None:
    client = make_client(sim, "twilio")
    for _ in range(3):
        await client.send(from_number=OURS, to=HANDSET, body="Same")
    await client.send(from_number=OURS, to=HANDSET, body="Other")
    duplicates = sim.state.summary()["duplicates"]
    assert duplicates["count"] == 2 and duplicates["items"][0]["count"] == 3


@pytest.mark.gen_test
async def test_control_api(sim: Simulator, http_client: Any) -> None:
    import ujson

    async def call(method: str, path: str, body: Any = None) -> Any:
        response = await http_client.fetch(
            sim.url + path, method=method, raise_error=False,
            body=ujson.dumps(body) if body is not None else None)
        return response.code, ujson.loads(response.body)

    code, config = await call("POST", "/control/config", {
        "callback_base": "http://127.0.0.1:9", "webhook_attempts": 2,
        "webhook_retry_delay_ms": 1})
    assert code == 200 and config["webhook_attempts"] == 2
    assert (await call("POST", "/control/config", {"nope": 1}))[0] == 400
    code, result = await call("POST", "/control/inbound", {
        "provider": "telnyx", "from": HANDSET, "to": OURS, "text": "STOP"})
    assert code == 200 and result["delivered"] is False and result["attempts"] == 2
    code, received = await call("GET", "/control/received")
    assert received["blocked"] == [[OURS, HANDSET]]
    assert received["auto_replies"][0]["type"] == "stop"
    assert (await call("POST", "/control/inbound", {"provider": "x"}))[0] == 400
    assert (await call("POST", "/control/reset", {}))[0] == 200
    code, received = await call("GET", "/control/received")
    assert received["blocked"] == [] and received["counters"] == {}
    assert (await call("GET", "/control/config"))[1]["webhook_attempts"] == 3
