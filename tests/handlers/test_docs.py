"""The OpenAPI document and the interactive docs page, served locally (no CDN)."""
import asyncio
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import ujson
import yaml

import schema

API = "/api/v1"
REPO = pathlib.Path(__file__).resolve().parents[2]


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


@pytest.mark.gen_test(timeout=120)
async def test_docs_page_renders_every_operation_in_a_real_browser(api):
    # Headless Chromium enforces our CSP: if Swagger UI needed anything the policy
    # blocks (inline script, eval, a CDN), no operation would render. A missing browser
    # is a failure, never a skip: `make test` installs it before pytest starts
    # (deploy/local/browser.sh), and a skip here once hid this test on every fresh CI box.
    chromium = shutil.which("chromium")
    assert chromium is not None, ("chromium is not installed: run deploy/local/browser.sh "
                                  "(make test does, before pytest starts)")
    proc = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu",
        "--virtual-time-budget=10000", "--dump-dom", f"{api.base_url}{API}/docs",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    dom, _ = await asyncio.wait_for(proc.communicate(), 100)
    html = dom.decode()
    assert "Unable to render" not in html
    rendered = set(re.findall(r'data-path="([^"]+)"', html))
    assert {"/auth/login", "/auth/register", "/users/{id}", "/church"} <= rendered


def test_a_missing_browser_fails_the_docs_test_and_never_skips(tmp_path):
    # Run the browser test in a child pytest whose PATH has no chromium.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bin_dir)}
    node = f"{__file__}::test_docs_page_renders_every_operation_in_a_real_browser"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", node], env=env, cwd=REPO, timeout=180,
                          capture_output=True, text=True)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 1 and "1 failed" in summary, done.stdout[-3000:]
    assert "skipped" not in summary
    assert "chromium is not installed" in done.stdout


# The Swagger UI files this server serves, pinned: swagger-ui-bundle-v2 is a fork kept by
# one maintainer, so its version is pinned exactly in setup.cfg and the bytes served are
# checked here; an upgrade means reviewing the new files and updating these digests.
SWAGGER_ASSETS = {
    "swagger-ui-bundle.js": "93b7b0862a80e2786f85b560be7693c2344354ffa7e7e224f850a54349724c31",
    "swagger-ui-standalone-preset.js":
        "5ed085e194083a3afeb8143658e1f266665519dddfc6224c8b706acd4e80f924",
    "swagger-ui.css": "9e576f8322132c76949da47f9bb53c891373c303ea3a761ff548ffc9de50a98c",
}


@pytest.mark.gen_test
async def test_served_swagger_assets_are_the_pinned_ones(api):
    _, page, _ = await api.get(f"{API}/docs")
    served = {a.rsplit("/", 1)[-1]: a for a in re.findall(r'(?:src|href)="([^"]+)"', page.decode())}
    assert set(SWAGGER_ASSETS) <= set(served), served
    for name, digest in SWAGGER_ASSETS.items():
        status, content, _ = await api.get(served[name])
        assert status == 200 and hashlib.sha256(content).hexdigest() == digest, name
