"""The fixed signature vectors of CARRIERS.md §2.4 and §3.4, for signer and verifier."""
from __future__ import annotations

import base64

from server.carriers import signatures as sig
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


def test_telnyx_vector_signer() -> None:
    assert sig.telnyx_sign(TELNYX_SEED, TELNYX_TS, TELNYX_BODY) == TELNYX_SIG


def test_telnyx_vector_verifier() -> None:
    now = 1700000000 + 10
    assert sig.telnyx_verify(TELNYX_PUBLIC, TELNYX_SIG, TELNYX_TS, TELNYX_BODY, now=now)


def test_telnyx_rejects_tampering_age_and_wrong_key() -> None:
    now = 1700000000
    assert not sig.telnyx_verify(TELNYX_PUBLIC, TELNYX_SIG, TELNYX_TS,
                                 TELNYX_BODY.replace(b"1}", b"2}"), now=now)
    assert not sig.telnyx_verify(TELNYX_PUBLIC, TELNYX_SIG, TELNYX_TS, TELNYX_BODY,
                                 now=now + 301)
    assert not sig.telnyx_verify(TELNYX_PUBLIC, TELNYX_SIG, TELNYX_TS, TELNYX_BODY,
                                 now=now - 301)  # from the future, too
    assert sig.telnyx_verify(TELNYX_PUBLIC, TELNYX_SIG, TELNYX_TS, TELNYX_BODY, now=now + 300)
    assert not sig.telnyx_verify(DEV_TELNYX_PUBLIC_KEY, TELNYX_SIG, TELNYX_TS, TELNYX_BODY,
                                 now=now)
    assert not sig.telnyx_verify(TELNYX_PUBLIC, None, TELNYX_TS, TELNYX_BODY, now=now)
    assert not sig.telnyx_verify(TELNYX_PUBLIC, TELNYX_SIG, None, TELNYX_BODY, now=now)
    assert not sig.telnyx_verify(TELNYX_PUBLIC, "not base64!", TELNYX_TS, TELNYX_BODY, now=now)
    assert not sig.telnyx_verify("", TELNYX_SIG, TELNYX_TS, TELNYX_BODY, now=now)


def test_dev_key_pair_halves_match() -> None:
    headers = sig.telnyx_headers(DEV_TELNYX_PRIVATE_KEY, b"{}")
    assert sig.telnyx_verify(DEV_TELNYX_PUBLIC_KEY, headers[sig.TELNYX_SIGNATURE_HEADER],
                             headers[sig.TELNYX_TIMESTAMP_HEADER], b"{}")


def test_twilio_vector_signer() -> None:
    assert sig.twilio_signature(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS) == TWILIO_SIG


def test_twilio_vector_verifier() -> None:
    assert sig.twilio_verify(TWILIO_TOKEN, TWILIO_SIG, TWILIO_URL, TWILIO_PARAMS)
    # the same URL with the explicit default port is accepted too (twilio-python)
    assert sig.twilio_verify(TWILIO_TOKEN, TWILIO_SIG,
                             "https://mycompany.com:443/myapp.php?foo=1&bar=2", TWILIO_PARAMS)


def test_twilio_rejects_tampering_and_wrong_token() -> None:
    tampered = dict(TWILIO_PARAMS, Digits="1235")
    assert not sig.twilio_verify(TWILIO_TOKEN, TWILIO_SIG, TWILIO_URL, tampered)
    assert not sig.twilio_verify("54321", TWILIO_SIG, TWILIO_URL, TWILIO_PARAMS)
    assert not sig.twilio_verify(TWILIO_TOKEN, TWILIO_SIG, TWILIO_URL + "&x=1", TWILIO_PARAMS)
    assert not sig.twilio_verify(TWILIO_TOKEN, None, TWILIO_URL, TWILIO_PARAMS)
    extra = dict(TWILIO_PARAMS, Extra="1")  # unknown params are part of the signature
    assert not sig.twilio_verify(TWILIO_TOKEN, TWILIO_SIG, TWILIO_URL, extra)


def test_twilio_repeated_params_sign_every_value_sorted() -> None:
    pairs = [("MediaUrl", "b"), ("MediaUrl", "a"), ("Body", "x")]
    expected = sig.twilio_signature("t", "https://h/p", {"Body": ["x"], "MediaUrl": ["a", "b"]})
    assert sig.twilio_signature("t", "https://h/p", pairs) == expected
