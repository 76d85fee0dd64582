"""Python frames handed to SQL on a warehouse connection.

Not `con.register`: DuckDB's catalog is transactional, so a frame registered inside a
transaction stays referenced by the dropped view's catalog entry until the transaction
ends, `unregister` or not. A sync is one transaction; every export's staged frames,
the linkage features and the resolution's xref would stay in memory until its commit (at
a million residents ~3 GB of the full sync's peak). Here the frame is copied into a temp
table through a relation (`from_df` / `from_arrow` + `insert_into`, which keeps no
catalog reference), so the Python object and its memory go as soon as the caller drops
them; the temp table is dropped when the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

__all__ = ["frame_table"]


def _ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


@contextmanager
def frame_table(con: duckdb.DuckDBPyConnection, name: str, frame: Any) -> Iterator[str]:
    """`frame` (a pandas DataFrame or an Arrow table) readable in SQL on `con` as the temp
    table `name` inside the block, with the column types DuckDB's scan of the frame gives
    (the same types a registered view would have)."""
    import pandas as pd

    rel = con.from_df(frame) if isinstance(frame, pd.DataFrame) else con.from_arrow(frame)
    columns = ", ".join(f"{_ident(c)} {t}" for c, t in zip(rel.columns, rel.types))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_ident(name)} ({columns})")
    try:
        rel.insert_into(name)
        del rel, frame  # the block runs without a reference from here
        yield name
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.{_ident(name)}")
