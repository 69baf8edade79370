"""Settings: one table of variable, default and strict cast; the only environment reader."""
from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
from dataclasses import fields

import pytest

from server.platform.settings import (RENAMED, Settings, SettingsError, deprecated_names,
                                      environment_for_children)
from tests.server.ops_support import answers, free_port, wait_until, web_env

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Settings a production box may serve with (tests/server/test_fail_closed.py has the rules).
PRODUCTION = {**{name: "x" * 40 for name in (
    "YWM_SECRET_KEY", "YWM_FIELD_KEYS", "YWM_HASH_KEY", "YWM_ADMIN_TOKEN",
    "YWM_TELNYX_PUBLIC_KEY", "YWM_TWILIO_AUTH_TOKEN", "YWM_API_KEY_HASH_KEY")},
    "YWM_ENV": "production", "YWM_PUBLIC_URL": "https://ywm.example.org"}


@pytest.mark.parametrize("var, raw, attr, value", [
    ("YWM_RETENTION_MONTHS", "36", "retention_months", 36),
    ("YWM_SEND_LEASE_SECONDS", "2.5", "send_lease_seconds", 2.5),
    ("YWM_TRUST_PROXY_HEADERS", "TRUE", "trust_proxy_headers", True),
    ("YWM_TRUST_PROXY_HEADERS", "0", "trust_proxy_headers", False),
    ("YWM_DATABASE_REPLICA_URLS", "postgresql://a/x, ,postgresql://b/x", "database_replica_urls",
     ("postgresql://a/x", "postgresql://b/x")),
    ("YWM_BIND", "0.0.0.0", "bind", "0.0.0.0"),
    ("YWM_PORT", "8123", "port", 8123),
    ("YWM_METRICS_DIR", "/run/ywm-metrics", "metrics_directory", "/run/ywm-metrics"),
    ("YWM_VAR_DIR", "/srv/ywm", "metrics_directory", "/srv/ywm/metrics"),
    ("YWM_ENV", "production", "production", True),
])
def test_each_type_has_its_cast(var, raw, attr, value):
    assert getattr(Settings.from_env({**PRODUCTION, var: raw}), attr) == value


@pytest.mark.parametrize("var, raw", [
    ("YWM_RETENTION_MONTHS", "24.5"), ("YWM_SEND_LANES", "four"),
    ("YWM_WEBHOOK_ALLOW_PRIVATE", "yes"), ("YWM_THROTTLE_HEADROOM", "0"),
    ("YWM_SEND_LEASE_SECONDS", "soon"), ("YWM_ENV", "staging"), ("YWM_PORT", "http"),
    ("YWM_SECRET_KEY", "short"),
])
def test_a_wrong_value_stops_startup_naming_the_variable(var, raw):
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: raw})


def test_production_names_each_missing_secret():
    with pytest.raises(SettingsError, match="YWM_SECRET_KEY is required"):
        Settings.from_env({"YWM_ENV": "production"})


def test_empty_means_default_and_secrets_stay_out_of_repr():
    token = "t0ps3cret" * 4
    settings = Settings.from_env({"YWM_ENV": "test", "YWM_RETENTION_MONTHS": "",
                                  "YWM_ADMIN_TOKEN": token})
    assert settings.retention_months == 24 and settings.admin_token == token
    assert token not in repr(settings)


def test_every_field_is_one_row_with_its_own_variable():
    names = [f.metadata["env"] for f in fields(Settings)]
    assert len(names) == len(set(names))
    assert all(n.startswith("YWM_") for n in names
               if n not in ("DATABASE_URL", "REDIS_URL"))


def test_the_old_port_name_still_works_and_the_new_one_wins():
    assert RENAMED == {"YWM_PORT": "YW_PORT"}
    dev = {"YWM_ENV": "development"}
    assert Settings.from_env({**dev, "YW_PORT": "8100"}).port == 8100
    assert Settings.from_env({**dev, "YW_PORT": "8100", "YWM_PORT": "8200"}).port == 8200
    assert deprecated_names({"YW_PORT": "8100"}) == ["YW_PORT is deprecated: set YWM_PORT instead"]
    assert deprecated_names({"YWM_PORT": "8200"}) == []


def test_children_get_a_copy_of_the_environment():
    env = environment_for_children()
    env["YWM_SOMETHING_ONLY_THE_CHILD_SEES"] = "1"
    assert "YWM_SOMETHING_ONLY_THE_CHILD_SEES" not in environment_for_children()


def test_only_the_settings_module_reads_the_environment():
    readers = subprocess.run(
        ["grep", "-rln", "--include=*.py", "os.environ", "server", "handlers", "workers", "db"],
        cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert readers == ["server/platform/settings.py"]


def test_ywm_web_listens_on_the_old_port_variable_and_logs_the_deprecation(settings, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "server", "web"],
                            env=web_env(settings, tmp_path, YW_PORT=str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: answers(port)), "ywm web did not listen on $YW_PORT"
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert "YW_PORT is deprecated: set YWM_PORT instead" in output
