"""The warehouse file: atomic publish, one writer, readers never blocked, migrations."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from pathlib import Path

import duckdb
import pytest

from warehouse import store
from warehouse.exceptions import WarehouseBusyError
from warehouse.migrations import CURRENT_VERSION, MIGRATIONS, migrate


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_warehouse_gets_schemas_comments_and_version(tmp_path):
    wh = tmp_path / "w.duckdb"
    store.initialise(wh)
    con = store.connect_read_only(wh)
    schemas = {r[0] for r in con.execute("SELECT schema_name FROM information_schema.schemata").fetchall()}
    assert {"core", "quality", "mart", "stg"} <= schemas
    assert con.execute("SELECT max(version) FROM quality.schema_version").fetchall()[0][0] == CURRENT_VERSION
    missing = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name IN ('core','quality','stg') "
        "AND (comment IS NULL OR comment = '')").fetchall()
    assert missing == []
    con.close()


def test_failure_before_publish_leaves_the_warehouse_exactly_as_it_was(tmp_path):
    wh = tmp_path / "w.duckdb"
    store.initialise(wh)
    before = digest(wh)
    with pytest.raises(RuntimeError):
        with store.transaction(wh) as con:
            con.execute("INSERT INTO quality.run (run_id, flow, started_at, status) VALUES ('x', 'test', now(), 'ok')")
            raise RuntimeError("boom mid-load")
    assert digest(wh) == before
    with pytest.raises(RuntimeError, match="injected"):
        with store.transaction(wh, fail_before_publish=True) as con:
            con.execute("INSERT INTO quality.run (run_id, flow, started_at, status) VALUES ('y', 'test', now(), 'ok')")
    assert digest(wh) == before
    assert not store.working_path(wh).exists()


def _hold_lock(path: str, ready, release) -> None:
    with store.writer_lock(Path(path)):
        ready.set()
        release.wait(20)


def test_second_writer_waits_then_exits_with_a_clear_message(tmp_path):
    wh = tmp_path / "w.duckdb"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(str(wh), ready, release))
    p.start()
    try:
        assert ready.wait(30)
        t0 = time.monotonic()
        with pytest.raises(WarehouseBusyError, match="另一个同步"):
            with store.transaction(wh, lock_timeout_s=1.0):
                pass
        assert time.monotonic() - t0 >= 1.0
    finally:
        release.set()
        p.join(10)
    # once released, a writer gets through
    with store.transaction(wh, lock_timeout_s=5.0):
        pass


def test_reader_holding_the_file_does_not_block_publish_and_sees_the_old_state(tmp_path):
    wh = tmp_path / "w.duckdb"
    store.initialise(wh)
    reader = store.connect_read_only(wh)
    with store.transaction(wh) as con:
        con.execute("INSERT INTO quality.run (run_id, flow, started_at, status) VALUES ('r1', 'test', now(), 'ok')")
    # the open reader still sees the version it opened
    assert reader.execute("SELECT count(*) FROM quality.run").fetchall()[0][0] == 0
    reader.close()
    fresh = store.connect_read_only(wh)
    assert fresh.execute("SELECT count(*) FROM quality.run").fetchall()[0][0] == 1
    fresh.close()


def test_older_warehouse_is_migrated_not_rebuilt(tmp_path, monkeypatch):
    wh = tmp_path / "w.duckdb"
    store.initialise(wh)
    with store.transaction(wh) as con:
        con.execute("INSERT INTO quality.run (run_id, flow, started_at, status) VALUES ('keep', 'test', now(), 'ok')")

    def v_next(con):
        con.execute("ALTER TABLE quality.run ADD COLUMN IF NOT EXISTS note VARCHAR")
        con.execute("UPDATE quality.run SET note = 'migrated'")

    import warehouse.migrations as mig

    monkeypatch.setattr(mig, "MIGRATIONS", MIGRATIONS + [(CURRENT_VERSION + 1, "test: add note", v_next)])
    monkeypatch.setattr(mig, "CURRENT_VERSION", CURRENT_VERSION + 1)
    con = duckdb.connect(str(wh))
    before = migrate(con)
    assert before == CURRENT_VERSION
    assert con.execute("SELECT run_id, note FROM quality.run").fetchall() == [("keep", "migrated")]
    assert con.execute("SELECT max(version) FROM quality.schema_version").fetchall()[0][0] == CURRENT_VERSION + 1
    con.close()
