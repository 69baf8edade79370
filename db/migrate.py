"""Bring a database to the newest schema (temporary: create_all until Alembic lands)."""
from __future__ import annotations

import sqlalchemy as sa

from db.tables import metadata


def upgrade(database_url: str) -> None:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.begin() as conn:
        metadata.create_all(conn)
        for name in ("messages", "message_recipients", "conversation_messages", "events"):
            conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {name}_default "
                                 f"PARTITION OF {name} DEFAULT"))
    engine.dispose()
