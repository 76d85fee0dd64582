"""Read-only access for analysts and the `status` / `query` commands."""

from __future__ import annotations

import os

import duckdb
import pandas as pd

from warehouse.exceptions import ReadOnlyQueryError
from warehouse.store import connect_read_only


def run_read_only(path: str | os.PathLike[str], sql: str) -> pd.DataFrame:
    """Run one SQL statement on a read-only connection (writes are refused by DuckDB)."""
    con = connect_read_only(path)
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(detail=str(exc).splitlines()[0]) from None
    finally:
        con.close()


def recent_runs(path: str | os.PathLike[str], limit: int = 10) -> pd.DataFrame:
    return run_read_only(path, f"""
        SELECT run_id, flow, status, started_at, finished_at,
               json_extract_string(summary, '$.persons_after') AS persons,
               json_extract_string(summary, '$.persons_created') AS created
        FROM quality.run ORDER BY started_at DESC LIMIT {int(limit)}""")


def ledger_overview(path: str | os.PathLike[str]) -> pd.DataFrame:
    return run_read_only(path, """
        SELECT source_system, mapping, status, count(*) AS exports, sum(rows_read) AS rows_read,
               sum(rows_accepted) AS accepted, sum(rows_rejected) AS rejected,
               sum(values_rejected) AS values_rejected, max(export_date) AS latest_export
        FROM quality.load_ledger GROUP BY ALL ORDER BY source_system, mapping, status""")
