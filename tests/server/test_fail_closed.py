"""Fail closed: an unset YWM_ENV is production, and production never serves on a value
published in this repository (server/platform/settings.py), nor on a short admin token."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from server.platform.settings import (ADMIN_TOKEN_MIN_BYTES, DEV_ADMIN_TOKEN,
                                      DEV_API_KEY_HASH_KEY, DEV_FIELD_KEYS,
                                      DEV_HASH_KEY, DEV_SECRET_KEY, DEV_TELNYX_PUBLIC_KEY,
                                      DEV_TWILIO_AUTH_TOKEN, Settings, SettingsError)
from tests.server.ops_support import free_port, refuses

# A production box's own values: none of them is published anywhere.
OWN = {"YWM_SECRET_KEY": "s" * 40, "YWM_FIELD_KEYS": "k7:" + "Q" * 43 + "=",
       "YWM_HASH_KEY": "h" * 40, "YWM_ADMIN_TOKEN": "a" * ADMIN_TOKEN_MIN_BYTES,
       "YWM_TELNYX_PUBLIC_KEY": "T" * 43 + "=", "YWM_TWILIO_AUTH_TOKEN": "w" * 32,
       "YWM_API_KEY_HASH_KEY": "k" * 40, "YWM_PUBLIC_URL": "https://ywm.example.org"}
PUBLISHED = {"YWM_SECRET_KEY": DEV_SECRET_KEY, "YWM_FIELD_KEYS": DEV_FIELD_KEYS,
             "YWM_HASH_KEY": DEV_HASH_KEY, "YWM_ADMIN_TOKEN": DEV_ADMIN_TOKEN,
             "YWM_TELNYX_PUBLIC_KEY": DEV_TELNYX_PUBLIC_KEY,
             "YWM_TWILIO_AUTH_TOKEN": DEV_TWILIO_AUTH_TOKEN,
             "YWM_API_KEY_HASH_KEY": DEV_API_KEY_HASH_KEY}


@pytest.mark.parametrize("mode", [{}, {"YWM_ENV": "production"}])
def test_production_serves_on_its_own_values(mode):
    settings = Settings.from_env({**OWN, **mode})
    assert settings.production and settings.env == "production"


def test_an_unset_mode_is_production_and_says_how_to_run_a_development_box():
    with pytest.raises(SettingsError) as error:
        Settings.from_env({})
    message = str(error.value)
    assert message.startswith("YWM_ENV is unset, so production rules apply")
    assert "YWM_ENV=development" in message and "\n" not in message
    for var in PUBLISHED:  # every missing one named at once
        assert f"{var} is required in production" in message
    assert "YWM_PUBLIC_URL must be an https:// URL" in message


@pytest.mark.parametrize("var", sorted(PUBLISHED))
@pytest.mark.parametrize("mode", [{}, {"YWM_ENV": "production"}])
def test_production_refuses_each_published_value(var, mode):
    with pytest.raises(SettingsError, match=f"{var} is a published development value"):
        Settings.from_env({**OWN, **mode, var: PUBLISHED[var]})


@pytest.mark.parametrize("keys", [
    "k9:" + "Q" * 43 + "=," + DEV_FIELD_KEYS,  # the development key kept as an older key
    "k9:" + DEV_FIELD_KEYS.split(":", 1)[1],   # its key material under another id
])
def test_production_refuses_the_development_field_key_anywhere_in_the_list(keys):
    with pytest.raises(SettingsError, match="YWM_FIELD_KEYS is a published development value"):
        Settings.from_env({**OWN, "YWM_FIELD_KEYS": keys})


@pytest.mark.parametrize("url", ["http://ywm.example.org", "ywm.example.org", ""])
def test_production_needs_an_https_public_url(url):
    with pytest.raises(SettingsError, match="YWM_PUBLIC_URL must be an https:// URL"):
        Settings.from_env({**OWN, "YWM_PUBLIC_URL": url})


@pytest.mark.parametrize("mode", ["development", "test"])
def test_an_explicit_development_mode_runs_on_the_published_values(mode):
    settings = Settings.from_env({"YWM_ENV": mode})
    assert settings.secret_key == DEV_SECRET_KEY and not settings.production


@pytest.mark.parametrize("mode", ["development", "test", "production"])
def test_the_admin_token_has_a_minimum_length_in_every_mode(mode):
    short = "a" * (ADMIN_TOKEN_MIN_BYTES - 1)
    with pytest.raises(SettingsError, match=f"YWM_ADMIN_TOKEN must be at least "
                                            f"{ADMIN_TOKEN_MIN_BYTES} bytes"):
        Settings.from_env({**OWN, "YWM_ENV": mode, "YWM_ADMIN_TOKEN": short})
    assert len(DEV_ADMIN_TOKEN) >= ADMIN_TOKEN_MIN_BYTES


def _without_mode(settings, **extra: str) -> dict[str, str]:
    """This machine's environment with every YWM_ variable removed (as on a fresh box)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YWM_", "YW_"))}
    env.update({"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                "PYTHONUNBUFFERED": "1"}, **extra)
    return env


@pytest.mark.parametrize("command", [["web"], ["worker", "--no-periodic"], ["migrate"]])
def test_each_process_exits_with_a_one_line_reason_on_published_values(settings, command):
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "server", *command],
                          env=_without_mode(settings, YWM_PORT=str(port)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ywm: YWM_ENV is unset, so production rules apply"), lines
    assert "YWM_SECRET_KEY is required in production" in lines[0]
    assert refuses(port)


def test_production_with_one_published_value_left_still_exits(settings):
    proc = subprocess.run(
        [sys.executable, "-m", "server", "migrate"],
        env=_without_mode(settings, **{**OWN, "YWM_ENV": "production",
                                       "YWM_HASH_KEY": DEV_HASH_KEY}),
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "ywm: YWM_HASH_KEY is a published development value"
