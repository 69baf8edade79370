"""The fixed signature vectors of CARRIERS.md §2.4 and §3.4, for signer and verifier."""
from __future__ import annotations

import base64

from server.carriers import telnyx, twilio
from server.platform.settings import DEV_TELNYX_PRIVATE_KEY, DEV_TELNYX_PUBLIC_KEY

TELNYX_SEED = base64.b64encode(bytes(range(32))).decode()
TELNYX_PUBLIC = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
TELNYX_TS = "1700000000"
TELNYX_BODY = (b'{"data":{"event_type":"message.received","id":'
               b'"00000000-0000-0000-0000-000000000001"},"meta":{"attempt":1}}')
TELNYX_SIG = ("4F7q8+uaBnxIbdYDfk2uT5u/5vwmie+ORiGcwDYY2w03CgzS1pQeoZE0CwP/2WIwv+PtLHW0"
              "rLvJyGN9PWj5CA==")

TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309",
                 "Digits": "1234", "From": "+14158675309", "To": "+18005551212"}
TWILIO_SIG = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def telnyx_ok(key: str = TELNYX_PUBLIC, signature: str | None = TELNYX_SIG,
              timestamp: str | None = TELNYX_TS, body: bytes = TELNYX_BODY,
              now: float = 1700000000) -> bool:
    return telnyx.verify_signature(key, signature, timestamp, body, now=now)


def twilio_ok(token: str = TWILIO_TOKEN, signature: str | None = TWILIO_SIG,
              url: str = TWILIO_URL, params: dict[str, str] = TWILIO_PARAMS) -> bool:
    return twilio.verify_signature(token, signature, url, params)


def test_telnyx_vector_signer() -> None:
    assert telnyx.sign(TELNYX_SEED, TELNYX_TS, TELNYX_BODY) == TELNYX_SIG


def test_telnyx_vector_verifier() -> None:
    assert telnyx_ok(now=1700000000 + 10)


def test_telnyx_rejects_tampering_age_and_wrong_key() -> None:
    now = 1700000000
    assert not telnyx_ok(body=TELNYX_BODY.replace(b"1}", b"2}"))
    assert not telnyx_ok(now=now + 301)
    assert not telnyx_ok(now=now - 301)  # from the future, too
    assert telnyx_ok(now=now + 300)
    assert not telnyx_ok(key=DEV_TELNYX_PUBLIC_KEY)
    assert not telnyx_ok(signature=None)
    assert not telnyx_ok(timestamp=None)
    assert not telnyx_ok(signature="not base64!")
    assert not telnyx_ok(key="")


def test_dev_key_pair_halves_match() -> None:
    headers = telnyx.signed_headers(DEV_TELNYX_PRIVATE_KEY, b"{}")
    assert telnyx.verify_signature(DEV_TELNYX_PUBLIC_KEY, headers[telnyx.SIGNATURE_HEADER],
                                   headers[telnyx.TIMESTAMP_HEADER], b"{}")


def test_twilio_vector_signer() -> None:
    assert twilio.signature(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS) == TWILIO_SIG


def test_twilio_vector_verifier() -> None:
    assert twilio_ok()
    # the same URL with the explicit default port is accepted too (twilio-python)
    assert twilio_ok(url="https://mycompany.com:443/myapp.php?foo=1&bar=2")


def test_twilio_rejects_tampering_and_wrong_token() -> None:
    assert not twilio_ok(params=dict(TWILIO_PARAMS, Digits="1235"))
    assert not twilio_ok(token="54321")
    assert not twilio_ok(url=TWILIO_URL + "&x=1")
    assert not twilio_ok(signature=None)
    # unknown params are part of the signature
    assert not twilio_ok(params=dict(TWILIO_PARAMS, Extra="1"))


def test_twilio_repeated_params_sign_every_value_sorted() -> None:
    pairs = [("MediaUrl", "b"), ("MediaUrl", "a"), ("Body", "x")]
    expected = twilio.signature("t", "https://h/p", {"Body": ["x"], "MediaUrl": ["a", "b"]})
    assert twilio.signature("t", "https://h/p", pairs) == expected
