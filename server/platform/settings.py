"""Settings: the one reader of the environment, turned into one frozen object.

The `Settings` class body is the table: each field names its environment variable and its
default, and its type picks the strict cast (booleans only true/false/1/0, as Starlette's
config.py). Development defaults exist for everything; they are published in this
repository, so production refuses them. Fail closed: an unset YWM_ENV is production, and
production starts only with its own value for every `published` row and an https://
YWM_PUBLIC_URL. A wrong value stops startup with one line naming every variable at fault.
"""
from __future__ import annotations

import logging
import os
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Mapping

log = logging.getLogger("ywm.settings")

DEV_SECRET_KEY = "dev-only-secret-key-change-me-0123456789abcdef"
# id:base64(32 bytes) pairs, newest first; a development key only.
DEV_FIELD_KEYS = "k1:ZGV2LW9ubHktZmllbGQta2V5LTAxMjM0NTY3ODlhYmM="
DEV_ADMIN_TOKEN = "dev-only-admin-token-0123456789abcdef"
# HMAC key for member phone lookups (server/platform/crypto.py); its own key, never a field key.
DEV_HASH_KEY = "dev-only-phone-hash-key-0123456789abcdef"
DEV_TWILIO_AUTH_TOKEN = "dev-twilio-auth-token"
# HMAC key of API-key secrets (server/auth/api_keys.py): its own key, so no other secret
# can verify (or be used to forge a lookup of) an integrator's key.
DEV_API_KEY_HASH_KEY = "dev-only-api-key-hash-key-0123456789abcdef"
# The carrier simulator's DEVELOPMENT Ed25519 key pair (base64 of the raw 32 bytes; seed
# bytes 0x40..0x5f). Our server verifies Telnyx webhooks with the public half; the simulator
# signs with the private half. Production sets YWM_TELNYX_PUBLIC_KEY to the account's key.
DEV_TELNYX_PUBLIC_KEY = "JUO5L/EJVRFHatyDadtt3JM2ZaEZeN2hQE7hBmypVZ0="
DEV_TELNYX_PRIVATE_KEY = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="

MODES = ("development", "test", "production")
# The admin token opens every church's queues and dead letters (/api/v1/admin/*): as long as
# the signing keys, so it cannot be guessed through the rate limiter.
ADMIN_TOKEN_MIN_BYTES = 32
# Every published development value of the table (the defaults of its `published` rows,
# each field key and its key material alone): production refuses all of them.
DEV_FIELD_KEY_MATERIAL = tuple(pair.split(":", 1)[1] for pair in DEV_FIELD_KEYS.split(","))
# Old variable names still read (with a logged warning) so existing deployments keep
# working until their configuration is updated: new name -> old name.
RENAMED = {"YWM_PORT": "YW_PORT"}


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def _text(name: str, raw: str) -> str:
    return raw


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


def _positive(name: str, raw: str) -> float:
    # Every float setting is a rate, a delay or a ratio: zero or less is a typo.
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be above 0, got {raw!r}")
    return value


def _list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _sentinels(name: str, raw: str) -> tuple[str, ...]:
    entries = _list(name, raw)
    for entry in entries:
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"{name} must be a comma list of host:port, got {entry!r}")
    return entries


def _mode(name: str, raw: str) -> str:
    if raw not in MODES:
        raise SettingsError(f"{name} must be development, test or production, got {raw!r}")
    return raw


def _archive_url(name: str, raw: str) -> str:
    if not raw.startswith(("file:///", "s3://")) or raw.rstrip("/") in ("file:", "s3:"):
        raise SettingsError(f"{name} must be file:///<absolute path> or s3://<bucket>[/prefix]"
                            f", got {raw!r}")
    return raw


def _password_profile(name: str, raw: str) -> str:
    if raw not in ("rfc9106", "test"):
        raise SettingsError(f"{name} must be rfc9106 or test, got {raw!r}")
    return raw


def _one_of(*choices: str) -> Callable[[str, str], str]:
    def cast(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(f"{name} must be one of {'/'.join(choices)}, got {raw!r}")
        return raw
    return cast


Cast = Callable[[str, str], Any]
# The cast for each field type; a field of another type must name its own cast.
CASTS: dict[Any, Cast] = {str: _text, int: _int, float: _positive, bool: _bool,
                          tuple[str, ...]: _list}


def setting(env: str, default: Any = MISSING, *, factory: Callable[[], Any] | None = None,
            secret: bool = False, cast: Cast | None = None, published: bool = False,
            min_bytes: int = 0) -> Any:
    """One row of the table: the variable `env` (empty or unset: `default`).

    `published`: the default is a development value printed in this repository, so
    production refuses it (and leaving the variable unset). `min_bytes`: the shortest
    value accepted in every mode."""
    metadata = {"env": env, "cast": cast, "published": published, "min_bytes": min_bytes}
    if factory is not None:
        return field(default_factory=factory, repr=not secret, metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    # Unset means production: a box runs on development values only when told so
    # explicitly (`make run`, the tests and benches set development or test).
    env: str = setting("YWM_ENV", "production", cast=_mode)
    database_url: str = setting("DATABASE_URL",
                                "postgresql://postgres@127.0.0.1:5432/ywmessaging")
    # Streaming replicas for reads that tolerate staleness (db/replicas.py); empty: none.
    database_replica_urls: tuple[str, ...] = setting("YWM_DATABASE_REPLICA_URLS", ())
    # A replica further behind the primary than this is out of rotation until it catches up.
    replica_max_lag_seconds: float = setting("YWM_REPLICA_MAX_LAG_SECONDS", 10.0)
    # `ywm migrate`/`ywm db`: PostgreSQL itself, not PgBouncer (migrations hold a session
    # advisory lock). Empty: DATABASE_URL, for a box without a pooler.
    migrate_database_url: str = setting("YWM_MIGRATE_DATABASE_URL", "")
    redis_url: str = setting("REDIS_URL", "redis://127.0.0.1:6379/0")
    # Redis behind Sentinel (server/platform/redis.py): host:port of each Sentinel and the
    # name they monitor the master under; REDIS_URL then gives only the db and password.
    redis_sentinels: tuple[str, ...] = setting("YWM_REDIS_SENTINELS", (), cast=_sentinels)
    redis_service: str = setting("YWM_REDIS_SERVICE", "")
    secret_key: str = setting("YWM_SECRET_KEY", DEV_SECRET_KEY, secret=True, published=True,
                              min_bytes=32)
    field_keys: str = setting("YWM_FIELD_KEYS", DEV_FIELD_KEYS, secret=True, published=True)
    hash_key: str = setting("YWM_HASH_KEY", DEV_HASH_KEY, secret=True, published=True,
                            min_bytes=32)
    admin_token: str = setting("YWM_ADMIN_TOKEN", DEV_ADMIN_TOKEN, secret=True,
                               published=True, min_bytes=ADMIN_TOKEN_MIN_BYTES)
    api_key_hash_key: str = setting("YWM_API_KEY_HASH_KEY", DEV_API_KEY_HASH_KEY,
                                    secret=True, published=True, min_bytes=32)
    public_url: str = setting("YWM_PUBLIC_URL", "http://127.0.0.1:8000")
    # `ywm web`: where it listens (every web process of a box binds the same port).
    port: int = setting("YWM_PORT", 8000)
    bind: str = setting("YWM_BIND", "127.0.0.1")
    telnyx_api_key: str = setting("YWM_TELNYX_API_KEY", "dev-telnyx-key", secret=True)
    # real: https://api.telnyx.com/v2
    telnyx_api_base: str = setting("YWM_TELNYX_API_BASE", "http://127.0.0.1:8900/telnyx/v2")
    # Its private half is published (DEV_TELNYX_PRIVATE_KEY): anyone could sign webhooks.
    telnyx_public_key: str = setting("YWM_TELNYX_PUBLIC_KEY", DEV_TELNYX_PUBLIC_KEY,
                                     published=True)
    twilio_account_sid: str = setting("YWM_TWILIO_ACCOUNT_SID",
                                      "ACdev00000000000000000000000000000")
    twilio_auth_token: str = setting("YWM_TWILIO_AUTH_TOKEN", DEV_TWILIO_AUTH_TOKEN,
                                     secret=True, published=True)
    # real: https://api.twilio.com
    twilio_api_base: str = setting("YWM_TWILIO_API_BASE", "http://127.0.0.1:8900/twilio")
    # Carrier simulator only: the key it signs Telnyx webhooks with.
    sim_telnyx_private_key: str = setting("YWM_SIM_TELNYX_PRIVATE_KEY",
                                          DEV_TELNYX_PRIVATE_KEY, secret=True)
    # Carrier webhook group commit (server/services/webhook_batch.py): a batch closes this
    # many ms after its first webhook or at this many webhooks, whichever comes first; at
    # most this many batches of one web process commit at once (the next one collects).
    carrier_batch_ms: float = setting("YWM_CARRIER_BATCH_MS", 3.0)
    carrier_batch_size: int = setting("YWM_CARRIER_BATCH_SIZE", 128)
    carrier_batch_commits: int = setting("YWM_CARRIER_BATCH_COMMITS", 2)
    webhook_allow_private: bool = setting("YWM_WEBHOOK_ALLOW_PRIVATE", False)
    # Customer webhooks (server/services/webhook_delivery.py, docs/webhooks.md): the
    # whole request's bound; a failed attempt waits base * 2**(n-1) s (equal jitter, at
    # most the max) and is retried until the window since the event has passed, then
    # dead-lettered; an endpoint whose every delivery failed for the disable window is
    # disabled. Concurrency is per endpoint and per process; the poll is how often each
    # worker looks for new events and due retries.
    webhook_timeout_seconds: float = setting("YWM_WEBHOOK_TIMEOUT_SECONDS", 10.0)
    webhook_retry_base_seconds: float = setting("YWM_WEBHOOK_RETRY_BASE_SECONDS", 30.0)
    webhook_retry_max_seconds: float = setting("YWM_WEBHOOK_RETRY_MAX_SECONDS", 3600.0)
    webhook_retry_window_seconds: float = setting("YWM_WEBHOOK_RETRY_WINDOW_SECONDS",
                                                  86_400.0)
    webhook_disable_after_seconds: float = setting("YWM_WEBHOOK_DISABLE_AFTER_SECONDS",
                                                   3 * 86_400.0)
    webhook_secret_overlap_seconds: float = setting("YWM_WEBHOOK_SECRET_OVERLAP_SECONDS",
                                                    86_400.0)
    webhook_concurrency: int = setting("YWM_WEBHOOK_CONCURRENCY", 16)
    webhook_poll_seconds: float = setting("YWM_WEBHOOK_POLL_SECONDS", 1.0)
    # Believe X-Forwarded-For / X-Real-IP only behind our own proxy (deploy/nginx.conf):
    # otherwise any client could pick its own IP and dodge the per-IP auth rate limit.
    trust_proxy_headers: bool = setting("YWM_TRUST_PROXY_HEADERS", False)
    # Where month archives go (server/services/archive.py): file:///<path> or
    # s3://<bucket>[/prefix][?endpoint=<url>]; empty means <var_dir>/archive on this box.
    archive_url: str = setting("YWM_ARCHIVE_URL", "", cast=_archive_url)
    # Partitions older than this many whole months are archived, verified, then dropped.
    retention_months: int = setting("YWM_RETENTION_MONTHS", 24)
    web_processes: int = setting("YWM_WEB_PROCESSES", factory=lambda: os.cpu_count() or 1)
    log_level: str = setting("YWM_LOG_LEVEL", "INFO")
    # Runtime choices measured in bench/loop_json.py (docs/benchmarks.md): the event loop of
    # web and worker processes and the JSON encoder (server/platform/jsonenc.py). uvloop and
    # orjson cost fewer instructions per request; asyncio and ujson remain the fallback.
    event_loop: str = setting("YWM_EVENT_LOOP", "uvloop", cast=_one_of("asyncio", "uvloop"))
    json_encoder: str = setting("YWM_JSON_ENCODER", "orjson", cast=_one_of("ujson", "orjson"))
    # Tracing (server/platform/tracing.py): the OTLP/HTTP collector's base URL, e.g.
    # http://127.0.0.1:4318; empty turns tracing off. The ratio of new traces kept
    # (a trace that arrives with a sampled `traceparent` is always kept).
    otel_endpoint: str = setting("YWM_OTEL_ENDPOINT", "")
    otel_sample_ratio: float = setting("YWM_OTEL_SAMPLE_RATIO", 1.0)
    # Runtime files of this box (supervisord's pid and socket, metrics).
    var_dir: str = setting("YWM_VAR_DIR", "var")
    # prometheus_client's multiprocess directory, shared by every process of the box and
    # emptied when the box starts; empty means `<var_dir>/metrics`.
    metrics_dir: str = setting("YWM_METRICS_DIR", "")
    # Key prefix for Huey's queue names, so test runs never share a queue.
    queue_name: str = setting("YWM_QUEUE_NAME", "ywm")
    max_body_bytes: int = setting("YWM_MAX_BODY_BYTES", 1_048_576)
    max_import_bytes: int = setting("YWM_MAX_IMPORT_BYTES", 20 * 1_048_576)
    access_token_ttl: int = setting("YWM_ACCESS_TOKEN_TTL", 900)
    session_ttl: int = setting("YWM_SESSION_TTL", 86_400)
    # Rate limits (API.md §3): tunable per deployment, and low in tests.
    auth_rate_per_second: float = setting("YWM_AUTH_RATE_PER_SECOND", 10.0)
    auth_rate_burst: int = setting("YWM_AUTH_RATE_BURST", 20)
    user_rate_per_second: float = setting("YWM_USER_RATE_PER_SECOND", 100.0)
    user_rate_burst: int = setting("YWM_USER_RATE_BURST", 200)
    # API keys (API.md §8): a key's budget when it names none (API.md §3: 100/s), and how
    # long a rotated key's old secret keeps working unless the rotate request says.
    api_key_rate_per_minute: int = setting("YWM_API_KEY_RATE_PER_MINUTE", 6000)
    api_key_rotation_grace_seconds: int = setting("YWM_API_KEY_ROTATION_GRACE_SECONDS", 86_400)
    price_per_segment_cents: float = setting("YWM_PRICE_PER_SEGMENT_CENTS", 0.79)
    # Bulk sends (server/services/dispatch.py). Attempts include the first one.
    send_max_attempts: int = setting("YWM_SEND_MAX_ATTEMPTS", 6)
    # first retry delay; doubles per attempt, jittered
    send_retry_base_seconds: float = setting("YWM_SEND_RETRY_BASE_SECONDS", 30.0)
    send_retry_max_seconds: float = setting("YWM_SEND_RETRY_MAX_SECONDS", 3600.0)
    # a claimed recipient is re-sent after this if unrecorded
    send_lease_seconds: float = setting("YWM_SEND_LEASE_SECONDS", 60.0)
    send_chunk_size: int = setting("YWM_SEND_CHUNK_SIZE", 100)  # recipients a lane claims
    send_lanes: int = setting("YWM_SEND_LANES", 4)  # concurrent dispatch tasks per broadcast
    send_concurrency: int = setting("YWM_SEND_CONCURRENCY", 16)  # requests in flight per lane
    # Seconds a send waits for the carrier's answer once its request is written.
    send_request_timeout_seconds: float = setting("YWM_SEND_REQUEST_TIMEOUT_SECONDS", 15.0)
    # A send that timed out after its request was written may have been accepted: wait
    # this long for a receipt naming the recipient before sending again (carriers post
    # `sent` within seconds, and retry failed webhooks for minutes).
    send_receipt_grace_seconds: float = setting("YWM_SEND_RECEIPT_GRACE_SECONDS", 300.0)
    # Send at 90% of a number's MPS: slots then tolerate ~110 ms of arrival-time jitter
    # (1/0.9 - 1 s) before any one-second window at the carrier goes over the MPS.
    throttle_headroom: float = setting("YWM_THROTTLE_HEADROOM", 0.9)
    reconcile_interval_seconds: float = setting("YWM_RECONCILE_INTERVAL_SECONDS", 15.0)
    # Password hashing strength, a profile of server/auth/passwords.py: "rfc9106" (argon2id,
    # 64 MiB, t=3, p=4), always in production; "test" (cheapest argon2id) for test runs.
    password_hash_profile: str = setting("YWM_PASSWORD_HASH_PROFILE", "rfc9106",
                                         cast=_password_profile)
    # Per-account login back-off (server/auth/login_backoff.py): this many failures on one
    # email are free, then each further one locks the email for base * 2**(n - free - 1)
    # seconds, at most the cap (15 min); failures are forgotten after an hour of quiet.
    login_free_failures: int = setting("YWM_LOGIN_FREE_FAILURES", 5)
    login_backoff_base_seconds: float = setting("YWM_LOGIN_BACKOFF_BASE_SECONDS", 1.0)
    login_backoff_max_seconds: float = setting("YWM_LOGIN_BACKOFF_MAX_SECONDS", 900.0)
    login_failure_window_seconds: int = setting("YWM_LOGIN_FAILURE_WINDOW_SECONDS", 3600)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def metrics_directory(self) -> str:
        return self.metrics_dir or os.path.join(self.var_dir, "metrics")

    @property
    def archive_location(self) -> str:
        return self.archive_url or "file://" + os.path.abspath(
            os.path.join(self.var_dir, "archive"))

    def replace(self, **changes: object) -> "Settings":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        values = {name: cast(var, raw) for name, var, cast, raw in _rows(cls, env) if raw}
        settings = cls(**values)
        problems = _problems(settings, env)
        if problems:
            unset = "" if env.get("YWM_ENV") else (
                "YWM_ENV is unset, so production rules apply (a development box sets "
                "YWM_ENV=development): ")
            raise SettingsError(unset + "; ".join(problems))
        return settings


def _problems(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """Every reason these settings may not serve, in table order (one line, all at once,
    so an operator fixes them in one pass)."""
    problems = []
    if settings.redis_sentinels and not settings.redis_service:
        problems.append("YWM_REDIS_SERVICE (the master's name) is required with "
                        "YWM_REDIS_SENTINELS")
    for f in fields(settings):
        var, value = f.metadata["env"], getattr(settings, f.name)
        if len(str(value).encode()) < f.metadata["min_bytes"]:
            problems.append(f"{var} must be at least {f.metadata['min_bytes']} bytes")
        if settings.production and f.metadata["published"]:
            if not env.get(var):
                problems.append(f"{var} is required in production")
            elif _published(f, value):
                problems.append(f"{var} is a published development value")
    if settings.production:
        if not settings.public_url.startswith("https://"):
            problems.append("YWM_PUBLIC_URL must be an https:// URL in production")
        if settings.password_hash_profile != "rfc9106":
            problems.append("YWM_PASSWORD_HASH_PROFILE must be rfc9106 in production")
        if settings.webhook_allow_private:
            problems.append("YWM_WEBHOOK_ALLOW_PRIVATE must be off in production: customer "
                            "webhooks could reach this network's private addresses")
    return problems


def _published(row: Any, value: str) -> bool:
    """Whether `value` is, or (a key list) contains, a development value of this repo."""
    if value == row.default:
        return True
    if row.name != "field_keys":
        return False
    items = _list(row.metadata["env"], value)
    return any(item in DEV_FIELD_KEYS.split(",")
               or item.split(":", 1)[-1] in DEV_FIELD_KEY_MATERIAL for item in items)


def _rows(cls: type[Settings], env: Mapping[str, str]
          ) -> list[tuple[str, str, Cast, str]]:
    """(field, variable, cast, raw value or "") for every field of the table."""
    types = typing.get_type_hints(cls)
    rows = []
    for f in fields(cls):
        var, cast = f.metadata["env"], f.metadata["cast"] or CASTS[types[f.name]]
        rows.append((f.name, var, cast, env.get(var) or env.get(RENAMED.get(var, ""), "")))
    return rows


def deprecated_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for old variable names set in the environment (see RENAMED)."""
    env = os.environ if environ is None else environ
    return [f"{old} is deprecated: set {new} instead"
            + (f" ({new} is set and wins)" if env.get(new) else "")
            for new, old in RENAMED.items() if env.get(old)]


def environment_for_children() -> dict[str, str]:
    """A copy of this process's environment, for the child processes it starts."""
    return dict(os.environ)


def export_for_libraries(settings: Settings) -> None:
    """Hand the settings that libraries read from the environment themselves to them:
    prometheus_client's multiprocess mode finds its directory in PROMETHEUS_MULTIPROC_DIR
    each time a metric series is created."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = settings.metrics_directory
