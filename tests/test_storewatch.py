"""StoreWatch alone: a real SQLite file, replaced or given another store id under it."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from conftest import Clock

from scheduler.model import UTC
from scheduler.runtime.faults import Faults
from scheduler.runtime.metrics import Metrics
from scheduler.runtime.storewatch import FAULT, StoreWatch
from scheduler.store import Store, database_url
from scheduler.store.identity import STORE_ID
from scheduler.store.schema import meta

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)


def _watch(path: Path) -> tuple[Store, StoreWatch, Faults]:
    store = Store(database_url(str(path), str(path.parent)))
    faults = Faults(Clock(NOW))
    watch = StoreWatch(store=store, faults=faults, metrics=Metrics())
    watch.start()
    return store, watch, faults


def test_the_same_database_is_fine_tick_after_tick(tmp_path: Path) -> None:
    store, watch, faults = _watch(tmp_path / "maintd.db")
    assert all(watch.ok() for _ in range(3))
    assert faults.to_json() == []
    store.close()


def test_a_file_replaced_by_another_database_is_lost_for_good(tmp_path: Path) -> None:
    store, watch, faults = _watch(tmp_path / "maintd.db")
    other = Store(database_url(str(tmp_path / "other.db"), str(tmp_path)))
    other.close()
    os.replace(tmp_path / "other.db", tmp_path / "maintd.db")
    lost = []
    watch.on_lost = lambda: lost.append(1)
    assert watch.ok() is False
    assert watch.ok() is False  # sticky, and reported once
    assert lost == [1]
    [fault] = faults.to_json()
    assert fault["what"] == FAULT and "replaced" in fault["message"]
    store.close()


def test_another_store_id_is_a_replacement_on_any_backend(tmp_path: Path) -> None:
    store, watch, _faults = _watch(tmp_path / "maintd.db")
    with store.engine.begin() as conn:  # a restored dump of another database, say
        conn.execute(sa.update(meta).where(meta.c.key == STORE_ID).values(value="someone-else"))
    assert watch.ok() is False
    store.close()


def test_a_store_id_is_written_once_and_kept(tmp_path: Path) -> None:
    store, watch, _ = _watch(tmp_path / "maintd.db")
    first = watch._opened
    store.close()
    store2, watch2, _ = _watch(tmp_path / "maintd.db")
    assert watch2._opened == first
    store2.close()
