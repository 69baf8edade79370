"""The staff web app's shell and static files: versioned URLs, caching, gzip, CSP-safe markup."""
from __future__ import annotations

import gzip
import re

import pytest

from handlers import webapp

STATIC = webapp.STATIC_DIR
IMPORT = re.compile(r"""(?:^|\n)\s*import\s[^;]*?from\s+["']([^"']+)["']"""
                    r"""|import\(["']([^"']+)["']\)""")
OTHER_ORIGIN = re.compile(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""")


async def _get(api, path, **headers):
    return await api.request("GET", path, headers=headers, check_schema=False)


@pytest.mark.gen_test
async def test_shell_names_current_versioned_assets_and_is_never_cached(api):
    status, body, headers = await _get(api, "/")
    html = body.decode()
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-cache"
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    version = webapp.asset_version()
    assert f'src="/static/{version}/app.js"' in html
    assert f'href="/static/{version}/app.css"' in html
    assert "{{static}}" not in html


@pytest.mark.gen_test
async def test_shell_has_nothing_the_csp_would_block(api):
    _, body, _ = await _get(api, "/")
    html = body.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert "style=" not in html and "<style" not in html, "inline style"


@pytest.mark.gen_test
async def test_current_assets_are_immutable_and_gzipped(api):
    version = webapp.asset_version()
    status, body, headers = await _get(api, f"/static/{version}/app.js",
                                       **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/javascript")
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body == (STATIC / "app.js").read_bytes()
    raw = await api.http.fetch(api.base_url + f"/static/{version}/app.css",
                               headers={"Accept-Encoding": "gzip"}, decompress_response=False)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw.body) == (STATIC / "app.css").read_bytes()


@pytest.mark.gen_test
async def test_a_stale_version_is_served_but_not_cached(api):
    status, body, headers = await _get(api, "/static/000000000000/app.css")
    assert status == 200 and body == (STATIC / "app.css").read_bytes()
    assert headers["Cache-Control"] == "no-cache"


@pytest.mark.gen_test
async def test_revalidation_answers_304(api):
    path = f"/static/{webapp.asset_version()}/stream.js"
    _, _, headers = await _get(api, path)
    status, _, _ = await _get(api, path, **{"If-None-Match": headers["Etag"]})
    assert status == 304


@pytest.mark.gen_test
async def test_missing_files_and_traversal_are_refused(api):
    version = webapp.asset_version()
    for path in (f"/static/{version}/nope.js", f"/static/{version}/../webapp.py",
                 f"/static/{version}/%2e%2e/webapp.py"):
        status, body, _ = await _get(api, path)
        assert status in (403, 404), path  # Tornado answers 403 outside the root
        assert b"import" not in body


def test_version_changes_when_any_file_changes(tmp_path, monkeypatch):
    (tmp_path / "a.js").write_text("export const a = 1;\n")
    (tmp_path / "index.html").write_text("{{static}}")
    monkeypatch.setattr(webapp, "STATIC_DIR", tmp_path)
    webapp.asset_version.cache_clear()
    try:
        first = webapp.asset_version()
        (tmp_path / "a.js").write_text("export const a = 2;\n")
        webapp.asset_version.cache_clear()
        assert webapp.asset_version() != first
    finally:
        monkeypatch.undo()
        webapp.asset_version.cache_clear()


def test_every_module_import_resolves_to_a_file():
    for module in STATIC.glob("*.js"):
        for match in IMPORT.finditer(module.read_text()):
            target = match.group(1) or match.group(2)
            assert target.startswith("./"), f"{module.name}: non-relative import {target}"
            assert (STATIC / target[2:]).is_file(), f"{module.name}: {target} is missing"


def test_nothing_loads_from_another_origin():
    for path in STATIC.rglob("*"):
        if path.suffix in (".js", ".css", ".html"):
            text = path.read_text()
            assert not OTHER_ORIGIN.search(text), path.name
            assert not re.search(r"\.innerHTML\s*=|\beval\(", text), path.name
