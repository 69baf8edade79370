"""The API contract: JSON Schemas for bodies and the OpenAPI document built from them.

`openapi.yaml` holds the document's head and shared components; each `api/<area>.yaml`
adds its `paths` and `components.schemas`. They are merged once at import. Handlers call
`validate(name, value)` for bodies, and every API request's query string is checked
against its operation's declared parameters (`validate_query`); tests check every
response against its operation with `validate_response`, so code and contract cannot
drift.
"""
from __future__ import annotations

import functools
import json
import pathlib
import re
from typing import Any, Mapping, Sequence

import jsonschema
import yaml

from server.platform.errors import ValidationFailed

HERE = pathlib.Path(__file__).parent


def _merge(base: dict[str, Any], part: dict[str, Any], source: str) -> None:
    for path, item in (part.get("paths") or {}).items():
        if path in base["paths"]:
            raise ValueError(f"{source}: path {path} is defined twice")
        base["paths"][path] = item
    for name, item in (part.get("webhooks") or {}).items():  # the event catalogue
        if name in base.setdefault("webhooks", {}):
            raise ValueError(f"{source}: webhook {name} is defined twice")
        base["webhooks"][name] = item
    for name, body in (part.get("components", {}).get("schemas") or {}).items():
        if name in base["components"]["schemas"]:
            raise ValueError(f"{source}: schema {name} is defined twice")
        base["components"]["schemas"][name] = body


# libyaml's safe loader reads the same YAML as PyYAML's own (the safe constructor, merge
# keys included) about eight times faster; every process loads the document at start.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader


@functools.cache
def openapi_document() -> dict[str, Any]:
    document = _load_yaml((HERE / "openapi.yaml").read_text())
    document.setdefault("paths", {})
    document.setdefault("components", {}).setdefault("schemas", {})
    for part_file in sorted((HERE / "api").glob("*.yaml")):
        _merge(document, _load_yaml(part_file.read_text()) or {}, part_file.name)
    _document_key_scopes(document)
    return document


API_KEY_SCOPE = "x-api-key-scope"
# Security schemes an API key is presented with (openapi.yaml); OpenAPI 3.1 lets a
# non-OAuth requirement list roles, which is where each operation's scope is shown.
API_KEY_SCHEMES = ("apiKey", "apiKeyHeader")


def _document_key_scopes(document: dict[str, Any]) -> None:
    """Each operation that names an `x-api-key-scope` also lists the API-key schemes
    with that scope in its `security`, so the published document shows which operations
    a key may call and with what scope."""
    default = document.get("security", [])
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and operation.get(API_KEY_SCOPE):
                scope = operation[API_KEY_SCOPE]
                operation.setdefault("security", [*default, *(
                    {scheme: [scope]} for scheme in API_KEY_SCHEMES)])


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


# Our own sentences for the schema keywords: jsonschema's messages quote the value sent
# ("'hunter2' is too short"), which must never come back (a password, a phone number).
_LIMIT_WORDS = {
    "minLength": "Must be at least {} characters.", "maxLength": "Must be at most {} characters.",
    "minimum": "Must be at least {}.", "maximum": "Must be at most {}.",
    "exclusiveMinimum": "Must be more than {}.", "exclusiveMaximum": "Must be less than {}.",
    "minItems": "Give at least {} items.", "maxItems": "Give at most {} items.",
    "minProperties": "Give at least {} fields.", "maxProperties": "Give at most {} fields.",
    "format": "Must be a valid {}.", "pattern": "Is not in the expected format.",
    "uniqueItems": "Give each item once.", "multipleOf": "Must be a multiple of {}.",
}


def _message(error: jsonschema.ValidationError) -> str:
    """A sentence about the field that never repeats the value sent."""
    if error.validator == "required":
        return "This field is required."
    if error.validator == "additionalProperties":
        return "This field is not allowed."
    if error.validator == "type":
        return f"Must be of type {error.validator_value}."
    if error.validator == "enum" and isinstance(error.validator_value, list):
        return "Must be one of: " + ", ".join(str(v) for v in error.validator_value) + "."
    if error.validator == "const":
        return f"Must be {error.validator_value}."
    words = _LIMIT_WORDS.get(str(error.validator))
    if words:
        return words.format(str(error.validator_value).replace("-", " "))
    return "This value is not valid."


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


API_PREFIX = "/api/v1"  # the document's `servers` URL


@functools.cache
def _path_patterns() -> list[tuple[re.Pattern[str], str]]:
    """Each path template as a regex over request paths (`{id}` matches one segment)."""
    return [(re.compile("^" + API_PREFIX
                        + re.sub(r"\\\{[^/]+\\\}", "[^/]+", re.escape(template)) + "$"), template)
            for template in openapi_document()["paths"]]


@functools.cache
def query_parameters(method: str, path: str) -> tuple[dict[str, Any], ...] | None:
    """The query parameters the operation serving `method path` declares (path-level and
    operation-level), or None when the document has no such operation."""
    for pattern, template in _path_patterns():
        if pattern.match(path):
            item = openapi_document()["paths"][template]
            operation = item.get(method.lower())
            if operation is None:
                return None
            declared = [*item.get("parameters", []), *operation.get("parameters", [])]
            return tuple(p for p in declared if p.get("in") == "query")
    return None


# Bounded: request paths carry ids, so an unbounded cache would grow with every object.
@functools.lru_cache(maxsize=4096)
def api_key_scope(method: str, path: str) -> str | None:
    """The scope an API key needs for the operation serving `method path`: its
    `x-api-key-scope`, the one table of scopes (server/auth/api_keys.py enforces it).
    None when the operation names none (keys may not use it) or there is no operation.
    A literal path wins over a template (`/members/import` over `/members/{id}`)."""
    matches = [template for pattern, template in _path_patterns() if pattern.match(path)]
    for template in sorted(matches, key=lambda t: t.count("{")):
        operation = openapi_document()["paths"][template].get(method.lower())
        if operation is not None:
            scope = operation.get(API_KEY_SCOPE)
            return str(scope) if scope else None
    return None


def _coerce(raw: str, param_schema: dict[str, Any]) -> Any:
    """A query string value as the JSON type its schema names; a value that is not one
    is returned as the string, so the schema's own `type` check reports it."""
    kind = param_schema.get("type")
    if kind == "integer" and re.fullmatch(r"-?[0-9]+", raw):
        return int(raw)
    if kind == "number" and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", raw):
        return float(raw)
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


@functools.cache
def _param_validator(schema_json: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_json),
                                           format_checker=jsonschema.FormatChecker())


def validate_query(method: str, path: str, arguments: Mapping[str, Sequence[bytes]]) -> None:
    """Raise ValidationFailed (422) unless the query string matches the operation's
    declared parameters: each one given at most once, required ones present, and every
    value of its schema's type, enum and bounds (an empty `?limit=` is not an integer)."""
    declared = query_parameters(method, path)
    if declared is None:
        return
    details = []
    for param in declared:
        name, values = param["name"], arguments.get(param["name"])
        if not values:
            if param.get("required"):
                details.append({"field": name, "message": "This parameter is required."})
            continue
        if len(values) > 1:
            details.append({"field": name, "message": "Give this parameter once."})
            continue
        try:
            raw = values[0].decode("utf-8")
        except UnicodeDecodeError:
            details.append({"field": name, "message": "Must be UTF-8 text."})
            continue
        param_schema = param.get("schema", {})
        validator = _param_validator(json.dumps(param_schema, sort_keys=True))
        for error in validator.iter_errors(_coerce(raw, param_schema)):
            details.append({"field": name, "message": _message(error)})
            break
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
