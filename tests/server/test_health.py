"""Liveness, readiness, request ids, unknown routes."""
import pytest


@pytest.mark.gen_test
async def test_health_answers_without_dependencies(api):
    status, body, headers = await api.get("/health")
    assert status == 200 and body == {"status": "ok"}
    assert len(headers["X-Request-ID"]) == 32


@pytest.mark.gen_test
async def test_ready_checks_postgres_and_redis(api):
    status, body, _ = await api.get("/ready")
    assert status == 200
    assert body["checks"] == {"postgresql": "ok", "redis": "ok"}


@pytest.mark.gen_test
async def test_request_id_is_echoed(api):
    _, _, headers = await api.get("/health", headers={"X-Request-ID": "abc-123"})
    assert headers["X-Request-ID"] == "abc-123"


@pytest.mark.gen_test
async def test_unknown_route_is_json_404(api):
    status, body, headers = await api.get("/api/v1/nope")
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert headers["X-Content-Type-Options"] == "nosniff"
