"""Bring a database to the newest schema: Alembic migrations, then monthly partitions.

`upgrade(url)` is what `ywm migrate` and the test fixtures run; it is idempotent.
`run_alembic(url, argv)` is `ywm db ...`: any Alembic command (check, current, history,
downgrade, revision --autogenerate) against the configured database.
"""
from __future__ import annotations

import logging
import pathlib
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import command
from alembic.config import CommandLine, Config

from db.partitions import ensure_partitions

INI_PATH = pathlib.Path(__file__).with_name("alembic.ini")


def alembic_config(database_url: str) -> Config:
    config = Config(str(INI_PATH))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    # Keep the caller's logging (JSON lines) instead of alembic.ini's handlers.
    config.attributes["configure_logger"] = False
    # Alembic 1.20 logs every plugin it loads at INFO: noise in `ywm migrate` output.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    return config


def ensure_database(database_url: str) -> bool:
    """Create the URL's database if it does not exist (development); True if created."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    # CREATE DATABASE cannot run inside a transaction.
    engine = sa.create_engine(admin.replace("postgresql://", "postgresql+psycopg2://", 1),
                              isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                            {"name": name}).first():
                return False
            conn.execute(sa.text('CREATE DATABASE "%s"' % name.replace('"', '""')))
            return True
    finally:
        engine.dispose()


def upgrade(database_url: str) -> list[str]:
    """Run every pending migration, then create missing partitions; names created."""
    command.upgrade(alembic_config(database_url), "head")
    return ensure_partitions(database_url)


def run_alembic(database_url: str, argv: list[str]) -> int:
    """Run an Alembic command line (`["check"]`, `["downgrade", "-1"]`, ...)."""
    cli = CommandLine(prog="ywm db")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.print_help()
        return 2
    config = alembic_config(database_url)
    config.cmd_opts = options
    cli.run_cmd(config, options)
    return 0
