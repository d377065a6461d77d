"""scheduler.store against real SQLite files (and, with MAINTD_TEST_POSTGRES_URL, PostgreSQL).

The generic tests take the ``store`` fixture, parametrized by URL factory, so the same
contract runs on every backend. Tests about SQLite files themselves (upgrading an old
file, two processes' worth of writers, a filesystem that fails) use ``db_path``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from scheduler.errors import StoreError
from scheduler.store import LATEST_VERSION, MIGRATIONS, Store, database_url, make_engine, metadata, migrate
from scheduler.store.engine import BUSY_TIMEOUT_MS

UTC = UTC
T0 = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)  # an occurrence start
OCC = T0
MIN = timedelta(minutes=1)


# --------------------------------------------------------------------------- fixtures


def _sqlite_file(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'maintd.db'}"


def _postgres(tmp_path: Path) -> str:
    """A clean schema on the server named by MAINTD_TEST_POSTGRES_URL."""
    url = os.environ["MAINTD_TEST_POSTGRES_URL"]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url


# conftest starts a real PostgreSQL for the session (and sets the variable), so every
# store test runs on both databases.
URL_FACTORIES = {"sqlite-file": _sqlite_file, "postgresql": _postgres}


@pytest.fixture(params=sorted(URL_FACTORIES))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return URL_FACTORIES[request.param](tmp_path)


@pytest.fixture
def store(url: str):
    s = Store(url)
    yield s
    s.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "maintd.db"


def notice_row(
    tenant: str = "acme",
    *,
    kind: str = "scheduled",
    lead: str | None = "24h",
    channel: str = "email",
    seq: int = 0,
    at: datetime = T0 - timedelta(days=1),
    occurrence: datetime = OCC,
    window: str = "storage-firmware",
    **extra,
) -> dict:
    return dict(
        notice_id=f"ntc_{tenant}_{kind}_{lead}_{seq}",
        channel=channel,
        window=window,
        occurrence=occurrence,
        tenant=tenant,
        kind=kind,
        lead=lead,
        seq=seq,
        payload={"tenant": tenant, "kind": kind},
        created_at=at,
        **extra,
    )


def finish(
    store: Store,
    id: int,
    now: datetime,
    status: str,
    error: str | None = None,
    *,
    next_at: datetime | None = None,
    worker: str | None = None,
) -> bool:
    """One delivery result through ``finish_many``, as the outbox worker records it; True if it moved."""
    values: dict = {"status": status, "updated_at": now, "last_error": error}
    if status == "sent":
        values["sent_at"] = now
    if next_at is not None:
        values["next_attempt_at"] = next_at
    return store.finish_many([(id, values)], worker=worker) == {id}


# --------------------------------------------------------------------------- opening and migrations


def test_fresh_database_is_at_the_latest_version(store: Store) -> None:
    assert store.schema_version() == LATEST_VERSION == len(MIGRATIONS) >= 2


def test_migrations_build_the_schema_the_queries_use(store: Store) -> None:
    """The frozen migration steps and the module's Table objects must not drift apart."""
    inspector = sa.inspect(store.engine)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == set(table.columns.keys()), table.name
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        assert {i.name for i in table.indexes} <= indexes, table.name
    uniques = {u["name"] for u in inspector.get_unique_constraints("outbox")}
    assert "uq_outbox_delivery" in uniques


def test_a_version_1_file_upgrades_and_keeps_its_data(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    engine = make_engine(url)
    with engine.begin() as conn:  # the file as the first release left it
        assert migrate(conn, target=1) == 1
        conn.execute(
            sa.text(
                "INSERT INTO journal (at, kind, window, message) "
                "VALUES ('2026-12-01 10:00:00.000000', 'reload', NULL, 'old release')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO outbox (notice_id, channel, window, occurrence, tenant, kind, lead, seq, "
                "payload, status, attempts, next_attempt_at, created_at, updated_at) VALUES "
                "('ntc_old', 'email', 'storage-firmware', '2026-12-05T21:00:00Z', 'acme', 'scheduled', "
                "'24h', 0, '{}', 'pending', 0, '2026-12-04 21:00:00.000000', "
                "'2026-12-04 21:00:00.000000', '2026-12-04 21:00:00.000000')"
            )
        )
    engine.dispose()

    with Store(url) as store:
        assert store.schema_version() == LATEST_VERSION
        [entry] = store.history()
        assert (entry["kind"], entry["message"], entry["at"]) == ("reload", "old release", "2026-12-01T10:00:00Z")
        [old] = store.notices()
        assert (old["notice_id"], old["late"], old["occurrence"]) == ("ntc_old", False, OCC)
        with store.transaction() as tx:  # the v2 column works, and the old key still holds
            assert tx.enqueue([notice_row("acme"), notice_row("beta", late=True)]) == 1
        assert {n["tenant"]: n["late"] for n in store.notices()} == {"acme": False, "beta": True}
        indexes = {i["name"] for i in sa.inspect(store.engine).get_indexes("outbox")}
        assert "ix_outbox_due" in indexes


def test_a_file_from_a_newer_maintd_is_refused(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    Store(url).close()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE meta SET value = :v WHERE key = 'schema_version'"), {"v": str(LATEST_VERSION + 1)})
    engine.dispose()
    with pytest.raises(StoreError) as err:
        Store(url)
    assert str(err.value) == (
        f"database {db_path} has schema version {LATEST_VERSION + 1}, "
        f"this maintd knows up to {LATEST_VERSION}; upgrade maintd"
    )


def test_reopening_the_same_file_keeps_everything(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    with Store(url) as first, first.transaction() as tx:
        tx.journal("reload", at=T0, message="one")
    with Store(url) as second:
        assert [e["message"] for e in second.history()] == ["one"]
        assert second.schema_version() == LATEST_VERSION


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("maintd.db", "sqlite:////etc/maintd/maintd.db"),
        ("state/maintd.db", "sqlite:////etc/maintd/state/maintd.db"),
        ("../var/maintd.db", "sqlite:////etc/var/maintd.db"),
        ("/var/lib/maintd/maintd.db", "sqlite:////var/lib/maintd/maintd.db"),
        ("sqlite:////srv/m.db", "sqlite:////srv/m.db"),
        ("postgresql+psycopg://maintd@db/maintd", "postgresql+psycopg://maintd@db/maintd"),
    ],
    ids=["relative", "relative_subdir", "relative_parent", "absolute", "sqlite_url", "postgres_url"],
)
def test_database_url(database: str, expected: str) -> None:
    assert database_url(database, "/etc/maintd") == expected


def test_open_puts_a_relative_path_beside_the_config(tmp_path: Path) -> None:
    with Store.open("maintd.db", str(tmp_path)) as store:
        assert store.where == str(tmp_path / "maintd.db")
    assert (tmp_path / "maintd.db").exists()


def test_open_in_a_missing_directory_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "maintd.db"
    with pytest.raises(StoreError, match=f"cannot open: database {missing}: unable to open"):
        Store(f"sqlite:///{missing}")


def test_sqlite_connection_settings(db_path: Path) -> None:
    with Store(f"sqlite:///{db_path}") as store, store.engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": BUSY_TIMEOUT_MS, "foreign_keys": 1}
    assert 5_000 <= BUSY_TIMEOUT_MS <= 15_000  # outlasts our writes, yet a foreign lock faults fast


def test_in_memory_store_is_one_shared_database() -> None:
    with Store("sqlite://") as store:
        assert store.where == ":memory:"
        with store.transaction() as tx:
            tx.journal("reload", at=T0)
            tx.record_event("w", OCC, "start", at=T0, recorded_at=T0, late=False)
        with store.transaction() as tx:
            assert tx.record_event("w", OCC, "start", at=T0, recorded_at=T0, late=False) is False
        assert [e["kind"] for e in store.history()] == ["reload"]
        assert list(store.events()) == [("w", OCC, "start")]


# --------------------------------------------------------------------------- instants


@pytest.mark.parametrize(
    "instant",
    [
        T0,
        datetime(2026, 12, 5, 22, 0, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime(2027, 3, 28, 3, 30, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime(2027, 11, 7, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
        datetime(2026, 12, 5, 21, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 12, 5, 23, 0, tzinfo=timezone(timedelta(hours=2))),
    ],
    ids=["utc", "berlin_winter", "berlin_after_spring_gap", "ny_fall_fold_second", "microseconds", "fixed_offset"],
)
def test_instants_come_back_aware_utc(store: Store, instant: datetime) -> None:
    with store.transaction() as tx:
        tx.record_event("w", instant, "start", at=instant, recorded_at=instant, late=False)
    [(key, row)] = store.events().items()
    # compared in UTC: PEP 495 makes a fold=1 time unequal to every other zone's
    assert row["at"] == instant.astimezone(UTC) and row["at"].tzinfo is UTC
    assert row["at"].isoformat() == instant.astimezone(UTC).isoformat()
    # occurrence keys are isoz text: whole seconds, UTC
    assert key[1] == instant.astimezone(UTC).replace(microsecond=0) and key[1].tzinfo is UTC


def test_naive_datetimes_are_refused_as_a_bug(store: Store) -> None:
    with pytest.raises(ValueError, match="naive datetime 2026-12-05T21:00:00"):
        with store.transaction() as tx:
            tx.journal("reload", at=datetime(2026, 12, 5, 21, 0))
    with pytest.raises(ValueError, match="naive datetime"):
        store.events(since=datetime(2026, 12, 5))
    assert store.history() == []


# --------------------------------------------------------------------------- journal


def test_history_newest_first_json_ready_and_filtered(store: Store) -> None:
    with store.transaction() as tx:
        tx.journal("reload", at=T0 - 3 * MIN, actor="sighup")
        tx.journal("start", at=T0, window="storage-firmware", occurrence=OCC, detail={"tenants": ["acme", "beta"]})
        tx.journal("enter", at=T0 + MIN, window="manual-20261205T210100Z", actor="noc", message="emergency")
        tx.journal("end", at=T0 + 4 * 60 * MIN, window="storage-firmware", occurrence=OCC)

    entries = store.history()
    assert [e["kind"] for e in entries] == ["end", "enter", "start", "reload"]
    start = entries[2]
    assert start == {
        "id": start["id"],
        "at": "2026-12-05T21:00:00Z",
        "kind": "start",
        "window": "storage-firmware",
        "occurrence": "2026-12-05T21:00:00Z",
        "actor": None,
        "message": "",
        "detail": {"tenants": ["acme", "beta"]},
    }
    json.dumps(entries)  # JSON-ready as returned

    cases = {
        "limit": (dict(limit=2), ["end", "enter"]),
        "kinds": (dict(kinds=["start", "end"]), ["end", "start"]),
        "window": (dict(window="storage-firmware"), ["end", "start"]),
        "since_inclusive": (dict(since=T0), ["end", "enter", "start"]),
        "combined": (dict(kinds=["start"], window="storage-firmware", since=T0 + MIN), []),
    }
    for name, (kwargs, kinds) in cases.items():
        assert [e["kind"] for e in store.history(**kwargs)] == kinds, name


def test_journal_returns_increasing_ids(store: Store) -> None:
    with store.transaction() as tx:
        ids = [tx.journal("notice", at=T0) for _ in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_an_exception_rolls_the_whole_transaction_back(store: Store) -> None:
    with pytest.raises(RuntimeError, match="planner broke"):
        with store.transaction() as tx:
            tx.journal("start", at=T0, window="storage-firmware", occurrence=OCC)
            tx.record_event("storage-firmware", OCC, "start", at=T0, recorded_at=T0, late=False)
            tx.enqueue([notice_row("acme", kind="started", lead=None, at=T0)])
            raise RuntimeError("planner broke")
    assert store.history() == [] and store.events() == {} and store.notices() == []


# --------------------------------------------------------------------------- occurrences


def test_record_event_happens_once(store: Store) -> None:
    with store.transaction() as tx:
        assert (
            tx.record_event(
                "storage-firmware", OCC, "start", at=T0, recorded_at=T0, late=False, detail={"tenants": ["acme"]}
            )
            is True
        )
    with store.transaction() as tx:  # a restart replays the transition
        assert tx.record_event("storage-firmware", OCC, "start", at=T0 + MIN, recorded_at=T0 + MIN, late=True) is False
    events = store.events()
    assert list(events) == [("storage-firmware", OCC, "start")]
    row = events[("storage-firmware", OCC, "start")]
    assert (row["at"], row["late"], row["detail"]) == (T0, False, {"tenants": ["acme"]})


def test_record_event_rejects_an_unknown_event(store: Store) -> None:
    with pytest.raises(ValueError, match="'start' or 'end'"):
        with store.transaction() as tx:
            tx.record_event("w", OCC, "begin", at=T0, recorded_at=T0, late=False)


def test_open_occurrences_and_events_since(store: Store) -> None:
    other = OCC + timedelta(days=7)
    with store.transaction() as tx:
        tx.record_event("storage-firmware", OCC, "start", at=T0, recorded_at=T0, late=False)
        tx.record_event("patch-tuesday", other, "start", at=other + 2 * MIN, recorded_at=other + 2 * MIN, late=True)
    assert [(o["window"], o["occurrence"], o["late"]) for o in store.open_occurrences()] == [
        ("storage-firmware", OCC, False),
        ("patch-tuesday", other, True),
    ]

    with store.transaction() as tx:
        tx.record_event("storage-firmware", OCC, "end", at=T0 + 4 * 60 * MIN, recorded_at=T0 + 4 * 60 * MIN, late=False)
    assert [o["window"] for o in store.open_occurrences()] == ["patch-tuesday"]
    assert set(store.events(since=T0 + MIN)) == {("storage-firmware", OCC, "end"), ("patch-tuesday", other, "start")}


def test_announce_is_an_upsert(store: Store) -> None:
    with store.transaction() as tx:
        tx.announce(
            "storage-firmware",
            OCC,
            start=T0,
            end=T0 + 4 * 60 * MIN,
            title="Firmware",
            sequence=0,
            tenants=["beta", "acme"],
            status="scheduled",
            at=T0 - timedelta(days=7),
        )
    with store.transaction() as tx:
        tx.announce(
            "storage-firmware",
            OCC,
            start=T0 + 60 * MIN,
            end=T0 + 5 * 60 * MIN,
            title="Firmware",
            sequence=1,
            tenants={"acme", "beta", "gamma"},
            status="scheduled",
            at=T0 - timedelta(days=1),
        )
    assert store.announcements() == {
        ("storage-firmware", OCC): {
            "window": "storage-firmware",
            "occurrence": OCC,
            "start": T0 + 60 * MIN,
            "end": T0 + 5 * 60 * MIN,
            "title": "Firmware",
            "sequence": 1,
            "tenants": ["acme", "beta", "gamma"],
            "status": "scheduled",
            "occurrence_key": None,
            "updated_at": T0 - timedelta(days=1),
        }
    }


def test_set_override_keeps_the_latest(store: Store) -> None:
    with store.transaction() as tx:
        tx.set_override("storage-firmware", OCC, end=T0 + 270 * MIN, reason="extend", at=T0 + MIN, actor="noc")
    with store.transaction() as tx:
        tx.set_override("storage-firmware", OCC, end=T0 + 100 * MIN, reason="exit", at=T0 + 100 * MIN)
    assert store.overrides() == {
        ("storage-firmware", OCC): {
            "window": "storage-firmware",
            "occurrence": OCC,
            "end": T0 + 100 * MIN,
            "reason": "exit",
            "at": T0 + 100 * MIN,
            "actor": None,
        }
    }


def test_manual_windows(store: Store) -> None:
    with store.transaction() as tx:
        assert (
            tx.add_manual(
                "manual-a",
                reason="emergency",
                start=T0,
                end=T0 + 120 * MIN,
                tenants=["beta", "acme"],
                created_at=T0,
                actor="noc",
            )
            is True
        )
        assert tx.add_manual("manual-a", reason="again", start=T0, created_at=T0) is False
        tx.add_manual("manual-b", reason="until exit", start=T0 + MIN, policy="standard", created_at=T0 + MIN)
        tx.add_manual("manual-c", reason="short", start=T0, end=T0 + 10 * MIN, created_at=T0)
    with store.transaction() as tx:
        assert tx.end_manual("manual-c", T0 + 5 * MIN) is True
        assert tx.end_manual("manual-c", T0 + 6 * MIN) is False
        assert tx.end_manual("unknown", T0) is False

    cases = {
        "active": (dict(), ["manual-a", "manual-b"]),
        "active_at_now": (dict(now=T0 + 60 * MIN), ["manual-a", "manual-b"]),
        "end_is_exclusive": (dict(now=T0 + 120 * MIN), ["manual-b"]),
        "all": (dict(active_only=False), ["manual-a", "manual-c", "manual-b"]),
    }
    for name, (kwargs, ids) in cases.items():
        assert [m["id"] for m in store.manual_windows(**kwargs)] == ids, name
    [a] = [m for m in store.manual_windows() if m["id"] == "manual-a"]
    assert (a["tenants"], a["end"], a["ended_at"]) == (["acme", "beta"], T0 + 120 * MIN, None)
    [b] = [m for m in store.manual_windows() if m["id"] == "manual-b"]
    assert (b["tenants"], b["end"], b["policy"]) == (None, None, "standard")


# --------------------------------------------------------------------------- outbox


def test_enqueue_counts_only_new_deliveries(store: Store) -> None:
    rows = [
        notice_row("acme"),
        notice_row("beta"),
        notice_row("acme", channel="webhook"),
        notice_row("acme", lead="1h"),
        notice_row("acme", kind="started", lead=None, at=T0),
    ]
    with store.transaction() as tx:
        assert tx.enqueue(rows + [notice_row("acme")]) == 5  # a duplicate inside the batch
        assert tx.enqueue([]) == 0
    with store.transaction() as tx:  # the next tick plans the same notices again
        assert tx.enqueue(rows) == 0
        assert tx.enqueue([notice_row("acme", kind="started", lead="")]) == 0  # '' is None
        assert tx.enqueue([notice_row("acme", kind="rescheduled", lead=None, seq=1)]) == 1
    assert store.notice_counts() == {"sent": 0, "pending": 6, "failed": 0, "superseded": 0}
    started = [n for n in store.notices() if n["kind"] == "started"]
    assert [(n["lead"], n["status"], n["attempts"], n["next_attempt_at"]) for n in started] == [("", "pending", 0, T0)]


def test_enqueue_needs_the_identifying_fields(store: Store) -> None:
    row = notice_row("acme")
    del row["channel"]
    with pytest.raises(ValueError, match="outbox row lacks channel"):
        with store.transaction() as tx:
            tx.enqueue([row])


def test_enqueue_ten_thousand_rows(store: Store) -> None:
    rows = [notice_row(f"tenant-{i:05d}") for i in range(10_000)]
    with store.transaction() as tx:
        assert tx.enqueue(rows) == 10_000
    with store.transaction() as tx:
        assert tx.enqueue(rows) == 0
    assert store.notice_counts()["pending"] == 10_000


def test_claim_takes_due_rows_only(store: Store) -> None:
    now = T0 - timedelta(hours=23)
    with store.transaction() as tx:
        tx.enqueue(
            [
                notice_row("due-first", at=now - 2 * MIN),
                notice_row("due-second", at=now - MIN),
                notice_row("due-now", at=now),
                notice_row("later", at=now - 5 * MIN, next_attempt_at=now + MIN),
                notice_row("dry", at=now - 5 * MIN, status="dry-run"),
            ]
        )
    first = store.claim_batch(now, worker="w1", limit=2, lease=5 * MIN)
    assert [r["tenant"] for r in first] == ["due-first", "due-second"]
    assert {(r["status"], r["attempts"], r["claimed_by"], r["claimed_until"]) for r in first} == {
        ("sending", 1, "w1", now + 5 * MIN)
    }
    assert [r["tenant"] for r in store.claim_batch(now, worker="w2", limit=10, lease=5 * MIN)] == ["due-now"]
    assert store.claim_batch(now, worker="w3", limit=10, lease=5 * MIN) == []
    assert [r["tenant"] for r in store.claim_batch(now + MIN, worker="w3", limit=10, lease=5 * MIN)] == ["later"]


def test_a_crashed_workers_claim_is_taken_over_after_its_lease(store: Store) -> None:
    with store.transaction() as tx:
        tx.enqueue([notice_row("acme", at=T0 - MIN)])
    [row] = store.claim_batch(T0, worker="crashed", limit=1, lease=5 * MIN)
    assert store.claim_batch(T0 + 5 * MIN, worker="w2", limit=1, lease=5 * MIN) == []  # still held
    [again] = store.claim_batch(T0 + 5 * MIN + timedelta(seconds=1), worker="w2", limit=1, lease=5 * MIN)
    assert (again["id"], again["claimed_by"], again["attempts"]) == (row["id"], "w2", 2)
    # the crashed worker, should it wake up, can no longer finish the row
    assert finish(store, row["id"], T0 + 6 * MIN, "sent", worker="crashed") is False
    assert finish(store, row["id"], T0 + 6 * MIN, "sent", worker="w2") is True


@pytest.mark.parametrize(
    ("setup", "mark", "result", "status"),
    [
        ("sending", "sent", True, "sent"),
        ("sending", "retry", True, "pending"),
        ("sending", "failed", True, "failed"),
        ("pending", "sent", False, "pending"),
        ("pending", "retry", False, "pending"),
        ("sent", "sent", False, "sent"),
        ("sent", "failed", False, "sent"),
        ("failed", "retry", False, "failed"),
        ("start_while_sending", "sent", True, "sent"),  # SPEC 4.1: in flight at the start, recorded as sent
    ],
    ids=[
        "sending_sent",
        "sending_retry",
        "sending_failed",
        "pending_sent_refused",
        "pending_retry_refused",
        "sent_twice_refused",
        "sent_then_failed_refused",
        "failed_retry_refused",
        "in_flight_at_start_sent_recorded",
    ],
)
def test_finish_is_compare_and_set_on_sending(store: Store, setup: str, mark: str, result: bool, status: str) -> None:
    with store.transaction() as tx:
        tx.enqueue([notice_row("acme", at=T0 - MIN)])
    [row] = store.notices()
    if setup != "pending":
        store.claim_batch(T0, worker="w", limit=1, lease=MIN)
    if setup == "sent":
        finish(store, row["id"], T0, "sent")
    elif setup == "failed":
        finish(store, row["id"], T0, "failed", "550 no such user")
    elif setup == "start_while_sending":
        with store.transaction() as tx:
            assert tx.supersede("storage-firmware", OCC, "scheduled", T0) == 0  # a claimed row is not superseded

    now = T0 + MIN
    marks = {
        "sent": lambda: finish(store, row["id"], now, "sent"),
        "retry": lambda: finish(store, row["id"], now, "pending", "HTTP 503", next_at=now + 30 * MIN / 60),
        "failed": lambda: finish(store, row["id"], now, "failed", "HTTP 410 gone"),
    }
    assert marks[mark]() is result
    [after] = store.notices()
    assert after["status"] == status
    if result:
        assert (after["claimed_by"], after["claimed_until"], after["updated_at"]) == (None, None, now)
        expected = {"sent": (None, now), "retry": ("HTTP 503", None), "failed": ("HTTP 410 gone", None)}
        assert (after["last_error"], after["sent_at"]) == expected[mark]
    if mark == "retry" and result:
        assert after["next_attempt_at"] == now + 30 * MIN / 60
        assert store.claim_batch(now, worker="w", limit=1, lease=MIN) == []
        assert len(store.claim_batch(now + 30 * MIN / 60, worker="w", limit=1, lease=MIN)) == 1


def test_two_stores_claiming_at_once_never_share_a_row(url: str) -> None:
    """Two Store objects on one database (two daemons' worth of connections), two threads
    racing with the batch claim the outbox worker uses."""
    stores = [Store(url), Store(url)]
    with stores[0].transaction() as tx:
        tx.enqueue([notice_row(f"tenant-{i:03d}", at=T0 - MIN) for i in range(300)])
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(name: str, s: Store) -> None:
        try:
            start.wait()
            while rows := s.claim_batch(T0, worker=name, limit=7, lease=5 * MIN):
                claimed[name].extend(r["id"] for r in rows)
                for r in rows:
                    assert r["claimed_by"] == name
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n, s)) for n, s in zip("ab", stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in stores:
        s.close()
    assert errors == []
    every = claimed["a"] + claimed["b"]
    assert len(every) == len(set(every)) == 300


def test_supersede_and_was_notified(store: Store) -> None:
    now = T0 - timedelta(hours=2)
    with store.transaction() as tx:
        tx.enqueue(
            [
                notice_row("sent", at=now - MIN),
                notice_row("sending", at=now - MIN),
                notice_row("pending", at=now - MIN, next_attempt_at=now + 10 * MIN),
                notice_row("failed", at=now - MIN),
                notice_row("dry", status="dry-run", at=now),
                notice_row("pending", kind="started", lead=None, at=now, next_attempt_at=T0),
                notice_row("other-occurrence", occurrence=OCC + timedelta(days=7), at=now),
            ]
        )
    by_tenant = {}
    for row in store.claim_batch(now, worker="w", limit=10, lease=MIN):
        by_tenant[row["tenant"]] = row["id"]
    finish(store, by_tenant["sent"], now, "sent")
    finish(store, by_tenant["failed"], now, "failed", "boom")
    finish(store, by_tenant["other-occurrence"], now, "pending", "later", next_at=now + MIN)

    assert store.was_notified("storage-firmware", OCC) == {"sent", "sending", "pending"}
    assert store.was_notified("storage-firmware", OCC, include_dry_run=True) == {"sent", "sending", "pending", "dry"}
    with store.transaction() as tx:
        assert tx.supersede("storage-firmware", OCC, "scheduled", now, tenant="pending") == 1
    assert store.was_notified("storage-firmware", OCC) == {"sent", "sending"}
    with store.transaction() as tx:
        # only "sending" is left: its send has begun, so it finishes as what it was (SPEC 4.1)
        assert tx.supersede("storage-firmware", OCC, "scheduled", now) == 0
    assert finish(store, by_tenant["sending"], now, "sent") is True
    assert store.was_notified("storage-firmware", OCC) == {"sent", "sending"}
    statuses = {(n["tenant"], n["kind"]): n["status"] for n in store.notices()}
    assert statuses == {
        ("sent", "scheduled"): "sent",
        ("sending", "scheduled"): "sent",
        ("pending", "scheduled"): "superseded",
        ("failed", "scheduled"): "failed",
        ("dry", "scheduled"): "dry-run",
        ("pending", "started"): "pending",
        ("other-occurrence", "scheduled"): "pending",
    }


def test_notice_counts_and_log_filters(store: Store) -> None:
    with store.transaction() as tx:
        tx.enqueue(
            [
                notice_row("acme", at=T0 - 3 * MIN),
                notice_row("beta", at=T0 - 2 * MIN),
                notice_row("gamma", at=T0 - MIN),
                notice_row("acme", window="patch-tuesday", at=T0 - MIN),
            ]
        )
    rows = {(r["window"], r["tenant"]): r["id"] for r in store.claim_batch(T0, worker="w", limit=2, lease=MIN)}
    finish(store, rows[("storage-firmware", "acme")], T0, "sent")
    finish(store, rows[("storage-firmware", "beta")], T0, "failed", "HTTP 410")
    store.claim_batch(T0, worker="w", limit=1, lease=MIN)  # one "sending" counts as pending

    assert store.notice_counts() == {"sent": 1, "pending": 2, "failed": 1, "superseded": 0}
    cases = {
        "all_newest_first": (
            dict(),
            ["patch-tuesday/acme", "storage-firmware/gamma", "storage-firmware/beta", "storage-firmware/acme"],
        ),
        "failed_only": (dict(failed_only=True), ["storage-firmware/beta"]),
        "limit": (dict(limit=1), ["patch-tuesday/acme"]),
        "window": (dict(window="patch-tuesday"), ["patch-tuesday/acme"]),
        "tenant": (dict(tenant="acme"), ["patch-tuesday/acme", "storage-firmware/acme"]),
    }
    for name, (kwargs, expected) in cases.items():
        got = [f"{n['window']}/{n['tenant']}" for n in store.notices(**kwargs)]
        # created_at ties (patch-tuesday and gamma) break by id, newest first
        assert got == expected, name
    [failed] = store.notices(failed_only=True)
    assert (failed["last_error"], failed["attempts"], failed["payload"]) == (
        "HTTP 410",
        1,
        {"tenant": "beta", "kind": "scheduled"},
    )


# --------------------------------------------------------------------------- leases


def test_lease_heartbeat_drain_and_release(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_lease("lease-1", tenant="acme", kind="backup", resource="repo-eu-1", admitted_at=T0, interval_s=30)
        tx.add_lease(
            "lease-2",
            tenant="beta",
            kind="restore",
            admitted_at=T0,
            interval_s=30,
            window="storage-firmware",
            occurrence=OCC,
        )
    [one, two] = store.leases()
    assert (one["expires_at"], one["drain"], one["status"], one["then"]) == (
        T0 + timedelta(seconds=90),
        False,
        "running",
        None,
    )
    assert two["occurrence"] == OCC

    beat = store.heartbeat("lease-1", T0 + MIN)
    assert (beat["heartbeat_at"], beat["expires_at"], beat["drain"], beat["deadline"]) == (
        T0 + MIN,
        T0 + MIN + timedelta(seconds=90),
        False,
        None,
    )

    with store.transaction() as tx:
        assert tx.order_drain(["lease-1", "unknown"], deadline=T0 + 11 * MIN, then="stop") == 1
    with store.transaction() as tx:  # the next tick must not push the deadline out
        assert tx.order_drain(["lease-1"], deadline=T0 + 20 * MIN, then="keep") == 0
        assert tx.order_drain([], deadline=None, then="stop") == 0
    beat = store.heartbeat("lease-1", T0 + 2 * MIN)
    assert (beat["drain"], beat["deadline"], beat["then"], beat["overrun"]) == (True, T0 + 11 * MIN, "stop", False)
    store.heartbeat("lease-1", T0 + 3 * MIN)
    beat = store.heartbeat("lease-1", T0 + 4 * MIN)
    assert beat["overrun"] is False
    for minute in range(5, 12):
        beat = store.heartbeat("lease-1", T0 + minute * MIN)
    assert beat["overrun"] is True  # still beating at the deadline

    assert store.release("lease-1", T0 + 12 * MIN) is True
    assert store.release("lease-1", T0 + 13 * MIN) is False
    assert store.heartbeat("lease-1", T0 + 13 * MIN) is None
    assert store.heartbeat("unknown", T0) is None
    released = store.lease("lease-1")
    assert (released["status"], released["released_at"]) == ("released", T0 + 12 * MIN)
    assert store.lease("unknown") is None
    assert [lease["id"] for lease in store.leases()] == ["lease-2"]
    assert [lease["id"] for lease in store.leases(status=None)] == ["lease-1", "lease-2"]


def test_order_drain_rejects_an_unknown_then(store: Store) -> None:
    with pytest.raises(ValueError, match="'stop' or 'keep'"):
        with store.transaction() as tx:
            tx.order_drain(["x"], deadline=None, then="kill")


def test_leases_expire_after_three_missed_intervals(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_lease("quiet", tenant="acme", kind="backup", admitted_at=T0, interval_s=30)
        tx.add_lease("beating", tenant="acme", kind="backup", admitted_at=T0, interval_s=30)
        tx.add_lease("done", tenant="acme", kind="backup", admitted_at=T0, interval_s=30)
    store.heartbeat("beating", T0 + timedelta(seconds=60))
    store.release("done", T0 + timedelta(seconds=10))

    with store.transaction() as tx:
        assert tx.expire_leases(T0 + timedelta(seconds=89)) == []
    # past expires_at a heartbeat no longer revives a lease, whether or not the sweep ran
    assert store.heartbeat("quiet", T0 + timedelta(seconds=90)) is None
    with store.transaction() as tx:
        assert tx.expire_leases(T0 + timedelta(seconds=90)) == ["quiet"]
    with store.transaction() as tx:
        assert tx.expire_leases(T0 + timedelta(seconds=90)) == []
        assert tx.expire_leases(T0 + timedelta(seconds=150)) == ["beating"]
    assert {lease["id"]: lease["status"] for lease in store.leases(status=None)} == {
        "quiet": "expired",
        "beating": "expired",
        "done": "released",
    }
    assert store.lease("quiet")["released_at"] == T0 + timedelta(seconds=90)


# --------------------------------------------------------------------------- hooks


def test_hook_runs_once_with_retries(store: Store) -> None:
    key = ("storage-firmware", OCC, "start")
    with store.transaction() as tx:
        assert tx.add_hook_run(*key, now=T0) is True
    with store.transaction() as tx:
        assert tx.add_hook_run(*key, now=T0 + MIN) is False
    assert store.claim_hook(*key, T0) is True
    assert store.claim_hook(*key, T0) is False  # another tick or instance
    assert store.finish_hook(key, ok=False, now=T0 + MIN, exit_code=1, error="exit 1", next_at=T0 + 2 * MIN) is True
    [run] = store.hook_runs(status="pending")
    assert (run["attempts"], run["exit_code"], run["last_error"], run["next_attempt_at"]) == (
        1,
        1,
        "exit 1",
        T0 + 2 * MIN,
    )
    assert store.claim_hook(*key, T0 + MIN) is False  # not due yet
    assert store.claim_hook(*key, T0 + 2 * MIN) is True
    assert store.finish_hook(key, ok=True, now=T0 + 3 * MIN, exit_code=0) is True
    assert store.finish_hook(key, ok=True, now=T0 + 3 * MIN, exit_code=0) is False
    [run] = store.hook_runs()
    assert (run["status"], run["attempts"], run["exit_code"], run["last_error"]) == ("ok", 2, 0, None)
    assert store.hook_runs(status="running") == []


def test_hook_without_a_next_try_fails(store: Store) -> None:
    key = ("storage-firmware", OCC, "end")
    with store.transaction() as tx:
        tx.add_hook_run(*key, now=T0)
    store.claim_hook(*key, T0)
    assert store.finish_hook(key, ok=False, now=T0, exit_code=None, error="timed out after 2m")
    [run] = store.hook_runs(status="failed")
    assert (run["last_error"], run["exit_code"]) == ("timed out after 2m", None)


# --------------------------------------------------------------------------- tenant secrets, instances


def test_tenant_secrets(store: Store) -> None:
    tokens = iter(["s1", "s2", "s3"])
    factory = lambda: next(tokens)  # noqa: E731
    assert store.tenant_secret("acme", create=False) is None
    assert store.tenant_secret("acme", token_factory=factory, now=T0) == "s1"
    assert store.tenant_secret("acme", token_factory=factory) == "s1"  # stable, factory unused
    assert store.tenant_for_secret("s1") == "acme"
    assert store.rotate_secret("acme", token_factory=factory, now=T0) == "s2"
    assert (store.tenant_for_secret("s1"), store.tenant_for_secret("s2")) == (None, "acme")
    assert store.tenant_secret("acme", create=False) == "s2"
    assert store.rotate_secret("beta", token_factory=factory, now=T0) == "s3"  # rotate creates
    default = store.tenant_secret("gamma")
    assert len(default) >= 32 and store.tenant_for_secret(default) == "gamma"


def test_instances(store: Store) -> None:
    store.register_instance("host-a", listen="127.0.0.1:8787", now=T0, leader=True, since=T0)
    store.register_instance("host-b", listen="127.0.0.1:8788", now=T0 + MIN)
    store.register_instance("host-a", listen="127.0.0.1:8787", now=T0 + 2 * MIN, leader=True, since=T0)
    assert store.instances() == [
        {
            "id": "host-a",
            "listen": "127.0.0.1:8787",
            "started_at": T0,
            "heartbeat_at": T0 + 2 * MIN,
            "leader": True,
            "since": T0,
        },
        {
            "id": "host-b",
            "listen": "127.0.0.1:8788",
            "started_at": T0 + MIN,
            "heartbeat_at": T0 + MIN,
            "leader": False,
            "since": None,
        },
    ]


# --------------------------------------------------------------------------- transactions and reads


def test_a_transaction_reads_its_own_writes(store: Store) -> None:
    """Every repository of a transaction shares its connection: what it wrote, it reads,
    while other connections still see the last commit."""
    with store.transaction() as tx:
        secret = tx.secrets.tenant_secret("acme", token_factory=lambda: "s-acme", now=T0)
        assert secret == "s-acme"
        assert tx.secrets.tenant_secret("acme", create=False) == "s-acme"
        assert tx.secrets.tenant_for_secret("s-acme") == "acme"
        tx.journal("reload", at=T0, message="inside")
        assert [e["message"] for e in tx.journal.history()] == ["inside"]
        assert tx.enqueue([notice_row("acme")]) == 1
        assert [n["tenant"] for n in tx.outbox.listing()] == ["acme"]
        tx.add_lease("l1", tenant="acme", kind="backup", admitted_at=T0, interval_s=60)
        assert tx.leases.lease("l1")["status"] == "running"
        assert store.tenant_secret("acme", create=False) is None  # not committed yet
        assert store.history() == []
    assert store.tenant_secret("acme", create=False) == "s-acme"
    assert [e["message"] for e in store.history()] == ["inside"]


def test_an_in_memory_transaction_reads_its_own_secret() -> None:
    with Store("sqlite://") as store:
        with store.transaction() as tx:
            assert tx.secrets.tenant_secret("acme", create=False) is None
            made = tx.secrets.tenant_secret("acme", now=T0)
            assert made and tx.secrets.tenant_secret("acme", create=False) == made
        with store.read() as r:
            assert r.secrets.tenant_secret("acme", create=False) == made
            assert r.secrets.tenant_for_secret(made) == "acme"


def test_an_in_memory_store_takes_transactions_from_threads_in_turn() -> None:
    """One shared connection: concurrent transactions and reads wait for each other."""
    with Store("sqlite://") as store:
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for k in range(20):
                    with store.transaction() as tx:
                        tx.journal("reload", at=T0, message=f"{i}-{k}")
                    store.history(limit=1)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        assert len(store.history(limit=1000)) == 80


def test_read_sees_the_last_commit_and_refuses_writes(store: Store) -> None:
    with store.transaction() as tx:
        tx.journal("reload", at=T0, message="committed")
    for i in range(3):  # every pooled connection a read used writes normally afterwards
        with store.read() as r:
            assert [e["message"] for e in r.journal.history()] == ["committed"] + ["after a read"] * i
            with pytest.raises(StoreError, match="cannot write the journal: .*read"):
                r.journal("reload", at=T0, message="through a read")
        with store.transaction() as tx:
            tx.journal("reload", at=T0 - MIN, message="after a read")
    assert [e["message"] for e in store.history()] == ["committed"] + ["after a read"] * 3


def test_two_writers_in_one_process_wait_for_each_other(db_path: Path) -> None:
    """A writer that holds SQLite's write lock for a while makes the next one wait
    (busy_timeout), never fail with "database is locked"."""
    store = Store(f"sqlite:///{db_path}")
    holding = threading.Event()
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            with store.transaction() as tx:
                tx.journal("reload", at=T0, message="slow")
                holding.set()
                threading.Event().wait(1.0)  # a long write transaction
        except BaseException as exc:
            errors.append(exc)
            holding.set()

    def quick(i: int) -> None:
        try:
            with store.transaction() as tx:
                tx.journal("reload", at=T0 + i * MIN, message=f"quick-{i}")
        except BaseException as exc:
            errors.append(exc)

    try:
        first = threading.Thread(target=slow)
        first.start()
        assert holding.wait(10)
        others = [threading.Thread(target=quick, args=(i,)) for i in range(1, 5)]
        for t in others:
            t.start()
        for t in [first, *others]:
            t.join(timeout=30)
        assert errors == []
        assert sorted(e["message"] for e in store.history()) == ["quick-1", "quick-2", "quick-3", "quick-4", "slow"]
    finally:
        store.close()


def test_the_old_import_names_still_work() -> None:
    import scheduler.retry
    import scheduler.store

    assert scheduler.store.next_attempt is scheduler.retry.backoff
    assert scheduler.store.give_up is scheduler.retry.give_up
    assert scheduler.store.StoreError is StoreError
    assert {"Store", "Tx", "database_url", "make_engine", "migrate", "metadata"} <= set(scheduler.store.__all__)


# --------------------------------------------------------------------------- failing writes
# Each failure mode breaks a live store, checks that a write fails with StoreError naming
# the file and the cause, heals it, and checks that the next write works and that nothing
# written before (nor half of the failed write) is lost or left behind.
#
# We run as root in CI containers, and root ignores file permissions: chmod alone would
# "fail" to fail. So the always-on case uses SQLite's own PRAGMA query_only, which refuses
# writes for any user with the same SQLITE_READONLY error a read-only file gives; the
# disk-full case uses a real, tiny tmpfs (skipped where mounting is not permitted); the
# chmod case runs only where permissions bind (not for root; try it as root with
# `capsh --drop=cap_dac_override,cap_dac_read_search,cap_fowner -- -c "python -m pytest ..."`).


class QueryOnly:
    """Every connection the store checks out is read-only while ``broken``."""

    cause = "attempt to write a readonly database"
    small_writes_fail = True
    reads_work = True

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "maintd.db"
        self.broken = False

    def attach(self, store: Store) -> None:
        @event.listens_for(store.engine, "checkout")
        def _checkout(dbapi_conn, _record, _proxy) -> None:
            dbapi_conn.execute(f"PRAGMA query_only = {'ON' if self.broken else 'OFF'}")

    def brk(self) -> None:
        self.broken = True

    def heal(self) -> None:
        self.broken = False

    def cleanup(self) -> None:
        pass


class ReadOnlyFile:
    """chmod the file and its directory read-only; only meaningful where permissions bind."""

    cause = "readonly database"
    small_writes_fail = True
    reads_work = False  # WAL: a reader must create the -shm file, and the directory says no
    dir_too = True

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "ro"
        self.dir.mkdir()
        probe = self.dir / "probe"
        probe.touch(mode=0o444)
        try:
            probe.open("a").close()
        except PermissionError:
            probe.unlink()
        else:
            pytest.skip("file permissions are not enforced for this user (root); see QueryOnly")
        self.path = self.dir / "maintd.db"

    def attach(self, store: Store) -> None:
        self.store = store

    def _targets(self) -> list[Path]:
        return [*self.dir.iterdir(), *([self.dir] if self.dir_too else [])]

    def brk(self) -> None:
        # Open connections keep the write access they were opened with: drop them, as a
        # restart would, so the next call opens the file as it now is.
        self.store.engine.dispose()
        for p in self._targets():
            p.chmod(0o555 if p.is_dir() else 0o444)

    def heal(self) -> None:
        for p in self._targets():
            p.chmod(0o755 if p.is_dir() else 0o644)

    def cleanup(self) -> None:
        self.heal()


class ReadOnlyFileOnly(ReadOnlyFile):
    """chmod the file alone: sqlite3 opens it read-only, reads work, and that connection
    stays read-only after the chmod back; the engine must replace it (see make_engine)."""

    reads_work = True
    dir_too = False


class DiskFull:
    """A 4 MiB tmpfs filled to the last byte; deleting the filler frees it again."""

    cause = "database or disk is full"
    small_writes_fail = False  # a row may still fit in pages the files already have
    reads_work = True

    def __init__(self, tmp_path: Path) -> None:
        self.mnt = tmp_path / "tiny"
        self.mnt.mkdir()
        if (
            shutil.which("mount") is None
            or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(self.mnt)], capture_output=True
            ).returncode
            != 0
        ):
            pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
        self.mounted = True
        self.path = self.mnt / "maintd.db"
        self.filler = self.mnt / "filler"

    def attach(self, store: Store) -> None:
        self.store = store

    def brk(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT)
        try:
            for size in (65536, 4096, 1):  # down to the last byte
                try:
                    while os.write(fd, b"\0" * size):
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)

    def heal(self) -> None:
        self.filler.unlink()

    def cleanup(self) -> None:
        self.store.close()
        subprocess.run(["umount", str(self.mnt)], check=False)


# The chmod cases mean something only where permissions bind; as root (CI) they are not
# collected rather than skipped: query_only and the full tmpfs cover the same failure path.
_FAILURES = [(QueryOnly, "query_only"), (DiskFull, "disk_full_tmpfs")]
if os.geteuid() != 0:
    _FAILURES += [(ReadOnlyFile, "chmod_dir_and_file"), (ReadOnlyFileOnly, "chmod_file")]


@pytest.mark.parametrize("mode", [m for m, _ in _FAILURES], ids=[i for _, i in _FAILURES])
def test_a_failed_write_raises_store_error_and_the_store_recovers(tmp_path: Path, mode) -> None:
    failure = mode(tmp_path)
    store = Store(f"sqlite:///{failure.path}")
    failure.attach(store)
    try:
        with store.transaction() as tx:
            tx.journal("reload", at=T0, message="before")
            tx.enqueue([notice_row("acme")])

        failure.brk()
        big = [notice_row(f"tenant-{i:05d}", at=T0) for i in range(3000)]  # more than a tmpfs page or two
        with pytest.raises(StoreError) as err:
            with store.transaction() as tx:
                tx.journal("start", at=T0 + MIN, message="during", detail={"pad": "x" * 200_000})
                tx.enqueue(big)
        message = str(err.value)
        assert message.startswith("cannot ") and f"database {failure.path}: " in message
        assert failure.cause in message
        if failure.small_writes_fail:  # a single-row state change fails the same way
            with pytest.raises(StoreError, match=failure.cause):
                store.register_instance("host-a", listen="127.0.0.1:8787", now=T0)
        if failure.reads_work:
            assert [e["message"] for e in store.history()] == ["before"]

        failure.heal()
        with store.transaction() as tx:
            tx.journal("end", at=T0 + 2 * MIN, message="after")
        assert [e["message"] for e in store.history()] == ["after", "before"]
        assert [n["tenant"] for n in store.notices()] == ["acme"]  # nothing of the failed write
        assert len(store.claim_batch(T0, worker="w", limit=5, lease=MIN)) == 1
    finally:
        store.close()
        failure.cleanup()


def test_a_locked_database_raises_store_error_naming_the_cause(db_path: Path, monkeypatch) -> None:
    """Another writer holding the file beyond busy_timeout: StoreError, then recovery."""
    store = Store(f"sqlite:///{db_path}")
    blocker = make_engine(f"sqlite:///{db_path}")

    @event.listens_for(store.engine, "checkout")  # 30 s is right for a daemon, slow for a test
    def _short_timeout(dbapi_conn, _record, _proxy) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout = 50")

    try:
        with blocker.connect() as other:
            other.execution_options(maintd_write=True).begin()  # BEGIN IMMEDIATE: the write lock
            with pytest.raises(StoreError, match=f"cannot write: database {db_path}: database is locked"):
                with store.transaction() as tx:
                    tx.journal("reload", at=T0)
            other.rollback()
        with store.transaction() as tx:
            tx.journal("reload", at=T0, message="after")
        assert [e["message"] for e in store.history()] == ["after"]
    finally:
        store.close()
        blocker.dispose()
