"""Browser sessions: the signed session cookie and the CSRF double-submit check."""
from http.cookies import SimpleCookie

import pytest

from tests.factories import register

API = "/api/v1"


def cookie_jar(headers) -> dict[str, str]:
    jar: dict[str, str] = {}
    for line in headers.get_list("Set-Cookie"):
        parsed = SimpleCookie()
        parsed.load(line)
        for name, morsel in parsed.items():
            jar[name] = morsel.value
    return jar


def cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f'{k}="{v}"' if "|" in v else f"{k}={v}" for k, v in jar.items())


async def browser_login(api) -> tuple[dict, dict[str, str]]:
    owner = await register(api)
    status, body, headers = await api.post(f"{API}/auth/login", json={
        "email": owner["email"], "password": owner["password"]}, token="")
    assert status == 200
    jar = cookie_jar(headers)
    assert set(jar) >= {"ywm_session", "ywm_csrf"}
    owner["login_refresh_token"] = body["data"]["refresh_token"]
    return owner, jar


@pytest.mark.gen_test
async def test_cookie_authenticates_safe_methods_without_csrf(api):
    owner, jar = await browser_login(api)
    status, body, _ = await api.get(f"{API}/auth/me", token="",
                                    headers={"Cookie": cookie_header(jar)})
    assert status == 200 and body["data"]["user"]["id"] == owner["user_id"]


@pytest.mark.gen_test
async def test_cookie_unsafe_method_needs_matching_csrf_header(api):
    _, jar = await browser_login(api)
    cookie = cookie_header(jar)
    patch = {"name": "Renamed"}
    status, body, _ = await api.patch(f"{API}/church", json=patch, token="",
                                      headers={"Cookie": cookie})
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    status, body, _ = await api.patch(f"{API}/church", json=patch, token="",
                                      headers={"Cookie": cookie, "X-CSRF-Token": "wrong"})
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    # Header equal to a forged cookie but not to the session's token: still refused.
    forged = cookie_header({**jar, "ywm_csrf": "forged"})
    status, body, _ = await api.patch(f"{API}/church", json=patch, token="",
                                      headers={"Cookie": forged, "X-CSRF-Token": "forged"})
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    status, body, _ = await api.get(f"{API}/church", token="", headers={"Cookie": cookie})
    assert body["data"]["name"] == "Grace"  # nothing changed
    status, body, _ = await api.patch(f"{API}/church", json=patch, token="", headers={
        "Cookie": cookie, "X-CSRF-Token": jar["ywm_csrf"]})
    assert status == 200 and body["data"]["name"] == "Renamed"


@pytest.mark.gen_test
async def test_bearer_requests_need_no_csrf(api):
    owner = await register(api)
    status, _, _ = await api.patch(f"{API}/church", json={"name": "Bearer"},
                                   token=owner["access_token"])
    assert status == 200


@pytest.mark.gen_test
async def test_tampered_session_cookie_is_401(api):
    _, jar = await browser_login(api)
    jar["ywm_session"] = jar["ywm_session"][:-4] + "AAAA"
    status, body, _ = await api.get(f"{API}/auth/me", token="",
                                    headers={"Cookie": cookie_header(jar)})
    assert status == 401 and body["error"]["code"] == "unauthorized"


@pytest.mark.gen_test
async def test_cookie_logout_ends_session_and_clears_cookies(api):
    _, jar = await browser_login(api)
    cookie = cookie_header(jar)
    status, _, headers = await api.post(f"{API}/auth/logout", token="", headers={
        "Cookie": cookie, "X-CSRF-Token": jar["ywm_csrf"]})
    assert status == 204
    cleared = cookie_jar(headers)
    assert cleared.get("ywm_session") == "" and cleared.get("ywm_csrf") == ""
    status, _, _ = await api.get(f"{API}/auth/me", token="", headers={"Cookie": cookie})
    assert status == 401


@pytest.mark.gen_test
async def test_cookie_refresh_rotates_csrf_and_refresh_token(api):
    owner, jar = await browser_login(api)
    cookie = cookie_header(jar)
    status, body, _ = await api.post(f"{API}/auth/refresh", token="",
                                     headers={"Cookie": cookie})
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    status, body, headers = await api.post(f"{API}/auth/refresh", token="", headers={
        "Cookie": cookie, "X-CSRF-Token": jar["ywm_csrf"]})
    assert status == 200
    new_jar = {**jar, **cookie_jar(headers)}
    assert new_jar["ywm_csrf"] != jar["ywm_csrf"]
    # The old CSRF token no longer passes; the new one does.
    status, _, _ = await api.patch(f"{API}/church", json={"name": "X"}, token="", headers={
        "Cookie": cookie_header(new_jar), "X-CSRF-Token": jar["ywm_csrf"]})
    assert status == 403
    status, _, _ = await api.patch(f"{API}/church", json={"name": "X"}, token="", headers={
        "Cookie": cookie_header(new_jar), "X-CSRF-Token": new_jar["ywm_csrf"]})
    assert status == 200
    # The cookie refresh replaced the login's refresh token and the new one works.
    status, _, _ = await api.post(f"{API}/auth/refresh", token="",
                                  json={"refresh_token": body["data"]["refresh_token"]})
    assert status == 200
    # Presenting the replaced one now is reuse (a theft signal): the whole session ends.
    status, _, _ = await api.post(f"{API}/auth/refresh", token="",
                                  json={"refresh_token": owner["login_refresh_token"]})
    assert status == 401
    status, _, _ = await api.post(f"{API}/auth/refresh", token="", headers={
        "Cookie": cookie_header(new_jar), "X-CSRF-Token": new_jar["ywm_csrf"]})
    assert status == 401


@pytest.mark.gen_test
async def test_body_refresh_of_the_cookie_session_updates_the_csrf_cookie(api):
    owner, jar = await browser_login(api)
    status, body, headers = await api.post(
        f"{API}/auth/refresh", token="", json={"refresh_token": owner["login_refresh_token"]},
        headers={"Cookie": cookie_header(jar)})
    assert status == 200
    new_csrf = cookie_jar(headers).get("ywm_csrf")
    assert new_csrf and new_csrf != jar["ywm_csrf"]
    status, _, _ = await api.patch(f"{API}/church", json={"name": "Y"}, token="", headers={
        "Cookie": cookie_header({**jar, "ywm_csrf": new_csrf}), "X-CSRF-Token": new_csrf})
    assert status == 200
