"""Compile SQLAlchemy Core statements for execution on a plain aiopg cursor.

`aiopg.sa` does not import with SQLAlchemy 2 (shared/spec/LIBRARIES.md §1), so we build
statements with SQLAlchemy Core and compile them here with the psycopg2 dialect. Compiled
forms are cached by SQLAlchemy's own cache key, so a module-level statement with
`bindparam()`s compiles once. This also applies what a bare `compile()` skips: IN-list
expansion, bind processors (JSON, Enum, TypeDecorator) and Python-side column defaults.
The semi-private APIs used here are why setup.cfg pins SQLAlchemy to one minor version.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Mapping

from sqlalchemy.dialects.postgresql import psycopg2 as pg_psycopg2
from sqlalchemy.sql import ClauseElement

DIALECT = pg_psycopg2.dialect()
CACHE_SIZE = 2000  # distinct statement shapes; ours are a few hundred.

_cache: "OrderedDict[Any, Any]" = OrderedDict()
_cache_lock = threading.Lock()


def _compiled(stmt: ClauseElement) -> tuple[Any, Any]:
    cache_key = stmt._generate_cache_key()
    if cache_key is None:  # uncacheable construct: compile every time
        return stmt.compile(dialect=DIALECT), None
    with _cache_lock:
        compiled = _cache.get(cache_key.key)
        if compiled is not None:
            _cache.move_to_end(cache_key.key)
            return compiled, cache_key
    compiled = stmt.compile(dialect=DIALECT, cache_key=cache_key)
    with _cache_lock:
        _cache[cache_key.key] = compiled
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled, cache_key


def _apply_defaults(compiled: Any, params: dict[str, Any]) -> None:
    for column in list(compiled.insert_prefetch) + list(compiled.update_prefetch):
        default = column.default if column in compiled.insert_prefetch else column.onupdate
        key = compiled.bind_names.get(column, column.key) if hasattr(compiled, "bind_names") \
            else column.key
        if params.get(column.key) is not None:
            continue
        if default is None:
            continue
        value = default.arg(None) if default.is_callable else default.arg
        params[column.key] = value
        params[key] = value


def to_sql(stmt: ClauseElement, params: Mapping[str, Any] | None = None
           ) -> tuple[str, dict[str, Any]]:
    """Return `(sql, params)` ready for `cursor.execute(sql, params)` on psycopg2/aiopg."""
    compiled, cache_key = _compiled(stmt)
    extracted = cache_key.bindparams if cache_key is not None else None
    values = compiled.construct_params(
        dict(params or {}), extracted_parameters=extracted, _check=False)
    _apply_defaults(compiled, values)
    processors = dict(compiled._bind_processors)
    sql = compiled.string
    if compiled.positiontup is None and compiled.post_compile_params:
        expanded = compiled._process_parameters_for_postcompile(values)
        sql, values = expanded.statement, dict(expanded.parameters)
        processors.update(expanded.processors or {})
    escaped = compiled.escaped_bind_names or {}
    out: dict[str, Any] = {}
    for name, value in values.items():
        processor = processors.get(name)
        out[escaped.get(name, name)] = processor(value) if processor and value is not None \
            else value
    return sql, out
