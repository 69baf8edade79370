"""The OpenAPI document and the interactive docs page, served locally (no CDN)."""
import asyncio
import re
import shutil

import pytest
import ujson
import yaml

import schema

API = "/api/v1"


@pytest.mark.gen_test
async def test_openapi_json_is_the_merged_document(api):
    status, body, headers = await api.get(f"{API}/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body["openapi"].startswith("3.1")
    assert body == ujson.loads(ujson.dumps(schema.openapi_document()))
    for path in ("/auth/register", "/auth/login", "/auth/refresh", "/auth/logout",
                 "/auth/me", "/stream/ticket", "/church", "/users", "/users/{id}"):
        assert path in body["paths"], path
    # YAML-only shorthands in the part files never leak into the document.
    assert not any(key.startswith("x-responses") for key in body)


def test_auth_schemas_forbid_unknown_properties():
    part = yaml.safe_load((schema.HERE / "api" / "auth.yaml").read_text())
    for name, body in part["components"]["schemas"].items():
        if body.get("type") == "object":
            assert body.get("additionalProperties") is False, name


@pytest.mark.gen_test
async def test_docs_page_loads_swagger_from_this_server(api):
    status, page, headers = await api.get(f"{API}/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = page.decode()
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "http" not in csp and "unsafe-eval" not in csp
    assert "<script>" not in html  # no inline script: the CSP would block it
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) >= 4
    for asset in assets:
        assert asset.startswith("/api/v1/docs"), asset  # nothing from a CDN
        status, content, asset_headers = await api.get(asset)
        assert status == 200 and len(content) > 100, asset
        if asset.endswith(".js"):
            assert "javascript" in asset_headers["Content-Type"]
            assert asset_headers["X-Content-Type-Options"] == "nosniff"
    _, init, _ = await api.get(f"{API}/docs/init.js")
    assert b'url: "/api/v1/openapi.json"' in init and b"validatorUrl: null" in init


@pytest.mark.gen_test
async def test_docs_static_does_not_escape_its_directory(api):
    for path in ("..%2F..%2F__init__.py", "nope.js"):
        status, body, _ = await api.get(f"{API}/docs/static/{path}")
        assert status == 404 and body["error"]["code"] == "not_found"


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(deploy/local/browser.sh installs it)")
@pytest.mark.gen_test(timeout=120)
async def test_docs_page_renders_every_operation_in_a_real_browser(api):
    # Headless Chromium enforces our CSP: if Swagger UI needed anything the policy
    # blocks (inline script, eval, a CDN), no operation would render.
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--virtual-time-budget=10000", "--dump-dom", f"{api.base_url}{API}/docs",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    dom, _ = await asyncio.wait_for(proc.communicate(), 100)
    html = dom.decode()
    assert "Unable to render" not in html
    rendered = set(re.findall(r'data-path="([^"]+)"', html))
    assert {"/auth/login", "/auth/register", "/users/{id}", "/church"} <= rendered
