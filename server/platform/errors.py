"""Typed application errors, one class per API.md §2 code.

Services raise these; `handlers/base.py` renders every one of them into the single
error body `{"error": {"code", "message", "details"}}`.
"""
from __future__ import annotations

from typing import Any


class AppError(Exception):
    code = "internal_error"
    http_status = 500
    default_message = "Something went wrong on our side."

    def __init__(self, message: str | None = None,
                 details: list[dict[str, str]] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or []
        super().__init__(self.message)

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidJson(AppError):
    code, http_status = "invalid_json", 400
    default_message = "The request body is not valid JSON."


class PayloadTooLarge(AppError):
    code, http_status = "payload_too_large", 413
    default_message = "The request body is too large."


class ValidationFailed(AppError):
    code, http_status = "validation_failed", 422
    default_message = "The request is not valid."

    @classmethod
    def field(cls, field: str, message: str) -> "ValidationFailed":
        return cls(f"{field}: {message}", [{"field": field, "message": message}])


class Unauthorized(AppError):
    code, http_status = "unauthorized", 401
    default_message = "Sign in to continue."


class Forbidden(AppError):
    code, http_status = "forbidden", 403
    default_message = "You do not have permission to do that."


class CsrfFailed(AppError):
    code, http_status = "csrf_failed", 403
    default_message = "The CSRF token is missing or does not match."


class InsufficientScope(AppError):
    """An API key without the scope an operation needs (API.md §8); names the scope."""
    code, http_status = "insufficient_scope", 403

    def __init__(self, scope: str) -> None:
        super().__init__(f"This API key lacks the {scope} scope.",
                         [{"field": "scope", "message": f"Needs {scope}."}])
        self.scope = scope


class NotFound(AppError):
    code, http_status = "not_found", 404
    default_message = "Not found."


class MethodNotAllowed(AppError):
    # Not an API.md code of its own: a wrong method on a known path.
    code, http_status = "method_not_allowed", 405
    default_message = "That method is not allowed on this path."


class Conflict(AppError):
    code, http_status = "conflict", 409
    default_message = "That conflicts with the current state."


class RecipientOptedOut(AppError):
    code, http_status = "recipient_opted_out", 409
    default_message = "This member has opted out of text messages."


class RateLimited(AppError):
    code, http_status = "rate_limited", 429
    default_message = "Too many requests; slow down."

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(AppError):
    code, http_status = "unavailable", 503
    default_message = "The service is temporarily unavailable; try again shortly."
