"""Prefect flows: `nightly_sync` and `backfill`. Orchestration only.

    connectors (find + read)  →  pipelines (standardize, resolve)  →  warehouse (stage, build, publish)

Every stage is a task (`pull_task`, `read_export_task`, `read_table_task`, `standardize_task`,
`resolve_task`, `build_task`); only the reading tasks retry, and only on I/O errors.
`run_sync` is the whole sync as a plain function: the flows call it with tasks, tests
call it directly (`use_tasks=False`) to stay fast. One sync = one warehouse
transaction: everything it stages and builds is published atomically at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from settings import Settings, load_settings

IO_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError)

#: Prefect defaults for offline machines: no telemetry to the internet, and a patient
#: start of the ephemeral API server on a busy 2-core machine. Environment wins.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def apply_prefect_defaults() -> None:
    import os

    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


apply_prefect_defaults()


# --------------------------------------------------------------------------------------
# results
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
    quality: dict[str, int] = field(default_factory=dict)
    district: str | None = None             # 辖区 in force: 名称（代码）
    district_note: str | None = None        # how it was established (inferred: evidence and confidence)
    district_warning: str | None = None     # the data contradicts the district in force
    lake: dict[str, Any] = field(default_factory=dict)  # warehouse.lake.LakeOutcome of the run, if any

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
                 f"- 预警：" + ("，".join(f"{_alert_zh(k)} {v} 条" for k, v in sorted(self.alerts.items())) or "无"),
                 f"- 质量：" + ("，".join(f"{k} {v}" for k, v in sorted(self.quality.items())) or "无"),
                 f"- 辖区：{self.district or '未确定'}" + (f"；{self.district_note}" if self.district_note else ""),
                 f"- 解析引擎：{self.engine}",
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
# tasks
# --------------------------------------------------------------------------------------
def _retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only when the failure was an I/O error (not bad data)."""
    from connectors.exceptions import ConnectorError

    try:
        state.result()
    except ConnectorError:
        return False
    except IO_ERRORS:
        return True
    except Exception:  # noqa: BLE001 - anything else is not worth retrying
        return False
    return False


class _LazyTask:
    """A stage function that becomes a Prefect task only when called as one: importing
    this module (and running the stages without Prefect, as `residents sync` does when
    no server is configured) never imports Prefect, which costs seconds per command."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]):
        self.fn, self._options, self._task = fn, options, None

    def __call__(self, *args: Any, **kw: Any) -> Any:
        if self._task is None:
            from prefect import task

            self._task = task(**self._options)(self.fn)
        return self._task(*args, **kw)


def _task(**kw: Any) -> Callable[[Callable[..., Any]], _LazyTask]:
    return lambda fn: _LazyTask(fn, kw)


@_task(name="pull")
def pull_task(settings: Settings) -> Any:
    """Fetch new files from the declared file sources into the inbox (`connectors.pull`)."""
    from connectors.pull import pull_sources

    return pull_sources(settings.file_sources(), settings.inbox, archive=settings.resolved_archive(),
                        retention_days=settings.archive_retention_days, env=os.environ)


@_task(name="read_export", retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_on_io)
def read_export_task(export_file: Any, mapping: Any) -> Any:
    from connectors import read_export

    return read_export(export_file, mapping)


@_task(name="read_table", retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_on_io)
def read_table_task(settings: Settings, mapping: Any, since: dt.datetime | None, until: dt.datetime | None) -> Any:
    """Read one SQL table from its system's database. The URL and its password (by
    reference) are resolved here, never passed as a parameter; a locked or unreachable
    database fails within `source_timeout_s` instead of hanging."""
    from connectors.retry import sql_connect_args
    from connectors.sql import open_engine, read_table, source_urls

    url = source_urls(settings.sql_sources(), os.environ)[mapping.source_system]
    engine = open_engine(url, connect_args=sql_connect_args(url.drivername + ":", settings.source_timeout_s))
    try:
        raw = read_table(engine, mapping, since=since)
    finally:
        engine.dispose()
    if until is not None and not raw.frame.empty:
        # backfill window: keep rows whose watermark is within it (ISO text compares in order)
        col = raw.column_for(mapping.watermark)
        keep = raw.frame[col].fillna("") <= until.strftime("%Y-%m-%d %H:%M:%S.%f")
        raw.frame = raw.frame[keep].reset_index(drop=True)
        raw.rows_read = len(raw.frame) + len(raw.skipped)
    return raw


STILL_FAILED = "该文件（相同路径和内容）此前装载失败，仍未更正"

#: connector skip reasons that are not data (counted as skipped, never as persons)
NON_DATA_ROWS = ("total_row", "blank_row")


@_task(name="standardize")
def standardize_task(raw: Any, mapping: Any, district: Any = None, period: str | None = None) -> Any:
    """Standardize a RawRead: rows the reader could not use become rejected rows."""
    from pipelines.standardize import standardize

    unusable = pd.DataFrame(
        [{"source_locator": s.locator, "error_code": f"row_{s.reason}", "detail": s.detail,
          "raw_row": json.dumps(s.raw, ensure_ascii=False, default=str)}
         for s in raw.skipped if s.reason not in NON_DATA_ROWS],
        columns=["source_locator", "error_code", "detail", "raw_row"])
    n_skipped = sum(1 for s in raw.skipped if s.reason in NON_DATA_ROWS)
    cells = pd.DataFrame([{"source_locator": c.locator, "source_column": c.column, "raw_value": c.raw_value,
                           "error_code": c.error_code, "cell": c.cell} for c in raw.rejected_cells],
                         columns=["source_locator", "source_column", "raw_value", "error_code", "cell"])
    return standardize(raw.frame, mapping, unreadable_rows=unusable, rejected_cells=cells, rows_skipped=n_skipped,
                       source_system=raw.source_system, source_object=raw.source_object,
                       district=district, period=period)


@_task(name="resolve_persons")
def resolve_task(lf: pd.DataFrame, facts: pd.DataFrame, decisions: pd.DataFrame, prev_xref: pd.DataFrame,
                 prev_persons: pd.DataFrame, next_sequence: int, model: Any, spark: dict[str, Any] | None = None
                 ) -> Any:
    """`spark`: master, work_dir, partitions (`_spark_options`) to generate and score the
    pairs on Spark (`engines.spark_scorer`); None: all of it here, on DuckDB."""
    from pipelines.resolve import resolve_component

    if not spark:
        return resolve_component(lf, facts, decisions, prev_xref, prev_persons, next_sequence, model)
    with _spark_scorer(spark) as scorer:
        model.scorer = scorer
        try:
            return resolve_component(lf, facts, decisions, prev_xref, prev_persons, next_sequence, model)
        finally:
            model.scorer = None


def _spark_scorer(options: dict[str, Any]) -> Any:
    from engines import spark_scorer

    return spark_scorer(**options)


def _spark_options(settings: Settings) -> dict[str, Any]:
    from engines import work_dir_of

    return {"master": settings.spark_master, "work_dir": str(work_dir_of(settings)),
            "partitions": settings.spark_partitions}


def _resolve_and_build(con: Any, settings: Settings, run_id: str, summary: "SyncSummary", use_tasks: bool,
                       district: Any, *, full: bool, decided: list[str] | None = None,
                       index_current: bool = False) -> None:
    """Resolve persons (locally where the stored model allows, see `_resolve_locally`),
    then rebuild core, then check it (one transaction). `index_current`: nothing was
    staged and the linkage index is complete (an officer's decision alone), so there is
    nothing to refresh."""
    from warehouse import build, decisions

    ts = time.perf_counter()
    if index_current and not full:
        from warehouse import linkage_index as index

        n_mentions, changes = index.mention_count(con), index.IndexChanges([], [], index.no_removals())
    else:
        n_mentions, changes = _refresh_linkage_index(con, district, everything=full)
    next_seq = build.read_previous_resolution(con, ids_only=True)[2]
    linked = None
    on_spark = settings.engine == "spark" and settings.resolution_mode != "deterministic"
    summary.engine = "spark" if on_spark else "duckdb"
    if settings.resolution_mode == "incremental" and not full:
        linked = _resolve_locally(con, settings, run_id, changes, decided or [], n_mentions, next_seq,
                                  _spark_options(settings) if on_spark else None)
    if linked is None:
        from pipelines.linkage import LinkageModel
        from pipelines.resolve import resolve_mentions
        from warehouse import linkage_index as index

        prev_xref, prev_persons, _ = build.read_previous_resolution(con)
        if settings.resolution_mode == "deterministic":
            linked = resolve_mentions(build.read_current_mentions(con), None, None, prev_xref, prev_persons,
                                      next_seq, mode="deterministic")
        else:  # a full run: train on every mention (from the linkage index), re-cluster them all
            linked = _call(resolve_task, use_tasks, index.features(con), index.mention_facts(con),
                           decisions.active_decisions(con), prev_xref, prev_persons, next_seq, LinkageModel(),
                           _spark_options(settings) if on_spark else None)
        build.write_resolution(con, linked.resolution.xref, linked.resolution.merge_log, run_id)
        del prev_xref, prev_persons
    decisions.save_model(con, run_id=run_id, mode=linked.mode, threshold=_threshold(), mentions=n_mentions,
                         settings=linked.model_settings)
    summary.stage_seconds["resolve"] = time.perf_counter() - ts
    ts = time.perf_counter()
    scope = None
    if linked.mode == "incremental":
        exports = {r[0] for r in con.execute("SELECT export_id FROM quality.load_ledger WHERE run_id = ? "
                                             "AND status = 'loaded'", [run_id]).fetchall()}
        scope = build.BuildScope(persons=frozenset(linked.touched_persons), exports=frozenset(exports))
    summary.core_counts = build.build_core(con, grid_households=settings.grid_households, scope=scope)
    decisions.write_candidates(con, linked.candidates, replace=linked.mode != "incremental")
    summary.stage_seconds["build"] = time.perf_counter() - ts
    summary.persons_created = linked.resolution.next_sequence - next_seq
    summary.resolution_mode = linked.mode
    ts = time.perf_counter()
    _check_warehouse(con, settings, run_id, summary, persons_table="_dp" if scope is not None else None)
    summary.stage_seconds["quality"] = time.perf_counter() - ts


def _refresh_linkage_index(con: Any, district: Any, *, everything: bool) -> tuple[int, Any]:
    """What changed since the last resolution, then the linkage features of the mentions
    staged since (all of them with `everything`): (current mentions, the changes)."""
    from pipelines.linkage import linkage_frame
    from warehouse import linkage_index as index

    changes = index.changes(con)
    mentions, relationships, targets = index.stale_inputs(con, everything=everything)
    if targets:
        lf = linkage_frame(mentions, relationships, district=district)
        lf = lf[lf["unique_id"].isin(set(targets))]
        export_of = mentions.set_index("mention_id")["export_id"]
        index.write_features(con, lf, export_of.reindex(lf["unique_id"]), everything=everything)
    else:
        index.write_features(con, None, None)
    return index.mention_count(con), changes


def _resolve_locally(con: Any, settings: Settings, run_id: str, changes: Any, decided: list[str], n_mentions: int,
                     next_seq: int, spark: dict[str, Any] | None = None) -> Any:
    """Resolve only what changed, with the stored model. New mentions are blocked against
    the linkage index and attached to the published persons they match, each person one
    anchor node (`pipelines.resolve.attach_new_mentions`: only new × existing pairs are
    scored). Changed and removed mentions, officers' new decisions, and any group of new
    mentions that would join two persons or that a constraint refuses re-cluster the
    persons they touch in whole (`pipelines.resolve.resolve_component`). None when the
    stored model may not be used (`pipelines.resolve.incremental_obstacle`): a full run.
    `spark`: score the pairs on Spark (`_spark_options`), as the full run does."""
    from pipelines.linkage import LinkageModel
    from pipelines.linkage.comparisons import BLOCKING_RULES
    from pipelines.resolve import (MERGE_LOG_COLUMNS, XREF_COLUMNS, LinkedResolution, Resolution,
                                   attach_new_mentions, incremental_obstacle, resolve_component)
    from warehouse import decisions, linkage_index as index

    model = LinkageModel.from_settings(decisions.latest_model_settings(con))
    has_xref = con.execute("SELECT count(*) > 0 FROM core.person_xref").fetchall()[0][0]
    why = incremental_obstacle(n_mentions, 1 if has_xref else 0, model.training if model.settings else None,
                               min_mentions=settings.incremental_min_mentions,
                               max_drift=settings.incremental_max_growth, citizen_ids=index.citizen_id_count(con),
                               max_mention_growth=settings.incremental_max_mention_growth)
    if why and not (decided and not changes and model.settings):  # a decision alone is applied locally
        return None
    changed_persons = set(index.person_of(con, changes.changed + decided)["person_id"]) | set(
        changes.removed["person_id"])
    core_ids = sorted(set(changes.dirty) | set(decided) | set(index.mentions_of_persons(con, changed_persons)))
    if not core_ids:
        return _nothing_to_resolve(model, next_seq, changes, con, run_id)
    from contextlib import nullcontext

    # on the Spark engine the pairs of the local re-clustering are scored there too; the
    # session starts only now that there is something to score
    with (_spark_scorer(spark) if spark else nullcontext()) as scorer:
        model.scorer = scorer
        rules = [b.sql for b in BLOCKING_RULES] + ["l.cid = r.cid", "l.doc_no = r.doc_no"]
        tf_cols = model.tf_columns()
        candidates = index.blocked_with(con, core_ids, rules)
        partners = index.decision_partners(con, core_ids)
        lf_core = index.features(con, core_ids)
        lf_cand = index.features(con, candidates)
        model.tf_tables = index.term_frequencies(con, tf_cols, [*core_ids, *candidates])
        cand_person = index.person_of(con, [*candidates, *partners]).set_index("mention_id")["person_id"]
        all_decisions = decisions.active_decisions(con)
        # fast path: persons that only gain mentions are anchors; the rest is re-clustered whole
        hard = set(core_ids) - (set(changes.new) - set(decided))
        att = attach_new_mentions(model, lf_core, lf_cand, cand_person,
                                  index.persons(con, set(cand_person.reindex(candidates).dropna())), hard, all_decisions)
        hard_persons = att.hard_persons | set(cand_person.reindex(partners).dropna())
        hard_ids = sorted(att.hard_mentions | set(index.mentions_of_persons(con, hard_persons)))
        facts = index.mention_facts(con, att.links["mention_id"])
        simple, next_seq = _number_new_persons(att.links, facts, next_seq)
        joined = index.person_of(con, index.mentions_of_persons(con, set(att.joined["person_id"])))
        joined = joined[joined["match_method"] == "singleton"].drop(columns=["match_method", "match_probability"])
        joined = joined.merge(att.joined, on="person_id")
        parts, log, review = [simple, joined], pd.DataFrame(columns=MERGE_LOG_COLUMNS), att.review
        touched = set(simple["person_id"]) | set(att.joined["person_id"])
        removed = changes.removed
        if hard_ids or len(removed):
            lf = index.features(con, hard_ids)
            model.tf_tables = index.term_frequencies(con, tf_cols, hard_ids)
            prev_xref = index.person_of(con, [*hard_ids, *removed["mention_id"]])
            prev_persons = index.persons(con, set(prev_xref["person_id"]))
            comp = resolve_component(lf, index.mention_facts(con, hard_ids), all_decisions, prev_xref, prev_persons,
                                     next_seq, model)
            parts.append(comp.resolution.xref)
            log, next_seq = comp.resolution.merge_log, comp.resolution.next_sequence
            review = pd.concat([review, comp.candidates], ignore_index=True)
            touched |= comp.touched_persons
        xref = pd.concat([p[XREF_COLUMNS] for p in parts if len(p)], ignore_index=True) if any(
            len(p) for p in parts) else pd.DataFrame(columns=XREF_COLUMNS)
        index.write_local_resolution(con, xref, removed["mention_id"], log, run_id)
        return LinkedResolution(Resolution(xref, log, next_seq), review, model.stored_settings(), "incremental",
                                touched_persons=frozenset(touched))


def _number_new_persons(links: pd.DataFrame, facts: pd.DataFrame, next_seq: int) -> tuple[pd.DataFrame, int]:
    """Person ids for attached mentions: the anchor's, or new ones for new clusters, issued
    in the order of each cluster's earliest mention (export date, then mention id) as a
    full run issues them."""
    from pipelines.resolve import format_person_id

    out = links.merge(facts[["mention_id", "export_date"]], on="mention_id", how="left")
    fresh = out[out["person_id"].isna()]
    first = (fresh.assign(export_date=pd.to_datetime(fresh["export_date"]))
             .sort_values(["export_date", "mention_id"], na_position="last")
             .drop_duplicates("cluster_label")["cluster_label"])
    ids = {label: format_person_id(next_seq + i) for i, label in enumerate(first)}
    out["person_id"] = out["person_id"].where(out["person_id"].notna(), out["cluster_label"].map(ids))
    return out.drop(columns=["export_date"]), next_seq + len(ids)


def _nothing_to_resolve(model: Any, next_seq: int, changes: Any, con: Any, run_id: str) -> Any:
    """Only removals: their xref rows go, their persons retire when nothing is left."""
    from pipelines.resolve import LinkedResolution, assign_person_ids
    from warehouse import linkage_index as index

    empty = pd.DataFrame(columns=["mention_id", "cluster_label", "match_method", "match_probability"])
    facts = pd.DataFrame(columns=["mention_id", "export_date", "citizen_id"])
    res = assign_person_ids(facts, empty, changes.removed, index.persons(con, set(changes.removed["person_id"])),
                            next_seq)
    index.write_local_resolution(con, res.xref, changes.removed["mention_id"], res.merge_log, run_id)
    return LinkedResolution(res, pd.DataFrame(), model.stored_settings(), "incremental",
                            touched_persons=frozenset(changes.removed["person_id"].astype(str)))


def _threshold() -> float:
    from pipelines.linkage import DEFAULT_THRESHOLD

    return DEFAULT_THRESHOLD


# --------------------------------------------------------------------------------------
# the sync
# --------------------------------------------------------------------------------------
def _call(task_obj: Any, use_tasks: bool, *args: Any, **kw: Any) -> Any:
    return task_obj(*args, **kw) if use_tasks else task_obj.fn(*args, **kw)


def _lake_target(settings: Settings) -> Any:
    """The shared DuckLake to publish to (`[lakehouse]`), its password resolved by reference;
    None when no lakehouse is configured. A missing password does not stop the sync: the
    lake publish then fails alone, saying which reference is missing."""
    if settings.lakehouse is None:
        return None
    from warehouse.lake import LakeTarget

    return LakeTarget.from_config(settings.lakehouse, os.environ)


def _lake_recorder(summary: SyncSummary) -> Callable[[Any], None]:
    def record(outcome: Any) -> None:
        summary.lake = outcome.to_json()

    return record


def _meta_for_file(ef: Any) -> Any:
    from warehouse.load import ExportMeta

    return ExportMeta(
        source_system=ef.source_system, mapping=ef.mapping, source_object=ef.source_object,
        path=str(ef.path), content_sha256=ef.content_sha256, size_bytes=ef.size_bytes,
        export_date=ef.export_date, period=ef.period, is_correction=ef.is_correction)


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url


def configure_warehouse(settings: Settings) -> None:
    """What the settings say about the warehouse's protection, given to the warehouse
    layer once: owner-only files, and the officer warehouse's encryption key (resolved
    here from RESIDENTS_WAREHOUSE_KEY or `warehouse_key_file`; never a flow parameter)."""
    from warehouse import store

    store.set_owner_only(settings.owner_only_files)
    store.set_key(settings.warehouse, settings.resolved_warehouse_key())


def analyst_publisher(settings: Settings) -> Any:
    """The hook that writes the analysts' de-identified file with every publish."""
    from warehouse.analyst import publisher

    return publisher(settings.resolved_analyst_warehouse(), settings.resolved_pseudonym_key())


def run_sync(settings: Settings, *, flow_name: str = "nightly_sync", selection: Selection = Selection(),
             use_tasks: bool = False, progress: Callable[[str, int, int], None] | None = None,
             fail_before_publish: bool = False) -> SyncSummary:
    """Load what `selection` asks for into the warehouse, resolve, rebuild, publish."""
    from connectors import discover_exports
    from connectors.exceptions import ConnectorError, SourceUnavailableError
    from schemas.mapping import load_mappings, mapping_set, use_mappings_dir
    from warehouse import build, load, store

    configure_warehouse(settings)
    if settings.engine == "spark":
        from engines import require_spark

        require_spark(settings)  # no Java / pyspark: a configuration error now, not after reading
    run_id = dt.datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = SyncSummary(run_id=run_id, flow=flow_name, warehouse=str(settings.warehouse),
                          started_at=dt.datetime.now().isoformat(timespec="seconds"))
    use_mappings_dir(settings.mappings_dir)
    mappings = {m.source_object: m for m in load_mappings()}
    t0 = time.perf_counter()
    for problem in mapping_set().problems:  # a broken mapping fails its department alone
        summary.exports.append(ExportReport(problem.source_system or "unknown", "", Path(problem.path).name, "failed",
                                            message=str(problem)))
    for problem in _call(pull_task, use_tasks, settings).problems:  # a source that fails, fails alone
        summary.exports.append(ExportReport(problem.source_system, "", problem.source_name, "failed",
                                            message=str(problem)))
    discovery = discover_exports(settings.inbox, tuple(mappings.values()))
    files = [f for f in discovery.files if selection.wants(f.source_system, f.export_date)]
    for problem in discovery.problems:
        ctx = getattr(problem, "context", {}) or {}
        summary.exports.append(ExportReport(ctx.get("source_system") or "unknown", "", Path(str(ctx.get("path", ""))).name,
                                            "problem", message=str(problem)))
    summary.stage_seconds["discover"] = time.perf_counter() - t0
    sql_maps = [m for m in mappings.values() if m.format == "sql" and selection.wants(m.source_system, None)
                and m.source_system in settings.sql_sources()]
    if not (selection.force or selection.full) and not _has_work(settings, files, sql_maps, discovery.problems,
                                                                 summary):
        # nothing new: the published warehouse is not copied, touched or rewritten
        summary.status = "unchanged"
        summary.persons_before, summary.alerts = _person_and_alert_counts(settings)
        summary.persons_after = summary.persons_before
        summary.finished_at = dt.datetime.now().isoformat(timespec="seconds")
        summary.stage_seconds["total"] = time.perf_counter() - t0
        from warehouse.runs import record_unchanged_run

        record_unchanged_run(settings.warehouse, _run_row(summary, selection), lock_timeout_s=settings.lock_timeout_s)
        lake = _lake_target(settings)
        if lake is not None:  # the lake may lag behind after a failure: brought up to date
            store.catch_up_lake(settings.warehouse, lake, lock_timeout_s=settings.lock_timeout_s, run_id=run_id,
                                flow=flow_name, on_lake=_lake_recorder(summary))
        return summary

    existed = Path(settings.warehouse).exists()
    try:
        ts = time.perf_counter()
        with store.transaction(settings.warehouse, lock_timeout_s=settings.lock_timeout_s,
                               fail_before_publish=fail_before_publish, run_id=run_id, flow=flow_name,
                               history_days=settings.history_days,
                               before_publish=analyst_publisher(settings), lake=_lake_target(settings),
                               on_lake=_lake_recorder(summary)) as con:
            summary.stage_seconds["open"] = time.perf_counter() - ts  # lock, working copy, migrations
            summary.persons_before = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
            _record_inbox_problems(con, load, run_id, discovery.problems, mappings)
            ts = time.perf_counter()
            district, raw_cache = _establish_district(con, settings, summary, selection, files, sql_maps, mappings,
                                                      use_tasks)
            summary.stage_seconds["district"] = time.perf_counter() - ts
            staged = 0
            superseded = False
            pending_checks: list[Any] = []  # (Deferred expectation results, export id)
            total = len(files) + len(sql_maps)
            t_read = t_std = t_stage = 0.0
            for i, ef in enumerate(files, 1):
                if progress:
                    progress(ef.source_object, i, total)
                mapping = mappings[ef.mapping]
                meta = _meta_for_file(ef)
                if selection.force:
                    load.reset_exports(con, mapping, load.loaded_exports_named(con, meta))
                elif load.find_loaded(con, meta) is not None:
                    summary.exports.append(ExportReport(ef.source_system, ef.mapping, ef.source_object, "duplicate",
                                                        message="内容未变，已跳过 / same content already loaded"))
                    continue
                elif load.find_failed(con, meta) is not None:
                    summary.exports.append(ExportReport(ef.source_system, ef.mapping, ef.source_object, "failed",
                                                        message=STILL_FAILED))
                    continue
                ts = time.perf_counter()
                try:
                    raw = raw_cache.pop(str(ef.path), None) or _call(read_export_task, use_tasks, ef, mapping)
                except ConnectorError as exc:  # a bad or unreadable file fails alone, reported
                    _record_failed(con, load, summary, run_id, meta, exc)
                    continue
                t_read += time.perf_counter() - ts
                staged += _stage(con, load, summary, run_id, meta, mapping, raw, use_tasks, district, timers := {},
                                 pending_checks)
                t_std += timers.get("standardize", 0.0)
                t_stage += timers.get("stage", 0.0)
                superseded |= timers.get("superseded", False)
            sql_down: dict[str, Any] = {}  # source system → the fault of its database this run
            if sql_maps:
                for j, mapping in enumerate(sorted(sql_maps, key=lambda m: m.parent is not None), len(files) + 1):
                    if progress:
                        progress(mapping.table or mapping.source_object, j, total)
                    ts = time.perf_counter()
                    since = _sql_since(con, load, mapping, selection)
                    until = (dt.datetime.combine(selection.until, dt.time.max) if selection.until else None)
                    try:
                        down = sql_down.get(mapping.source_system)
                        if down:  # the database is down: its other tables fail without new retries
                            raise down.for_object(mapping.table)
                        raw = raw_cache.pop(f"sql:{mapping.source_object}", None) or \
                            _read_sql(settings, mapping, since, until, use_tasks)
                    except ConnectorError as exc:  # locked / unreachable after retries: this source fails alone
                        if isinstance(exc, SourceUnavailableError):
                            sql_down.setdefault(mapping.source_system, exc)
                        _record_failed(con, load, summary, run_id,
                                       _sql_meta(mapping, _sql_where(settings, mapping.source_system), since), exc)
                        continue
                    t_read += time.perf_counter() - ts
                    if raw.frame.empty:
                        summary.exports.append(ExportReport(mapping.source_system, mapping.source_object,
                                                            mapping.table or "", "unchanged", message="无新变更"))
                        continue
                    meta = load.ExportMeta(
                        source_system=mapping.source_system, mapping=mapping.source_object,
                        source_object=mapping.table or mapping.source_object, path=raw.metadata["database"],
                        content_sha256=_frame_hash(raw.frame), size_bytes=None,
                        export_date=_as_date(raw.metadata.get("max_watermark")), period=None,
                        watermark_from=since, watermark_to=_as_datetime(raw.metadata.get("max_watermark")))
                    staged += _stage(con, load, summary, run_id, meta, mapping, raw, use_tasks, district,
                                     timers := {}, pending_checks)
                    t_std += timers.get("standardize", 0.0)
                    t_stage += timers.get("stage", 0.0)
            summary.stage_seconds.update(read=t_read, standardize=t_std, stage=t_stage)

            from warehouse.decisions import new_decision_mentions

            decided = new_decision_mentions(con)
            from warehouse.linkage_index import is_complete

            complete = bool(staged) or is_complete(con)
            if staged or selection.force or selection.full or summary.persons_before == 0 or decided or not complete:
                _resolve_and_build(con, settings, run_id, summary, use_tasks, district,
                                   full=selection.full or summary.persons_before == 0, decided=decided,
                                   index_current=not staged and complete)
            _write_expectations(con, run_id, summary, pending_checks)
            summary.persons_after = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
            summary.alerts = _alert_counts(con)
            summary.status = "succeeded"
            summary.finished_at = dt.datetime.now().isoformat(timespec="seconds")
            summary.stage_seconds["total"] = time.perf_counter() - t0
            _record_run(con, summary, selection)
    except Exception as exc:
        summary.status = "failed"
        summary.finished_at = dt.datetime.now().isoformat(timespec="seconds")
        from warehouse.exceptions import WarehouseBusyError

        from settings import ConfigError

        # a configuration refused before anything was loaded (no [district] and the data
        # cannot tell it) leaves no warehouse behind where there was none
        refused_fresh = isinstance(exc, ConfigError) and summary.persons_before == 0 and not existed
        if not isinstance(exc, WarehouseBusyError) and not fail_before_publish and not refused_fresh:
            _record_failed_run(settings, summary, selection, exc)
        raise
    return summary


def _stage(con: Any, load: Any, summary: SyncSummary, run_id: str, meta: Any, mapping: Any, raw: Any,
           use_tasks: bool, district: Any, timers: dict[str, float], pending_checks: list[Any]) -> int:
    ts = time.perf_counter()
    from pipelines.expectations import validate_export
    from pipelines.parallel import Deferred
    from warehouse import quality

    try:  # pure computation on this export: a failure here fails this export alone
        std = _call(standardize_task, use_tasks, raw, mapping, district, meta.period)
        timers["standardize"] = time.perf_counter() - ts
    except Exception as exc:  # noqa: BLE001 - reported with its type, nothing staged
        from pipelines.exceptions import ExportProcessingError

        _record_failed(con, load, summary, run_id, meta, ExportProcessingError(meta.source_object, exc))
        return 0
    # the export's suite runs on another core while the run goes on; collected at the end
    checks = Deferred(validate_export, std.records, mapping)
    ts = time.perf_counter()
    export_id = load.next_export_id(con)
    old_ids = load.superseded_exports(con, meta, mapping)
    load.supersede(con, mapping, old_ids, export_id)
    # a correction replaces what was said before: re-resolve everything, not just the new
    timers["superseded"] = bool(old_ids) or meta.is_correction
    message = "；".join(w.message for w in raw.warnings) or None
    load.stage_export(con, export_id=export_id, run_id=run_id, meta=meta, mapping=mapping,
                      records=std.records, mentions=std.mentions, relationships=std.relationships,
                      issues=std.issues, addresses=std.addresses, rows_read=std.rows_read, rows_rejected=std.rows_rejected,
                      rows_skipped=std.rows_skipped, message=message)
    pending_checks.append((checks, export_id))
    quality.write_export_findings(con, run_id=run_id, export_id=export_id, source_system=meta.source_system,
                                  source_object=meta.source_object, warnings=[w.to_dict() for w in raw.warnings])
    timers["stage"] = time.perf_counter() - ts
    summary.exports.append(ExportReport(
        meta.source_system, meta.mapping, meta.source_object, "loaded", rows_read=std.rows_read,
        rows_accepted=std.rows_accepted, rows_rejected=std.rows_rejected, rows_skipped=std.rows_skipped,
        values_rejected=std.values_rejected, mentions=len(std.mentions), message=message))
    return 1


def _write_expectations(con: Any, run_id: str, summary: SyncSummary, pending: list[Any]) -> None:
    """The exports' expectation results, collected from where they ran (`_stage`); the
    stage time is the wait for them, not their own run time."""
    from warehouse import quality

    ts = time.perf_counter()
    for checks, export_id in pending:
        try:
            results = checks.result()
        except Exception as exc:  # noqa: BLE001 - the export stays loaded; its checks say they could not run
            from pipelines.expectations import suite_failure

            results = suite_failure(exc)
        quality.write_expectation_results(con, results, run_id=run_id, export_id=export_id)
    if pending:
        summary.stage_seconds["expectations"] = time.perf_counter() - ts


def _record_failed(con: Any, load: Any, summary: SyncSummary, run_id: str, meta: Any, exc: BaseException) -> None:
    """One export or source that failed alone: a failed ledger row and the run's report.
    A transient fault (unavailable, program error) is tried again by the next run."""
    load.record_failed_export(con, export_id=load.next_export_id(con), run_id=run_id, meta=meta, message=str(exc),
                              remember=not getattr(exc, "transient", False))
    summary.exports.append(ExportReport(meta.source_system, meta.mapping, meta.source_object, "failed",
                                        message=str(exc)))


def _read_sql(settings: Settings, mapping: Any, since: Any, until: Any, use_tasks: bool) -> Any:
    """One SQL table, retried with backoff while the database is locked or unreachable."""
    from connectors.retry import with_retries

    return with_retries(lambda: _call(read_table_task, use_tasks, settings, mapping, since, until),
                        source_system=mapping.source_system, source_object=mapping.table,
                        where=_sql_where(settings, mapping.source_system), delays=settings.source_retry_delays_s)


def _sql_where(settings: Settings, system: str) -> str:
    """The database of a source system, as shown in messages and the ledger (no password)."""
    source = settings.sql_sources().get(system)
    return _redact_url(source) if isinstance(source, str) else (source.redacted_url if source else "")


def _sql_meta(mapping: Any, url: str, since: Any) -> Any:
    from warehouse.load import ExportMeta

    return ExportMeta(source_system=mapping.source_system, mapping=mapping.source_object,
                      source_object=mapping.table or mapping.source_object, path=_redact_url(url),
                      content_sha256="", size_bytes=None, export_date=None, period=None,
                      watermark_from=since)


def _has_work(settings: Settings, files: list[Any], sql_maps: list[Any], problems: list[Any],
              summary: SyncSummary) -> bool:
    """Whether a sync would change the warehouse: an export not in the ledger, a new
    inbox problem, new rows in a SQL source or an officer's decision not applied yet.
    Asked on a read-only connection, so a sync with nothing to do costs only discovery
    (hashing the inbox) and never copies the warehouse. Files that failed before and
    are still uncorrected are reported in `summary` (as a sync that runs reports them)."""
    from warehouse import load, store
    from warehouse.decisions import decisions_changed_since_last_run

    if not settings.warehouse.exists():
        return True
    con = store.connect_read_only(settings.warehouse)
    try:
        from warehouse.migrations import CURRENT_VERSION, current_version

        if current_version(con) < CURRENT_VERSION:
            return True  # an older warehouse: migrate it (and fill what the new version keeps)
        still_failed = []
        for ef in files:
            meta = _meta_for_file(ef)
            if load.find_loaded(con, meta) is None:
                if load.find_failed(con, meta) is None:
                    return True
                still_failed.append(ExportReport(ef.source_system, ef.mapping, ef.source_object, "failed",
                                                 message=STILL_FAILED))
        for problem in problems:
            path = Path(str(getattr(problem, "path", "") or ""))
            if path.is_file() or path.is_symlink():
                digest, _size = _problem_key(problem, path)
                if not con.execute("SELECT count(*) FROM quality.load_ledger WHERE content_sha256 = ? "
                                   "AND path = ? AND status = 'failed'", [digest, str(path)]).fetchall()[0][0]:
                    return True
        if decisions_changed_since_last_run(con):
            return True
        watermarks = {m.source_object: load.last_watermark(con, m.source_object) for m in sql_maps}
    finally:
        con.close()
    from connectors.exceptions import ConnectorError
    from connectors.retry import sql_connect_args, with_retries
    from connectors.sql import count_changed, open_engine, source_urls

    try:
        sql_urls = source_urls(settings.sql_sources(), os.environ) if sql_maps else {}
    except ConnectorError:
        return True  # a missing credential: the sync runs and records the source as failed
    for system in dict.fromkeys(m.source_system for m in sql_maps):
        url = sql_urls[system]
        engine = open_engine(url, connect_args=sql_connect_args(url.drivername + ":", settings.source_timeout_s))
        try:
            if any(with_retries(lambda m=m: count_changed(engine, m, since=watermarks[m.source_object]),
                                source_system=m.source_system, source_object=m.table,
                                where=_sql_where(settings, system), delays=settings.source_retry_delays_s)
                   for m in sql_maps if m.source_system == system):
                return True
        except ConnectorError:
            return True  # the sync runs, retries the reads and records the source as failed
        finally:
            engine.dispose()
    summary.exports += still_failed
    return False


def _alert_counts(con: Any) -> dict[str, int]:
    return dict(con.execute("SELECT alert_kind, count(*) FROM core.alert GROUP BY 1 ORDER BY 1").fetchall())


def _person_and_alert_counts(settings: Settings) -> tuple[int, dict[str, int]]:
    from warehouse import store

    con = store.connect_read_only(settings.warehouse)
    try:
        persons = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
        return persons, _alert_counts(con)
    finally:
        con.close()


def _problem_key(problem: Any, path: Path) -> tuple[str, int | None]:
    """The ledger key of a misplaced file: its content's hash; for a link that leaves the
    inbox, a hash of the link's own text (its target is never opened, not even hashed)."""
    from connectors.discovery import content_key
    from connectors.exceptions import OutsideInboxError

    if isinstance(problem, OutsideInboxError) or path.is_symlink() and not path.is_file():
        import hashlib

        return hashlib.sha256(b"symlink:" + os.fsencode(os.readlink(path))).hexdigest(), None
    return content_key(path)


def _record_inbox_problems(con: Any, load: Any, run_id: str, problems: list[Any], mappings: dict[str, Any]) -> None:
    """Files discovery could not place (wrong folder, unrecognised name, bad date) get a
    failed ledger row naming the problem, once per content."""

    for problem in problems:
        path = Path(str(getattr(problem, "path", "") or ""))
        if not (path.is_file() or path.is_symlink()):
            continue
        name = path.name
        mapping = next((m for m in mappings.values() if m.file_prefixes and m.matches_file(name)), None)
        digest, size = _problem_key(problem, path)
        meta = load.ExportMeta(source_system=getattr(problem, "source_system", None) or "unknown",
                               mapping=mapping.source_object if mapping else "", source_object=name, path=str(path),
                               content_sha256=digest, size_bytes=size, export_date=None, period=None)
        if load.find_failed(con, meta) is None:
            load.record_failed_export(con, export_id=load.next_export_id(con), run_id=run_id, meta=meta,
                                      message=str(problem))


def _check_warehouse(con: Any, settings: Settings, run_id: str, summary: SyncSummary, *,
                     persons_table: str | None = None) -> None:
    """After the build, in the same transaction: the warehouse invariants as aggregate SQL
    (quality.expectation_result) and the cross-source findings (quality.finding)."""
    from warehouse import quality

    results = quality.check_invariants(con, run_id, row_count_change_threshold=settings.row_count_change_threshold)
    quality.write_expectation_results(con, results, run_id=run_id)
    findings = quality.refresh_cross_source_findings(con, run_id, persons_table=persons_table)
    failed = results[~results["success"].astype(bool)]
    summary.quality = {"warehouse_checks": len(results), "warehouse_checks_failed": len(failed),
                       **{f"finding:{k}": v for k, v in findings.items()}}


def _district_context(settings: Settings, con: Any = None) -> Any:
    """The district in force: the configured `[district]`, else the one stored in the
    warehouse (inferred by an earlier sync), else None."""
    from pipelines.normalize.address import DistrictContext

    if settings.district.is_configured:
        return _configured_district(settings)
    if con is not None:
        from warehouse import district as wdistrict

        row = wdistrict.current(con)
        if row:
            return DistrictContext(row["province"], row["city"], row["county"], row["county_code"])
    return None


def _configured_district(settings: Settings) -> Any:
    """`[district]` as a DistrictContext with its codes; a district the division table
    does not know (or cannot tell apart) is a configuration error."""
    from pipelines.normalize import address_rules
    from pipelines.normalize.address import DistrictContext
    from settings import ConfigError

    d = settings.district
    ctx = DistrictContext(province=d.province, city=d.city, county=d.county, county_code=d.county_code)
    code = ctx.codes()[2]
    if code is None:
        raise ConfigError("invalid_value", key="district", value=d.county_code or d.county or d.city or d.province,
                          detail="区划表（民政部 2025）中找不到唯一的县级区划：请写县级六位代码 county_code，"
                                 "如 county_code = \"150203\"")
    g = address_rules.gazetteer()
    path = g.path(code)
    if d.county_code and d.county and g.by_code[code].name != d.county and d.county not in (
            address_rules.short_name(g.by_code[code].name) or "",):
        raise ConfigError("invalid_value", key="district.county", value=d.county,
                          detail=f"与 county_code {code}（{g.by_code[code].name}）不符")
    name = lambda lv: g.by_code[path[lv]].name if lv in path else None  # noqa: E731
    return DistrictContext(name(1), name(2), name(3), code)


def _add_evidence(inputs: Any, raw: Any, mapping: Any) -> None:
    """An export's district evidence; an export whose columns cannot even be mapped gives
    none (its load fails alone later, with its own message)."""
    try:
        inputs.add_export(raw.frame, mapping)
    except Exception:  # noqa: BLE001 - reported by the load of this export
        pass


#: raw exports read for the district evidence are kept for the load up to this many rows
#: (beyond, they are read again: a first sync of a million residents does not hold them all)
RAW_CACHE_ROWS = 200_000


def _establish_district(con: Any, settings: Settings, summary: SyncSummary, selection: Selection, files: list[Any],
                        sql_maps: list[Any], mappings: dict[str, Any], use_tasks: bool) -> tuple[Any, dict[str, Any]]:
    """The district this sync completes addresses with, and the raw exports already read.

    The new exports' address, township and ID columns are evidence (`pipelines.district`).
    Configured `[district]` wins; else the district stored by an earlier sync; else it is
    inferred from the evidence and stored — or, when the evidence is scarce or ambiguous,
    the sync stops with a `ConfigError` asking for `[district]` (nothing is staged).
    A district in force that the evidence contradicts is a warning (summary, report)."""
    from connectors.exceptions import ConnectorError
    from pipelines.district import DistrictInputs, check_configured, infer_district
    from settings import ConfigError
    from warehouse import district as wdistrict
    from warehouse import load

    stored = wdistrict.current(con)
    inputs = DistrictInputs()
    cache: dict[str, Any] = {}
    cached_rows = 0
    read_any = False

    for ef in files:
        meta = _meta_for_file(ef)
        if not selection.force and (load.find_loaded(con, meta) is not None or load.find_failed(con, meta) is not None):
            continue
        try:
            raw = _call(read_export_task, use_tasks, ef, mappings[ef.mapping])
        except ConnectorError:
            continue  # the load reads it again and records the failure
        except OSError:
            continue
        _add_evidence(inputs, raw, mappings[ef.mapping])
        read_any = True
        if cached_rows + len(raw.frame) <= RAW_CACHE_ROWS:
            cache[str(ef.path)] = raw
            cached_rows += len(raw.frame)

    def read_sql_too() -> None:
        nonlocal read_any, cached_rows
        for mapping in sql_maps:
            until = dt.datetime.combine(selection.until, dt.time.max) if selection.until else None
            try:
                raw = _read_sql(settings, mapping, _sql_since(con, load, mapping, selection), until, use_tasks)
            except Exception:  # noqa: BLE001 - the load reads it again and records the failure
                continue
            _add_evidence(inputs, raw, mapping)
            read_any = read_any or not raw.frame.empty
            cache[f"sql:{mapping.source_object}"] = raw
            cached_rows += len(raw.frame)

    configured = settings.district.is_configured
    if not configured and stored is None:
        if summary.persons_before:  # loaded before the district was recorded: what it holds is evidence too
            addresses, ids = wdistrict.staged_values(con)
            inputs.addresses.append(pd.Series(addresses, dtype=object))
            inputs.citizen_ids.append(pd.Series(ids, dtype=object))
            read_any = read_any or bool(addresses or ids)
        inference = infer_district(inputs.evidence())
        if not inference.is_decided and sql_maps:
            read_sql_too()
            inference = infer_district(inputs.evidence())
        if not inference.is_decided:
            if not read_any:
                return None, cache  # nothing to stage: nothing to complete (the next sync infers)
            raise ConfigError("district_unknown", detail=inference.message_zh())
        ctx = inference.context()
        row = inference.to_row()
        wdistrict.record(con, run_id=summary.run_id, method="inferred", **row)
        summary.district = f"{inference.label}（{inference.county_code}）"
        summary.district_note = inference.message_zh()
        return ctx, cache

    evidence = inputs.evidence()
    if configured:
        ctx = _configured_district(settings)
        method, note = "configured", "辖区按配置文件 [district]"
    else:
        from pipelines.normalize.address import DistrictContext

        ctx = DistrictContext(stored["province"], stored["city"], stored["county"], stored["county_code"])
        method = stored["method"]
        note = "辖区沿用仓库中已存的" + ("推断结果" if method == "inferred" else "配置")
    warning = check_configured(ctx, evidence) if read_any else None
    label = "".join(x for x in (ctx.province, ctx.city, ctx.county) if x)
    summary.district = f"{label}（{ctx.county_code}）"
    summary.district_note = note
    summary.district_warning = warning
    changed = stored is None or stored["county_code"] != ctx.county_code or stored["method"] != method
    if changed or warning:
        wdistrict.record(con, run_id=summary.run_id, method=method, county_code=ctx.county_code,
                         province=ctx.province, city=ctx.city, county=ctx.county,
                         confidence=stored["confidence"] if (stored and not configured) else None,
                         share=stored["share"] if (stored and not configured) else None,
                         evidence_records=int(round(float(evidence["records"].sum()))) if len(evidence) else 0,
                         detail=note, warning=warning)
    return ctx, cache


def _sql_since(con: Any, load: Any, mapping: Any, selection: Selection) -> dt.datetime | None:
    if selection.force:
        return dt.datetime.combine(selection.since, dt.time.min) - dt.timedelta(microseconds=1) \
            if selection.since else None
    return load.last_watermark(con, mapping.source_object)


def _frame_hash(frame: pd.DataFrame) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(frame.astype(str), index=False).values.tobytes())
    return h.hexdigest()


def _as_datetime(v: Any) -> dt.datetime | None:
    if v is None or v == "":
        return None
    ts = pd.to_datetime(v, errors="coerce")
    return None if pd.isna(ts) else ts.to_pydatetime()


def _as_date(v: Any) -> dt.date | None:
    d = _as_datetime(v)
    return d.date() if d else None


def _run_row(summary: SyncSummary, selection: Selection) -> dict[str, Any]:
    from warehouse.runs import run_row

    params = {"sources": selection.sources, "since": selection.since, "until": selection.until,
              "force": selection.force, "full": selection.full}
    return run_row(run_id=summary.run_id, flow=summary.flow, started_at=summary.started_at,
                   finished_at=summary.finished_at, status=summary.status, parameters=params,
                   summary=summary.to_json())


def _record_run(con: Any, summary: SyncSummary, selection: Selection) -> None:
    from warehouse.runs import record_run

    record_run(con, _run_row(summary, selection))


def _record_failed_run(settings: Settings, summary: SyncSummary, selection: Selection, exc: BaseException) -> None:
    """A failed sync published nothing; record that it failed (in its own transaction)."""
    from warehouse import store

    summary.stage_seconds["error"] = 0.0
    try:
        with store.transaction(settings.warehouse, lock_timeout_s=settings.lock_timeout_s,
                               history_days=settings.history_days) as con:
            summary.exports.append(ExportReport("", "", "", "failed", message=f"{type(exc).__name__}: {exc}"))
            _record_run(con, summary, selection)
    except Exception:  # noqa: BLE001 - recording the failure must not hide the failure
        pass


# --------------------------------------------------------------------------------------
# flows
# --------------------------------------------------------------------------------------
def _publish_artifact(summary: SyncSummary) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=summary.markdown(), key=f"sync-{summary.flow.replace('_', '-')}",
                             description=f"{summary.flow} {summary.run_id}")


#: Flow parameters are stored in the Prefect database (flow_run.parameters) and shown in
#: its UI, so they carry no secret: database URLs (with their passwords) and keys are
#: passed by reference and resolved inside the run, from the settings file, the
#: environment (RESIDENTS_FAMILY_PLANNING_URL, a source's `url_env`, RESIDENTS_WAREHOUSE_KEY)
#: or a key file.
def _nightly_sync(inbox: str | None = None, warehouse: str | None = None, config_file: str | None = None,
                  full: bool = False, engine: str | None = None, spark_master: str | None = None) -> dict[str, Any]:
    """Load every export not loaded yet (all sources), resolve, rebuild, publish."""
    settings = load_settings(config_file, inbox=inbox, warehouse=warehouse, engine=engine, spark_master=spark_master)
    print(f"每晚同步开始：{settings.inbox} → {settings.warehouse}")
    summary = sync(settings, selection=Selection(full=full), use_prefect=True)
    print(f"每晚同步结束 {summary.headline_zh()}")
    return summary.to_json()


def _backfill(source: str, since: dt.date, until: dt.date, inbox: str | None = None, warehouse: str | None = None,
              config_file: str | None = None) -> dict[str, Any]:
    """Reload one source's exports dated in [since, until] (idempotent)."""
    settings = load_settings(config_file, inbox=inbox, warehouse=warehouse)
    return sync(settings, flow_name="backfill", selection=Selection(sources=(source,), since=since, until=until,
                                                                     force=True), use_prefect=True).to_json()


#: the Prefect flows, built from the functions above on first access (module __getattr__)
#: so that importing this module does not import Prefect. Their entrypoints are
#: `flows.py:nightly_sync` and `flows.py:backfill`, which a served deployment imports.
_FLOWS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "nightly_sync": (_nightly_sync, {"name": "nightly_sync", "log_prints": True}),
    "backfill": (_backfill, {"name": "backfill", "log_prints": True}),
}


def __getattr__(name: str) -> Any:
    if name not in _FLOWS:
        raise AttributeError(f"module 'flows' has no attribute {name!r}")
    from prefect import flow

    fn, options = _FLOWS[name]
    fn.__name__ = fn.__qualname__ = name
    built = flow(**options)(fn)
    globals()[name] = built
    return built


def sync(settings: Settings, *, flow_name: str = "nightly_sync", selection: Selection = Selection(),
         use_prefect: bool = False, progress: Callable[[str, int, int], None] | None = None) -> SyncSummary:
    """One sync and what follows it (reports; the run's Prefect artifact inside a flow run).
    Outside Prefect (`use_prefect=False`) the same stages run as plain functions."""
    summary = run_sync(settings, flow_name=flow_name, selection=selection, use_tasks=use_prefect, progress=progress)
    if use_prefect:
        _publish_artifact(summary)
    _after_sync(settings, summary)
    return summary


def _after_sync(settings: Settings, summary: SyncSummary) -> None:
    """Hooks that run after a published sync: the officers' reports (problem lists per
    department and the HTML summary) in `settings.resolved_reports_dir()`."""
    from pipelines.errors import advice
    from warehouse.reports import write_reports

    if summary.status != "succeeded":
        return
    try:
        paths = write_reports(settings.warehouse, settings.resolved_reports_dir(), advice=advice)
        print(f"质量报告已写入 {settings.resolved_reports_dir()}（{len(paths)} 个文件）")
    except Exception as exc:  # noqa: BLE001 - the load is published; a report failure is reported, not fatal
        print(f"质量报告生成失败：{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------
# serving the nightly deployment
# --------------------------------------------------------------------------------------
def nightly_deployment_parameters(settings: Settings, config_file: str | None) -> dict[str, Any]:
    """No URL and no key: the served flow resolves them from the settings file and the
    environment of `residents serve` at each run."""
    return {"inbox": str(settings.inbox.resolve()), "warehouse": str(settings.warehouse.resolve()),
            "config_file": config_file}


def serve_nightly(settings: Settings, *, config_file: str | None = None, start_server: bool = True,
                  console: Any = None, limit: int | None = None) -> None:
    """Serve the nightly deployment on its cron schedule (blocks); see `serving`."""
    import serving

    serving.serve_nightly(settings, __getattr__("nightly_sync"), nightly_deployment_parameters(settings, config_file),
                          start_server=start_server, say=console.print if console else print, limit=limit)


# --------------------------------------------------------------------------------------
# officers' decisions: stored, then applied to the persons they name in the same transaction
# --------------------------------------------------------------------------------------
def apply_decisions(settings: Settings, record: Callable[[Any], Any], *, flow_name: str = "decision") -> SyncSummary:
    """Run `record(con)` (which stores link decisions), re-cluster the persons the new
    decisions name (and those blocked with them), rebuild and publish."""
    from warehouse import store

    configure_warehouse(settings)
    run_id = dt.datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = SyncSummary(run_id=run_id, flow=flow_name, warehouse=str(settings.warehouse),
                          started_at=dt.datetime.now().isoformat(timespec="seconds"))
    t0 = time.perf_counter()
    with store.transaction(settings.warehouse, lock_timeout_s=settings.lock_timeout_s, run_id=run_id,
                           flow=flow_name, history_days=settings.history_days,
                           before_publish=analyst_publisher(settings), lake=_lake_target(settings),
                           on_lake=_lake_recorder(summary)) as con:
        summary.persons_before = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
        record(con)
        from warehouse.decisions import new_decision_mentions

        # a decision re-clusters a few persons: on the embedded engine whatever `engine` says
        # (the same scores; a Spark session would cost more than the work)
        _resolve_and_build(con, settings.model_copy(update={"engine": "duckdb"}), run_id, summary, False,
                           _district_context(settings, con), full=False, decided=new_decision_mentions(con))
        summary.persons_after = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
        summary.alerts = _alert_counts(con)
        summary.status = "succeeded"
        summary.finished_at = dt.datetime.now().isoformat(timespec="seconds")
        summary.stage_seconds["total"] = time.perf_counter() - t0
        _record_run(con, summary, Selection())
    return summary


# --------------------------------------------------------------------------------------
# explanations: warehouse inputs → linkage model → a terminal-sized table per pair
# --------------------------------------------------------------------------------------
def explain_person(settings: Settings, ref_a: str, ref_b: str | None = None) -> list[tuple[str, pd.DataFrame]]:
    """Explanations for a person (its mentions, how each was matched, and the pairwise
    comparison of each mention with the person's first one) or for one pair of mentions,
    using the linkage model stored by the last resolution, on the mentions' rows of the
    linkage index and the name frequencies over all current mentions (so the weights are
    those the run scored with); only the rows involved are read.

    Each comparison frame: 比对项 (comparison), 结果 (the level that applied), m, u and
    权重 (its match weight in bits, log2 of the Bayes factor; the prior row holds the
    prior odds, the total row the sum and, in 结果, the match probability)."""
    from pipelines.linkage import LinkageModel
    from pipelines.linkage.labels_zh import explain_display, records_display
    from warehouse.queries import explain_inputs

    model = LinkageModel.from_settings(None)
    inp = explain_inputs(settings.warehouse, ref_a, ref_b, tf_columns=tuple(model.tf_columns()))
    out: list[tuple[str, pd.DataFrame]] = []
    if inp.person_records is not None:
        out.append((f"{ref_a} 的记录及匹配方式", records_display(inp.person_records)))
    if not inp.pairs:
        return out
    if not inp.model_settings:
        raise ValueError("仓库中没有已训练的匹配模型（确定性解析模式或尚未同步），无法解释匹配权重")
    model = LinkageModel.from_settings(inp.model_settings)
    model.tf_tables = inp.term_frequencies
    for a, b in inp.pairs:
        out.append((f"{a}  ↔  {b}", explain_display(model.explain(inp.features, str(a), str(b)))))
    return out
