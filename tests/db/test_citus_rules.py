"""Citus readiness, checked on plain PostgreSQL against the live migrated schema.

deploy/citus/distribute.sql says how each table is distributed. Citus then needs, of the
schema: every unique key of a distributed table includes its distribution column; foreign
keys between distributed tables join their distribution columns (so they stay on one
node); reference tables reference no distributed table. And of the queries: tables of one
colocation group are joined on their distribution column, or each pinned to the same
church, so a query runs on one node. The query check reads PostgreSQL's own generic plan
(EXPLAIN VERBOSE of each statement db/queries/ defines at module level): the planner has
already resolved aliases, subqueries and partitions, so no SQL parsing of ours is needed.
"""
from __future__ import annotations

import importlib
import json
import pathlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit

import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.sql.base import Executable

import db.queries
from db.sql import DIALECT
from tests.conftest import ADMIN_DSN

ROOT = pathlib.Path(__file__).resolve().parents[2]
DISTRIBUTE_SQL = ROOT / "deploy" / "citus" / "distribute.sql"
# Tables Citus leaves alone on the coordinator, and why.
LOCAL_ONLY = {"alembic_version": "only `ywm migrate` reads it"}
TENANT_COLOCATION = "churches"

DISTRIBUTED = re.compile(
    r"create_distributed_table\('(\w+)',\s*'(\w+)'(?:,\s*colocate_with\s*=>\s*'(\w+)')?\)")
REFERENCE = re.compile(r"create_reference_table\('(\w+)'\)")
DROPPED_FK = re.compile(r"ALTER TABLE (\w+) DROP CONSTRAINT (\w+);")


@dataclass(frozen=True)
class Plan:
    """What distribute.sql does: table -> (column, colocation), references, dropped FKs."""
    distributed: dict[str, tuple[str, str | None]]
    reference: set[str]
    dropped: set[tuple[str, str]]

    @property
    def tenant_tables(self) -> set[str]:
        return {t for t, (_, group) in self.distributed.items()
                if t == TENANT_COLOCATION or group == TENANT_COLOCATION}


def read_plan(text: str) -> Plan:
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    return Plan({t: (col, group) for t, col, group in DISTRIBUTED.findall(code)},
                set(REFERENCE.findall(code)), set(DROPPED_FK.findall(code)))


@pytest.fixture(scope="module")
def plan() -> Plan:
    return read_plan(DISTRIBUTE_SQL.read_text())


@pytest.fixture(scope="module")
def direct_url(database_url: str) -> str:
    # PREPARE is session state: straight to PostgreSQL, even in the run through PgBouncer.
    return ADMIN_DSN.rsplit("/", 1)[0] + urlsplit(database_url).path


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def live_tables(url: str) -> set[str]:
    rows = query(url, "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                      "AND relkind IN ('r', 'p') AND NOT relispartition")
    return {name for (name,) in rows}


def test_distribute_sql_names_every_table_once(plan: Plan, direct_url: str) -> None:
    named = list(plan.distributed) + list(plan.reference)
    assert len(named) == len(set(named)), "a table is distributed twice"
    assert set(named) | set(LOCAL_ONLY) == live_tables(direct_url)


def test_every_table_with_a_church_id_is_a_tenant_or_a_reference_table(
        plan: Plan, direct_url: str) -> None:
    with_church = {t for (t,) in query(direct_url,
        "SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') "
        "AND NOT c.relispartition AND a.attname = 'church_id' AND a.attnotnull")}
    assert with_church - plan.reference == plan.tenant_tables - {TENANT_COLOCATION}
    for table in plan.tenant_tables - {TENANT_COLOCATION}:
        assert plan.distributed[table] == ("church_id", TENANT_COLOCATION), table


def test_unique_keys_include_the_distribution_column(plan: Plan, direct_url: str) -> None:
    """Primary keys, unique constraints and unique indexes (expression ones too)."""
    missing = []
    for table, (column, _) in plan.distributed.items():
        for (index, has_column) in query(direct_url, """
                SELECT i.relname, bool_or(a.attname = %s)
                  FROM pg_index x
                  JOIN pg_class c ON c.oid = x.indrelid
                  JOIN pg_class i ON i.oid = x.indexrelid
                  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (x.indkey)
                 WHERE x.indisunique AND c.relname = %s
                 GROUP BY i.relname""", (column, table)):
            if not has_column:
                missing.append(f"{table}.{index} lacks {column}")
    assert missing == []


def foreign_keys(url: str) -> list[tuple[str, str, str, list[str], list[str]]]:
    """(table, constraint, referenced table, columns, referenced columns), in key order."""
    rows = query(url, """
        SELECT c.relname, k.conname, r.relname,
               array(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, o)
                       JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n
                      ORDER BY u.o)::text[],
               array(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, o)
                       JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n
                      ORDER BY u.o)::text[]
          FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_class r ON r.oid = k.confrelid
         WHERE k.contype = 'f' AND k.conparentid = 0
           AND c.relnamespace = 'public'::regnamespace AND NOT c.relispartition""")
    return [(t, name, ref, list(cols), list(ref_cols)) for t, name, ref, cols, ref_cols in rows]


def test_foreign_keys_stay_within_a_node(plan: Plan, direct_url: str) -> None:
    wrong = []
    for table, name, referenced, columns, referenced_columns in foreign_keys(direct_url):
        pair = list(zip(columns, referenced_columns))
        if table in plan.reference and referenced in plan.distributed:
            if (table, name) not in plan.dropped:
                wrong.append(f"{name}: reference table {table} -> distributed {referenced}")
        elif table in plan.distributed and referenced in plan.distributed:
            (column, group), (ref_column, ref_group) = (plan.distributed[table],
                                                        plan.distributed[referenced])
            colocated = {group or table, ref_group or referenced} == {TENANT_COLOCATION}
            if not colocated or (column, ref_column) not in pair:
                wrong.append(f"{name}: {table}{columns} -> {referenced}{referenced_columns}")
    assert wrong == []


def test_dropped_foreign_keys_exist(plan: Plan, direct_url: str) -> None:
    """So distribute.sql runs as written (a stale name would stop it with ON_ERROR_STOP)."""
    existing = {(table, name) for table, name, *_ in foreign_keys(direct_url)}
    assert plan.dropped <= existing


# --- queries -------------------------------------------------------------------------

PARAM = re.compile(r"%\((\w+)\)s|__\[POSTCOMPILE_(\w+)\]")
CONDITION_KEYS = ("Index Cond", "Recheck Cond", "Filter", "Join Filter", "Hash Cond",
                  "Merge Cond", "One-Time Filter", "TID Cond")
# `a.col = b.col` and `a.col = $1` (either way round, maybe cast) inside a plan condition.
COLUMN = r"(\w+)\.(\w+)"
VALUE = r"(?:\(?(\$\d+)\)?(?:::[\w ]+)?)"
EQUALS = re.compile(rf"{COLUMN} = {COLUMN}|{COLUMN} = {VALUE}|{VALUE} = {COLUMN}")
# `m.church_id = church_id`: a subplan of an UPDATE/DELETE naming the target's column bare.
BARE = re.compile(rf"{COLUMN} = (\w+)(?![\w.(])")


def module_statements() -> Iterator[tuple[str, Any]]:
    for info in pkgutil.iter_modules(db.queries.__path__):
        module = importlib.import_module(f"db.queries.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, Executable) and isinstance(value, sa.sql.ClauseElement) \
                    and getattr(value, "__module__", None) != "sqlalchemy.sql.schema":
                yield f"db/queries/{info.name}.py:{name}", value


def positional_sql(stmt: Any) -> tuple[str, list[str]]:
    """The statement as PostgreSQL text with $1..$n for its bound names, and their types
    (`unknown` where SQLAlchemy has none: PostgreSQL infers it from the statement)."""
    compiled = stmt.compile(dialect=DIALECT)
    numbers: dict[str, int] = {}

    def number(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return f"${numbers.setdefault(name, len(numbers) + 1)}"
    sql = PARAM.sub(number, compiled.string).replace("%%", "%")
    types = []
    for name in numbers:
        bind = compiled.binds.get(name)
        kind = bind.type if bind is not None else sa.types.NULLTYPE
        types.append("unknown" if isinstance(kind, sa.types.NullType)
                     else kind.compile(dialect=DIALECT))
    return sql, types


def prepare_for_plans(cur: Any) -> None:
    # Parameters stay `$n` in the plan; with pruning on, the NULLs passed to EXECUTE would
    # prune every partition away at executor start-up and hide their scans.
    cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    cur.execute("SET LOCAL enable_partition_pruning = off")


def partition_parents(cur: Any) -> dict[str, str]:
    cur.execute("SELECT c.relname, p.relname FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent")
    return dict(cur.fetchall())


def generic_plan(cur: Any, sql: str, types: list[str]) -> dict[str, Any]:
    cur.execute("SAVEPOINT explain")
    try:
        declared = f"({', '.join(types)})" if types else ""
        cur.execute(f"PREPARE ywm_citus_check{declared} AS {sql}")
        args = f"({', '.join(['NULL'] * len(types))})" if types else ""
        cur.execute(f"EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE ywm_citus_check{args}")
        return json.loads(json.dumps(cur.fetchone()[0]))[0]["Plan"]
    finally:
        cur.execute("ROLLBACK TO SAVEPOINT explain")
        cur.execute("DEALLOCATE ALL")


def walk(node: dict[str, Any], scopes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The nodes of one query level. An InitPlan (a CTE or an uncorrelated subquery) runs
    on its own, as Citus plans it too, so it goes to `scopes` to be checked by itself."""
    yield node
    for child in node.get("Plans", []):
        if child.get("Parent Relationship") == "InitPlan":
            scopes.append(child)
        else:
            yield from walk(child, scopes)


class Links:
    """Union-find over `alias.column` and `$n`: what the conditions make equal."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            key = self.parent[key]
        return key

    def join(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def tie_partitions(append: dict[str, Any], parents: dict[str, str], plan: Plan,
                   links: Links) -> None:
    by_parent: dict[str, list[str]] = {}
    for child in append.get("Plans", []):
        parent = parents.get(child.get("Relation Name", ""))
        if parent in plan.distributed and "Alias" in child:
            by_parent.setdefault(parent, []).append(child["Alias"])
    for parent, aliases in by_parent.items():
        column = plan.distributed[parent][0]
        for alias in aliases[1:]:
            links.join(f"{alias}.{column}", f"{aliases[0]}.{column}")


def tie_target(modify: dict[str, Any], parents: dict[str, str], plan: Plan,
               links: Links) -> None:
    """The scans that read an UPDATE/DELETE target (`r`, or `r_1`.. for its partitions)
    are the rows a bare `church_id` in its RETURNING subplans refers to."""
    alias, relation = modify["Alias"], parents.get(modify["Relation Name"],
                                                   modify["Relation Name"])
    column = plan.distributed[relation][0]
    own = re.compile(rf"{re.escape(alias)}(?:_\d+)?$")
    links.join(f"{alias}.{column}", f"target.{column}")
    for step in walk(modify, []):
        step_relation = parents.get(step.get("Relation Name", ""), step.get("Relation Name"))
        if step_relation == relation and own.match(step.get("Alias", "")):
            links.join(f"{step['Alias']}.{column}", f"target.{column}")


HASHED = re.compile(r"hashed (SubPlan \d+)")


def tie_hashed_subplans(step: dict[str, Any], condition: str, parents: dict[str, str],
                        plan: Plan, links: Links) -> None:
    """PostgreSQL 15 prints a correlated EXISTS it turned into a hash lookup as just
    `(hashed SubPlan 2)`, without the columns it compares. Taken as comparing this scan's
    distribution column with the subplan's when the subplan outputs it (the lookup key)."""
    alias = step.get("Alias")
    relation = parents.get(step.get("Relation Name", ""), step.get("Relation Name"))
    if alias is None or relation not in plan.distributed:
        return
    column = plan.distributed[relation][0]
    for name in HASHED.findall(condition):
        for sub in (c for c in step.get("Plans", []) if c.get("Subplan Name") == name):
            for inner in walk(sub, []):
                inner_relation = parents.get(inner.get("Relation Name", ""),
                                             inner.get("Relation Name"))
                if inner_relation not in plan.distributed or "Alias" not in inner:
                    continue
                key = f"{inner['Alias']}.{plan.distributed[inner_relation][0]}"
                if key in inner.get("Output", []):
                    links.join(key, f"{alias}.{column}")


def unpinned_join(node: dict[str, Any], parents: dict[str, str], plan: Plan) -> list[str]:
    """Aliases of colocated tables in this plan that no church_id equality ties together."""
    scopes, loose = [node], []
    while scopes:
        loose += unpinned_in_scope(scopes.pop(), parents, plan, scopes)
    return sorted(loose)


def unpinned_in_scope(node: dict[str, Any], parents: dict[str, str], plan: Plan,
                      scopes: list[dict[str, Any]]) -> list[str]:
    aliases: dict[str, str] = {}  # alias -> distribution column
    links = Links()
    for step in walk(node, scopes):
        if step["Node Type"] in ("Append", "Merge Append"):
            # The partitions scanned for one reference to a partitioned table: one table.
            tie_partitions(step, parents, plan, links)
        relation = parents.get(step.get("Relation Name", ""), step.get("Relation Name"))
        # A ModifyTable node names its target; the rows come from the scans below it.
        scanning = step["Node Type"] != "ModifyTable"
        if relation in plan.tenant_tables and "Alias" in step and scanning:
            aliases[step["Alias"]] = plan.distributed[relation][0]
        if relation in plan.tenant_tables and not scanning:
            tie_target(step, parents, plan, links)
        for key in CONDITION_KEYS:
            for match in BARE.finditer(str(step.get(key, ""))):
                alias, column, bare = match.groups()
                if bare == column:
                    links.join(f"{alias}.{column}", f"target.{bare}")
        # RETURNING and target lists can hold subplans too.
        tie_hashed_subplans(step, " ".join(step.get("Output", [])), parents, plan, links)
        for key in CONDITION_KEYS:
            tie_hashed_subplans(step, str(step.get(key, "")), parents, plan, links)
            for match in EQUALS.finditer(str(step.get(key, ""))):
                a1, c1, a2, c2, a3, c3, v3, v4, a4, c4 = match.groups()
                if a1:
                    links.join(f"{a1}.{c1}", f"{a2}.{c2}")
                elif a3:
                    links.join(f"{a3}.{c3}", v3)
                else:
                    links.join(f"{a4}.{c4}", v4)
    groups = {links.find(f"{alias}.{column}") for alias, column in aliases.items()}
    return sorted(aliases) if len(groups) > 1 else []


def test_queries_join_tenant_tables_on_church_id(plan: Plan, direct_url: str) -> None:
    conn = psycopg2.connect(direct_url)
    try:
        with conn.cursor() as cur:
            prepare_for_plans(cur)
            parents = partition_parents(cur)
            checked, wrong, unplanned = 0, [], []
            for where, stmt in module_statements():
                sql, types = positional_sql(stmt)
                try:
                    tree = generic_plan(cur, sql, types)
                except psycopg2.Error as exc:
                    unplanned.append(f"{where}: {exc.pgerror or exc}".strip())
                    continue
                checked += 1
                loose = unpinned_join(tree, parents, plan)
                if loose:
                    wrong.append(f"{where}: {', '.join(loose)} not joined on church_id")
    finally:
        conn.rollback()
        conn.close()
    assert unplanned == []
    assert wrong == []
    assert checked > 50  # the net is really over the query modules


JOIN_CASES = [
    ("on the member id only",
     "SELECT m.id FROM conversations c JOIN members m ON m.id = c.member_id "
     "WHERE c.church_id = :church_id", True),
    ("on church and member",
     "SELECT m.id FROM conversations c JOIN members m "
     "ON m.church_id = c.church_id AND m.id = c.member_id WHERE c.church_id = :church_id",
     False),
    ("each pinned to another church",
     "SELECT m.id FROM conversations c, members m WHERE c.church_id = :a AND m.church_id = :b",
     True),
    ("partitioned tables on the message id only",
     "SELECT 1 FROM messages a JOIN message_recipients r ON r.message_id = a.id "
     "WHERE a.church_id = :church_id", True),
    ("a RETURNING subquery on the member id only",
     "UPDATE message_recipients r SET attempts = 1 WHERE r.church_id = :c "
     "RETURNING EXISTS (SELECT 1 FROM members m WHERE m.id = r.member_id)", True),
    ("a RETURNING subquery on church and member",
     "UPDATE message_recipients r SET attempts = 1 WHERE r.church_id = :c RETURNING EXISTS "
     "(SELECT 1 FROM members m WHERE m.church_id = r.church_id AND m.id = r.member_id)",
     False),
    ("EXISTS turned into a hash lookup, without church",
     "SELECT e.church_id FROM early_receipts e WHERE EXISTS (SELECT 1 FROM events v "
     "WHERE v.type = e.status) OR EXISTS (SELECT 1 FROM members m WHERE m.id IS NULL)", True),
    ("a scalar subquery in the select list on the group id only",
     "SELECT (SELECT count(*) FROM group_memberships g WHERE g.group_id = x.id) "
     "FROM groups x WHERE x.church_id = :c", True),
]


@pytest.mark.parametrize("sql, loose", [c[1:] for c in JOIN_CASES],
                         ids=[c[0] for c in JOIN_CASES])
def test_the_query_check_tells_tied_from_loose_joins(plan: Plan, direct_url: str, sql: str,
                                                     loose: bool) -> None:
    conn = psycopg2.connect(direct_url)
    try:
        with conn.cursor() as cur:
            prepare_for_plans(cur)
            parents = partition_parents(cur)
            tree = generic_plan(cur, *positional_sql(sa.text(sql)))
            found = unpinned_join(tree, parents, plan)
    finally:
        conn.rollback()
        conn.close()
    assert bool(found) is loose, found
