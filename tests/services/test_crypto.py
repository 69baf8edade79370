"""Field encryption and the phone hash: round trips, key ids, tampering, key parsing."""
from __future__ import annotations

import base64

import pytest

from server.platform import crypto
from server.platform.settings import Settings


def _key(seed: int) -> str:
    return base64.b64encode(bytes([seed]) * 32).decode()


def _settings(keys: str, hash_key: str = "h" * 32) -> Settings:
    return Settings().replace(field_keys=keys, hash_key=hash_key)


def test_round_trip_under_the_newest_key_with_its_id() -> None:
    settings = _settings(f"k2:{_key(2)},k1:{_key(1)}")
    blob = crypto.encrypt(settings, "+14155552671")
    assert crypto.key_id_of(blob) == "k2"
    assert b"4155552671" not in blob
    assert crypto.decrypt(settings, blob) == "+14155552671"
    assert crypto.encrypt(settings, "+14155552671") != blob  # fresh nonce each time


def test_old_keys_stay_readable_and_removed_keys_do_not() -> None:
    old = _settings(f"k1:{_key(1)}")
    blob = crypto.encrypt(old, "ada@example.org")
    rotated = _settings(f"k2:{_key(2)},k1:{_key(1)}")
    assert crypto.decrypt(rotated, blob) == "ada@example.org"
    with pytest.raises(crypto.CryptoError, match="no configured field key"):
        crypto.decrypt(_settings(f"k2:{_key(2)}"), blob)


def test_tampering_is_detected() -> None:
    settings = _settings(f"k1:{_key(1)}")
    blob = bytearray(crypto.encrypt(settings, "+14155552671"))
    blob[-1] ^= 1
    with pytest.raises(crypto.CryptoError, match="authentication"):
        crypto.decrypt(settings, bytes(blob))
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(settings, b"\x02k1")
    # A key id swapped into the header fails too: the header is authenticated data.
    two = _settings(f"k1:{_key(1)},k9:{_key(1)}")
    swapped = b"\x02k9" + crypto.encrypt(two, "x")[3:]
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(two, swapped)


@pytest.mark.parametrize("spec", ["", "k1", f"k1:{_key(1)[:-4]}", "k1:not base64!",
                                  f":{_key(1)}", f"k1:{_key(1)},k1:{_key(2)}"])
def test_bad_key_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="YWM_FIELD_KEYS"):
        crypto.encrypt(_settings(spec), "x")


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
    env = {"YWM_HASH_KEY": "z" * 40}
    assert Settings.from_env(env).hash_key == "z" * 40
    assert "z" * 40 not in repr(Settings.from_env(env))
    with pytest.raises(Exception, match="YWM_HASH_KEY"):
        Settings.from_env({"YWM_HASH_KEY": "short"})
