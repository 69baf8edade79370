"""The to_sql bridge (db/sql.py) on a real psycopg2 cursor: the four things a bare
`compile()` gets wrong (LIBRARIES.md §1) plus the statement cache."""
from __future__ import annotations

import enum
from typing import Any, Iterator

import psycopg2
import psycopg2.extras
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from db.sql import to_sql


class Color(enum.Enum):
    red = "red"
    blue = "blue"


counter = {"n": 0}


def _next_token() -> str:
    counter["n"] += 1
    return f"tok{counter['n']}"


meta = sa.MetaData()
things = sa.Table(
    "bridge_things", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("data", JSONB),
    sa.Column("color", sa.Enum(Color, native_enum=False, length=10)),
    sa.Column("token", sa.Text, default=_next_token),
    sa.Column("version", sa.Integer, default=1, onupdate=sa.literal(2)),
    prefixes=["TEMPORARY"],
)

INSERT = things.insert().values(id=sa.bindparam("id"), name=sa.bindparam("name"),
                                data=sa.bindparam("data"), color=sa.bindparam("color"))
BY_IDS = sa.select(things.c.id).where(things.c.id.in_(sa.bindparam("ids", expanding=True))
                                      ).order_by(things.c.id)


@pytest.fixture
def cur(database_url: str) -> Iterator[Any]:
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    cursor = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    cursor.execute(str(sa.schema.CreateTable(things).compile(
        dialect=sa.dialects.postgresql.psycopg2.dialect())), {})
    yield cursor
    conn.close()  # the temporary table goes with the session


def run(cur: Any, stmt: Any, params: dict | None = None) -> list[dict]:
    sql, values = to_sql(stmt, params)
    cur.execute(sql, values)
    return [dict(r) for r in cur.fetchall()] if cur.description else []


def _insert(cur: Any, id: int, **kw: Any) -> None:
    params = {"id": id, "name": f"n{id}", "data": None, "color": None}
    params.update(kw)
    run(cur, INSERT, params)


def test_in_lists_expand_and_the_shape_is_reused_with_new_values(cur):
    for i in range(1, 6):
        _insert(cur, i)
    assert [r["id"] for r in run(cur, BY_IDS, {"ids": [2, 4]})] == [2, 4]
    assert [r["id"] for r in run(cur, BY_IDS, {"ids": [1, 3, 5]})] == [1, 3, 5]
    assert run(cur, BY_IDS, {"ids": []}) == []


def test_jsonb_and_enum_bind_processors_apply(cur):
    _insert(cur, 1, data={"tags": ["a", "ü"], "pct": "50%"}, color=Color.blue)
    row = run(cur, sa.select(things.c.data, things.c.color).where(things.c.id == 1))[0]
    assert row == {"data": {"tags": ["a", "ü"], "pct": "50%"}, "color": "blue"}


def test_python_side_defaults_and_onupdate_apply(cur):
    _insert(cur, 1)
    _insert(cur, 2)
    rows = run(cur, sa.select(things.c.token, things.c.version).order_by(things.c.id))
    assert [r["version"] for r in rows] == [1, 1]
    assert rows[0]["token"] != rows[1]["token"] and rows[0]["token"].startswith("tok")
    run(cur, things.update().where(things.c.id == sa.bindparam("target"))
        .values(name=sa.bindparam("new_name")), {"target": 1, "new_name": "x"})
    rows = run(cur, sa.select(things.c.name, things.c.version).order_by(things.c.id))
    assert rows == [{"name": "x", "version": 2}, {"name": "n2", "version": 1}]


def test_percent_literals_survive(cur):
    _insert(cur, 1, name="100% sure")
    stmt = sa.select(sa.literal_column("'50%'").label("lit"), things.c.name).where(
        things.c.name.like(sa.bindparam("pattern")))
    assert run(cur, stmt, {"pattern": "100%"}) == [{"lit": "50%", "name": "100% sure"}]
