"""Password hashing at RFC 9106 strength, and the re-hash of older hashes on sign-in."""
from __future__ import annotations

import hashlib
import secrets
from typing import Any
from uuid import UUID

import pytest

from db.queries import users as user_q
from server.auth import passwords
from server.platform.errors import Unauthorized
from server.platform.settings import Settings, SettingsError
from server.services import accounts
from tests.factories import create_church, unique_email

PRODUCTION = "$argon2id$v=19$m=65536,t=3,p=4$"


def _old_scrypt_hash(password: str) -> str:
    """What server/auth/sessions.py wrote before argon2id: scrypt N=2**14, r=8, p=1."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1,
                            maxmem=64 * 1024 * 1024)
    return f"scrypt${2**14}$8$1${salt.hex()}${digest.hex()}"


def test_production_strength_is_argon2id_rfc9106_and_recorded_in_the_hash() -> None:
    strong = Settings()  # the production default profile
    assert strong.password_hash_profile == "rfc9106"
    encoded = passwords.hash_password(strong, "correct horse")
    assert encoded.startswith(PRODUCTION)
    assert passwords.verify_password("correct horse", encoded)
    assert not passwords.verify_password("correct horsf", encoded)
    assert not passwords.needs_rehash(strong, encoded)
    # A cheap test-profile hash is below production strength.
    cheap = passwords.hash_password(Settings(password_hash_profile="test"), "correct horse")
    assert passwords.needs_rehash(strong, cheap)
    # The unknown-email path verifies against a hash of the same strength.
    assert passwords._dummy_hash("rfc9106").startswith(PRODUCTION)


def test_old_scrypt_hashes_still_verify_and_need_a_rehash() -> None:
    old = _old_scrypt_hash("hunter22")
    assert passwords.verify_password("hunter22", old)
    assert not passwords.verify_password("hunter23", old)
    assert passwords.needs_rehash(Settings(), old)
    for broken in ("scrypt$1$2", "scrypt$999999999999$8$1$00$00", "$argon2id$nonsense", ""):
        assert not passwords.verify_password("x", broken)


def test_the_cheap_profile_is_refused_in_production() -> None:
    base = {"YWM_SECRET_KEY": "s" * 40, "YWM_FIELD_KEYS": "k1:" + "A" * 43 + "=",
            "YWM_HASH_KEY": "h" * 40, "YWM_ADMIN_TOKEN": "t" * 40,
            "YWM_PUBLIC_URL": "https://ywm.example.org"}
    with pytest.raises(SettingsError, match="YWM_PASSWORD_HASH_PROFILE"):
        Settings.from_env({**base, "YWM_ENV": "production",
                           "YWM_PASSWORD_HASH_PROFILE": "test"})
    with pytest.raises(SettingsError, match="YWM_PASSWORD_HASH_PROFILE"):
        Settings.from_env({"YWM_ENV": "test", "YWM_PASSWORD_HASH_PROFILE": "md5"})


async def _stored_hash(deps: Any, user_id: Any) -> str:
    row = await deps.db.fetch_one("SELECT password_hash FROM users WHERE id = %(u)s",
                                  {"u": user_id})
    assert row is not None
    return str(row["password_hash"])


@pytest.mark.gen_test(timeout=60)
async def test_sign_in_rehashes_an_old_hash_at_production_strength(deps: Any) -> None:
    strong = deps.settings.replace(password_hash_profile="rfc9106")
    owner = await create_church(deps)
    email = unique_email("old")
    async with deps.db.transaction() as conn:
        user = await user_q.insert_user(conn, UUID(str(owner["church_id"])), email, "Old",
                                        "staff", _old_scrypt_hash("an old password"))
    assert user is not None

    # A wrong password changes nothing.
    with pytest.raises(Unauthorized):
        await accounts.login(deps.db, deps.redis, strong, email, "not the password")
    assert (await _stored_hash(deps, user["id"])).startswith("scrypt$")

    signin = await accounts.login(deps.db, deps.redis, strong, email, "an old password")
    assert signin.user["id"] == user["id"]
    upgraded = await _stored_hash(deps, user["id"])
    assert upgraded.startswith(PRODUCTION)
    assert passwords.verify_password("an old password", upgraded)

    # Signing in again keeps that hash: it is already at today's strength.
    await accounts.login(deps.db, deps.redis, strong, email, "an old password")
    assert await _stored_hash(deps, user["id"]) == upgraded


@pytest.mark.gen_test(timeout=60)
async def test_a_rehash_never_undoes_a_password_changed_meanwhile(deps: Any) -> None:
    owner = await create_church(deps)
    row = await deps.db.fetch_one("SELECT church_id, id, password_hash FROM users "
                                  "WHERE email = %(e)s", {"e": owner["email"]})
    assert row is not None
    changed = passwords.hash_password(deps.settings, "changed meanwhile")
    async with deps.db.transaction() as conn:
        assert await user_q.replace_password_hash(conn, row["church_id"], row["id"],
                                                  row["password_hash"], changed)
        # The login's swap, still expecting the hash it checked, must not apply.
        assert not await user_q.replace_password_hash(conn, row["church_id"], row["id"],
                                                      row["password_hash"], "stale")
    assert await _stored_hash(deps, row["id"]) == changed
