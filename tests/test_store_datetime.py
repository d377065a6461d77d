"""UTCDateTime on SQLite: an aware instant in any zone is stored as the text SQLAlchemy's own
DATETIME writes for its UTC value ("YYYY-MM-DD HH:MM:SS.ffffff"), read back as aware UTC from
that text (with or without a fraction), and compared in time order; a naive one is refused."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from scheduler.store.schema import UTCDateTime


@pytest.fixture
def db(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 't.db'}")
    meta = sa.MetaData()
    table = sa.Table("t", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", UTCDateTime))
    stock = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", sa.DateTime))
    meta.create_all(engine)
    yield engine, table, stock
    engine.dispose()


def _instants(n: int = 300) -> list[datetime]:
    rng = random.Random(19)
    base = datetime(1970, 1, 1, tzinfo=UTC)
    out = [datetime(2026, 12, 1, 4, 5, 6, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)]
    out += [base + timedelta(seconds=rng.uniform(0, 4e9), microseconds=rng.randrange(10**6)) for _ in range(n)]
    zone = timezone(timedelta(hours=5, minutes=30))
    return out + [t.astimezone(zone) for t in out[:50]]  # any aware zone goes in as its UTC instant


def test_writes_the_text_sqlalchemys_datetime_writes(db):
    engine, table, stock = db
    values = _instants()
    with engine.begin() as conn:
        for i, t in enumerate(values):
            conn.execute(table.insert().values(id=i, at=t))
            conn.execute(stock.insert().values(id=10_000 + i, at=t.astimezone(UTC).replace(tzinfo=None)))
        raw = dict(conn.exec_driver_sql("SELECT id, at FROM t").all())
    for i in range(len(values)):
        assert raw[i] == raw[10_000 + i], values[i]
        assert len(raw[i]) == 26  # YYYY-MM-DD HH:MM:SS.ffffff, always with microseconds


def test_reads_back_aware_utc_from_either_writer_and_compares_in_order(db):
    engine, table, stock = db
    values = _instants()
    with engine.begin() as conn:
        for i, t in enumerate(values):
            conn.execute(stock.insert().values(id=i, at=t.astimezone(UTC).replace(tzinfo=None)))
        conn.exec_driver_sql("INSERT INTO t (id, at) VALUES (-1, '2026-11-30 01:02:03')")  # no fraction
        got = dict(conn.execute(sa.select(table.c.id, table.c.at)).all())
        cut = values[0]
        before = set(conn.execute(sa.select(table.c.id).where(table.c.at < cut)).scalars())
    assert got[-1] == datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)
    for i, t in enumerate(values):
        assert got[i] == t and got[i].tzinfo is UTC
    assert before == {i for i, t in enumerate(values) if t < cut} | {-1}


def test_a_naive_datetime_is_refused(db):
    engine, table, _ = db
    with engine.begin() as conn, pytest.raises(sa.exc.StatementError, match="naive datetime"):
        conn.execute(table.insert().values(id=1, at=datetime(2026, 1, 1)))
