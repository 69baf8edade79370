"""Merge fields in texts: `{first_name}`, `{last_name}`, `{church_name}`, with fallbacks.

Syntax (docs/decisions.md, "Merge fields"):
- `{field}` is replaced by the recipient's value; `{field|words}` uses `words` when the
  value is empty; without `|`, an empty value uses the field's default (`first_name`:
  "friend"; the others: nothing).
- Field names are case-insensitive and may have spaces around them (`{ First_Name }`).
- Anything else between single braces is an unknown field (a 422 naming it), so a typo
  never reaches a phone as `{frist_name}`. `{{` and `}}` write literal braces; a lone
  `{` or `}` with no partner is kept as written.

Pure functions, shared by the services (validation, the longest-text estimate, sending)
and mirrored by handlers/static/merge.js for the compose boxes' previews.
"""
from __future__ import annotations

import re
from typing import Mapping

# Field → what an empty value becomes when the text gives no fallback of its own.
DEFAULTS = {"first_name": "friend", "last_name": "", "church_name": ""}
FIELDS = tuple(DEFAULTS)

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}|]*)(?:\|([^{}]*))?\}")


class UnknownMergeField(ValueError):
    """The text names a field we do not have; `field` is the name as written."""

    def __init__(self, field: str) -> None:
        super().__init__(f"Unknown merge field {{{field}}}.")
        self.field = field


def has_fields(text: str) -> bool:
    """Cheap pre-check: a text without braces is sent exactly as written."""
    return "{" in text or "}" in text


def fields_used(text: str) -> list[str]:
    """The fields `text` names, each once, in order; raises UnknownMergeField."""
    used: list[str] = []
    if not has_fields(text):
        return used
    for match in _TOKEN.finditer(text):
        if match.group(0) in ("{{", "}}"):
            continue
        name = match.group(1).strip().lower()
        if name not in DEFAULTS:
            raise UnknownMergeField(match.group(1).strip())
        if name not in used:
            used.append(name)
    return used


def render(text: str, values: Mapping[str, str | None]) -> str:
    """`text` with every field replaced for one recipient (validate with `fields_used`
    first: an unknown field here is left as written)."""
    if not has_fields(text):
        return text

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1).strip().lower()
        if name not in DEFAULTS:
            return token
        value = (values.get(name) or "").strip()
        if value:
            return value
        fallback = match.group(2)
        return fallback.strip() if fallback is not None else DEFAULTS[name]

    return _TOKEN.sub(one, text)


def member_values(first_name: str | None, last_name: str | None,
                  church_name: str | None) -> dict[str, str | None]:
    return {"first_name": first_name, "last_name": last_name, "church_name": church_name}
