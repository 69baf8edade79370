"""Saved replies and snippets (issue 15): list, read, create, update, delete.

Any signed-in user of the church reads and uses them; admins and owners manage them (the
handler checks roles, as for groups). A template's body may hold merge fields
(server/sms/merge_fields.py), checked when it is saved: an unknown field is a 422.
"""
from __future__ import annotations

from typing import Any
from uuid import UUID

from db.engine import Database, Row
from db.queries import templates as q
from server.platform.errors import Conflict, NotFound, ValidationFailed
from server.platform.jsonenc import iso_time
from server.services import merge

DUPLICATE_NAME = "A template with this name already exists."


def template_view(row: Row) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "body": row["body"],
            "fields": merge.check_body(row["body"]),
            "created_by": str(row["created_by"]) if row["created_by"] else None,
            "created_at": iso_time(row["created_at"]),
            "updated_at": iso_time(row["updated_at"])}


def _checked(values: dict[str, Any]) -> dict[str, str]:
    name, body = values["name"].strip(), values["body"]
    if not name:
        raise ValidationFailed.field("$.name", "Give the template a name.")
    if not body.strip():
        raise ValidationFailed.field("$.body", "The template is empty.")
    merge.check_body(body)
    return {"name": name, "body": body}


def _conflict() -> Conflict:
    return Conflict(DUPLICATE_NAME, [{"field": "$.name", "message": DUPLICATE_NAME}])


async def list_templates(db: Database, church_id: UUID, limit: int, cursor: str | None
                         ) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first."""
    async with db.acquire() as conn:
        return (await q.list_templates(conn, church_id, limit, cursor)).view(template_view)


async def get_template(db: Database, church_id: UUID, template_id: UUID | None
                       ) -> dict[str, Any]:
    async with db.acquire() as conn:
        row = await q.get_template(conn, church_id, template_id) if template_id else None
    if row is None:
        raise NotFound("No such template.")
    return template_view(row)


async def create_template(db: Database, church_id: UUID, user_id: UUID | None,
                          values: dict[str, Any]) -> dict[str, Any]:
    checked = _checked(values)
    try:
        async with db.transaction() as conn:
            row = await q.insert_template(conn, {**checked, "church_id": church_id,
                                                 "created_by": user_id})
    except q.DuplicateName:
        raise _conflict() from None
    return template_view(row)


async def update_template(db: Database, church_id: UUID, template_id: UUID | None,
                          changes: dict[str, Any]) -> dict[str, Any]:
    try:
        async with db.transaction() as conn:
            row = await q.get_template(conn, church_id, template_id) if template_id else None
            if row is None:
                raise NotFound("No such template.")
            checked = _checked({"name": row["name"], "body": row["body"], **changes})
            updated = await q.update_template(conn, {**checked, "church_id": church_id,
                                                     "id": row["id"]})
    except q.DuplicateName:
        raise _conflict() from None
    assert updated is not None
    return template_view(updated)


async def delete_template(db: Database, church_id: UUID, template_id: UUID | None) -> None:
    async with db.transaction() as conn:
        deleted = await q.delete_template(conn, church_id, template_id) \
            if template_id else False
    if not deleted:
        raise NotFound("No such template.")
