"""Officer-facing reports, in Chinese: problem lists per department (xlsx) and one
self-contained HTML quality summary.

* `问题清单_<部门>.xlsx`, one per source system, sheet `问题清单`: every rejected row
  and unusable value (`quality.rejected_record`) and every file that could not be
  loaded (`quality.load_ledger` status failed), with its exact location
  (文件, 工作表, 行号/主键, 列), the raw value, what is wrong, what to do and its status
  (待处理 first, then 已解决 with the correcting file); sheet `核查提示`: file-level
  warnings and cross-department findings about that department's records; sheet
  `说明`: counts.
* `质量报告.html`: per source and run the rows read / accepted / rejected by reason,
  the trend over runs, cross-department conflicts and alerts, and the expectation
  results. Inline CSS only, no scripts, fonts or images from anywhere: it renders
  fully on an offline machine.

The advice text per error code lives with the codes (`pipelines/errors.py`); the
caller passes it in (`advice=`), so the warehouse package imports nothing of the
pipelines.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from warehouse.workbook import Sheet, write_workbook

__all__ = ["SYSTEM_ZH", "problem_list", "department_findings", "write_problem_lists", "write_html_summary",
           "write_reports", "PROBLEM_COLUMNS"]

from schemas.person import SOURCE_SYSTEM_LABELS_ZH as SYSTEM_ZH  # noqa: E402  (built-in and declared departments)
#: alert kinds, as officers read them, and what the department named in the alert should do
ALERT_KINDS_ZH = {"deceased_receiving_benefit": "死亡后仍在低保花名册", "deceased_still_registered": "死亡后流动人口仍为在住",
                  "id_conflict": "同一身份证号信息冲突", "marital_status_conflict": "婚姻状况冲突"}
ALERT_ADVICE = {
    "deceased_receiving_benefit": "核实死亡信息后停发（列出的本部门记录即应停发的花名册行），并核算死亡后已发放的金额",
    "deceased_still_registered": "核实死亡信息后注销该流动人口登记",
    "id_conflict": "核对各部门记录中的姓名、性别、出生日期，更正录入有误的一方",
    "marital_status_conflict": "核对婚姻登记与本部门记录的婚姻状况，按婚姻登记更正",
}
PROBLEM_COLUMNS = ["状态", "文件", "工作表", "行号/主键", "列", "原始值", "问题说明", "处理建议", "问题类型", "错误代码",
                   "业务主键", "导出日期", "整行拒收", "更正文件"]
FILE_ADVICE = "请按问题说明修正文件（编码、格式、表头、存放位置）后重新报送"
_XLSX_CELL_LIMIT = 32000


def _connect(source: str | os.PathLike[str] | duckdb.DuckDBPyConnection) -> tuple[duckdb.DuckDBPyConnection, bool]:
    if isinstance(source, duckdb.DuckDBPyConnection):
        return source, False
    from warehouse.store import connect_read_only

    return connect_read_only(source), True


def _split_locator(locator: Any) -> tuple[str, str]:
    """xlsx `sheet!row` → (sheet, row); CSV line or SQL key → ('', locator)."""
    if locator is None or (isinstance(locator, float) and locator != locator):
        return "", ""
    text = str(locator)
    if "!" in text:
        sheet, row = text.rsplit("!", 1)
        return sheet, row
    return "", text


def _sort_row(v: str) -> tuple[int, str]:
    return (int(v), "") if v.isdigit() else (10**12, v)


# --------------------------------------------------------------------------------------
# problem lists
# --------------------------------------------------------------------------------------
#: the problem lists show problems resolved by a correction file this many days back
#: (older ones, and those of a roster's earlier periods, stay in quality.rejected_record)
RESOLVED_SHOWN_DAYS = 31


def problem_list(con: duckdb.DuckDBPyConnection, source_system: str,
                 advice: Callable[[str], str] | None = None, *,
                 resolved_days: int = RESOLVED_SHOWN_DAYS) -> pd.DataFrame:
    """The problems of one department an officer can act on, open ones first, with exact
    locations: every open one, and those resolved by a correction file in the last
    `resolved_days` days (so the officer sees the correction worked). Not listed: older
    resolved ones, and those of a roster's earlier periods (`superseded`: the newest
    roster repeats what is still wrong) — the list follows what is wrong now, not the
    history (counted on the workbook's 说明 sheet, `problem_counts`)."""
    rec = con.execute(
        f"""
        SELECT r.status, r.source_object, r.source_locator, r.source_column, r.raw_value, r.message, r.error_code,
               r.record_key, l.export_date, r.is_row_rejected, c.source_object AS resolved_by
        {_PROBLEMS}
        WHERE r.source_system = $system AND {_LISTED}
        """, {"system": source_system, "days": int(resolved_days)}).df()
    files = con.execute(
        """
        SELECT CASE WHEN EXISTS (SELECT 1 FROM quality.load_ledger k WHERE k.status = 'loaded'
                                 AND k.source_object = f.source_object AND k.export_id > f.export_id)
                    THEN 'resolved' ELSE 'open' END AS status,
               f.source_object, NULL::VARCHAR AS source_locator, NULL::VARCHAR AS source_column,
               NULL::VARCHAR AS raw_value, f.message, 'file_failed' AS error_code, NULL::VARCHAR AS record_key,
               f.export_date,
               TRUE AS is_row_rejected,
               (SELECT min(k.source_object) FROM quality.load_ledger k WHERE k.status = 'loaded'
                 AND k.source_object = f.source_object AND k.export_id > f.export_id) AS resolved_by
        FROM quality.load_ledger f WHERE f.status = 'failed' AND f.source_system = ?
        """, [source_system]).df()
    df = pd.concat([d for d in (files, rec) if not d.empty], ignore_index=True) if len(files) or len(rec) \
        else rec
    out = pd.DataFrame(columns=PROBLEM_COLUMNS)
    if df.empty:
        return out
    loc = df["source_locator"].map(_split_locator)
    advice = advice or (lambda code: "请核对原始记录后更正")
    out = pd.DataFrame({
        "状态": df["status"].map(lambda s: "待处理" if s == "open" else "已解决"),
        "文件": df["source_object"],
        "工作表": [a for a, _ in loc],
        "行号/主键": [b for _, b in loc],
        "列": df["source_column"].astype(object).fillna("（整行）").where(df["error_code"] != "file_failed",
                                                                       "（整个文件）"),
        "原始值": df["raw_value"].map(lambda v: None if v is None or v != v else str(v)[:_XLSX_CELL_LIMIT]),
        "问题说明": df["message"],
        "处理建议": [FILE_ADVICE if c == "file_failed" else advice(c) for c in df["error_code"]],
        "问题类型": [("文件无法装载" if c == "file_failed" else "整行未装载" if r else "该值不可用（记录已装载）")
                 for c, r in zip(df["error_code"], df["is_row_rejected"].fillna(False).astype(bool))],
        "错误代码": df["error_code"],
        "业务主键": df["record_key"],
        "导出日期": df["export_date"].map(lambda d: "" if d is None or pd.isna(d) else str(d)[:10]),
        "整行拒收": df["is_row_rejected"].fillna(False).astype(bool).map({True: "是", False: "否"}),
        "更正文件": df["resolved_by"],
    })
    out["_open"] = out["状态"].eq("待处理")
    out["_row"] = out["行号/主键"].map(_sort_row)
    out = out.sort_values(["_open", "文件", "工作表", "_row", "列"], ascending=[False, True, True, True, True],
                          kind="stable")
    return out.drop(columns=["_open", "_row"]).reset_index(drop=True)


def department_findings(con: duckdb.DuckDBPyConnection, source_system: str) -> pd.DataFrame:
    """File-level warnings and cross-department findings touching this department."""
    df = con.execute(
        """
        SELECT f.finding_kind, f.severity, f.source_object, f.source_locator, f.source_column, f.raw_value,
               f.detail, f.evidence
        FROM quality.finding f
        LEFT JOIN quality.load_ledger l ON l.export_id = f.export_id
        WHERE (f.source_system = ? AND (f.scope = 'warehouse' OR l.status IN ('loaded', 'superseded')))
           OR (f.source_system IS NULL AND EXISTS (
                 SELECT 1 FROM unnest(CAST(json_extract(f.evidence, '$[*].source_system') AS VARCHAR[])) u(s)
                 WHERE u.s = ?))
        ORDER BY f.finding_kind, f.source_object, f.source_locator
        """, [source_system, source_system]).df()
    from warehouse.quality import FINDING_KINDS_ZH

    loc = df["source_locator"].map(_split_locator)
    return pd.DataFrame({
        "类型": df["finding_kind"].map(lambda k: FINDING_KINDS_ZH.get(k, k)),
        "文件": df["source_object"], "工作表": [a for a, _ in loc], "行号/主键": [b for _, b in loc],
        "列": df["source_column"], "相关值": df["raw_value"], "说明": df["detail"],
        "严重程度": df["severity"].map({"error": "错误", "warning": "警告", "info": "提示"}),
    })


def department_alerts(con: duckdb.DuckDBPyConnection, source_system: str) -> pd.DataFrame:
    """Cross-department alerts that name records of this department (a 低保 roster line of
    a deceased person: the rows to stop), with full identity (officers' workbook) and
    the department's records the alert cites, by file!sheet!row."""
    df = con.execute(
        """
        WITH cited AS (
            SELECT a.alert_id, x.source_object || '!' || x.source_locator AS record,
                   strpos(CAST(a.evidence AS VARCHAR), x.source_object || '!' || x.source_locator) > 0 AS exact
            FROM core.alert a
            JOIN core.person_xref x ON x.person_id = a.person_id AND x.source_system = ?
                 AND strpos(CAST(a.evidence AS VARCHAR), x.source_object) > 0)
        SELECT a.alert_kind, a.person_id, p.name, p.citizen_id, a.alert_date, a.detail,
               -- the records the alert cites row by row, else every record of the files it cites
               coalesce(list(DISTINCT c.record ORDER BY c.record) FILTER (WHERE c.exact),
                        list(DISTINCT c.record ORDER BY c.record)) AS records
        FROM core.alert a JOIN cited c USING (alert_id) LEFT JOIN core.person p ON p.person_id = a.person_id
        GROUP BY a.alert_id, a.alert_kind, a.person_id, p.name, p.citizen_id, a.alert_date, a.detail
        ORDER BY a.alert_kind, a.alert_date, a.person_id, a.alert_id
        """, [source_system]).df()
    return pd.DataFrame({
        "预警类型": df["alert_kind"].map(lambda k: ALERT_KINDS_ZH.get(k, k)),
        "人员编号": df["person_id"], "姓名": df["name"], "公民身份号码": df["citizen_id"],
        "日期": pd.to_datetime(df["alert_date"]).dt.date, "说明": df["detail"],
        "本部门记录（文件!工作表!行）": df["records"].map(lambda r: "；".join(r) if r is not None else ""),
        "处理建议": df["alert_kind"].map(lambda k: ALERT_ADVICE.get(k, "核实后更正")),
    }, columns=["预警类型", "人员编号", "姓名", "公民身份号码", "日期", "说明", "本部门记录（文件!工作表!行）", "处理建议"])


#: the problems with the ledger rows of their export (`l`) and of the correction file that
#: resolved them (`c`), as `problem_list` and `problem_counts` read them (`_LISTED` uses both)
_PROBLEMS = """FROM quality.rejected_record r
        LEFT JOIN quality.load_ledger l ON l.export_id = r.export_id
        LEFT JOIN quality.load_ledger c ON c.export_id = r.resolved_by_export_id"""

#: which problems `problem_list` shows (`$days`: how long resolved ones stay listed); a
#: resolution without its correction file dates from the problem's own export
_LISTED = """(r.status = 'open' OR (r.status = 'resolved'
     AND coalesce(c.loaded_at, l.loaded_at) >= now()::TIMESTAMP - to_days(CAST($days AS INTEGER))))"""


def problem_counts(con: duckdb.DuckDBPyConnection, source_system: str,
                   resolved_days: int = RESOLVED_SHOWN_DAYS) -> dict[str, int]:
    """The department's problems the list leaves out: resolved more than `resolved_days`
    days ago, and superseded by a newer roster period."""
    row = con.execute(
        f"""SELECT count(*) FILTER (WHERE r.status = 'resolved' AND NOT {_LISTED}),
                   count(*) FILTER (WHERE r.status = 'superseded')
        {_PROBLEMS}
        WHERE r.source_system = $system""", {"system": source_system, "days": int(resolved_days)}).fetchall()[0]
    return {"resolved_earlier": int(row[0] or 0), "superseded": int(row[1] or 0)}


def write_problem_lists(con: duckdb.DuckDBPyConnection, out_dir: Path,
                        advice: Callable[[str], str] | None = None) -> list[Path]:
    """One xlsx per department that has exports in the ledger.

    A workbook whose content did not change since it was last written (same problems,
    same findings: a fingerprint of both is kept in `.fingerprints.json` next to it) is
    left as it is, so a nightly sync rewrites only the lists its exports changed (at a
    million residents, writing every list costs half a minute)."""
    staged = StagedReports()
    try:
        paths = _stage_problem_lists(con, out_dir, advice, staged)
    except BaseException:
        staged.discard()
        raise
    staged.publish()
    return paths


def _stage_problem_lists(con: duckdb.DuckDBPyConnection, out_dir: Path, advice: Callable[[str], str] | None,
                         staged: "StagedReports") -> list[Path]:
    """`write_problem_lists` into temporary files, each renamed into place by `staged`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    systems = [r[0] for r in con.execute(
        "SELECT DISTINCT source_system FROM quality.load_ledger ORDER BY 1").fetchall()]
    prints_path = out_dir / ".fingerprints.json"
    try:
        prints = json.loads(prints_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        prints = {}
    paths = []
    for system in systems:
        problems = problem_list(con, system, advice)
        findings = department_findings(con, system)
        alerts = department_alerts(con, system)
        zh = SYSTEM_ZH.get(system, system)
        path = out_dir / f"问题清单_{zh}.xlsx"
        fingerprint = _fingerprint(problems, findings, alerts)
        if path.exists() and prints.get(system) == fingerprint:
            paths.append(path)
            continue
        left_out = problem_counts(con, system)
        counts = pd.DataFrame({
            "项目": ["部门", "生成时间", "待处理问题", f"已解决问题（近 {RESOLVED_SHOWN_DAYS} 天，已列出）",
                   "更早已解决的问题（未列出）", "较早期次花名册的问题（已被新一期取代，未列出）",
                   "整行未装载（待处理）", "不可用值（待处理）",
                   "文件无法装载（待处理）", "核查提示", "跨部门预警"],
            "数值": [f"{zh}（{system}）", dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
                   int((problems["状态"] == "待处理").sum()), int((problems["状态"] == "已解决").sum()),
                   left_out["resolved_earlier"], left_out["superseded"],
                   int(((problems["状态"] == "待处理") & (problems["问题类型"] == "整行未装载")).sum()),
                   int(((problems["状态"] == "待处理") & (problems["问题类型"] == "该值不可用（记录已装载）")).sum()),
                   int(((problems["状态"] == "待处理") & (problems["问题类型"] == "文件无法装载")).sum()),
                   len(findings), len(alerts)],
        })
        tmp = path.with_name(path.name + ".tmp.xlsx")
        write_workbook(tmp, [
            Sheet("问题清单", problems, {"文件": 30, "工作表": 12, "行号/主键": 10, "列": 16, "原始值": 24, "问题说明": 60,
                                     "处理建议": 40, "问题类型": 20, "更正文件": 30}),
            Sheet("跨部门预警", alerts, {"预警类型": 22, "公民身份号码": 20, "说明": 60, "本部门记录（文件!工作表!行）": 60,
                                       "处理建议": 50}),
            Sheet("核查提示", findings, {"类型": 30, "文件": 30, "说明": 80, "相关值": 24}),
            Sheet("说明", counts, {"项目": 24, "数值": 30}),
        ])
        staged.add(tmp, path)
        prints[system] = fingerprint
        paths.append(path)
    tmp = prints_path.with_name(prints_path.name + ".tmp")
    tmp.write_text(json.dumps(prints, ensure_ascii=False, indent=1), encoding="utf-8")
    staged.add(tmp, prints_path)  # last: a list renamed before its fingerprint is only written again
    return paths


class StagedReports:
    """Report files written under temporary names, renamed into place together by
    `publish` (after the warehouse they describe is published) or removed by `discard`."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, Path]] = []

    def add(self, tmp: Path, final: Path) -> None:
        self.files.append((tmp, final))

    def publish(self) -> None:
        for tmp, final in self.files:
            os.replace(tmp, final)
        self.files = []

    def discard(self) -> None:
        for tmp, _ in self.files:
            tmp.unlink(missing_ok=True)
        self.files = []


def _fingerprint(*frames: pd.DataFrame) -> str:
    """A digest of the frames' columns and values (what a workbook would show)."""
    h = hashlib.sha256()
    for f in frames:
        h.update("|".join(map(str, f.columns)).encode())
        if len(f):
            h.update(pd.util.hash_pandas_object(f.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# the HTML summary
# --------------------------------------------------------------------------------------
CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","Microsoft YaHei","PingFang SC","WenQuanYi Micro Hei",sans-serif;
margin:24px;color:#1f2937;background:#fff;font-size:14px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid #2563eb;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.meta{color:#6b7280;margin-bottom:12px}
.dwarn{background:#fffbeb;border:1px solid #f59e0b;padding:8px 12px;margin:8px 0;border-radius:4px}
table{border-collapse:collapse;margin:6px 0 12px;width:100%}
th,td{border:1px solid #d1d5db;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#eff6ff;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#fef2f2}tr.warn td{background:#fffbeb}
.ok{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}.warnc{color:#b45309;font-weight:600}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d1d5db;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}
.bar{display:flex;height:14px;min-width:160px;background:#f3f4f6}.bar span{display:block;height:14px}
.acc{background:#22c55e}.rej{background:#ef4444}.skp{background:#9ca3af}
.small{font-size:12px;color:#6b7280}
"""


def _e(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NaT:
        return ""
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    return html.escape(str(v))


def _table(df: pd.DataFrame, numeric: set[str] = frozenset(), row_class: list[str] | None = None) -> str:
    if df.empty:
        return '<p class="small">（无）</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for i, rec in enumerate(df.itertuples(index=False)):
        cls = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        cells = "".join(f'<td class="n">{_e(v)}</td>' if c in numeric else f"<td>{v if c.startswith('_html') else _e(v)}</td>"
                        for c, v in zip(df.columns, rec))
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _mask_ids(text: Any) -> str:
    import re

    # only the region part: the last four with a birth date shown elsewhere rebuild the ID
    return re.sub(r"\b(\d{6})\d{11}[\dXx]\b", r"\1************", "" if text is None else str(text))


def _bar(acc: float, rej: float, skp: float) -> str:
    total = (acc or 0) + (rej or 0) + (skp or 0)
    if not total:
        return ""
    parts = [(acc, "acc"), (rej, "rej"), (skp, "skp")]
    return '<div class="bar">' + "".join(
        f'<span class="{c}" style="width:{100 * (v or 0) / total:.1f}%"></span>' for v, c in parts if v) + "</div>"


def _q(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def render_html(con: duckdb.DuckDBPyConnection, *, max_findings: int = 300) -> str:
    """The quality summary as one self-contained HTML page (Chinese)."""
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    runs = _q(con, "SELECT run_id, flow, status, started_at, finished_at FROM quality.run ORDER BY started_at")
    ledger = _q(con, """
        SELECT l.run_id, l.source_system, l.mapping, l.source_object, l.status, l.export_date, l.rows_read,
               l.rows_accepted, l.rows_rejected, l.rows_skipped, l.values_rejected, l.message, l.export_id
        FROM quality.load_ledger l ORDER BY l.export_id""")
    reasons = _q(con, """
        SELECT export_id, error_code, count(DISTINCT source_locator) FILTER (WHERE is_row_rejected) AS rows,
               count(*) FILTER (WHERE NOT is_row_rejected) AS vals
        FROM quality.rejected_record GROUP BY ALL ORDER BY export_id, rows DESC, vals DESC""")
    reason_text: dict[int, str] = {}
    for eid, grp in reasons.groupby("export_id"):
        bits = [f"{r.error_code} 行{int(r.rows)}" if r.rows else f"{r.error_code} 值{int(r.vals)}"
                for r in grp.itertuples()]
        reason_text[int(eid)] = "；".join(bits)
    parts: list[str] = [
        "<!DOCTYPE html>", '<html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>数据质量报告</title>", f"<style>{CSS}</style></head><body>",
        "<h1>居民数据中心 · 数据质量报告</h1>",
        f'<div class="meta">生成时间：{now}；运行次数：{len(runs)}；本页不依赖网络，可离线打开。</div>',
        *_district_html(con),
    ]
    # --- cards
    open_rows = _q(con, "SELECT count(*) AS n FROM quality.rejected_record WHERE status = 'open'")["n"][0]
    resolved = _q(con, "SELECT count(*) AS n FROM quality.rejected_record WHERE status = 'resolved'")["n"][0]
    failed_files = int((ledger["status"] == "failed").sum()) if len(ledger) else 0
    n_alerts = _q(con, "SELECT count(*) AS n FROM core.alert")["n"][0]
    n_findings = _q(con, "SELECT count(*) AS n FROM quality.finding WHERE scope = 'warehouse'")["n"][0]
    last_run = _q(con, "SELECT run_id FROM quality.expectation_result ORDER BY evaluated_at DESC LIMIT 1")
    last_run = last_run["run_id"].iloc[0] if len(last_run) else None
    exp_last = _q(con, "SELECT * FROM quality.expectation_result WHERE run_id = ?", [last_run]) if last_run \
        else pd.DataFrame()
    n_exp_fail = int((~exp_last["success"].astype(bool)).sum()) if len(exp_last) else 0
    cards = [("待处理问题", open_rows), ("已解决问题", resolved), ("装载失败的文件", failed_files),
             ("跨部门预警", n_alerts), ("跨部门核查发现", n_findings), ("最近一次未通过的检查", n_exp_fail)]
    parts.append('<div class="cards">' + "".join(f'<div class="card"><b>{_e(v)}</b>{_e(k)}</div>'
                                                 for k, v in cards) + "</div>")
    # --- per source
    parts.append("<h2>一、各来源装载情况</h2>")
    loaded = ledger[ledger["status"].isin(["loaded", "superseded"])] if len(ledger) else ledger
    if len(loaded):
        per = loaded.groupby("source_system")[["rows_read", "rows_accepted", "rows_rejected", "rows_skipped",
                                               "values_rejected"]].sum().reset_index()
        nfiles = loaded.groupby("source_system").size().rename("files").reset_index()
        per = per.merge(nfiles, on="source_system")
        per["rate"] = (per["rows_rejected"] / per["rows_read"].where(per["rows_read"] > 0)).fillna(0)
        tab = pd.DataFrame({
            "来源": per["source_system"].map(lambda s: f"{SYSTEM_ZH.get(s, s)}（{s}）"), "文件/读取数": per["files"],
            "读取行": per["rows_read"], "接收行": per["rows_accepted"], "拒收行": per["rows_rejected"],
            "跳过（合计/空行）": per["rows_skipped"], "不可用值": per["values_rejected"],
            "拒收率": per["rate"].map(lambda r: f"{r:.1%}"),
            "_html构成": [_bar(a, r, s) for a, r, s in zip(per["rows_accepted"], per["rows_rejected"],
                                                         per["rows_skipped"])],
        }).rename(columns={"_html构成": "_html构成"})
        parts.append(_table(tab, {"文件/读取数", "读取行", "接收行", "拒收行", "跳过（合计/空行）", "不可用值"})
                     .replace("<th>_html构成</th>", "<th>构成（绿=接收，红=拒收，灰=跳过）</th>"))
    by_reason = _q(con, """
        SELECT r.source_system, r.error_code, any_value(r.message) AS example,
               count(DISTINCT r.source_object || r.source_locator) FILTER (WHERE r.is_row_rejected) AS rows,
               count(*) FILTER (WHERE NOT r.is_row_rejected) AS vals,
               count(*) FILTER (WHERE r.status = 'open') AS open, count(*) FILTER (WHERE r.status = 'resolved') AS resolved
        FROM quality.rejected_record r GROUP BY ALL ORDER BY r.source_system, rows DESC, vals DESC""")
    parts.append("<h3>拒收原因（按来源）</h3>")
    parts.append(_table(pd.DataFrame({
        "来源": by_reason["source_system"].map(lambda s: SYSTEM_ZH.get(s, s)), "错误代码": by_reason["error_code"],
        "拒收行": by_reason["rows"], "不可用值": by_reason["vals"], "待处理": by_reason["open"],
        "已解决": by_reason["resolved"], "示例说明": by_reason["example"].map(_mask_ids)}),
        {"拒收行", "不可用值", "待处理", "已解决"}))
    # --- per run and export
    parts.append("<h2>二、每次运行的导出明细</h2>")
    if len(ledger):
        status_zh = {"loaded": "已装载", "superseded": "已被更正取代", "failed": "失败", "reloaded": "已重新装载"}
        tab = pd.DataFrame({
            "运行": ledger["run_id"], "来源": ledger["source_system"].map(lambda s: SYSTEM_ZH.get(s, s)),
            "文件/表": ledger["source_object"], "状态": ledger["status"].map(lambda s: status_zh.get(s, s)),
            "读取": ledger["rows_read"], "接收": ledger["rows_accepted"], "拒收": ledger["rows_rejected"],
            "跳过": ledger["rows_skipped"], "不可用值": ledger["values_rejected"],
            "拒收原因": ledger["export_id"].map(lambda i: reason_text.get(int(i), "")),
            "说明": ledger["message"].map(lambda m: "" if m is None or m != m else str(m)[:400]),
        })
        cls = ["fail" if s == "failed" else "" for s in ledger["status"]]
        parts.append(_table(tab, {"读取", "接收", "拒收", "跳过", "不可用值"}, cls))
    # --- trend
    parts.append("<h2>三、趋势（按运行）</h2>")
    trend = _q(con, """
        SELECT r.run_id, r.flow, r.status, r.started_at,
               count(l.export_id) FILTER (WHERE l.status <> 'failed') AS exports,
               count(l.export_id) FILTER (WHERE l.status = 'failed') AS failed,
               coalesce(sum(l.rows_read), 0) AS rows_read, coalesce(sum(l.rows_accepted), 0) AS accepted,
               coalesce(sum(l.rows_rejected), 0) AS rejected, coalesce(sum(l.rows_skipped), 0) AS skipped,
               coalesce(sum(l.values_rejected), 0) AS vals,
               (SELECT count(*) FROM quality.expectation_result e WHERE e.run_id = r.run_id AND NOT e.success) AS exp_failed
        FROM quality.run r LEFT JOIN quality.load_ledger l ON l.run_id = r.run_id
        GROUP BY ALL ORDER BY r.started_at""")
    if len(trend):
        for c in ("rows_read", "accepted", "rejected", "skipped", "vals"):
            trend[c] = trend[c].astype("int64")
        trend["rate"] = (trend["rejected"] / trend["rows_read"].where(trend["rows_read"] > 0)).fillna(0)
        parts.append(_table(pd.DataFrame({
            "运行": trend["run_id"], "流程": trend["flow"], "状态": trend["status"],
            "开始时间": trend["started_at"].astype(str).str[:19], "导出数": trend["exports"], "失败文件": trend["failed"],
            "读取行": trend["rows_read"], "接收行": trend["accepted"], "拒收行": trend["rejected"],
            "拒收率": trend["rate"].map(lambda r: f"{r:.1%}"), "不可用值": trend["vals"],
            "未通过检查": trend["exp_failed"],
            "_html构成": [_bar(a, r, s) for a, r, s in zip(trend["accepted"], trend["rejected"], trend["skipped"])],
        }), {"导出数", "失败文件", "读取行", "接收行", "拒收行", "不可用值", "未通过检查"})
            .replace("<th>_html构成</th>", "<th>构成</th>"))
    # --- cross-department
    parts.append("<h2>四、跨部门冲突与预警</h2>")
    alerts = _q(con, "SELECT alert_kind, count(*) AS n FROM core.alert GROUP BY 1 ORDER BY 2 DESC")
    findings = _q(con, """SELECT finding_kind, count(*) AS n FROM quality.finding WHERE scope = 'warehouse'
                          GROUP BY 1 ORDER BY 2 DESC""")
    from warehouse.quality import FINDING_KINDS_ZH

    alert_zh = ALERT_KINDS_ZH
    summary = pd.concat([
        pd.DataFrame({"类别": "预警", "类型": alerts["alert_kind"].map(lambda k: alert_zh.get(k, k)), "数量": alerts["n"]}),
        pd.DataFrame({"类别": "核查发现", "类型": findings["finding_kind"].map(lambda k: FINDING_KINDS_ZH.get(k, k)),
                      "数量": findings["n"]}),
    ], ignore_index=True)
    parts.append(_table(summary, {"数量"}))
    detail = _q(con, f"""
        SELECT '预警' AS cat, alert_kind AS kind, detail, person_id FROM core.alert
        UNION ALL
        SELECT '核查发现', finding_kind, detail, person_id FROM quality.finding WHERE scope = 'warehouse'
        ORDER BY 1 DESC, 2, 4 LIMIT {int(max_findings)}""")
    if len(detail):
        parts.append("<h3>明细（身份证号已脱敏）</h3>")
        parts.append(_table(pd.DataFrame({
            "类别": detail["cat"],
            "类型": [alert_zh.get(k, FINDING_KINDS_ZH.get(k, k)) for k in detail["kind"]],
            "人员编号": detail["person_id"], "说明": detail["detail"].map(_mask_ids)})))
    # --- expectations
    parts.append("<h2>五、数据期望检查（Great Expectations）</h2>")
    exp = _q(con, """
        SELECT e.run_id, e.suite, e.target, l.source_object, e.description, e.severity, e.success, e.element_count,
               e.unexpected_count, e.unexpected_percent, e.observed_value, e.unexpected_examples, e.exception
        FROM quality.expectation_result e LEFT JOIN quality.load_ledger l USING (export_id)
        ORDER BY e.evaluated_at, e.suite, e.target""")
    if len(exp):
        per_run = exp.groupby("run_id").agg(checks=("success", "size"),
                                            failed=("success", lambda s: int((~s.astype(bool)).sum()))).reset_index()
        parts.append(_table(per_run.rename(columns={"run_id": "运行", "checks": "检查数", "failed": "未通过"}),
                            {"检查数", "未通过"}))
        latest = exp[exp["run_id"] == exp["run_id"].iloc[-1]]
        wh = exp[exp["suite"] == "warehouse"]
        if len(wh):
            latest_wh = wh[wh["run_id"] == wh["run_id"].iloc[-1]]
            latest = pd.concat([latest[latest["suite"] != "warehouse"], latest_wh]).drop_duplicates()
        failed = exp[~exp["success"].astype(bool)]
        parts.append(f"<h3>最近一次运行的检查结果（{_e(exp['run_id'].iloc[-1])}）</h3>")
        parts.append(_exp_table(latest))
        if len(failed):
            parts.append("<h3>历次未通过的检查</h3>")
            parts.append(_exp_table(failed))
    else:
        parts.append('<p class="small">（尚无检查结果）</p>')
    # --- file-level warnings
    parts.append("<h2>六、文件级警告（未知列、隐藏工作表、公式等）</h2>")
    warn = _q(con, """
        SELECT f.source_system, f.source_object, f.finding_kind, f.source_locator, f.source_column, f.detail
        FROM quality.finding f WHERE f.scope = 'export' ORDER BY f.export_id, f.finding_kind""")
    parts.append(_table(pd.DataFrame({
        "来源": warn["source_system"].map(lambda s: SYSTEM_ZH.get(s, s)), "文件": warn["source_object"],
        "类型": warn["finding_kind"].map(lambda k: FINDING_KINDS_ZH.get(k, k)), "位置": warn["source_locator"],
        "列": warn["source_column"], "说明": warn["detail"]})))
    parts.append('<p class="small">各部门的问题清单（xlsx）与本页在同一文件夹：问题清单_部门.xlsx。</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _district_html(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The district in force (quality.district, latest row): how it was established, and
    the latest warning that the data contradicts it."""
    from warehouse import district as wdistrict

    row = wdistrict.current(con)
    if row is None:
        return ['<div class="meta">辖区：未确定（尚未装载数据）</div>']
    label = "".join(x for x in (row["province"], row["city"], row["county"]) if x)
    how = {"inferred": "由数据推断", "configured": "配置文件 [district]"}.get(row["method"], row["method"])
    out = [f'<div class="meta">辖区：{_e(label)}（{_e(row["county_code"])}），{_e(how)}'
           + (f'；{_e(row["detail"])}' if row["detail"] else "") + "</div>"]
    warnings = _q(con, "SELECT warning, decided_at FROM quality.district WHERE warning IS NOT NULL "
                       "ORDER BY decided_at DESC LIMIT 1")
    if len(warnings):
        out.append(f'<div class="dwarn"><b>辖区警告</b>（{_e(str(warnings["decided_at"].iloc[0])[:16])}）：'
                   f'{_e(warnings["warning"].iloc[0])}</div>')
    return out


def _exp_table(df: pd.DataFrame) -> str:
    tab = pd.DataFrame({
        "套件": df["suite"], "文件/对象": df["source_object"].where(df["source_object"].notna(), df["target"]),
        "检查": df["description"],
        "结果": [("通过" if s else ("未通过" if sev == "error" else "警告")) for s, sev in zip(df["success"], df["severity"])],
        "检查值数": df["element_count"], "不符合": df["unexpected_count"],
        "不符合比例": df["unexpected_percent"].map(lambda v: "" if v is None or v != v else f"{v:.1f}%"),
        "观察值": df["observed_value"],
        "示例": df["unexpected_examples"].map(lambda v: _mask_ids(", ".join(map(str, json.loads(v))))[:200]
                                           if isinstance(v, str) else ""),
        "异常": df["exception"],
    })
    cls = ["" if s else ("fail" if sev == "error" else "warn") for s, sev in zip(df["success"], df["severity"])]
    return _table(tab, {"检查值数", "不符合"}, cls)


def write_html_summary(con: duckdb.DuckDBPyConnection, out_dir: Path, staged: StagedReports | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "质量报告.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(con), encoding="utf-8")
    if staged is None:
        os.replace(tmp, path)
    else:
        staged.add(tmp, path)
    return path


def write_reports(warehouse: str | os.PathLike[str] | duckdb.DuckDBPyConnection, out_dir: str | os.PathLike[str],
                  *, advice: Callable[[str], str] | None = None) -> list[Path]:
    """Problem lists per department and the HTML summary; returns the paths written."""
    paths, staged = stage_reports(warehouse, out_dir, advice=advice)
    staged.publish()
    return paths


def stage_reports(warehouse: str | os.PathLike[str] | duckdb.DuckDBPyConnection, out_dir: str | os.PathLike[str],
                  *, advice: Callable[[str], str] | None = None) -> tuple[list[Path], StagedReports]:
    """`write_reports` into temporary files (owner-only, in the reports folder): the
    paths they will have and the `StagedReports` that puts them there. A sync stages
    them from its committed working copy while the analyst file is written, and
    puts them in place after the warehouse (`alongside`, `ReportJob`)."""
    from warehouse.store import make_dir, make_private, private_umask

    out = Path(out_dir)
    con, owned = _connect(warehouse)
    staged = StagedReports()
    try:
        # the problem lists carry full IDs: owner-only files in an owner-only folder
        make_dir(out)
        make_private(out)
        with private_umask():
            paths = _stage_problem_lists(con, out, advice, staged)
            paths.append(write_html_summary(con, out, staged))
        for tmp, _ in staged.files:
            make_private(tmp)
        return paths, staged
    except BaseException:
        staged.discard()
        raise
    finally:
        if owned:
            con.close()


class ReportJob:
    """The reports of one sync, staged while its warehouse is published (`alongside`)
    and put in place after it (`publish`); `discard` when the sync failed. `error`: why
    they could not be written (the sync stands: a report failure is reported, not fatal)."""

    def __init__(self, out_dir: str | os.PathLike[str], advice: Callable[[str], str] | None = None) -> None:
        self.out_dir, self.advice = Path(out_dir), advice
        self.paths: list[Path] = []
        self.staged: StagedReports | None = None
        self.error: str | None = None

    def publish(self) -> list[Path]:
        if self.staged is not None:
            self.staged.publish()
            self.staged = None
        return self.paths

    def discard(self) -> None:
        if self.staged is not None:
            self.staged.discard()
            self.staged = None


def alongside(hook: Callable[[duckdb.DuckDBPyConnection], Callable[[], None] | None] | None,
              job: ReportJob | None) -> Callable[[duckdb.DuckDBPyConnection], Callable[[], None] | None] | None:
    """A `store.transaction(before_publish=...)` hook that stages `job`'s reports on a
    second thread, from the committed working copy (a cursor of its connection), while
    `hook` (the analyst file) runs: the problem lists are Python (`warehouse.workbook`), the
    analyst file mostly DuckDB, so the two share the machine's cores instead of taking
    turns. The staged files are renamed into place by `job.publish()` once the
    warehouse is published."""
    if job is None:
        return hook

    def before_publish(con: duckdb.DuckDBPyConnection) -> Callable[[], None] | None:
        from concurrent.futures import ThreadPoolExecutor

        from warehouse.store import cursor as cursor_of

        cursor = cursor_of(con)  # on the warehouse, also when it is attached (encrypted)
        with ThreadPoolExecutor(1, thread_name_prefix="reports") as pool:
            future = pool.submit(stage_reports, cursor, job.out_dir, advice=job.advice)
            try:
                publish = hook(con) if hook else None
            finally:
                try:
                    job.paths, job.staged = future.result()
                except Exception as exc:  # noqa: BLE001 - reported by the sync, which stands
                    job.error = f"{type(exc).__name__}: {exc}"
                finally:
                    cursor.close()
        return publish

    return before_publish
