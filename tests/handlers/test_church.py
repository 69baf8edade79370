"""The caller's church: read by every role, changed by the owner, IANA time zones only."""
import pytest

from tests.factories import add_user, register

API = "/api/v1"


@pytest.mark.gen_test
async def test_get_church_returns_exactly_the_documented_fields(api):
    owner = await register(api, church_name="St. Mark")
    status, body, _ = await api.get(f"{API}/church", token=owner["access_token"])
    assert status == 200
    church = body["data"]
    assert set(church) == {"id", "name", "timezone", "help_text", "unknown_sender_opt_in",
                           "created_at"}
    assert church["id"] == owner["church_id"] and church["name"] == "St. Mark"
    assert church["timezone"] == "America/New_York" and church["unknown_sender_opt_in"]


@pytest.mark.gen_test
async def test_owner_patches_settings(api):
    owner = await register(api)
    changes = {"name": "New Life", "timezone": "America/Chicago",
               "help_text": "Text HELP for help.", "unknown_sender_opt_in": False}
    status, body, _ = await api.patch(f"{API}/church", token=owner["access_token"],
                                      json=changes)
    assert status == 200
    assert {k: body["data"][k] for k in changes} == changes
    staff = await add_user(api, owner["access_token"], "staff")
    status, body, _ = await api.get(f"{API}/church", token=staff["access_token"])
    assert {k: body["data"][k] for k in changes} == changes


@pytest.mark.gen_test
@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "EST5EDT "])
async def test_unknown_timezone_is_422_and_nothing_changes(api, zone):
    owner = await register(api)
    status, body, _ = await api.patch(f"{API}/church", token=owner["access_token"],
                                      json={"timezone": zone, "name": "Changed"})
    assert status == 422 and body["error"]["code"] == "validation_failed"
    assert body["error"]["details"][0]["field"] == "$.timezone"
    _, body, _ = await api.get(f"{API}/church", token=owner["access_token"])
    assert body["data"]["timezone"] == "America/New_York" and body["data"]["name"] == "Grace"


@pytest.mark.gen_test
async def test_each_church_sees_only_itself(api):
    a = await register(api, church_name="A")
    b = await register(api, church_name="B")
    await api.patch(f"{API}/church", token=a["access_token"], json={"name": "A2"})
    _, body, _ = await api.get(f"{API}/church", token=b["access_token"])
    assert body["data"]["id"] == b["church_id"] and body["data"]["name"] == "B"
