"""Alembic environment: sync psycopg2, timeouts, one migrator at a time (warehouse's env.py).

- `statement_timeout`/`lock_timeout` make a migration that waits behind live traffic fail
  fast instead of queueing every request behind its ACCESS EXCLUSIVE lock.
- A session advisory lock serialises concurrent `ywm migrate` runs (several boxes starting).
  Both it and the session settings need a connection of our own: `ywm migrate` connects
  with YWM_MIGRATE_DATABASE_URL, straight to PostgreSQL, never through PgBouncer.
  The settings are `SET` after connecting, not libpq `options` (PgBouncer refuses those).
- One transaction per migration, so a failure leaves the database at the last good revision.
- Monthly partitions (`messages_y2026m11`, `events_default`, ...) are made by db/partitions.py,
  not by migrations: autogenerate and `alembic check` must not see them.
"""
from __future__ import annotations

import re
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from db.tables import PARTITIONED_TABLES, metadata

STATEMENT_TIMEOUT_MS = 60_000  # one DDL statement; data moves belong in scripts
LOCK_TIMEOUT_MS = 5_000  # give up rather than stall live queries behind our lock
ADVISORY_LOCK_ID = 0x79776D5F6D6967  # "ywm_mig": any constant shared by all migrators

PARTITION_CHILD = re.compile(
    r"^(?:%s)_(?:y\d{4}m\d{2}|default)$" % "|".join(map(re.escape, PARTITIONED_TABLES)))

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Leave partition children (and so their indexes) out of comparisons."""
    if type_ == "table" and name is not None:
        return not PARTITION_CHILD.match(name)
    return True


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") \
        or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: run `ywm migrate`/`ywm db ...`, or pass -x url=...")
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def _configure(**kw: object) -> None:
    context.configure(
        target_metadata=metadata,
        include_name=include_name,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
        **kw,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = sa.create_engine(_url(), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        connection.execute(sa.text(
            f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}; "
            f"SET lock_timeout = {LOCK_TIMEOUT_MS}; SET timezone = 'UTC'"))
        # Session-level lock, taken and committed before alembic starts its own
        # per-migration transactions.
        connection.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        connection.commit()
        try:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.rollback()
            released = connection.execute(sa.text("SELECT pg_advisory_unlock(:id)"),
                                          {"id": ADVISORY_LOCK_ID}).scalar()
            connection.commit()
    engine.dispose()
    if not released:
        # Only a pooler between us and PostgreSQL moves a session to another backend; the
        # lock now sits on a server connection it shares, and the next migrate would wait.
        raise RuntimeError("the migration lock was held by another backend than ours: "
                           "YWM_MIGRATE_DATABASE_URL must point at PostgreSQL itself, "
                           "not at PgBouncer")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
