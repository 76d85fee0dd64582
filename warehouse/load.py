"""Staging loads and the load ledger.

Every export (a file, or one incremental read of a database table) gets one ledger
row keyed by its content hash. Loading:

* the same content again (same mapping, same hash) → nothing, reported as duplicate;
* a file with the name of an earlier one but new content, or a `_补报` correction of
  the same period → the earlier export is *superseded*: its staged rows are removed,
  its open rejected rows are marked resolved, and the new export is staged;
* a watermark read (SQL) → upserts records by primary key; a soft-deleted record
  (SCBZ = 1) keeps its record row flagged and loses its person mentions.

All functions take an open connection inside `warehouse.store.transaction`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pandas as pd

from schemas.mapping import SourceMapping
from warehouse.ddl import REJECTED_RECORD, STG_ADDRESS_MENTION, STG_MENTION, STG_RELATIONSHIP, staging_record_table
from warehouse.frames import frame_table, insert_rows

STAGED_TABLES = (STG_MENTION, STG_RELATIONSHIP, STG_ADDRESS_MENTION)


@dataclass(frozen=True)
class ExportMeta:
    """What the ledger needs to know about one export."""

    source_system: str
    mapping: str                 # logical source object of the mapping (婚姻登记, T_YLFN…)
    source_object: str           # file base name or table name
    path: str
    content_sha256: str
    size_bytes: int | None
    export_date: dt.date | None
    period: str | None
    is_correction: bool = False
    watermark_from: dt.datetime | None = None
    watermark_to: dt.datetime | None = None


def _export_with_status(con: duckdb.DuckDBPyConnection, meta: ExportMeta, status: str) -> int | None:
    row = con.execute(
        "SELECT export_id FROM quality.load_ledger WHERE mapping = ? AND content_sha256 = ? AND status = ? LIMIT 1",
        [meta.mapping, meta.content_sha256, status],
    ).fetchall()
    return row[0][0] if row else None


def find_loaded(con: duckdb.DuckDBPyConnection, meta: ExportMeta) -> int | None:
    """export_id of a loaded export with the same mapping and content, if any."""
    return _export_with_status(con, meta, "loaded")


def find_failed(con: duckdb.DuckDBPyConnection, meta: ExportMeta) -> int | None:
    """export_id of an earlier failed attempt at the same file: the same path *and* the
    same content (not retried every night). A copy under another name or in another
    folder, or the corrected file, is a new attempt."""
    row = con.execute(
        "SELECT export_id FROM quality.load_ledger WHERE status = 'failed' AND mapping = ? AND content_sha256 = ? "
        "AND path = ? LIMIT 1", [meta.mapping, meta.content_sha256, meta.path]).fetchall()
    return row[0][0] if row else None


def loaded_exports_named(con: duckdb.DuckDBPyConnection, meta: ExportMeta) -> list[int]:
    """Loaded exports of this file name (what a backfill reloads)."""
    rows = con.execute(
        "SELECT export_id FROM quality.load_ledger WHERE status = 'loaded' AND mapping = ? AND source_object = ?",
        [meta.mapping, meta.source_object],
    ).fetchall()
    return [r[0] for r in rows]


def loaded_by_run(con: duckdb.DuckDBPyConnection, run_id: str) -> list[int]:
    """The exports the run `run_id` staged (its ledger rows with status `loaded`), ordered."""
    return [r[0] for r in con.execute("SELECT export_id FROM quality.load_ledger WHERE run_id = ? "
                                      "AND status = 'loaded' ORDER BY export_id", [run_id]).fetchall()]


def superseded_exports(con: duckdb.DuckDBPyConnection, meta: ExportMeta, mapping: SourceMapping) -> list[int]:
    """Loaded exports the new one replaces as a whole: a file of the same name (a new
    version), or for a snapshot source a `_补报` roster of the same period. (A `_补报`
    file of an event or delta source replaces records, not files: `supersede_records`.)
    Watermark reads replace nothing wholesale."""
    if mapping.load_semantics == "watermark":
        return []
    whole_period = meta.is_correction and mapping.load_semantics == "snapshot"
    rows = con.execute(
        "SELECT export_id FROM quality.load_ledger WHERE status = 'loaded' AND mapping = ? "
        "AND (source_object = ? OR (? AND period = ?))",
        [meta.mapping, meta.source_object, whole_period, meta.period],
    ).fetchall()
    return [r[0] for r in rows]


def supersede_records(con: duckdb.DuckDBPyConnection, mapping: SourceMapping, records: pd.DataFrame,
                      new_id: int) -> int:
    """A `_补报` correction of an event source (婚姻登记, 火化信息): each of its records
    replaces the staged record with the same business key from earlier exports.
    Returns how many earlier records were replaced."""
    if records.empty or mapping.load_semantics != "event":
        return 0
    rec = staging_record_table(mapping).qualified
    keys = pd.DataFrame({"k": records[mapping.record_key].astype(str).unique()})
    with frame_table(con, "_keys", keys):
        old = con.execute(
            f"SELECT DISTINCT source_object, source_locator FROM {rec} "
            f"WHERE CAST({mapping.record_key} AS VARCHAR) IN (SELECT k FROM _keys) AND export_id <> ?", [new_id]
        ).df()
    if not old.empty:
        with frame_table(con, "_old", old):
            for table in (rec, *(t.qualified for t in STAGED_TABLES)):
                con.execute(f"DELETE FROM {table} t USING _old o WHERE t.source_object = o.source_object "
                            "AND t.source_locator = o.source_locator")
    return len(old)


def resolve_corrected_problems(con: duckdb.DuckDBPyConnection, mapping: SourceMapping, records: pd.DataFrame,
                               new_id: int) -> None:
    """Open problems of earlier exports whose record the new export now delivers
    (same business key, accepted) are resolved by it. Not for snapshots: a roster's
    序号 is only unique within one roster (its corrections replace whole periods)."""
    if records.empty or mapping.load_semantics == "snapshot":
        return
    keys = pd.DataFrame({"k": records[mapping.record_key].astype(str).unique()})
    with frame_table(con, "_keys", keys):
        con.execute(
            "UPDATE quality.rejected_record SET status = 'resolved', resolved_by_export_id = ? "
            "WHERE status = 'open' AND export_id <> ? AND record_key IN (SELECT k FROM _keys) "
            "AND export_id IN (SELECT export_id FROM quality.load_ledger WHERE mapping = ?)",
            [new_id, new_id, mapping.source_object])


def next_export_id(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT coalesce(max(export_id), 0) + 1 FROM quality.load_ledger").fetchall()[0][0]


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, columns: list[str]) -> None:
    if frame is None or frame.empty:
        return
    insert_rows(con, table, frame, columns)


def supersede(con: duckdb.DuckDBPyConnection, mapping: SourceMapping, old_ids: list[int], new_id: int) -> None:
    """Remove what superseded exports staged; their open problems count as resolved."""
    if not old_ids:
        return
    ids = ", ".join(str(int(i)) for i in old_ids)
    rec_table = staging_record_table(mapping).qualified
    for table in (rec_table, *(t.qualified for t in STAGED_TABLES)):
        con.execute(f"DELETE FROM {table} WHERE export_id IN ({ids})")
    con.execute(
        f"UPDATE quality.rejected_record SET status = 'resolved', resolved_by_export_id = {int(new_id)} "
        f"WHERE export_id IN ({ids}) AND status = 'open'"
    )
    con.execute(
        f"UPDATE quality.load_ledger SET status = 'superseded', superseded_by = {int(new_id)} "
        f"WHERE export_id IN ({ids})"
    )


def stage_export(
    con: duckdb.DuckDBPyConnection,
    *,
    export_id: int,
    run_id: str,
    meta: ExportMeta,
    mapping: SourceMapping,
    records: pd.DataFrame,
    mentions: pd.DataFrame,
    relationships: pd.DataFrame,
    issues: pd.DataFrame,
    addresses: pd.DataFrame | None,
    rows_read: int,
    rows_rejected: int,
    rows_skipped: int,
    message: str | None = None,
) -> None:
    """Stage one export's standardised frames and write its ledger row."""
    rec_table = staging_record_table(mapping)
    stamp = {"export_id": export_id, "export_date": meta.export_date, "period": meta.period}
    if mapping.load_semantics == "watermark" and not records.empty:
        _retract_previous_versions(con, mapping, records)
    records = records.assign(**stamp)
    if meta.is_correction:
        supersede_records(con, mapping, records, export_id)
    resolve_corrected_problems(con, mapping, records, export_id)
    _insert(con, rec_table.qualified, records, rec_table.column_names)
    if mapping.delete_flag and not mentions.empty:
        deleted = set(records.loc[records[mapping.delete_flag].astype(str).isin(["1", "True", "true"]),
                                  "source_locator"])
        # a retracted record keeps its person mentions (the person was seen), flagged;
        # what it stated (relationships, addresses, facts) is withdrawn
        mentions = mentions.assign(is_retracted=mentions["source_locator"].isin(deleted))
        relationships = relationships[~relationships["source_locator"].isin(deleted)]
        if addresses is not None:
            addresses = addresses[~addresses["source_locator"].isin(deleted)]
    if "is_retracted" not in mentions:
        mentions = mentions.assign(is_retracted=False)
    _insert(con, STG_MENTION.qualified, mentions.assign(export_id=export_id, export_date=meta.export_date),
            STG_MENTION.column_names)
    _insert(con, STG_RELATIONSHIP.qualified, relationships.assign(export_id=export_id), STG_RELATIONSHIP.column_names)
    if addresses is not None:
        _insert(con, STG_ADDRESS_MENTION.qualified, addresses.assign(export_id=export_id),
                STG_ADDRESS_MENTION.column_names)
    if not issues.empty:
        _insert(con, REJECTED_RECORD.qualified,
                issues.assign(export_id=export_id, status="open", run_id=run_id, resolved_by_export_id=None),
                REJECTED_RECORD.column_names)
    n_values = int((~issues["is_row_rejected"].astype(bool)).sum()) if not issues.empty else 0
    con.execute(
        "INSERT INTO quality.load_ledger (export_id, run_id, source_system, mapping, source_object, path, "
        "content_sha256, size_bytes, export_date, period, is_correction, status, rows_read, rows_accepted, "
        "rows_rejected, rows_skipped, mentions, values_rejected, watermark_from, watermark_to, loaded_at, message) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'loaded', ?, ?, ?, ?, ?, ?, ?, ?, now(), ?)",
        [export_id, run_id, meta.source_system, meta.mapping, meta.source_object, meta.path,
         meta.content_sha256, meta.size_bytes, meta.export_date, meta.period, meta.is_correction,
         rows_read, len(records), rows_rejected, rows_skipped, len(mentions), n_values,
         meta.watermark_from, meta.watermark_to, message],
    )
    supersede_earlier_periods(con, mapping)


def supersede_earlier_periods(con: duckdb.DuckDBPyConnection, mapping: SourceMapping) -> int:
    """A snapshot source's newest period restates everything still true, and everything
    still wrong: the open problems of its earlier periods are closed as `superseded` by
    the newest period's export (a problem the new roster repeats is open there; one it
    does not was put right at the source). Without this a monthly roster's problem list
    grew by the same problems every month (at 1M residents 8,500 repeated ID problems a
    month). A late roster of an earlier period is superseded at once. Returns how many
    problems were closed."""
    if mapping.load_semantics != "snapshot":
        return 0
    return con.execute(
        """UPDATE quality.rejected_record r SET status = 'superseded', resolved_by_export_id = n.export_id
        FROM (SELECT export_id, period FROM quality.load_ledger WHERE status = 'loaded' AND mapping = ?
              AND period IS NOT NULL ORDER BY period DESC, export_id DESC LIMIT 1) n
        WHERE r.status = 'open' AND r.export_id IN (
            SELECT export_id FROM quality.load_ledger WHERE mapping = ? AND period < n.period)""",
        [mapping.source_object, mapping.source_object]).fetchall()[0][0]


def _retract_previous_versions(con: duckdb.DuckDBPyConnection, mapping: SourceMapping, records: pd.DataFrame) -> None:
    """Watermark upsert: a newer version of a record replaces the staged older one."""
    keys = pd.DataFrame({"k": records[mapping.record_key].astype(str).unique()})
    rec = staging_record_table(mapping).qualified
    with frame_table(con, "_keys", keys):
        con.execute(f"DELETE FROM {rec} WHERE CAST({mapping.record_key} AS VARCHAR) IN (SELECT k FROM _keys)")
    with frame_table(con, "_locs", pd.DataFrame({"l": [str(k) for k in keys["k"]]})):
        for table in STAGED_TABLES:
            con.execute(
                f"DELETE FROM {table.qualified} WHERE source_object = ? AND source_locator IN (SELECT l FROM _locs)",
                [mapping.table],
            )
        con.execute(
            "UPDATE quality.rejected_record SET status = 'resolved' WHERE status = 'open' AND source_object = ? "
            "AND source_locator IN (SELECT l FROM _locs)", [mapping.table],
        )


#: prefix of the content key of a failure that is not remembered (`remember=False`)
RETRY_MARK = "retry:"


def record_failed_export(con: duckdb.DuckDBPyConnection, *, export_id: int, run_id: str, meta: ExportMeta,
                         message: str, remember: bool = True) -> None:
    """A file that could not be read: ledger row with status failed, nothing staged.

    `remember=False` (a transient fault: the file or database was unavailable, or the
    program failed on it): its content key is stored as `retry:<sha256>`, so
    `find_failed` does not match it and the next run tries the file again."""
    if not remember:
        from dataclasses import replace

        meta = replace(meta, content_sha256=RETRY_MARK + (meta.content_sha256 or ""))
    con.execute(
        "INSERT INTO quality.load_ledger (export_id, run_id, source_system, mapping, source_object, path, "
        "content_sha256, size_bytes, export_date, period, is_correction, status, loaded_at, message) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'failed', now(), ?)",
        [export_id, run_id, meta.source_system, meta.mapping, meta.source_object, meta.path,
         meta.content_sha256, meta.size_bytes, meta.export_date, meta.period, meta.is_correction, message],
    )


def last_watermark(con: duckdb.DuckDBPyConnection, mapping: str) -> dt.datetime | None:
    return con.execute(
        "SELECT max(watermark_to) FROM quality.load_ledger WHERE mapping = ? AND status = 'loaded'", [mapping]
    ).fetchall()[0][0]


def reset_exports(con: duckdb.DuckDBPyConnection, mapping: SourceMapping, export_ids: list[int]) -> None:
    """Backfill: forget loaded exports so they are staged again (same as a supersede by nothing)."""
    if not export_ids:
        return
    ids = ", ".join(str(int(i)) for i in export_ids)
    rec_table = staging_record_table(mapping).qualified
    for table in (rec_table, *(t.qualified for t in STAGED_TABLES)):
        con.execute(f"DELETE FROM {table} WHERE export_id IN ({ids})")
    con.execute(f"DELETE FROM quality.rejected_record WHERE export_id IN ({ids})")
    con.execute(f"UPDATE quality.load_ledger SET status = 'reloaded' WHERE export_id IN ({ids})")
