"""Field encryption at rest (AES-GCM with key ids) and the keyed phone hash.

Ciphertext layout: `len(key_id)` (1 byte) + key id (ASCII) + nonce (12 bytes) +
AES-GCM ciphertext and tag; the key id header is also the associated data, so it cannot
be swapped. Keys come from `settings.field_keys` ("k2:<base64 32 bytes>,k1:...", newest
first): new values are always written under the newest key, older keys stay readable
until `ywm rotate-keys` has re-encrypted every row.

Phone lookups use `phone_hash`: HMAC-SHA256 of the E.164 string with `settings.hash_key`,
a key of its own, so equality lookups never need the plaintext or a field key.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.platform.settings import Settings

NONCE_BYTES = 12  # the size AES-GCM is specified for (NIST SP 800-38D)


class CryptoError(Exception):
    """A ciphertext cannot be read: unknown key id, tampered or truncated bytes."""


@functools.lru_cache(maxsize=8)
def _parse_keys(spec: str) -> tuple[tuple[str, AESGCM], ...]:
    keys: list[tuple[str, AESGCM]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        key_id, sep, encoded = part.partition(":")
        try:
            raw = base64.b64decode(encoded, validate=True) if sep else b""
        except (binascii.Error, ValueError):
            raw = b""
        if not key_id or len(key_id) > 32 or not key_id.isascii() or len(raw) != 32:
            raise ValueError("YWM_FIELD_KEYS must be 'id:<base64 of 32 bytes>' items, "
                             "newest first")
        keys.append((key_id, AESGCM(raw)))
    if not keys:
        raise ValueError("YWM_FIELD_KEYS holds no key")
    if len({k for k, _ in keys}) != len(keys):
        raise ValueError("YWM_FIELD_KEYS repeats a key id")
    return tuple(keys)


def newest_key_id(settings: Settings) -> str:
    return _parse_keys(settings.field_keys)[0][0]


def key_header(settings: Settings) -> bytes:
    """The bytes every ciphertext under the newest key starts with."""
    key_id = newest_key_id(settings)
    return bytes([len(key_id)]) + key_id.encode()


def key_ids(settings: Settings) -> list[str]:
    return [key_id for key_id, _ in _parse_keys(settings.field_keys)]


def encrypt(settings: Settings, text: str) -> bytes:
    """Encrypt `text` under the newest field key."""
    key_id, aead = _parse_keys(settings.field_keys)[0]
    header = bytes([len(key_id)]) + key_id.encode()
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + aead.encrypt(nonce, text.encode(), header)


def key_id_of(blob: bytes) -> str:
    blob = bytes(blob)
    if not blob:
        raise CryptoError("empty ciphertext")
    return blob[1:1 + blob[0]].decode("ascii", "replace")


def decrypt(settings: Settings, blob: bytes) -> str:
    """Decrypt a value written by `encrypt` under any configured key."""
    blob = bytes(blob)
    if len(blob) < 2 + NONCE_BYTES:
        raise CryptoError("ciphertext is truncated")
    size = blob[0]
    header, rest = blob[:1 + size], blob[1 + size:]
    key_id = header[1:].decode("ascii", "replace")
    for candidate, aead in _parse_keys(settings.field_keys):
        if candidate == key_id:
            try:
                return aead.decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], header).decode()
            except InvalidTag:
                raise CryptoError(f"ciphertext under key {key_id!r} fails authentication"
                                  ) from None
    raise CryptoError(f"no configured field key has id {key_id!r}")


def encrypt_optional(settings: Settings, text: str | None) -> bytes | None:
    return encrypt(settings, text) if text else None


def decrypt_optional(settings: Settings, blob: bytes | None) -> str | None:
    return decrypt(settings, blob) if blob is not None else None


def phone_hash(settings: Settings, e164: str) -> bytes:
    """The lookup value of an E.164 phone: HMAC-SHA256 with the hash key (32 bytes)."""
    return hmac.new(settings.hash_key.encode(), e164.encode(), hashlib.sha256).digest()
