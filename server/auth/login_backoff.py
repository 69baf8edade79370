"""Per-account login back-off: repeated failures on one email slow that email down.

On top of the per-IP limit (server/platform/ratelimit.py), which a botnet spreads thin,
each email has its own count of failed sign-ins in Redis. The first
`settings.login_free_failures` failures cost nothing; each further one locks the email for
`base * 2**(failures - free - 1)` seconds (1, 2, 4, ... s), at most
`login_backoff_max_seconds`. While locked,
every attempt on that email (right password or not) is answered 429 `rate_limited` with
Retry-After, before any password is checked. A success clears the count; the count is
forgotten after `login_failure_window_seconds` without a failure.

Unknown emails are counted exactly like known ones, and a locked email is refused before
the database is read, so neither the answer nor its timing says whether an account
exists. Emails are stored only as an HMAC with the hash key.
"""
from __future__ import annotations

import hashlib
import hmac

import redis.asyncio as aioredis

from server.platform import redis as keys
from server.platform.errors import RateLimited
from server.platform.settings import Settings

# One failure: count it, refresh the window, and lock if past the free failures.
# ARGV: window seconds, free failures, base ms, cap ms. Returns the count.
_RECORD_FAILURE = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
local over = n - tonumber(ARGV[2])
if over > 0 then
  local ms = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (over - 1))
  redis.call('SET', KEYS[2], n, 'PX', math.floor(ms))
end
return n
"""


def email_digest(settings: Settings, email: str) -> str:
    return hmac.new(settings.hash_key.encode(), email.strip().lower().encode(),
                    hashlib.sha256).hexdigest()


async def check_not_locked(redis: aioredis.Redis, settings: Settings, email: str) -> None:
    """Raise RateLimited (429, Retry-After) while this email is backing off."""
    remaining_ms = await redis.pttl(keys.login_lock_key(email_digest(settings, email)))
    if remaining_ms > 0:
        raise RateLimited(remaining_ms / 1000,
                          "Too many failed sign-ins for this email; try again later.")


async def record_failure(redis: aioredis.Redis, settings: Settings, email: str) -> int:
    """Count one failed sign-in; returns the failures so far in the window."""
    digest = email_digest(settings, email)
    return int(await redis.eval(
        _RECORD_FAILURE, 2, keys.login_failures_key(digest), keys.login_lock_key(digest),
        settings.login_failure_window_seconds, settings.login_free_failures,
        int(settings.login_backoff_base_seconds * 1000),
        int(settings.login_backoff_max_seconds * 1000)))


async def clear(redis: aioredis.Redis, settings: Settings, email: str) -> None:
    """A successful sign-in forgets the failures."""
    digest = email_digest(settings, email)
    await redis.delete(keys.login_failures_key(digest), keys.login_lock_key(digest))
