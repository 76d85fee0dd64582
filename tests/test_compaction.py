"""Dead rows (warehouse.compaction): the commit skips DuckDB's vacuum, and a table whose
deleted rows piled up is rewritten without them, keeping its key, comments and rows."""

from __future__ import annotations

import duckdb
import pytest

from warehouse import compaction, store

PERSONS = 30_000


def _fill(path) -> None:
    with store.transaction(path) as con:
        con.execute("INSERT INTO core.person (person_id, name, source_systems, mention_count) "
                    f"SELECT 'P' || lpad(CAST(i AS VARCHAR), 6, '0'), '张' || i, ['civil_affairs'], 1 "
                    f"FROM range({PERSONS}) r(i)")
        con.execute("INSERT INTO core.relationship (kind, person_id_from, person_id_to, source_system) "
                    f"SELECT 'spouse', 'P' || i, 'Q' || i, 'civil_affairs' FROM range({PERSONS}) r(i)")


def _storage(path) -> dict[str, compaction.TableStorage]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t.table: t for t in compaction.storage(con)}
    finally:
        con.close()


def _rows(path, table: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()


def _night(path, deleted_every: int, *, compact: bool = True) -> list[str]:
    """Delete every n-th person and relationship and put them back (a scoped build's
    delete-and-derive-again), then compact as a sync does before its commit."""
    with store.transaction(path) as con:
        for table, key in (("core.person", "person_id"), ("core.relationship", "person_id_from")):
            con.execute(f"CREATE TEMP TABLE _again AS SELECT * FROM {table} WHERE hash({key}) % {deleted_every} = 0")
            con.execute(f"DELETE FROM {table} WHERE hash({key}) % {deleted_every} = 0")
            con.execute(f"INSERT INTO {table} SELECT * FROM _again")
            con.execute("DROP TABLE _again")
        return compaction.compact(con) if compact else []


def _three_row_groups_of_relationships(con: duckdb.DuckDBPyConnection) -> None:
    """300 000 rows of an unkeyed table: with 60 % of them deleted, DuckDB's vacuum would
    merge their row groups at the next checkpoint."""
    con.execute("INSERT INTO core.relationship (kind, person_id_from, person_id_to, source_system) "
                "SELECT 'spouse', 'P' || i, 'Q' || i, 'civil_affairs' FROM range(300000) r(i)")


def test_a_sync_commits_without_vacuuming_its_deleted_rows(tmp_path):
    path = tmp_path / "w.duckdb"
    with store.transaction(path) as con:
        _three_row_groups_of_relationships(con)
    with store.transaction(path) as con:
        con.execute("DELETE FROM core.relationship WHERE hash(person_id_from) % 10 < 6")
    kept = _storage(path)["core.relationship"]
    assert 0.5 * 300_000 < kept.dead < 0.7 * 300_000 and kept.stored == 300_000, kept


def test_commit_without_vacuum_puts_the_instance_setting_back(tmp_path):
    con = duckdb.connect(str(tmp_path / "v.duckdb"))
    try:
        con.execute("CREATE TABLE t (a VARCHAR)")
        con.execute("INSERT INTO t SELECT 'P' || i FROM range(300000) r(i)")
        con.execute("CHECKPOINT")
        default = con.execute("SELECT current_setting('max_vacuum_tasks')").fetchall()[0][0]
        con.execute("BEGIN")
        con.execute("DELETE FROM t WHERE hash(a) % 10 < 6")
        store.commit_without_vacuum(con)
        size = "SELECT estimated_size FROM duckdb_tables() WHERE table_name = 't'"
        assert con.execute(size).fetchall()[0][0] == 300_000          # dead rows kept
        assert con.execute("SELECT current_setting('max_vacuum_tasks')").fetchall()[0][0] == default > 0
        # the next ordinary commit of the instance vacuums again (here: all it can)
        con.execute("DELETE FROM t WHERE hash(a) % 10 = 6")
        con.execute("CHECKPOINT")
        assert con.execute(size).fetchall()[0][0] == con.execute("SELECT count(*) FROM t").fetchall()[0][0]
    finally:
        con.close()


def test_tables_whose_dead_rows_reached_half_their_live_ones_are_rewritten(tmp_path, monkeypatch):
    monkeypatch.setattr(compaction, "COMPACT_MIN_DEAD", 1_000)
    path = tmp_path / "w.duckdb"
    _fill(path)
    people, relations = _rows(path, "core.person"), _rows(path, "core.relationship")
    _night(path, 3, compact=False)                 # a third dead: below the threshold
    assert _night(path, 5) == []                   # noted at open: 1/3 < 1/2, nothing rewritten
    assert _storage(path)["core.person"].dead > 0.5 * PERSONS   # 1/3 + 1/5
    # the state the next run opens: dead rows over half the live ones → both rewritten
    assert sorted(_night(path, 11)) == ["core.person", "core.relationship"]
    after = _storage(path)
    assert after["core.person"].dead == 0 and after["core.relationship"].dead == 0
    assert _rows(path, "core.person") == people and _rows(path, "core.relationship") == relations
    con = duckdb.connect(str(path))
    try:   # the key and the Chinese comments are the declaration's
        assert con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = 'person'").fetchall()[0][0]
        with pytest.raises(duckdb.ConstraintException):
            con.execute("INSERT INTO core.person (person_id) VALUES ('P000001')")
    finally:
        con.close()


@pytest.fixture
def bloated(tmp_path, monkeypatch):
    """A warehouse whose core.person and core.relationship carry dead rows over the threshold."""
    monkeypatch.setattr(compaction, "COMPACT_MIN_DEAD", 1_000)
    path = tmp_path / "w.duckdb"
    _fill(path)
    _night(path, 2, compact=False)
    _night(path, 3, compact=False)   # 1/2 + 1/3 of the rows dead
    assert _storage(path)["core.person"].bloated and _storage(path)["core.relationship"].bloated
    return path


def test_a_table_the_run_created_anew_is_not_rewritten_again(bloated):
    from warehouse.ddl import PERSON
    from warehouse.migrations import empty_table

    path = bloated
    with store.transaction(path) as con:   # a full build empties the table by recreating it
        con.execute("CREATE TEMP TABLE _p AS SELECT * FROM core.person")
        empty_table(con, PERSON)
        con.execute("INSERT INTO core.person SELECT * FROM _p")
        assert compaction.compact(con) == ["core.relationship"]
    assert _storage(path)["core.person"].dead == 0


def test_a_table_created_anew_before_a_stage_commit_is_not_rewritten_again(bloated):
    """`store.commit_stage` commits the rebuilt table: it is recognised by its new oid."""
    from warehouse.ddl import PERSON
    from warehouse.migrations import empty_table

    path = bloated
    with store.transaction(path) as con:
        con.execute("CREATE TEMP TABLE _p AS SELECT * FROM core.person")
        empty_table(con, PERSON)
        con.execute("INSERT INTO core.person SELECT * FROM _p")
        store.commit_stage(con)
        assert compaction.compact(con) == ["core.relationship"]
    assert _storage(path)["core.person"].dead == 0 and _storage(path)["core.relationship"].dead == 0


def test_a_failed_run_rolls_the_rewrite_back(bloated):
    path = bloated
    before = _storage(path)
    with pytest.raises(RuntimeError):
        with store.transaction(path, fail_before_publish=True) as con:
            assert "core.person" in compaction.compact(con)
    assert _storage(path) == before
