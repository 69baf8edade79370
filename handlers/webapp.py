"""The staff web app: the HTML shell at `/` and its static files, with no build step.

Static files live in `handlers/static/` as plain ES modules. They are served under a
versioned prefix, `/static/<version>/<file>`, where the version is a content hash of the
whole directory: the modules import each other by relative path (`./api.js`), so one
version for the tree keeps every import inside the same immutable prefix, and any edit
changes every URL. Versioned files are cached for a year (`immutable`); the shell is
`no-cache` so a reload always picks up the newest version. gzip comes from the
application's `compress_response=True`.
"""
from __future__ import annotations

import functools
import hashlib
import pathlib
from typing import Any

import tornado.web

from handlers.base import CSP, BaseHandler, JsonErrors
from server.deps import Deps

STATIC_DIR = pathlib.Path(__file__).parent / "static"
YEAR = 365 * 24 * 3600
# Files a page never loads (editor droppings, notes) stay out of the version hash.
_SERVED_SUFFIXES = frozenset((".js", ".css", ".svg", ".png", ".ico", ".html", ".json"))


@functools.cache
def asset_version() -> str:
    """A short content hash of every served file: it changes whenever any file does."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file() and path.suffix in _SERVED_SUFFIXES:
            digest.update(path.relative_to(STATIC_DIR).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@functools.cache
def _shell() -> str:
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return template.replace("{{static}}", f"/static/{asset_version()}")


class AppShellHandler(BaseHandler):
    """`/`: the single page; screens are chosen client-side by the URL fragment."""

    async def get(self) -> None:
        if self.deps.settings.env == "development":
            # Edited files get a new version at once, without a restart.
            asset_version.cache_clear()
            _shell.cache_clear()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        # Always revalidate the shell: it names the current asset version.
        self.set_header("Cache-Control", "no-cache")
        self.finish(_shell())


class StaticAssetHandler(JsonErrors, tornado.web.StaticFileHandler):
    """`/static/<version>/<path>`: a file of the app, cached long when the version is current.

    A request naming an older version (a page loaded before a deploy) still gets the
    current file, but uncached, so a stale version never gets pinned in a cache. A missing
    file is the API's JSON 404 body, like every other error.
    """

    def initialize(self, deps: Deps) -> None:  # type: ignore[override]
        super().initialize(path=str(STATIC_DIR))
        self.deps = deps
        self.current = False

    async def get(  # type: ignore[override]
            self, version: str, path: str, include_body: bool = True) -> None:
        self.current = version == asset_version()
        await super().get(path, include_body)

    async def head(self, version: str, path: str) -> None:  # type: ignore[override]
        await self.get(version, path, include_body=False)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", CSP)
        if self.current:
            self.set_header("Cache-Control", f"public, max-age={YEAR}, immutable")
        else:
            self.set_header("Cache-Control", "no-cache")

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return YEAR if self.current else 0

    def get_content_type(self) -> str:
        if self.absolute_path and self.absolute_path.endswith(".js"):
            return "text/javascript; charset=UTF-8"  # ES modules need a JavaScript type
        return super().get_content_type()
