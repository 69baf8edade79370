"""Field encryption at rest (AES-GCM with key ids) and the keyed phone hash.

Ciphertext layout: a header, then nonce (12 bytes) + AES-GCM ciphertext and tag. The
header is one byte, `0x80 | len(key_id)`, then the key id (ASCII). The associated data is
the header plus where the value is sealed (`Where`: table, column, church id), so neither
the key id nor the place can be swapped: a value copied into another column or another
church's row fails authentication (docs/decisions.md, "Where a ciphertext lives").
Values written before that (first byte below 0x80, associated data the header alone)
still decrypt anywhere, and count as stale for `ywm rotate-keys`, which re-seals them.
Keys come from `settings.field_keys` ("k2:<base64 32 bytes>,k1:...", newest
first): new values are always written under the newest key, older keys stay readable
until `ywm rotate-keys` has re-encrypted every row.

Phone lookups use `phone_hash`: HMAC-SHA256 of the E.164 string with `settings.hash_key`,
a key of its own, so equality lookups never need the plaintext or a field key;
`phone_last4_hash` does the same for the last four digits (member search).
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import unicodedata
from dataclasses import dataclass
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.platform.settings import Settings

NONCE_BYTES = 12  # the size AES-GCM is specified for (NIST SP 800-38D)
# Set in the header's first byte of every value bound to its place; key ids are at most
# 32 bytes, so the length never reaches this bit.
BOUND = 0x80


@dataclass(frozen=True)
class Where:
    """Where a sealed value lives, bound into its associated data. Copies made verbatim
    by SQL (message recipients' phones, cached group pages) keep the place they were
    sealed for: a recipient's phone is opened as `members.phone_enc` of its church."""
    table: str
    column: str
    church_id: UUID | str

    def associated_data(self, header: bytes) -> bytes:
        return b"\x00".join((header, self.table.encode(), self.column.encode(),
                              str(self.church_id).lower().encode()))


def member_phone(church_id: UUID | str) -> Where:
    return Where("members", "phone_enc", church_id)


def member_email(church_id: UUID | str) -> Where:
    return Where("members", "email_enc", church_id)


def event_field(church_id: UUID | str) -> Where:
    """A phone or email sealed inside an event's data (server/events/log.py)."""
    return Where("events", "data", church_id)


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


def _header(key_id: str) -> bytes:
    return bytes([BOUND | len(key_id)]) + key_id.encode()


def key_header(settings: Settings) -> bytes:
    """The bytes every current ciphertext starts with: newest key, bound to its place.
    Anything else (an older key, or no place) is stale for `ywm rotate-keys`."""
    return _header(newest_key_id(settings))


def key_ids(settings: Settings) -> list[str]:
    return [key_id for key_id, _ in _parse_keys(settings.field_keys)]


def encrypt(settings: Settings, text: str, where: Where) -> bytes:
    """Encrypt `text` under the newest field key, bound to `where` it will be stored."""
    key_id, aead = _parse_keys(settings.field_keys)[0]
    header = _header(key_id)
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + aead.encrypt(nonce, text.encode(), where.associated_data(header))


def key_id_of(blob: bytes) -> str:
    blob = bytes(blob)
    if not blob:
        raise CryptoError("empty ciphertext")
    return blob[1:1 + (blob[0] & ~BOUND)].decode("ascii", "replace")


def is_current(settings: Settings, blob: bytes) -> bool:
    """True if `blob` is under the newest key and bound to its place."""
    return bytes(blob).startswith(key_header(settings))


def decrypt(settings: Settings, blob: bytes, where: Where) -> str:
    """Decrypt a value written by `encrypt` for `where`, under any configured key.

    The error never carries the value: callers may log it.
    """
    blob = bytes(blob)
    if len(blob) < 2 + NONCE_BYTES:
        raise CryptoError("ciphertext is truncated")
    size = blob[0] & ~BOUND
    header, rest = blob[:1 + size], blob[1 + size:]
    key_id = header[1:].decode("ascii", "replace")
    # A value from before places were bound authenticates its header only.
    aad = where.associated_data(header) if blob[0] & BOUND else header
    for candidate, aead in _parse_keys(settings.field_keys):
        if candidate == key_id:
            try:
                return aead.decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], aad).decode()
            except InvalidTag:
                raise CryptoError(f"ciphertext under key {key_id!r} fails authentication "
                                  f"for {where.table}.{where.column}") from None
    raise CryptoError(f"no configured field key has id {key_id!r}")


def reseal(settings: Settings, blob: bytes, where: Where) -> bytes:
    """`blob` re-encrypted under the newest key and bound to `where` (key rotation)."""
    return encrypt(settings, decrypt(settings, blob, where), where)


def encrypt_optional(settings: Settings, text: str | None, where: Where) -> bytes | None:
    return encrypt(settings, text, where) if text else None


def decrypt_optional(settings: Settings, blob: bytes | None, where: Where) -> str | None:
    return decrypt(settings, blob, where) if blob is not None else None


def phone_hash(settings: Settings, e164: str) -> bytes:
    """The lookup value of an E.164 phone: HMAC-SHA256 with the hash key (32 bytes)."""
    return hmac.new(settings.hash_key.encode(), e164.encode(), hashlib.sha256).digest()


LAST_DIGITS = 4  # what people remember and read off a caller id: the last four digits


def phone_last4_hash(settings: Settings, church_id: UUID | str, phone: str) -> bytes | None:
    """The lookup value of a phone's last four digits (any text ending in them), bound to
    the church so equal endings do not line up across tenants; None for fewer than four
    digits. Same key as `phone_hash`, a different message prefix, so the two never meet."""
    # Digits of any script count as their ASCII twins (as phones.normalize reads them).
    digits = "".join(str(unicodedata.decimal(ch)) for ch in phone if ch.isdecimal())
    if len(digits) < LAST_DIGITS:
        return None
    message = b"\x00".join((b"last4", str(church_id).lower().encode(),
                             digits[-LAST_DIGITS:].encode()))
    return hmac.new(settings.hash_key.encode(), message, hashlib.sha256).digest()
