"""Password hashing: argon2id at RFC 9106 strength, older hashes still verify and upgrade.

New hashes are argon2id PHC strings (`$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>`), so
each stored hash records its own parameters. Hashes written before (`scrypt$N$r$p$salt$
digest`, N=2**14) still verify; `needs_rehash` says a hash is below the configured
strength, and the login re-hashes it with the password it has just checked.

The strength is a named profile (`settings.password_hash_profile`): `rfc9106`, the
production default, is RFC 9106's second recommended option (argon2-cffi's default
profile); `test` is the cheapest valid argon2id, for test runs that hash hundreds of
passwords, and is refused in production (server/platform/settings.py).
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets

import argon2
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server.platform.settings import Settings

PROFILES: dict[str, argon2.Parameters] = {
    # RFC 9106 §4, second recommended option: 64 MiB, 3 passes, 4 lanes; ~0.1-0.4 s.
    "rfc9106": argon2.profiles.RFC_9106_LOW_MEMORY,
    # 8 KiB, one pass: only so a test suite that signs in hundreds of times stays fast.
    "test": argon2.profiles.CHEAPEST,
}
# scrypt hashes verify without a memory cap of their own choosing: bound what a stored
# hash may ask for (2**14 * 8 * 128 = 16 MiB was ever written; allow up to 2**17).
SCRYPT_MAXMEM = 2 * 128 * 8 * 2**17


@functools.cache
def _hasher(profile: str) -> PasswordHasher:
    return PasswordHasher.from_parameters(PROFILES[profile])


def hash_password(settings: Settings, password: str) -> str:
    """An argon2id PHC string of `password` at the configured profile."""
    return _hasher(settings.password_hash_profile).hash(password)


def verify_password(password: str, encoded: str) -> bool:
    """True if `password` matches `encoded`, an argon2 PHC string or an older scrypt hash."""
    if encoded.startswith("scrypt$"):
        return _verify_scrypt(password, encoded)
    try:
        # Any profile's hasher verifies any argon2 hash: parameters come from the hash.
        return _hasher("test").verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(settings: Settings, encoded: str) -> bool:
    """True if `encoded` is not argon2id at exactly the configured parameters."""
    if not encoded.startswith("$argon2id$"):
        return True
    try:
        return _hasher(settings.password_hash_profile).check_needs_rehash(encoded)
    except InvalidHashError:
        return True


def _verify_scrypt(password: str, encoded: str) -> bool:
    try:
        _, n, r, p, salt, digest = encoded.split("$")
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n),
                                   r=int(r), p=int(p), maxmem=SCRYPT_MAXMEM)
    except ValueError:  # malformed, or parameters past SCRYPT_MAXMEM
        return False
    return hmac.compare_digest(candidate.hex(), digest)


@functools.cache
def _dummy_hash(profile: str) -> str:
    # Verified against when the email is unknown, so both paths cost one hash at the
    # strength real hashes have.
    return _hasher(profile).hash(secrets.token_urlsafe(16))


async def check_password(settings: Settings, password: str, encoded: str | None) -> bool:
    """Verify in a worker thread (an argon2 verify must not block the event loop).

    `encoded=None` (unknown user) still runs a full verify at the configured strength, so
    timing does not reveal which emails exist.
    """
    loop = asyncio.get_running_loop()
    if encoded is None:
        dummy = _dummy_hash(settings.password_hash_profile)
        await loop.run_in_executor(None, verify_password, password, dummy)
        return False
    return await loop.run_in_executor(None, verify_password, password, encoded)


async def hash_password_async(settings: Settings, password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, hash_password, settings,
                                                            password)
