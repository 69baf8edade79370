"""The API contract on the wire: `/api/v1/openapi.json` and the interactive `/api/v1/docs`.

The docs page is Swagger UI from the `swagger_ui_bundle` package, served by this process
(no CDN: nothing leaves the machine). Its scripts are files, never inline, so the page's
CSP keeps `script-src 'self'`; Swagger UI sets inline styles and uses data: images, which
only this page allows. The online validator badge is switched off (it calls out).
"""
from __future__ import annotations

import functools

import swagger_ui_bundle
import tornado.web

import schema
from handlers.base import BaseHandler, JsonErrors
from server.deps import Deps
from server.platform.jsonenc import to_json

DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'")
STATIC_PREFIX = "/api/v1/docs/static/"

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>YWMessaging API</title>
  <link rel="stylesheet" href="{STATIC_PREFIX}swagger-ui.css">
  <link rel="icon" type="image/png" href="{STATIC_PREFIX}favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{STATIC_PREFIX}swagger-ui-bundle.js"></script>
  <script src="{STATIC_PREFIX}swagger-ui-standalone-preset.js"></script>
  <script src="/api/v1/docs/init.js"></script>
</body>
</html>
"""

INIT_JS = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
});
"""


@functools.cache
def openapi_json() -> str:
    return to_json(schema.openapi_document())


class OpenApiHandler(BaseHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(openapi_json())


class DocsHandler(BaseHandler):
    async def get(self) -> None:
        self.set_header("Content-Security-Policy", DOCS_CSP)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(PAGE)


class DocsInitHandler(BaseHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "application/javascript; charset=UTF-8")
        self.finish(INIT_JS)


class SwaggerStaticHandler(JsonErrors, tornado.web.StaticFileHandler):
    """Swagger UI's own files, straight from the installed package; errors as the API's
    JSON body, not Tornado's HTML page."""

    def initialize(self, deps: Deps) -> None:  # type: ignore[override]
        super().initialize(path=str(swagger_ui_bundle.swagger_ui_path))

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", DOCS_CSP)
