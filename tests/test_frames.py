"""Frames handed to SQL inside the sync's transaction are released when the caller drops
them (`warehouse.frames.frame_table`), not kept until the commit as a registered view's
catalog entry keeps them."""

from __future__ import annotations

import gc
import re
import weakref
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse import load
from warehouse.frames import _as_arrow, frame_table, insert_rows

ROOT = Path(__file__).resolve().parents[1]


def _frames_of_shape(shape: tuple[int, int]) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, pd.DataFrame) and o.shape == shape)


def test_a_frame_read_inside_a_transaction_is_released_before_the_commit():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a VARCHAR, b BIGINT)")
    con.execute("BEGIN")
    frame = pd.DataFrame({"a": [str(i) for i in range(5000)], "b": np.arange(5000)})
    alive = weakref.ref(frame)
    with frame_table(con, "_f", frame) as name:
        con.execute(f"INSERT INTO t SELECT a, b FROM {name}")
        del frame
        gc.collect()
        assert alive() is None  # the temp table holds a copy, not the frame
        assert con.execute("SELECT count(*), sum(b) FROM _f").fetchall() == [(5000, sum(range(5000)))]
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_f'").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(5000,)]
    con.execute("COMMIT")


def test_a_registered_frame_would_be_kept_until_the_commit():
    """What frame_table avoids (DuckDB 1.4): if this starts failing, DuckDB releases
    registered objects at `unregister` and `frame_table` could go back to `register`."""
    con = duckdb.connect()
    con.execute("BEGIN")
    frame = pd.DataFrame({"a": np.arange(10)})
    alive = weakref.ref(frame)
    con.register("_f", frame)
    con.execute("SELECT count(*) FROM _f").fetchall()
    con.unregister("_f")
    del frame
    gc.collect()
    assert alive() is not None
    con.execute("COMMIT")
    gc.collect()
    assert alive() is None


def test_arrow_tables_and_column_types_pass_through():
    con = duckdb.connect()
    con.execute("BEGIN")
    # the table's buffers in a pool of their own (the process-wide count moves with any
    # other thread's Arrow work, e.g. another test's under xdist): the temp table holds a
    # copy, not the Arrow buffers
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    table = pa.table({"id": pa.array(["a", "b"], memory_pool=pool),
                      "tags": pa.array([["x", "y"], None], memory_pool=pool),
                      "n": pa.array([1.5, None], memory_pool=pool)})
    assert pool.bytes_allocated() > 0
    with frame_table(con, "_t", table):
        del table
        assert pool.bytes_allocated() == 0
        assert [(r[0], r[1]) for r in con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                                                   "WHERE table_name = '_t' ORDER BY column_index").fetchall()] == \
            [("id", "VARCHAR"), ("tags", "VARCHAR[]"), ("n", "DOUBLE")]
        assert con.execute("SELECT * FROM _t ORDER BY id").fetchall() == [("a", ["x", "y"], 1.5), ("b", None, None)]
    con.execute("COMMIT")


def test_a_frame_via_arrow_gives_the_values_the_frame_scan_gives():
    """`via_arrow`: the same rows in declared columns as DuckDB's scan of the frame —
    NaN, None and pandas NA as NULL, dates, lists, Arrow-backed strings — and a frame
    with a column Arrow refuses (ints and strings in one object column, as raw
    spreadsheet cells can be) still goes, the way it went before."""
    import datetime as dt

    frame = pd.DataFrame({
        "s": pd.Series(["甲", None, "丙"], dtype="string[pyarrow]"),
        "o": pd.Series(["x", None, np.nan], dtype=object),
        "f": [1.5, np.nan, None],
        "i": pd.Series([1, None, 3], dtype="Int64"),
        "d": [dt.date(2026, 1, 2), None, dt.date(2026, 3, 4)],
        "l": [["a", "b"], None, []],
    })
    mixed = frame.assign(o=pd.Series([1, "二", None], dtype=object))
    con = duckdb.connect()
    con.execute("CREATE TABLE t (s VARCHAR, o VARCHAR, f DOUBLE, i BIGINT, d DATE, l VARCHAR[])")
    for f in (frame, mixed):
        for via in (False, True):
            with frame_table(con, "_f", f, via_arrow=via):
                con.execute("INSERT INTO t SELECT s, o, f, i, d, l FROM _f")
    rows = con.execute("SELECT * FROM t").fetchall()
    assert rows[0:3] == rows[3:6], "the frame via Arrow differs from the frame scanned"
    assert rows[6:9] == rows[9:12], "the mixed frame via Arrow differs from the frame scanned"
    assert rows[1] == (None, None, None, None, None, None)
    assert rows[2][1] is None and rows[2][5] == [] and rows[6][1] == "1"
    assert isinstance(_as_arrow(mixed), pd.DataFrame) and isinstance(_as_arrow(frame), pa.Table)


def test_insert_rows_straight_or_through_a_temp_table_gives_the_same_rows():
    """`insert_rows` puts the Arrow rows straight into a table whose columns are the ones
    given, in that order, and goes through a temp table otherwise (a table with its
    columns in another order — one added by a migration lands last — or a frame Arrow
    refuses): the same rows either way, by column name, never by position."""
    import datetime as dt

    frame = pd.DataFrame({
        "d": [dt.date(2026, 1, 2), None],
        "s": pd.Series(["甲", None], dtype="string[pyarrow]"),
        "i": pd.Series([1, None], dtype="Int64"),
    })
    mixed = frame.assign(s=pd.Series([1, "二"], dtype=object))
    con = duckdb.connect()
    con.execute("CREATE SCHEMA stg")
    con.execute("CREATE TABLE stg.same (s VARCHAR, i BIGINT, d DATE, note VARCHAR)")
    con.execute("CREATE TABLE stg.other (note VARCHAR, d DATE, i BIGINT, s VARCHAR)")
    columns = ["s", "i", "d", "note"]
    for f in (frame, mixed):
        for table in ("stg.same", "stg.other"):
            insert_rows(con, table, f, columns)
    same = con.execute("SELECT s, i, d, note FROM stg.same").fetchall()
    other = con.execute("SELECT s, i, d, note FROM stg.other").fetchall()
    assert same == other == [("甲", 1, dt.date(2026, 1, 2), None), (None, None, None, None),
                             ("1", 1, dt.date(2026, 1, 2), None), ("二", None, None, None)]


def test_staging_an_export_keeps_no_copy_of_its_frames():
    con = duckdb.connect()
    con.execute("CREATE TABLE s (source_locator VARCHAR, name VARCHAR, note VARCHAR)")
    con.execute("BEGIN")
    frame = pd.DataFrame({"source_locator": [f"r{i}" for i in range(3001)], "name": ["张三"] * 3001})
    load._insert(con, "s", frame, ["source_locator", "name", "note"])  # reindexed: a copy is scanned
    del frame
    assert _frames_of_shape((3001, 3)) == 0 and _frames_of_shape((3001, 2)) == 0
    assert con.execute("SELECT count(*), count(note) FROM s").fetchall() == [(3001, 0)]
    con.execute("COMMIT")


def test_the_warehouse_package_registers_no_frames():
    """Every frame read by SQL on a warehouse connection goes through frame_table."""
    offenders = [f"{p.name}:{i}" for p in sorted((ROOT / "warehouse").glob("*.py")) if p.name != "frames.py"
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"\bcon\w*\.register\(", line)]
    assert offenders == []
