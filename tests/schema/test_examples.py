"""The OpenAPI document an integrator reads: every operation tagged with a declared tag,
every JSON request and response with an example that is valid against its own schema,
and API-key scopes (`x-api-key-scope`) drawn from the declared list, shown in each
operation's security requirements, and never on the operations a key may not use."""
from __future__ import annotations

from typing import Any, Iterator

import jsonschema
import pytest

import schema

METHODS = ("get", "post", "put", "patch", "delete")
# What a key can never manage (API.md §8), whatever scopes it holds.
NEVER_FOR_KEYS = ("/users", "/api-keys", "/numbers", "/webhook-endpoints", "/church",
                  "/auth/", "/stream", "/admin/")


def _document() -> dict[str, Any]:
    return schema.openapi_document()


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in _document()["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def _media(operation: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, media object) of every JSON request body and response."""
    for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
        yield f"request {media_type}", media
    for status, response in operation["responses"].items():
        for media_type, media in response.get("content", {}).items():
            if media_type == "application/json":
                yield f"response {status}", media


def _validator(media_schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    root = {**media_schema, "components": _document()["components"]}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker())


OPERATIONS = sorted((m, p) for m, p, _ in _operations())


@pytest.mark.parametrize("method, path", OPERATIONS)
def test_each_operation_has_a_declared_tag(method: str, path: str) -> None:
    declared = {tag["name"] for tag in _document()["tags"]}
    operation = _document()["paths"][path][method.lower()]
    assert operation.get("tags"), f"{method} {path} has no tag"
    assert set(operation["tags"]) <= declared, (method, path, operation["tags"])


@pytest.mark.parametrize("method, path", OPERATIONS)
def test_each_request_and_response_has_a_valid_example(method: str, path: str) -> None:
    operation = _document()["paths"][path][method.lower()]
    for where, media in _media(operation):
        if where.startswith("request") and not where.endswith("json"):
            assert "example" in media, f"{method} {path} {where}: no example"
            continue
        assert "example" in media, f"{method} {path} {where}: no example"
        errors = sorted(_validator(media["schema"]).iter_errors(media["example"]),
                        key=lambda e: list(e.absolute_path))
        assert not errors, f"{method} {path} {where}: {[e.message for e in errors[:3]]}"


def test_the_example_check_catches_a_wrong_example() -> None:
    media = {"schema": {"$ref": "#/components/schemas/Error"}}
    bad = {"error": {"code": "no_such_code", "message": "x", "details": []}}
    assert list(_validator(media["schema"]).iter_errors(bad))


def test_api_key_scopes_are_declared_documented_and_never_on_management() -> None:
    scopes = set(_document()["components"]["schemas"]["ApiKeyScope"]["enum"])
    used = set()
    for method, path, operation in _operations():
        scope = operation.get(schema.API_KEY_SCOPE)
        if scope is None:
            continue
        used.add(scope)
        assert scope in scopes, (method, path, scope)
        assert not path.startswith(NEVER_FOR_KEYS), (method, path)
        assert {"apiKey": [scope]} in operation["security"], (method, path)
        assert {"apiKeyHeader": [scope]} in operation["security"], (method, path)
        assert {"bearer": []} in operation["security"], (method, path)
    assert used == scopes  # every scope opens something
    schemes = _document()["components"]["securitySchemes"]
    assert schemes["apiKey"]["scheme"] == "bearer"
    assert (schemes["apiKeyHeader"]["in"], schemes["apiKeyHeader"]["name"]) == ("header",
                                                                              "X-API-Key")


@pytest.mark.parametrize("method, path, scope", [
    ("GET", "/api/v1/members", "members:read"),
    ("POST", "/api/v1/members/import", "members:write"),  # a literal path beats /{id}
    ("PATCH", "/api/v1/members/5d0c7f3e-0000-4000-8000-000000000000", "members:write"),
    ("POST", "/api/v1/messages", "messages:write"),
    ("GET", "/api/v1/stats/summary", "stats:read"),
    ("GET", "/api/v1/users", None),
    ("POST", "/api/v1/api-keys", None),
    ("GET", "/api/v1/nothing-here", None),
])
def test_the_scope_of_a_request_comes_from_its_operation(method: str, path: str,
                                                         scope: str | None) -> None:
    assert schema.api_key_scope(method, path) == scope
