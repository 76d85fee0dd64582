"""Run records: one row of `quality.run` per sync, backfill or decision.

A run that changed the warehouse writes its row inside its own transaction (published
with everything else). A run that found nothing to do never copies or rewrites the
warehouse (that is what keeps a no-op sync within a second or two at any size), so
its row goes to a small side file next to the warehouse, `<warehouse>.runs.jsonl`,
appended under the writer lock; the next transaction moves those rows into
`quality.run` (ignoring any already there) and removes the file once it published.
Readers (`residents status`) see both.

The run's report itself is `SyncSummary` (with one `ExportReport` per export and the
`Selection` it was asked for): what `residents sync` prints, the Prefect artifact shows
and `quality.run.summary` keeps.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

# --------------------------------------------------------------------------------------
# the run's report
# --------------------------------------------------------------------------------------
@dataclass
class ExportReport:
    source_system: str
    mapping: str
    source_object: str
    status: str                 # loaded, duplicate, failed, unchanged, problem
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_skipped: int = 0
    values_rejected: int = 0
    mentions: int = 0
    message: str | None = None


def _alert_zh(kind: str) -> str:
    from warehouse.reports import ALERT_KINDS_ZH

    return ALERT_KINDS_ZH.get(kind, kind)


@dataclass
class SyncSummary:
    run_id: str
    flow: str
    warehouse: str
    started_at: str
    finished_at: str | None = None
    status: str = "running"
    exports: list[ExportReport] = field(default_factory=list)
    persons_before: int = 0
    persons_after: int = 0
    persons_created: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    core_counts: dict[str, int] = field(default_factory=dict)
    resolution_mode: str | None = None
    engine: str = "duckdb"                  # where the pairs were generated and scored (settings.engine)
    build_engine: str = "duckdb"            # where the build's set work ran (spark: a full build on Spark)
    quality: dict[str, int] = field(default_factory=dict)
    district: str | None = None             # 辖区 in force: 名称（代码）
    district_note: str | None = None        # how it was established (inferred: evidence and confidence)
    district_warning: str | None = None     # the data contradicts the district in force
    lake: dict[str, Any] = field(default_factory=dict)  # warehouse.lake.LakeOutcome of the run, if any
    compacted: list[str] = field(default_factory=list)  # tables rewritten without their deleted rows

    @property
    def lake_failed(self) -> bool:
        return self.lake.get("status") == "failed"

    @property
    def loaded(self) -> list[ExportReport]:
        return [e for e in self.exports if e.status == "loaded"]

    def per_source(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for e in self.exports:
            s = out.setdefault(e.source_system, {"files": 0, "rows_read": 0, "rows_accepted": 0,
                                                 "rows_rejected": 0, "values_rejected": 0, "failed": 0})
            if e.status == "loaded":
                s["files"] += 1
                for k in ("rows_read", "rows_accepted", "rows_rejected", "values_rejected"):
                    s[k] += getattr(e, k)
            elif e.status == "failed":
                s["failed"] += 1
        return out

    def headline_zh(self) -> str:
        """One Chinese line for a console or log: what the run did."""
        failed = sum(e.status == "failed" for e in self.exports)
        status = {"succeeded": "已发布" + (f"，{failed} 个文件未装载" if failed else ""), "unchanged": "无新数据",
                  "failed": "失败"}.get(self.status, self.status)
        seconds = self.stage_seconds.get("total")
        took = f"，用时 {seconds:.0f} 秒" if seconds else ""
        lake = "；数据湖发布失败" if self.lake_failed else ""
        return (f"{self.run_id}：{status}；装载 {len(self.loaded)} 个文件；"
                f"人员 {self.persons_before} → {self.persons_after}{took}{lake}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_source"] = self.per_source()
        return d

    def markdown(self) -> str:
        lines = [f"# 同步结果 / sync {self.run_id}", "",
                 f"- 流程：{self.flow}；状态：{self.status}；仓库：`{self.warehouse}`",
                 f"- 人员：{self.persons_before} → {self.persons_after}（新建 {self.persons_created}）",
                 "- 预警：" + ("，".join(f"{_alert_zh(k)} {v} 条" for k, v in sorted(self.alerts.items())) or "无"),
                 "- 质量：" + ("，".join(f"{k} {v}" for k, v in sorted(self.quality.items())) or "无"),
                 f"- 辖区：{self.district or '未确定'}" + (f"；{self.district_note}" if self.district_note else ""),
                 f"- 解析引擎：{self.engine}；构建汇总：{self.build_engine}",
                 *([f"- **警告**：{self.district_warning}"] if self.district_warning else []), "",
                 "| 来源 | 文件数 | 读取行 | 接收行 | 拒收行 | 不可用值 | 失败文件 |", "|---|---|---|---|---|---|---|"]
        for src, s in sorted(self.per_source().items()):
            lines.append(f"| {src} | {s['files']} | {s['rows_read']} | {s['rows_accepted']} | {s['rows_rejected']} "
                         f"| {s['values_rejected']} | {s['failed']} |")
        problems = [e for e in self.exports if e.status in ("failed", "problem")]
        if problems:
            lines += ["", "## 未能装载的文件", ""]
            lines += [f"- `{e.source_object}`：{e.message}" for e in problems]
        if self.lake:
            from warehouse.lake import LakeOutcome

            lines += ["", f"- {LakeOutcome(**self.lake).line_zh()}"]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Selection:
    """What a sync loads. Nightly: everything not loaded yet. Backfill: one source's
    exports dated within [since, until], reloaded even if loaded before."""

    sources: tuple[str, ...] | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    force: bool = False
    full: bool = False          # rebuild: re-resolve every person and rebuild all of core

    def wants(self, source_system: str, export_date: dt.date | None) -> bool:
        if self.sources and source_system not in self.sources:
            return False
        if export_date is not None:
            if self.since and export_date < self.since:
                return False
            if self.until and export_date > self.until:
                return False
        return True


# --------------------------------------------------------------------------------------
# run records
# --------------------------------------------------------------------------------------
RUN_COLUMNS = ("run_id", "flow", "started_at", "finished_at", "status", "parameters", "summary", "schema_version")


def pending_path(warehouse: str | os.PathLike[str]) -> Path:
    p = Path(warehouse)
    return p.with_name(p.name + ".runs.jsonl")


def run_row(*, run_id: str, flow: str, started_at: str, finished_at: str | None, status: str,
            parameters: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    from warehouse.migrations import CURRENT_VERSION

    return {"run_id": run_id, "flow": flow, "started_at": started_at, "finished_at": finished_at,
            "status": status, "parameters": json.dumps(parameters, default=str, ensure_ascii=False),
            "summary": json.dumps(summary, default=str, ensure_ascii=False), "schema_version": CURRENT_VERSION}


def record_run(con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
    """The run's row, in the open transaction."""
    con.execute(f"INSERT OR IGNORE INTO quality.run ({', '.join(RUN_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in RUN_COLUMNS)})", [row[c] for c in RUN_COLUMNS])


def summary_row(summary: SyncSummary, selection: Selection) -> dict[str, Any]:
    """The `quality.run` row of a run's summary."""
    params = {"sources": selection.sources, "since": selection.since, "until": selection.until,
              "force": selection.force, "full": selection.full}
    return run_row(run_id=summary.run_id, flow=summary.flow, started_at=summary.started_at,
                   finished_at=summary.finished_at, status=summary.status, parameters=params,
                   summary=summary.to_json())


def record_summary(con: duckdb.DuckDBPyConnection, summary: SyncSummary, selection: Selection) -> None:
    record_run(con, summary_row(summary, selection))


def record_failed_summary(warehouse: str | os.PathLike[str], summary: SyncSummary, selection: Selection,
                          exc: BaseException, *, lock_timeout_s: float, retention: Any = None) -> None:
    """A failed sync published nothing; record that it failed (in its own transaction)."""
    from warehouse import store

    summary.stage_seconds["error"] = 0.0
    try:
        with store.transaction(warehouse, lock_timeout_s=lock_timeout_s, retention=retention) as con:
            summary.exports.append(ExportReport("", "", "", "failed", message=f"{type(exc).__name__}: {exc}"))
            record_summary(con, summary, selection)
    except Exception:  # noqa: BLE001 - recording the failure must not hide the failure
        pass


def record_unchanged_run(warehouse: str | os.PathLike[str], row: dict[str, Any], *, lock_timeout_s: float) -> None:
    """A run that changed nothing: its row goes to the side file (see module docstring)."""
    from warehouse.store import writer_lock

    with writer_lock(Path(warehouse), timeout_s=lock_timeout_s, run_id=row.get("run_id"), flow=row.get("flow")):
        from warehouse.store import private_umask

        with private_umask(), open(pending_path(warehouse), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


class PublishTimer:
    """How long a run's publish took — the commit of the working copy, the analyst file,
    the officers' reports, the rename, the shared lake's copy where there is one
    (`store.transaction`) — which comes after the run
    wrote its row: `start()` when the row is written, then, passed as the transaction's
    `after_publish`, the run's row again with `stage_seconds["publish"]` (and the total
    with it) goes to the side file, under the writer lock, marked as amending the row
    published; the next transaction replaces that row with it (`fold_pending_runs`),
    and readers prefer it meanwhile (`warehouse.queries`)."""

    def __init__(self, warehouse: str | os.PathLike[str], summary: SyncSummary, selection: Selection) -> None:
        self.warehouse, self.summary, self.selection = warehouse, summary, selection
        self._started: float | None = None

    def start(self) -> None:
        self._started = time.perf_counter()

    def __call__(self) -> None:
        if self._started is None:
            return
        seconds = time.perf_counter() - self._started
        stages = self.summary.stage_seconds
        stages["publish"] = seconds
        stages["total"] = stages.get("total", 0.0) + seconds
        self.summary.finished_at = dt.datetime.now().isoformat(timespec="seconds")
        from warehouse.store import private_umask

        row = summary_row(self.summary, self.selection) | {AMENDS: True}
        with private_umask(), open(pending_path(self.warehouse), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


#: the side-file key of a row that replaces the published row of its run (`PublishTimer`)
AMENDS = "amends"


def pending_runs(warehouse: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of the side file (a torn last line, from a crash mid-append, is skipped)."""
    path = pending_path(warehouse)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            row = json.loads(line)
            if isinstance(row, dict) and all(c in row for c in RUN_COLUMNS):
                rows.append(row)
    return rows


def fold_pending_runs(con: duckdb.DuckDBPyConnection, warehouse: str | os.PathLike[str]) -> int:
    """Move the side file's rows into quality.run (the caller holds the writer lock and
    removes the file after publishing: `discard_pending_runs`)."""
    rows = pending_runs(warehouse)
    for row in rows:
        if row.get(AMENDS):  # the same run, with its publish timed: replaces its row
            con.execute("DELETE FROM quality.run WHERE run_id = ?", [row["run_id"]])
        record_run(con, row)
    return len(rows)


def discard_pending_runs(warehouse: str | os.PathLike[str]) -> None:
    pending_path(warehouse).unlink(missing_ok=True)


def load_pending_runs(con: duckdb.DuckDBPyConnection, warehouse: str | os.PathLike[str]) -> None:
    """On a (read-only) connection: a temp table `pending_run` shaped like quality.run
    with the side file's rows, so queries can read `quality.run UNION ALL pending_run`."""
    con.execute("CREATE OR REPLACE TEMP TABLE pending_run AS SELECT * FROM quality.run LIMIT 0")
    rows = pending_runs(warehouse)
    if rows:
        con.executemany(f"INSERT INTO pending_run ({', '.join(RUN_COLUMNS)}) "
                        f"VALUES ({', '.join('?' for _ in RUN_COLUMNS)})", [[r[c] for c in RUN_COLUMNS] for r in rows])


def record_interrupted_run(warehouse: str | os.PathLike[str], holder: str) -> None:
    """A run that was killed while it held the writer lock (its text was left in the
    lock file): one `interrupted` row in the side file, moved into quality.run by the
    next transaction. Called under the writer lock."""
    import re

    fields = dict(re.findall(r"(\w+)=(\S+)", holder))
    run_id = fields.get("run") if fields.get("run") not in (None, "-") else None
    started = fields.get("since")
    row = run_row(run_id=run_id or f"interrupted-{started or 'unknown'}-{fields.get('pid', '?')}",
                  flow=fields.get("flow") if fields.get("flow") not in (None, "-") else "unknown",
                  started_at=(started or "").replace("T", " ") or dt.datetime.now().isoformat(timespec="seconds"),
                  finished_at=None, status="interrupted",
                  parameters={}, summary={"pid": fields.get("pid"), "lock_text": holder[:200],
                                          "message": "运行被中断（进程被终止），未发布任何更改"})
    from warehouse.store import private_umask

    with private_umask(), open(pending_path(warehouse), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
