"""Webhook signatures of both carriers: signing (the simulator) and verifying (our server).

Telnyx (CARRIERS.md §2.4): Ed25519 over `timestamp + "|" + raw body`, headers
`telnyx-signature-ed25519` (base64, 64 bytes) and `telnyx-timestamp` (Unix seconds),
300 s tolerance in both directions, key = base64 of the raw 32-byte public key.
Twilio (§3.4): base64 HMAC-SHA1, keyed by the auth token, over the full URL followed by
every form parameter as `name + value` in sorted name order; compared in constant time.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time
from typing import Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

TELNYX_TOLERANCE_SECONDS = 300  # the official SDK's window, both directions
TELNYX_SIGNATURE_HEADER = "telnyx-signature-ed25519"
TELNYX_TIMESTAMP_HEADER = "telnyx-timestamp"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"

FormParams = Mapping[str, Sequence[str]] | Iterable[tuple[str, str]]


@functools.lru_cache(maxsize=8)
def _public_key(b64_key: str) -> Ed25519PublicKey | None:
    try:
        raw = base64.b64decode(b64_key, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 32:
        return None
    return Ed25519PublicKey.from_public_bytes(raw)


@functools.lru_cache(maxsize=8)
def _private_key(b64_seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(b64_seed))


def telnyx_sign(private_key_b64: str, timestamp: str, body: bytes) -> str:
    """Base64 Ed25519 signature of `timestamp|body` (what Telnyx puts in the header)."""
    message = timestamp.encode() + b"|" + body
    return base64.b64encode(_private_key(private_key_b64).sign(message)).decode()


def telnyx_headers(private_key_b64: str, body: bytes, now: float | None = None
                   ) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {TELNYX_SIGNATURE_HEADER: telnyx_sign(private_key_b64, timestamp, body),
            TELNYX_TIMESTAMP_HEADER: timestamp}


def telnyx_verify(public_key_b64: str, signature_b64: str | None, timestamp: str | None,
                  body: bytes, now: float | None = None) -> bool:
    """The SDK's check order: both headers, timestamp window, key and signature sizes."""
    if not signature_b64 or not timestamp:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > TELNYX_TOLERANCE_SECONDS:
        return False
    key = _public_key(public_key_b64)
    if key is None:
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(signature) != 64:
        return False
    try:
        key.verify(signature, timestamp.encode() + b"|" + body)
    except InvalidSignature:
        return False
    return True


def _pairs(params: FormParams) -> list[tuple[str, str]]:
    if isinstance(params, Mapping):
        return [(name, value) for name, values in params.items()
                for value in ([values] if isinstance(values, str) else values)]
    return list(params)


def twilio_signature(auth_token: str, url: str, params: FormParams) -> str:
    """Base64 HMAC-SHA1 of the URL plus sorted `name + value` pairs (twilio-python's order:
    names byte-wise sorted, repeated names with their distinct values sorted)."""
    by_name: dict[str, set[str]] = {}
    for name, value in _pairs(params):
        by_name.setdefault(name, set()).add(value)
    payload = url + "".join(name + value for name in sorted(by_name)
                            for value in sorted(by_name[name]))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _port_variants(url: str) -> list[str]:
    """Twilio signs with or without an explicit default port; try both (twilio-python)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if parts.port is None and default is not None and parts.hostname:
        variants.append(urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}")))
    elif parts.port == default and parts.hostname:
        netloc = parts.netloc.rsplit(":", 1)[0]
        variants.append(urlunsplit(parts._replace(netloc=netloc)))
    return variants


def twilio_verify(auth_token: str, signature: str | None, url: str,
                  params: FormParams) -> bool:
    if not signature or not auth_token:
        return False
    expected = signature.encode()
    pairs = _pairs(params)
    return any(hmac.compare_digest(twilio_signature(auth_token, candidate, pairs).encode(),
                                   expected)
               for candidate in _port_variants(url))
