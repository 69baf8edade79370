"""Field encryption and the phone hash: round trips, key ids, tampering, key parsing."""
from __future__ import annotations

import base64
import os
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.platform import crypto
from server.platform.settings import Settings


def _key(seed: int) -> str:
    return base64.b64encode(bytes([seed]) * 32).decode()


def _settings(keys: str, hash_key: str = "h" * 32) -> Settings:
    return Settings().replace(field_keys=keys, hash_key=hash_key)


CHURCH = uuid.UUID("00000000-0000-0000-0000-00000000000a")
PHONE = crypto.member_phone(CHURCH)


def test_round_trip_under_the_newest_key_with_its_id() -> None:
    settings = _settings(f"k2:{_key(2)},k1:{_key(1)}")
    blob = crypto.encrypt(settings, "+14155552671", PHONE)
    assert crypto.key_id_of(blob) == "k2"
    assert b"4155552671" not in blob
    assert crypto.decrypt(settings, blob, PHONE) == "+14155552671"
    assert crypto.encrypt(settings, "+14155552671", PHONE) != blob  # fresh nonce each time


def test_old_keys_stay_readable_and_removed_keys_do_not() -> None:
    old = _settings(f"k1:{_key(1)}")
    blob = crypto.encrypt(old, "ada@example.org", PHONE)
    rotated = _settings(f"k2:{_key(2)},k1:{_key(1)}")
    assert crypto.decrypt(rotated, blob, PHONE) == "ada@example.org"
    with pytest.raises(crypto.CryptoError, match="no configured field key"):
        crypto.decrypt(_settings(f"k2:{_key(2)}"), blob, PHONE)


def test_tampering_is_detected() -> None:
    settings = _settings(f"k1:{_key(1)}")
    blob = bytearray(crypto.encrypt(settings, "+14155552671", PHONE))
    blob[-1] ^= 1
    with pytest.raises(crypto.CryptoError, match="authentication"):
        crypto.decrypt(settings, bytes(blob), PHONE)
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(settings, b"\x02k1", PHONE)
    # A key id swapped into the header fails too: the header is authenticated data.
    two = _settings(f"k1:{_key(1)},k9:{_key(1)}")
    swapped = b"\x82k9" + crypto.encrypt(two, "x", PHONE)[3:]
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(two, swapped, PHONE)


@pytest.mark.parametrize("spec", ["", "k1", f"k1:{_key(1)[:-4]}", "k1:not base64!",
                                  f":{_key(1)}", f"k1:{_key(1)},k1:{_key(2)}"])
def test_bad_key_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="YWM_FIELD_KEYS"):
        crypto.encrypt(_settings(spec), "x", PHONE)


def test_phone_hash_is_keyed_and_stable() -> None:
    a = _settings(f"k1:{_key(1)}", hash_key="a" * 32)
    b = _settings(f"k2:{_key(2)}", hash_key="a" * 32)
    c = _settings(f"k1:{_key(1)}", hash_key="c" * 32)
    digest = crypto.phone_hash(a, "+14155552671")
    assert len(digest) == 32
    assert digest == crypto.phone_hash(b, "+14155552671")  # field keys do not matter
    assert digest != crypto.phone_hash(c, "+14155552671")  # the hash key does
    assert digest != crypto.phone_hash(a, "+14155552672")


def test_hash_key_setting() -> None:
    env = {"YWM_ENV": "test", "YWM_HASH_KEY": "z" * 40}
    assert Settings.from_env(env).hash_key == "z" * 40
    assert "z" * 40 not in repr(Settings.from_env(env))
    with pytest.raises(Exception, match="YWM_HASH_KEY"):
        Settings.from_env({"YWM_HASH_KEY": "short"})


def test_a_value_is_bound_to_its_table_column_and_church() -> None:
    settings = _settings(f"k1:{_key(1)}")
    blob = crypto.encrypt(settings, "+14155552671", PHONE)
    assert crypto.decrypt(settings, blob, crypto.member_phone(str(CHURCH).upper())) \
        == "+14155552671"  # the same church however its id is spelled
    elsewhere = [crypto.member_phone(uuid.uuid4()), crypto.member_email(CHURCH),
                 crypto.event_field(CHURCH), crypto.Where("message_recipients", "phone_enc",
                                                          CHURCH)]
    for where in elsewhere:
        with pytest.raises(crypto.CryptoError, match="authentication") as caught:
            crypto.decrypt(settings, blob, where)
        assert "4155552671" not in str(caught.value)
    # Clearing the "bound" bit does not turn it into an unbound (older) value either.
    unbound = bytes([blob[0] & 0x7F]) + blob[1:]
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(settings, unbound, crypto.member_phone(uuid.uuid4()))


def _unbound(key: bytes, key_id: str, text: str) -> bytes:
    """A value as written before places were bound: header-only associated data."""
    header = bytes([len(key_id)]) + key_id.encode()
    nonce = os.urandom(crypto.NONCE_BYTES)
    return header + nonce + AESGCM(key).encrypt(nonce, text.encode(), header)


def test_values_from_before_binding_still_decrypt_and_are_not_current() -> None:
    settings = _settings(f"k1:{_key(1)}")
    old = _unbound(bytes([1]) * 32, "k1", "+14155552671")
    assert crypto.decrypt(settings, old, PHONE) == "+14155552671"
    assert not crypto.is_current(settings, old)
    resealed = crypto.reseal(settings, old, PHONE)
    assert crypto.is_current(settings, resealed) and crypto.key_id_of(resealed) == "k1"
    assert crypto.decrypt(settings, resealed, PHONE) == "+14155552671"
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(settings, resealed, crypto.member_phone(uuid.uuid4()))
