"""What every repository shares: its connection, the error guard and the dialect pick.

A repository is a small class bound to ONE connection inside one transaction, so what a
transaction wrote is what its reads see.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError

from ..errors import StoreError

__all__ = ["Repository", "dicts", "guard", "occurrence_is"]


@contextmanager
def guard(where: str, action: str) -> Iterator[None]:
    """Turn a database failure into StoreError("cannot ACTION: database WHERE: CAUSE").

    A value SQLAlchemy could not bind (a naive datetime, an object JSON cannot
    hold) is a bug in the caller, not a database failure: it leaves as itself.
    """
    try:
        yield
    except StatementError as exc:
        if not isinstance(exc, DBAPIError) and isinstance(exc.orig, (ValueError, TypeError)):
            raise exc.orig from None
        raise _error(where, action, exc) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise _error(where, action, exc) from exc


def _error(where: str, action: str, exc: BaseException) -> StoreError:
    cause = getattr(exc, "orig", None) or exc
    return StoreError(f"cannot {action}: database {where}: {cause}")


def dicts(result: sa.CursorResult) -> list[dict]:
    return [dict(row) for row in result.mappings()]


def occurrence_is(table: sa.Table, window: str, occurrence: datetime) -> Any:
    return sa.and_(table.c.window == window, table.c.occurrence == occurrence)


class Repository:
    """Base of the repositories: statements on one connection, failures as StoreError."""

    def __init__(self, conn: Connection, where: str) -> None:
        self._conn = conn
        self._where = where

    def _run(self, action: str, statement: Any, params: Any = None) -> sa.CursorResult:
        with guard(self._where, action):
            # rowcount after an INSERT (did ON CONFLICT skip it?) is kept only when asked for
            return self._conn.execute(statement, params, execution_options={"preserve_rowcount": True})

    def _rows(self, action: str, statement: Any) -> list[dict]:
        with guard(self._where, action):
            return dicts(self._conn.execute(statement))

    def _insert(self, table: sa.Table) -> Any:
        """An INSERT that knows ``ON CONFLICT``: the one place that picks a dialect."""
        name = self._conn.dialect.name
        if name == "sqlite":
            return sqlite.insert(table)
        if name == "postgresql":
            return postgresql.insert(table)
        raise StoreError(f"unsupported database {name!r}: maintd supports SQLite and PostgreSQL")
