"""The Redis token bucket itself: burst, refusal with a retry time, refill, expiry."""
import pytest

from server.auth import limits
from server.platform import ratelimit
from server.platform.ratelimit import Limit


@pytest.mark.gen_test
async def test_burst_then_refusal_with_retry_after(deps):
    limit = Limit(rate=0.5, burst=2)
    first = await ratelimit.consume(deps.redis, "t:bucket", limit)
    second = await ratelimit.consume(deps.redis, "t:bucket", limit)
    third = await ratelimit.consume(deps.redis, "t:bucket", limit)
    assert first.allowed and second.allowed and not third.allowed
    assert first.remaining == pytest.approx(1, abs=0.01)
    # One token at 0.5/s is about 2 s away.
    assert 1.5 < third.retry_after <= 2.0
    # The bucket expires once it would be full again, so idle callers cost no memory.
    ttl = await deps.redis.pttl("t:bucket")
    assert 0 < ttl <= 5000


@pytest.mark.gen_test
async def test_tokens_refill_with_elapsed_time(deps):
    limit = Limit(rate=1.0, burst=3)
    for _ in range(3):
        assert (await ratelimit.consume(deps.redis, "t:refill", limit)).allowed
    assert not (await ratelimit.consume(deps.redis, "t:refill", limit)).allowed
    # Pretend the last update was 10 s ago (instead of sleeping): the bucket is full again,
    # capped at the burst.
    ts = float(await deps.redis.hget("t:refill", "ts"))
    await deps.redis.hset("t:refill", "ts", f"{ts - 10:.6f}")
    decision = await ratelimit.consume(deps.redis, "t:refill", limit)
    assert decision.allowed and decision.remaining == pytest.approx(2, abs=0.01)


@pytest.mark.gen_test
async def test_script_survives_a_script_flush(deps):
    limit = Limit(rate=1.0, burst=5)
    assert (await ratelimit.consume(deps.redis, "t:flush", limit)).allowed
    await deps.redis.script_flush()
    assert (await ratelimit.consume(deps.redis, "t:flush", limit)).allowed


@pytest.mark.gen_test
async def test_enforce_raises_rate_limited(deps):
    from server.platform.errors import RateLimited
    limit = Limit(rate=0.01, burst=1)
    await ratelimit.enforce(deps.redis, "auth", "10.0.0.1", limit)
    with pytest.raises(RateLimited) as caught:
        await ratelimit.enforce(deps.redis, "auth", "10.0.0.1", limit)
    assert caught.value.headers()["Retry-After"] == "100"
    await ratelimit.enforce(deps.redis, "auth", "10.0.0.2", limit)  # another subject


def test_rate_settings_come_from_the_environment():
    from server.platform.settings import Settings, SettingsError
    settings = Settings.from_env({"YWM_ENV": "test",
                                  "YWM_AUTH_RATE_PER_SECOND": "2.5", "YWM_AUTH_RATE_BURST": "7",
                                  "YWM_USER_RATE_PER_SECOND": "50",
                                  "YWM_USER_RATE_BURST": "80"})
    assert ratelimit.auth_limit(settings) == Limit(2.5, 7)
    assert (settings.user_rate_per_second, settings.user_rate_burst) == (50.0, 80)
    for bad in ("0", "-1", "fast"):
        with pytest.raises(SettingsError, match="YWM_AUTH_RATE_PER_SECOND"):
            Settings.from_env({"YWM_AUTH_RATE_PER_SECOND": bad})


def test_an_api_keys_own_limit_overrides_the_user_default():
    import uuid

    from server.auth.sessions import Actor
    from server.platform.settings import Settings
    settings = Settings()
    church = uuid.uuid4()
    user = Actor(church_id=church, role="staff", user_id=uuid.uuid4())
    key = Actor(church_id=church, role="admin", api_key_id=uuid.uuid4(),
                rate_limit_per_minute=600)
    plain_key = Actor(church_id=church, role="admin", api_key_id=uuid.uuid4())
    assert limits.actor_limit(settings, user) == Limit(100.0, 200)
    assert limits.actor_limit(settings, key) == Limit(10.0, 600)
    assert limits.actor_limit(settings, plain_key) == Limit(100.0, 200)
    assert limits.actor_subject(key) == f"key:{key.api_key_id}"
    assert limits.actor_subject(user) == f"user:{user.user_id}"
