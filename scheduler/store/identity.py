"""Which database this is: a random store id in the ``meta`` table, written once, and for
SQLite the file's (device, inode). A daemon compares both with what it opened, each tick,
to notice a database deleted or replaced under it (SQLite keeps writing to a deleted
file's inode; a restored PostgreSQL dump carries another id)."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .base import guard
from .engine import WRITE, file_identity, sqlite_path
from .schema import meta

__all__ = ["STORE_ID", "Identity", "identity", "store_id"]

STORE_ID = "store_id"

Identity = tuple[str | None, tuple[int, int] | None]  # (store id, SQLite file identity)


def store_id(engine: Engine, where: str, *, create: bool) -> str | None:
    """The database's store id; with ``create``, one is written when there is none yet."""
    select = sa.select(meta.c.value).where(meta.c.key == STORE_ID)
    with guard(where, "read the store id"), engine.connect() as conn:
        if not create:
            with conn.begin():
                return conn.execute(select).scalar()
        conn.execution_options(**{WRITE: True})
        try:
            with conn.begin():
                found = conn.execute(select).scalar()
                if found is None:
                    found = secrets.token_hex(16)
                    conn.execute(sa.insert(meta).values(key=STORE_ID, value=found))
                return found
        except sa.exc.IntegrityError:  # another instance wrote it first (PostgreSQL, HA)
            with conn.begin():
                return conn.execute(select).scalar()


def identity(engine: Engine, where: str, *, create: bool = False) -> Identity:
    """(store id, file identity) as the database is now; the file identity is None for a
    server database, and for a SQLite file that no longer exists."""
    path = sqlite_path(engine.url)
    if path is not None:
        file = file_identity(path)
        if file is None:  # read nothing: a new connection would create an empty file
            return None, None
    else:
        file = None
    return store_id(engine, where, create=create), file
