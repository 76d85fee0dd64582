"""Warehouse-side quality: frames for the warehouse expectation suite, row-count changes,
writing expectation results, file-level findings and cross-source findings.

All functions take an open connection inside `warehouse.store.transaction` (or a
read-only one for the readers). The expectation suites themselves are declared in
`pipelines/expectations.py`; `flows.py` wires the two.

Cross-source findings (`refresh_cross_source_findings`, recomputed after every build
from `stg.mention`, scope `warehouse`):

* `id_conflict_birth_date`, `id_conflict_name`, `id_conflict_gender`: one valid
  citizen ID whose mentions in different departments state different birth dates,
  names (Simplified form) or genders;
* `birth_date_contradicts_id`, `gender_contradicts_id`: a mention whose stated birth
  date or gender differs from what its own valid ID encodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import duckdb
import pandas as pd

from schemas.mapping import load_mappings
from warehouse.ddl import EXPECTATION_RESULT, FINDING

__all__ = ["warehouse_frames", "row_count_changes", "write_expectation_results", "write_export_findings",
           "refresh_cross_source_findings", "FINDING_KINDS_ZH"]

FINDING_KINDS_ZH = {
    "unknown_column": "未知列（已照常读入）",
    "duplicate_header": "重复的列名",
    "empty_header": "无列名但有数据的列",
    "hidden_sheet_skipped": "隐藏工作表已跳过",
    "sheet_without_header": "工作表没有表头",
    "formula_without_value": "公式单元格没有计算结果",
    "merged_non_household": "非户级列有合并单元格",
    "id_conflict_birth_date": "同一身份证号在不同部门的出生日期不一致",
    "id_conflict_name": "同一身份证号在不同部门的姓名不一致",
    "id_conflict_gender": "同一身份证号在不同部门的性别不一致",
    "birth_date_contradicts_id": "出生日期与身份证号不符",
    "gender_contradicts_id": "性别与身份证号不符",
}


# --------------------------------------------------------------------------------------
# frames for the warehouse suite
# --------------------------------------------------------------------------------------
def warehouse_frames(con: duckdb.DuckDBPyConnection, requests: Mapping[str, Any],
                     run_id: str | None = None) -> dict[str, pd.DataFrame]:
    """Each requested table's columns, plus `<column>__exists` per reference (true when
    the value is null or present in the parent table), plus `quality.row_count_change`
    for the exports loaded by `run_id`. `requests`: name → object with `table`,
    `columns`, `references` ((column, parent_table, parent_column), …)."""
    frames: dict[str, pd.DataFrame] = {}
    for name, req in requests.items():
        cols = [f't."{c}"' for c in req.columns]
        for col, parent, pcol in req.references:
            cols.append(f't."{col}" IS NULL OR t."{col}" IN (SELECT "{pcol}" FROM {parent}) AS "{col}__exists"')
        frames[name] = con.execute(f"SELECT {', '.join(cols)} FROM {req.table} t").df()
    frames["quality.row_count_change"] = row_count_changes(con, run_id)
    return frames


def row_count_changes(con: duckdb.DuckDBPyConnection, run_id: str | None) -> pd.DataFrame:
    """Per export loaded in `run_id` (files only; incremental database reads vary by
    nature): its rows read against the previous export of the same source object
    (`change_ratio` = |new − old| / old)."""
    return con.execute(
        """
        WITH cur AS (
          SELECT * FROM quality.load_ledger
          WHERE run_id = ? AND status = 'loaded' AND watermark_to IS NULL AND watermark_from IS NULL),
        prev AS (
          SELECT c.export_id, p.source_object AS previous_source_object, p.rows_read AS previous_rows_read,
                 row_number() OVER (PARTITION BY c.export_id
                                    ORDER BY p.export_date DESC NULLS LAST, p.export_id DESC) AS rn
          FROM cur c JOIN quality.load_ledger p
            ON p.mapping = c.mapping AND p.export_id < c.export_id AND p.status <> 'failed'
           AND p.rows_read IS NOT NULL)
        SELECT c.export_id, c.source_system, c.mapping, c.source_object, c.rows_read,
               p.previous_source_object, p.previous_rows_read,
               abs(c.rows_read - p.previous_rows_read) / greatest(p.previous_rows_read, 1)::DOUBLE AS change_ratio
        FROM cur c JOIN prev p ON p.export_id = c.export_id AND p.rn = 1
        ORDER BY c.export_id
        """, [run_id]).df()


# --------------------------------------------------------------------------------------
# writing results
# --------------------------------------------------------------------------------------
def write_expectation_results(con: duckdb.DuckDBPyConnection, results: pd.DataFrame, *, run_id: str,
                              export_id: int | None = None) -> None:
    """Append one validation's results (pipelines.expectations.RESULT_COLUMNS)."""
    if results is None or results.empty:
        return
    df = results.copy()
    df["run_id"] = run_id
    df["export_id"] = export_id
    for c in ("element_count", "unexpected_count"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    df["unexpected_percent"] = pd.to_numeric(df["unexpected_percent"], errors="coerce")
    df["success"] = df["success"].astype(bool)
    cols = [c for c in EXPECTATION_RESULT.column_names if c != "evaluated_at"]
    con.register("_results", df.reindex(columns=cols))
    try:
        names = ", ".join(f'"{c}"' for c in cols)
        con.execute(f"INSERT INTO {EXPECTATION_RESULT.qualified} ({names}, evaluated_at) "
                    f"SELECT {names}, now() FROM _results")
    finally:
        con.unregister("_results")


def write_export_findings(con: duckdb.DuckDBPyConnection, *, run_id: str, export_id: int, source_system: str,
                          source_object: str, warnings: Iterable[Mapping[str, Any]]) -> int:
    """File-level warnings of one export (connector `ConnectorWarning.to_dict()`s) as findings."""
    rows = []
    for w in warnings:
        sheet, row = w.get("sheet"), w.get("row")
        locator = f"{sheet}!{row}" if sheet and row is not None else (sheet or (str(row) if row is not None else None))
        code = w.get("code") or "warning"
        fid = f"{export_id}:{code}:{locator or ''}:{w.get('column') or ''}:{len(rows)}"
        rows.append({
            "finding_id": fid, "scope": "export", "finding_kind": code, "severity": "warning", "run_id": run_id,
            "export_id": export_id, "source_system": source_system,
            "source_object": w.get("source_object") or source_object, "source_locator": locator,
            "source_column": w.get("column"), "raw_value": w.get("value"), "citizen_id": None, "person_id": None,
            "detail": w.get("message") or FINDING_KINDS_ZH.get(code, code),
            "evidence": json.dumps(dict(w), ensure_ascii=False, default=str),
        })
    _insert_findings(con, rows)
    return len(rows)


def _insert_findings(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]] | pd.DataFrame) -> None:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    if df.empty:
        return
    con.register("_findings", df.reindex(columns=FINDING.column_names))
    try:
        names = ", ".join(f'"{c}"' for c in FINDING.column_names)
        con.execute(f"INSERT OR REPLACE INTO {FINDING.qualified} ({names}) SELECT {names} FROM _findings")
    finally:
        con.unregister("_findings")


# --------------------------------------------------------------------------------------
# cross-source findings
# --------------------------------------------------------------------------------------
def _birth_gender_headers() -> pd.DataFrame:
    """(mapping, role) → the source's own header of the birth-date and gender fields."""
    rows = []
    for m in load_mappings():
        cols = {c.field: c for c in m.columns}
        for p in m.persons:
            roles = [p.role] if p.role else [p.role_rule.role, p.role_rule.otherwise]
            b, g = p.fields.get("birth_date"), p.fields.get("gender")
            for role in roles:
                rows.append({"mapping": m.source_object, "role": role,
                             "birth_header": cols[b].header if b in cols else None,
                             "gender_header": cols[g].header if g in cols else "（按角色）"})
    return pd.DataFrame(rows)


_MENTIONS = """
CREATE OR REPLACE TEMP VIEW qm AS
SELECT m.*, l.mapping, x.person_id, h.birth_header, h.gender_header,
       CASE m.gender WHEN '1' THEN '男' WHEN '2' THEN '女' ELSE m.gender END AS gender_zh,
       CASE m.id_gender WHEN '1' THEN '男' WHEN '2' THEN '女' ELSE m.id_gender END AS id_gender_zh,
       m.source_object || '!' || m.source_locator AS rec
FROM stg.mention m
LEFT JOIN quality.load_ledger l USING (export_id)
LEFT JOIN core.person_xref x USING (mention_id)
LEFT JOIN _headers h ON h.mapping = l.mapping AND h.role = m.role
WHERE m.citizen_id IS NOT NULL AND m.id_status IN ('valid', 'upgraded_15')
"""

_CONFLICT = """
SELECT 'warehouse:{kind}:' || citizen_id AS finding_id, 'warehouse' AS scope, '{kind}' AS finding_kind,
       'warning' AS severity, ? AS run_id, NULL::BIGINT AS export_id,
       NULL AS source_system, NULL AS source_object, NULL AS source_locator, NULL AS source_column,
       string_agg(DISTINCT {shown}, '、' ORDER BY {shown}) AS raw_value, citizen_id, min(person_id) AS person_id,
       '同一身份证号在不同部门登记的{what}不一致：' ||
         string_agg(DISTINCT {shown} || '（' || source_system || '：' || rec || '）', '；'
                    ORDER BY {shown} || '（' || source_system || '：' || rec || '）') AS detail,
       to_json(list({{source_system: source_system, record: rec, value: {shown}}} ORDER BY rec)) AS evidence
FROM qm WHERE {value} IS NOT NULL
GROUP BY citizen_id
HAVING count(DISTINCT {value}) > 1 AND count(DISTINCT source_system) > 1
"""

_CONTRADICTION = """
SELECT 'warehouse:{kind}:' || mention_id, 'warehouse', '{kind}', 'warning', ?, export_id,
       source_system, source_object, source_locator, {header}, {shown_raw}, citizen_id, person_id,
       '{what}“' || {shown_raw} || '”与身份证号中的“' || {shown_id} || '”不符', 
       to_json({{stated: {shown_raw}, from_id: {shown_id}, record: rec}})
FROM qm WHERE {value} IS NOT NULL AND {id_value} IS NOT NULL AND {value} <> {id_value} {extra}
"""


def refresh_cross_source_findings(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """Recompute the warehouse-scope findings from the current staging; returns counts by kind."""
    con.execute(f"DELETE FROM {FINDING.qualified} WHERE scope = 'warehouse'")
    con.register("_headers", _birth_gender_headers())
    try:
        con.execute(_MENTIONS)
        parts = [
            _CONFLICT.format(kind="id_conflict_birth_date", what="出生日期", value="birth_date",
                             shown="strftime(birth_date, '%Y-%m-%d')"),
            _CONFLICT.format(kind="id_conflict_name", what="姓名", value="coalesce(name_simplified, name)",
                             shown="coalesce(name_simplified, name)"),
            _CONFLICT.format(kind="id_conflict_gender", what="性别", value="nullif(nullif(gender, '0'), '9')",
                             shown="gender_zh"),
            _CONTRADICTION.format(kind="birth_date_contradicts_id", what="出生日期", value="birth_date",
                                  id_value="id_birth_date", header="birth_header",
                                  shown_raw="strftime(birth_date, '%Y-%m-%d')",
                                  shown_id="strftime(id_birth_date, '%Y-%m-%d')", extra=""),
            _CONTRADICTION.format(kind="gender_contradicts_id", what="性别", value="gender", id_value="id_gender",
                                  header="gender_header", shown_raw="gender_zh", shown_id="id_gender_zh",
                                  extra="AND gender IN ('1', '2') AND id_gender IN ('1', '2')"),
        ]
        n = len(parts)
        names = ", ".join(f'"{c}"' for c in FINDING.column_names)
        con.execute(f"INSERT OR REPLACE INTO {FINDING.qualified} ({names}) " + " UNION ALL ".join(parts),
                    [run_id] * n)
        con.execute("DROP VIEW IF EXISTS qm")
    finally:
        con.unregister("_headers")
    return dict(con.execute(f"SELECT finding_kind, count(*) FROM {FINDING.qualified} WHERE scope = 'warehouse' "
                            "GROUP BY 1 ORDER BY 1").fetchall())
