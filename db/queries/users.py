"""Queries on `users`: staff accounts of a church, and sign-in lookup by email."""
from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg2.errors
import sqlalchemy as sa

from db.engine import Connection, Row
from db.tables import churches, users

PUBLIC_COLUMNS = (users.c.id, users.c.church_id, users.c.email, users.c.name, users.c.role,
                  users.c.created_at)

INSERT = (sa.insert(users)
          .values(church_id=sa.bindparam("church_id"), email=sa.bindparam("email"),
                  name=sa.bindparam("name"), role=sa.bindparam("role"),
                  password_hash=sa.bindparam("password_hash"))
          .returning(*PUBLIC_COLUMNS))
REPLACE_PASSWORD_HASH = (sa.update(users)
                         .where(users.c.church_id == sa.bindparam("church_id"),
                                users.c.id == sa.bindparam("user_id"),
                                users.c.password_hash == sa.bindparam("old"))
                         .values(password_hash=sa.bindparam("new")))
# Sign-in is by email across churches (emails are unique case-insensitively).
GET_BY_EMAIL = (sa.select(*PUBLIC_COLUMNS, users.c.password_hash)
                .where(sa.func.lower(users.c.email) == sa.func.lower(sa.bindparam("email"))))
GET = (sa.select(*PUBLIC_COLUMNS)
       .where(users.c.church_id == sa.bindparam("church_id"),
              users.c.id == sa.bindparam("user_id")))
# /auth/me on every page load: the church and the caller in one round trip.
_CHURCH_COLUMNS = (churches.c.id, churches.c.name, churches.c.timezone, churches.c.help_text,
                   churches.c.unknown_sender_opt_in, churches.c.created_at)
GET_WITH_CHURCH = (
    sa.select(*(c.label(f"church_{c.key}") for c in _CHURCH_COLUMNS),
              *(c.label(f"user_{c.key}") for c in PUBLIC_COLUMNS))
    .select_from(churches.outerjoin(users, sa.and_(
        users.c.church_id == churches.c.id, users.c.id == sa.bindparam("user_id"))))
    .where(churches.c.id == sa.bindparam("church_id")))
# FOR UPDATE: role changes and removals lock the row they check.
GET_FOR_UPDATE = GET.with_for_update()
EMAIL_EXISTS = sa.select(sa.exists().where(
    sa.func.lower(users.c.email) == sa.func.lower(sa.bindparam("email"))))
LIST = (sa.select(*PUBLIC_COLUMNS)
        .where(users.c.church_id == sa.bindparam("church_id"))
        .order_by(users.c.created_at, users.c.id))
# Locks every owner row of the church, so two concurrent demotions cannot both pass
# the "another owner remains" check.
LOCK_OWNERS = (sa.select(users.c.id)
               .where(users.c.church_id == sa.bindparam("church_id"), users.c.role == "owner")
               .with_for_update())
UPDATE_ROLE = (sa.update(users)
               .where(users.c.church_id == sa.bindparam("church_id"),
                      users.c.id == sa.bindparam("user_id"))
               .values(role=sa.bindparam("role"))
               .returning(*PUBLIC_COLUMNS))
UPDATE_NAME = (sa.update(users)
               .where(users.c.church_id == sa.bindparam("church_id"),
                      users.c.id == sa.bindparam("user_id"))
               .values(name=sa.bindparam("name"))
               .returning(*PUBLIC_COLUMNS))
DELETE = sa.delete(users).where(users.c.church_id == sa.bindparam("church_id"),
                                users.c.id == sa.bindparam("user_id"))
COUNT = sa.select(sa.func.count()).select_from(users)


async def insert_user(conn: Connection, church_id: UUID, email: str, name: str, role: str,
                      password_hash: str) -> Row | None:
    """The new user, or None when the email is taken (case-insensitively, any church)."""
    try:
        return await conn.fetch_one(INSERT, {"church_id": church_id, "email": email,
                                             "name": name, "role": role,
                                             "password_hash": password_hash})
    except psycopg2.errors.UniqueViolation:
        return None


async def get_user_by_email(conn: Connection, email: str) -> Row | None:
    """The user with this email in any church, with its password hash."""
    return await conn.fetch_one(GET_BY_EMAIL, {"email": email})


async def email_exists(conn: Connection, email: str) -> bool:
    return bool(await conn.fetch_val(EMAIL_EXISTS, {"email": email}))


async def get_user(conn: Connection, church_id: UUID, user_id: UUID,
                   for_update: bool = False) -> Row | None:
    stmt = GET_FOR_UPDATE if for_update else GET
    return await conn.fetch_one(stmt, {"church_id": church_id, "user_id": user_id})


async def get_user_with_church(conn: Connection, church_id: UUID, user_id: UUID | None
                               ) -> tuple[Row | None, Row | None]:
    """(user, church); either is None when it does not exist."""
    row = await conn.fetch_one(GET_WITH_CHURCH, {"church_id": church_id, "user_id": user_id})
    if row is None:
        return None, None
    church = {k[len("church_"):]: v for k, v in row.items() if k.startswith("church_")}
    user = {k[len("user_"):]: v for k, v in row.items() if k.startswith("user_")}
    return (user if user["id"] is not None else None), church


async def list_users(conn: Connection, church_id: UUID) -> list[Row]:
    """All users of a church, oldest first (a church has a handful of staff)."""
    return await conn.fetch_all(LIST, {"church_id": church_id})


async def lock_owner_ids(conn: Connection, church_id: UUID) -> list[UUID]:
    return [row["id"] for row in await conn.fetch_all(LOCK_OWNERS, {"church_id": church_id})]


async def update_user(conn: Connection, church_id: UUID, user_id: UUID,
                      changes: dict[str, Any]) -> Row | None:
    row = None
    params = {"church_id": church_id, "user_id": user_id}
    if "role" in changes:
        row = await conn.fetch_one(UPDATE_ROLE, {**params, "role": changes["role"]})
    if "name" in changes:
        row = await conn.fetch_one(UPDATE_NAME, {**params, "name": changes["name"]})
    return row


async def replace_password_hash(conn: Connection, church_id: UUID, user_id: UUID,
                                old_hash: str, new_hash: str) -> bool:
    """Swap the hash only if it is still `old_hash` (a re-hash must not undo a change)."""
    return await conn.execute(REPLACE_PASSWORD_HASH, {
        "church_id": church_id, "user_id": user_id, "old": old_hash, "new": new_hash}) > 0


async def delete_user(conn: Connection, church_id: UUID, user_id: UUID) -> bool:
    return await conn.execute(DELETE, {"church_id": church_id, "user_id": user_id}) > 0


async def count_users(conn: Connection) -> int:
    return int(await conn.fetch_val(COUNT) or 0)
