"""The district of the warehouse (`quality.district`): read the current one, record a decision.

The latest row is the current district. A row is written when the district is first
inferred from the data, when the configured `[district]` differs from the latest row,
and whenever the data of a sync contradicts the district in force (the warning).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

COLUMNS = ("run_id", "decided_at", "method", "county_code", "province", "city", "county", "confidence", "share",
           "evidence_records", "detail", "warning")


def _has_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables "
                            "WHERE table_schema = 'quality' AND table_name = 'district'").fetchall()[0][0])


def current(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The latest row of quality.district as a dict, None when the district was never set."""
    if not _has_table(con):
        return None
    cur = con.execute(f"SELECT {', '.join(COLUMNS)} FROM quality.district ORDER BY decided_at DESC, rowid DESC LIMIT 1")
    row = cur.fetchone()
    return dict(zip(COLUMNS, row)) if row else None


def record(con: duckdb.DuckDBPyConnection, *, run_id: str, method: str, county_code: str,
           province: str | None, city: str | None, county: str | None, confidence: str | None = None,
           share: float | None = None, evidence_records: int | None = None, detail: str | None = None,
           warning: str | None = None) -> None:
    con.execute(f"INSERT INTO quality.district ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                [run_id, dt.datetime.now(), method, county_code, province, city, county, confidence, share,
                 evidence_records, detail, warning])


def staged_values(con: duckdb.DuckDBPyConnection, limit: int = 20_000) -> tuple[list[str], list[str]]:
    """A sample of the address texts and citizen IDs already staged (a warehouse loaded
    before the district was recorded): (address texts, citizen IDs)."""
    addresses = [r[0] for r in con.execute(
        f"SELECT raw_text FROM stg.address_mention WHERE raw_text IS NOT NULL USING SAMPLE {int(limit)} ROWS").fetchall()]
    ids = [r[0] for r in con.execute(
        f"SELECT citizen_id FROM stg.mention WHERE citizen_id IS NOT NULL USING SAMPLE {int(limit)} ROWS").fetchall()]
    return addresses, ids
