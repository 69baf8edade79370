"""db/paging.py on real PostgreSQL: pages walk a list once, in order, and bad input is refused."""
from __future__ import annotations

import base64

import pytest

from db import paging
from db.queries import churches, groups


async def _groups(deps, names, same_time=False):
    """A church with these groups, created in this order (`same_time`: in one
    transaction, so they share one created_at)."""
    async with deps.db.transaction() as conn:
        church = await churches.insert_church(conn, "Paging")
        if same_time:
            for name in names:
                await groups.insert_group(conn, church["id"], name)
    for name in [] if same_time else names:
        async with deps.db.transaction() as conn:
            await groups.insert_group(conn, church["id"], name)
    return church["id"]


async def _walk(deps, church_id, limit):
    pages, cursor = [], None
    async with deps.db.acquire() as conn:
        while True:
            page = await groups.list_groups(conn, church_id, limit, cursor)
            pages.append([row["name"] for row in page.rows])
            if page.next_cursor is None:
                return pages
            cursor = page.next_cursor


@pytest.mark.gen_test
@pytest.mark.parametrize("limit", [1, 2, 5, 6])
async def test_pages_walk_the_list_newest_first_once(deps, limit):
    names = [f"g{i}" for i in range(5)]
    church_id = await _groups(deps, names)
    pages = await _walk(deps, church_id, limit)
    assert [name for page in pages for name in page] == names[::-1]
    # A full last page says so at once: no empty page after it.
    assert all(pages) and all(len(page) == limit for page in pages[:-1])


@pytest.mark.gen_test
async def test_rows_with_the_same_time_are_told_apart_by_id(deps):
    church_id = await _groups(deps, ["a", "b", "c"], same_time=True)
    pages = await _walk(deps, church_id, 1)
    assert sorted(name for [name] in pages) == ["a", "b", "c"]


@pytest.mark.parametrize("cursor", [
    "garbage!", "bm90IGEgY3Vyc29y",  # base64 of "not a cursor"
    base64.urlsafe_b64encode(b"2026-01-01T00:00:00|not-a-uuid").decode(),
    # a time without its offset: a cursor this module never writes
    base64.urlsafe_b64encode(b"2026-01-01T00:00:00|00000000-0000-0000-0000-000000000001").decode(),
])
def test_a_cursor_it_did_not_write_is_refused_naming_cursor(cursor):
    order = paging.NewestFirst(groups.g.c.created_at, groups.g.c.id)
    with pytest.raises(paging.InvalidPage) as refused:
        order.position(cursor)
    assert refused.value.field == "cursor"


@pytest.mark.parametrize("raw,want", [(None, paging.DEFAULT_LIMIT), ("", paging.DEFAULT_LIMIT),
                                      ("1", 1), ("200", 200)])
def test_limit_defaults_and_bounds(raw, want):
    assert paging.parse_limit(raw) == want


@pytest.mark.parametrize("raw", ["0", "201", "-1", "x", "1.5"])
def test_a_limit_out_of_range_is_refused_naming_limit(raw):
    with pytest.raises(paging.InvalidPage) as refused:
        paging.parse_limit(raw)
    assert refused.value.field == "limit"
