"""Which rate limit a caller spends from: a key's own per-minute limit, else the user default.

The bucket itself is platform plumbing (server/platform/ratelimit.py); who the caller is
and which budget applies is auth's business.
"""
from __future__ import annotations

from server.auth.sessions import Actor
from server.platform.ratelimit import Limit
from server.platform.settings import Settings


def actor_limit(settings: Settings, actor: Actor) -> Limit:
    """The caller's limit: the key's own per-minute limit when set, else the user default."""
    per_minute = actor.rate_limit_per_minute
    if actor.api_key_id is not None and per_minute:
        return Limit(per_minute / 60.0, max(1, per_minute))
    return user_limit(settings)


def user_limit(settings: Settings) -> Limit:
    """A signed-in staff user's limit (API.md §3)."""
    return Limit(settings.user_rate_per_second, settings.user_rate_burst)


def actor_subject(actor: Actor) -> str:
    if actor.api_key_id is not None:
        return f"key:{actor.api_key_id}"
    return f"user:{actor.user_id}"
