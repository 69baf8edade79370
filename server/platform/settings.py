"""Settings: the one reader of the environment, turned into one frozen object.

Strict casts (booleans only true/false/1/0), development defaults for everything but
production secrets, and a startup error naming the variable that is missing or wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Mapping

DEV_SECRET_KEY = "dev-only-secret-key-change-me-0123456789abcdef"
# id:base64(32 bytes) pairs, newest first; a development key only.
DEV_FIELD_KEYS = "k1:ZGV2LW9ubHktZmllbGQta2V5LTAxMjM0NTY3ODlhYmM="
DEV_ADMIN_TOKEN = "dev-admin-token"
# HMAC key for member phone lookups (server/platform/crypto.py); its own key, never a field key.
DEV_HASH_KEY = "dev-only-phone-hash-key-0123456789abcdef"
DEV_TWILIO_AUTH_TOKEN = "dev-twilio-auth-token"
# The carrier simulator's DEVELOPMENT Ed25519 key pair (base64 of the raw 32 bytes; seed
# bytes 0x40..0x5f). Our server verifies Telnyx webhooks with the public half; the simulator
# signs with the private half. Production sets YWM_TELNYX_PUBLIC_KEY to the account's key.
DEV_TELNYX_PUBLIC_KEY = "JUO5L/EJVRFHatyDadtt3JM2ZaEZeN2hQE7hBmypVZ0="
DEV_TELNYX_PRIVATE_KEY = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="

SECRET_NAMES = ("YWM_SECRET_KEY", "YWM_FIELD_KEYS", "YWM_HASH_KEY", "YWM_ADMIN_TOKEN")


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise SettingsError(f"{name} must be one of true/false/1/0, got {raw!r}")


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be above 0, got {raw!r}")
    return value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/ywmessaging"
    database_replica_urls: tuple[str, ...] = ()
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: str = field(default=DEV_SECRET_KEY, repr=False)
    field_keys: str = field(default=DEV_FIELD_KEYS, repr=False)
    hash_key: str = field(default=DEV_HASH_KEY, repr=False)
    admin_token: str = field(default=DEV_ADMIN_TOKEN, repr=False)
    public_url: str = "http://127.0.0.1:8000"
    telnyx_api_key: str = field(default="dev-telnyx-key", repr=False)
    telnyx_api_base: str = "http://127.0.0.1:8900/telnyx/v2"  # real: https://api.telnyx.com/v2
    telnyx_public_key: str = DEV_TELNYX_PUBLIC_KEY
    twilio_account_sid: str = "ACdev00000000000000000000000000000"
    twilio_auth_token: str = field(default=DEV_TWILIO_AUTH_TOKEN, repr=False)
    twilio_api_base: str = "http://127.0.0.1:8900/twilio"  # real: https://api.twilio.com
    # Carrier simulator only: the key it signs Telnyx webhooks with.
    sim_telnyx_private_key: str = field(default=DEV_TELNYX_PRIVATE_KEY, repr=False)
    webhook_allow_private: bool = False
    # Believe X-Forwarded-For / X-Real-IP only behind our own proxy (deploy/nginx.conf):
    # otherwise any client could pick its own IP and dodge the per-IP auth rate limit.
    trust_proxy_headers: bool = False
    archive_url: str = "file://var/archive"
    retention_months: int = 24
    web_processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    log_level: str = "INFO"
    # Key prefix for Huey's queue names, so test runs never share a queue.
    queue_name: str = "ywm"
    max_body_bytes: int = 1_048_576
    max_import_bytes: int = 20 * 1_048_576
    access_token_ttl: int = 900
    session_ttl: int = 86_400
    auth_rate_per_second: float = 10.0
    auth_rate_burst: int = 20
    user_rate_per_second: float = 100.0
    user_rate_burst: int = 200
    price_per_segment_cents: float = 0.79
    # Bulk sends (server/services/dispatch.py). Attempts include the first one.
    send_max_attempts: int = 6
    send_retry_base_seconds: float = 30.0  # first retry delay; doubles per attempt, jittered
    send_retry_max_seconds: float = 3600.0
    send_lease_seconds: float = 60.0  # a claimed recipient is re-sent after this if unrecorded
    send_chunk_size: int = 100  # recipients one lane claims at a time
    send_lanes: int = 4  # concurrent dispatch tasks per broadcast
    send_concurrency: int = 16  # carrier requests in flight per lane
    # Send at 90% of a number's MPS: slots then tolerate ~110 ms of arrival-time jitter
    # (1/0.9 - 1 s) before any one-second window at the carrier goes over the MPS.
    throttle_headroom: float = 0.9
    reconcile_interval_seconds: float = 15.0
    # Password hashing strength, a profile of server/auth/passwords.py: "rfc9106" (argon2id,
    # 64 MiB, t=3, p=4), always in production; "test" (cheapest argon2id) for test runs.
    password_hash_profile: str = "rfc9106"
    # Per-account login back-off (server/auth/login_backoff.py): this many failures on one
    # email are free, then each further one locks the email for base * 2**(n - free - 1)
    # seconds, at most the cap (15 min); failures are forgotten after an hour of quiet.
    login_free_failures: int = 5
    login_backoff_base_seconds: float = 1.0
    login_backoff_max_seconds: float = 900.0
    login_failure_window_seconds: int = 3600

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    def replace(self, **changes: object) -> "Settings":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        mode = env.get("YWM_ENV", "development")
        if mode not in ("development", "test", "production"):
            raise SettingsError(f"YWM_ENV must be development, test or production, got {mode!r}")
        if mode == "production":
            for name in SECRET_NAMES:
                if not env.get(name):
                    raise SettingsError(f"{name} is required when YWM_ENV=production")
        values: dict[str, object] = {"env": mode}
        text = {
            "DATABASE_URL": "database_url", "REDIS_URL": "redis_url",
            "YWM_SECRET_KEY": "secret_key", "YWM_FIELD_KEYS": "field_keys",
            "YWM_HASH_KEY": "hash_key",
            "YWM_ADMIN_TOKEN": "admin_token", "YWM_PUBLIC_URL": "public_url",
            "YWM_TELNYX_API_KEY": "telnyx_api_key", "YWM_TELNYX_API_BASE": "telnyx_api_base",
            "YWM_TELNYX_PUBLIC_KEY": "telnyx_public_key",
            "YWM_TWILIO_ACCOUNT_SID": "twilio_account_sid",
            "YWM_TWILIO_AUTH_TOKEN": "twilio_auth_token",
            "YWM_TWILIO_API_BASE": "twilio_api_base", "YWM_ARCHIVE_URL": "archive_url",
            "YWM_LOG_LEVEL": "log_level", "YWM_QUEUE_NAME": "queue_name",
            "YWM_SIM_TELNYX_PRIVATE_KEY": "sim_telnyx_private_key",
            "YWM_PASSWORD_HASH_PROFILE": "password_hash_profile",
        }
        for var, attr in text.items():
            if env.get(var):
                values[attr] = env[var]
        ints = {
            "YWM_RETENTION_MONTHS": "retention_months", "YWM_WEB_PROCESSES": "web_processes",
            "YWM_MAX_BODY_BYTES": "max_body_bytes", "YWM_MAX_IMPORT_BYTES": "max_import_bytes",
        }
        for var, attr in ints.items():
            if env.get(var):
                values[attr] = _int(var, env[var])
        # Rate limits (API.md §3): tunable per deployment, and low in tests.
        for var, attr in {"YWM_AUTH_RATE_PER_SECOND": "auth_rate_per_second",
                          "YWM_USER_RATE_PER_SECOND": "user_rate_per_second"}.items():
            if env.get(var):
                values[attr] = _float(var, env[var])
        for var, attr in {"YWM_SEND_RETRY_BASE_SECONDS": "send_retry_base_seconds",
                          "YWM_SEND_RETRY_MAX_SECONDS": "send_retry_max_seconds",
                          "YWM_SEND_LEASE_SECONDS": "send_lease_seconds",
                          "YWM_THROTTLE_HEADROOM": "throttle_headroom",
                          "YWM_RECONCILE_INTERVAL_SECONDS": "reconcile_interval_seconds",
                          "YWM_PRICE_PER_SEGMENT_CENTS": "price_per_segment_cents",
                          "YWM_LOGIN_BACKOFF_BASE_SECONDS": "login_backoff_base_seconds",
                          "YWM_LOGIN_BACKOFF_MAX_SECONDS": "login_backoff_max_seconds",
                          }.items():
            if env.get(var):
                values[attr] = _float(var, env[var])
        for var, attr in {"YWM_SEND_MAX_ATTEMPTS": "send_max_attempts",
                          "YWM_SEND_CHUNK_SIZE": "send_chunk_size",
                          "YWM_SEND_LANES": "send_lanes",
                          "YWM_SEND_CONCURRENCY": "send_concurrency",
                          "YWM_LOGIN_FREE_FAILURES": "login_free_failures",
                          "YWM_LOGIN_FAILURE_WINDOW_SECONDS": "login_failure_window_seconds",
                          }.items():
            if env.get(var):
                values[attr] = _int(var, env[var])
        for var, attr in {"YWM_AUTH_RATE_BURST": "auth_rate_burst",
                          "YWM_USER_RATE_BURST": "user_rate_burst"}.items():
            if env.get(var):
                values[attr] = _int(var, env[var])
        for var, attr in {"YWM_WEBHOOK_ALLOW_PRIVATE": "webhook_allow_private",
                          "YWM_TRUST_PROXY_HEADERS": "trust_proxy_headers"}.items():
            if env.get(var):
                values[attr] = _bool(var, env[var])
        if env.get("DATABASE_REPLICA_URLS"):
            values["database_replica_urls"] = _list(env["DATABASE_REPLICA_URLS"])
        settings = cls(**values)  # type: ignore[arg-type]
        if len(settings.secret_key.encode()) < 32:
            raise SettingsError("YWM_SECRET_KEY must be at least 32 bytes")
        if len(settings.hash_key.encode()) < 32:
            raise SettingsError("YWM_HASH_KEY must be at least 32 bytes")
        if settings.password_hash_profile not in ("rfc9106", "test"):
            raise SettingsError("YWM_PASSWORD_HASH_PROFILE must be rfc9106 or test")
        if settings.production and settings.password_hash_profile != "rfc9106":
            raise SettingsError("YWM_PASSWORD_HASH_PROFILE must be rfc9106 in production")
        return settings
