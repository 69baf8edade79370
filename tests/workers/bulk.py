"""Builders for bulk-send tests and benchmarks: a church with N members, a group and a
number, written straight to PostgreSQL (fast enough for 100,000 members), and a session
token for it."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extras

from server.platform import crypto
from server.platform.settings import Settings

psycopg2.extras.register_uuid()


@dataclass
class Church:
    id: uuid.UUID
    group_id: uuid.UUID
    number_id: uuid.UUID
    number_phone: str
    member_ids: list[uuid.UUID] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    opted_out_ids: list[uuid.UUID] = field(default_factory=list)


def phone_for(index: int, block: int = 0) -> str:
    return f"+1{300 + block:03d}{index // 10000 % 1000:03d}{index % 10000:04d}"


def seed_church(settings: Settings, members: int, opted_out: int = 0, mps: int = 1000,
                provider: str = "telnyx", block: int = 0, timezone: str = "America/New_York",
                number_phone: str | None = None) -> Church:
    """Insert a church, `members` opted-in members (+ `opted_out` opted-out ones), all in
    one group, and one sending number with `mps`."""
    conn = psycopg2.connect(settings.database_url)
    church = Church(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(),
                    number_phone or f"+1800555{block:04d}")
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO churches (id, name, timezone) VALUES (%s, %s, %s)",
                    (church.id, f"Church {block}", timezone))
        cur.execute("INSERT INTO groups (church_id, id, name) VALUES (%s, %s, 'Everyone')",
                    (church.id, church.group_id))
        cur.execute("INSERT INTO numbers (church_id, id, phone, provider, mps, status, "
                    "messaging_profile_id) VALUES (%s, %s, %s, %s, %s, 'linked', 'mp-1')",
                    (church.id, church.number_id, church.number_phone, provider, mps))
        rows = []
        for i in range(members + opted_out):
            member_id, phone = uuid.uuid4(), phone_for(i, block)
            opted_in = i < members
            rows.append((church.id, member_id, f"First{i}", f"Last{i}",
                         crypto.encrypt(settings, phone, crypto.member_phone(church.id)),
                         crypto.phone_hash(settings, phone),
                         opted_in, None if opted_in else "2026-01-01T00:00:00Z"))
            (church.member_ids if opted_in else church.opted_out_ids).append(member_id)
            if opted_in:
                church.phones.append(phone)
        psycopg2.extras.execute_values(
            cur, "INSERT INTO members (church_id, id, first_name, last_name, phone_enc, "
                 "phone_hash, opt_in_sms, opted_out_at) VALUES %s", rows, page_size=2000)
        psycopg2.extras.execute_values(
            cur, "INSERT INTO group_memberships (church_id, group_id, member_id) VALUES %s",
            [(church.id, church.group_id, r[1]) for r in rows], page_size=5000)
    conn.close()
    return church


async def token_for(deps: Any, church: Church, role: str = "admin") -> str:
    from server.auth.sessions import create_session
    pair = await create_session(deps.redis, deps.settings, church.id, uuid.uuid4(), role)
    return pair.access_token


def sql(settings: Settings, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh connection (test assertions only)."""
    conn = psycopg2.connect(settings.database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()
