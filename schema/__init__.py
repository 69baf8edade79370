"""The API contract: JSON Schemas for bodies and the OpenAPI document built from them.

`openapi.yaml` holds the document's head and shared components; each `api/<area>.yaml`
adds its `paths` and `components.schemas`. They are merged once at import. Handlers call
`validate(name, value)`; tests check every response against its operation with
`validate_response`, so code and contract cannot drift.
"""
from __future__ import annotations

import functools
import pathlib
from typing import Any

import jsonschema
import yaml

from server.platform.errors import ValidationFailed

HERE = pathlib.Path(__file__).parent


def _merge(base: dict[str, Any], part: dict[str, Any], source: str) -> None:
    for path, item in (part.get("paths") or {}).items():
        if path in base["paths"]:
            raise ValueError(f"{source}: path {path} is defined twice")
        base["paths"][path] = item
    for name, body in (part.get("components", {}).get("schemas") or {}).items():
        if name in base["components"]["schemas"]:
            raise ValueError(f"{source}: schema {name} is defined twice")
        base["components"]["schemas"][name] = body


@functools.cache
def openapi_document() -> dict[str, Any]:
    document = yaml.safe_load((HERE / "openapi.yaml").read_text())
    document.setdefault("paths", {})
    document.setdefault("components", {}).setdefault("schemas", {})
    for part_file in sorted((HERE / "api").glob("*.yaml")):
        _merge(document, yaml.safe_load(part_file.read_text()) or {}, part_file.name)
    return document


@functools.cache
def _validator(ref: str) -> jsonschema.Draft202012Validator:
    root = {"$ref": ref, "components": openapi_document()["components"]}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker())


def _field_path(error: jsonschema.ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    if error.validator == "required" and isinstance(error.message, str):
        missing = error.message.split("'")[1] if "'" in error.message else ""
        path += f".{missing}" if missing else ""
    elif error.validator == "additionalProperties":
        extra = error.message.split("'")[1] if "'" in error.message else ""
        path += f".{extra}" if extra else ""
    return path


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return "This field is required."
    if error.validator == "additionalProperties":
        return "This field is not allowed."
    if error.validator == "type":
        return f"Must be of type {error.validator_value}."
    return str(error.message)


def errors_for(ref: str, value: Any) -> list[dict[str, str]]:
    validator = _validator(ref)
    found = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    return [{"field": _field_path(e), "message": _message(e)} for e in found[:20]]


def validate(name: str, value: Any) -> None:
    """Raise ValidationFailed (422) naming every bad field of `value` against schema `name`."""
    details = errors_for(f"#/components/schemas/{name}", value)
    if details:
        first = details[0]
        raise ValidationFailed(f"{first['field']}: {first['message']}", details)


def validate_response(method: str, path_template: str, status: int, body: Any) -> None:
    """Check a response body against its operation; raises AssertionError on a mismatch."""
    operation = openapi_document()["paths"][path_template][method.lower()]
    responses = operation["responses"]
    response = responses.get(str(status)) or responses.get("default")
    assert response is not None, f"{method} {path_template}: status {status} is not documented"
    content = response.get("content", {}).get("application/json")
    if content is None:
        assert body in (None, b"", ""), f"{method} {path_template} {status}: body not documented"
        return
    ref = content["schema"]["$ref"] if "$ref" in content["schema"] else None
    if ref is None:
        raise AssertionError(f"{method} {path_template}: response schema must be a $ref")
    details = errors_for(ref, body)
    assert not details, f"{method} {path_template} {status}: {details}"
