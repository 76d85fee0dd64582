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
from pathlib import Path
from typing import Any

import pandas as pd

import district_stage
import export_stage
from runtime import batch_gc
from settings import Settings, load_settings
from warehouse.runs import (ExportReport, PublishTimer, Selection, SyncSummary,  # noqa: F401 - re-exported
                            record_failed_summary, record_summary, summary_row)

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
    """`spark`: master, work_dir, partitions (`engines.spark_options`) to generate and score
    the pairs on Spark (`engines.spark_scorer`); None: all of it here, on DuckDB."""
    from pipelines.resolve import resolve_component

    if not spark:
        return resolve_component(lf, facts, decisions, prev_xref, prev_persons, next_sequence, model)
    from engines import spark_scorer

    with spark_scorer(**spark) as scorer:
        model.scorer = scorer
        try:
            return resolve_component(lf, facts, decisions, prev_xref, prev_persons, next_sequence, model)
        finally:
            model.scorer = None


#: a full resolution of at least this many mentions first stops the worker processes
#: (`pipelines.parallel.release`): below, keeping them for the next sync of the process
#: is worth more than their memory
RELEASE_WORKERS_AT = 100_000


def _resolve_and_build(con: Any, settings: Settings, run_id: str, summary: SyncSummary, use_tasks: bool,
                       district: Any, *, full: bool, decided: list[str] | None = None,
                       index_current: bool = False) -> None:
    """Resolve persons (locally where the stored model allows, see
    `resolution.resolve_locally`), then rebuild core, then check it (one transaction).
    `index_current`: nothing was staged and the linkage index is complete (an officer's
    decision alone), so there is nothing to refresh."""
    import resolution
    from engines import build_sets, spark_options
    from warehouse import build, decisions, load, store

    ts = time.perf_counter()
    exports = load.loaded_by_run(con, run_id)
    if settings.resolved_linkage_memory_limit():  # where the linkage model's databases spill
        store.make_dir(settings.resolved_spill_dir())
    if not full:  # a local run's cache follows what it touches, not the warehouse it reads
        store.bound_memory(con, settings.resolved_incremental_memory_limit())
    if index_current and not full:
        from warehouse import linkage_index as index

        n_mentions, changes = index.mention_count(con), index.IndexChanges([], [], index.no_removals())
    else:
        n_mentions, changes = resolution.refresh_linkage_index(con, district, everything=full, exports=exports)
    next_seq = build.read_previous_resolution(con, ids_only=True)[2]
    linked = None
    on_spark = settings.engine == "spark" and settings.resolution_mode != "deterministic"
    summary.engine = "spark" if on_spark else "duckdb"
    if settings.resolution_mode == "incremental" and not full:
        linked = resolution.resolve_locally(con, settings, run_id, changes, decided or [], n_mentions, next_seq,
                                            spark_options(settings) if on_spark else None)
    if linked is None:
        from pipelines import parallel
        from pipelines.linkage import LinkageModel
        from pipelines.resolve import resolve_mentions
        from warehouse import linkage_index as index

        if n_mentions >= RELEASE_WORKERS_AT:  # their memory goes to the resolution of everyone
            parallel.release()
        store.commit_stage(con)  # the staged exports to the working copy's file, out of memory
        store.bound_memory(con, None)  # everyone is re-clustered and rebuilt: the warehouse's whole bound

        prev_xref, prev_persons, _ = build.read_previous_resolution(con)
        if settings.resolution_mode == "deterministic":
            linked = resolve_mentions(build.read_current_mentions(con), None, None, prev_xref, prev_persons,
                                      next_seq, mode="deterministic")
        else:  # a full run: train on every mention (from the linkage index), re-cluster them all
            inputs = (index.features(con), index.mention_facts(con), decisions.active_decisions(con))
            with store.cache_lent(con):  # the warehouse's memory goes to the resolution meanwhile
                linked = _call(resolve_task, use_tasks, *inputs, prev_xref, prev_persons, next_seq, LinkageModel(),
                               spark_options(settings) if on_spark else None)
            del inputs
        build.write_resolution(con, linked.resolution.xref, linked.resolution.merge_log, run_id)
        del prev_xref, prev_persons
    decisions.save_model(con, run_id=run_id, mode=linked.mode, threshold=resolution.threshold(),
                         mentions=n_mentions, settings=linked.model_settings)
    # the review queue reads only the xref written above: written now, the resolution's
    # frames (a full run's xref of every mention) are not held through the build
    decisions.write_candidates(con, linked.candidates, replace=linked.mode != "incremental")
    mode, touched, summary.persons_created = linked.mode, linked.touched_persons, \
        linked.resolution.next_sequence - next_seq
    del linked
    summary.stage_seconds["resolve"] = time.perf_counter() - ts
    ts = time.perf_counter()
    scope = None
    if mode == "incremental":
        scope = build.BuildScope(persons=frozenset(touched), exports=frozenset(exports),
                                 staging_changed=not index_current)
    # a full build's aggregations over every mention run where the resolution ran
    with build_sets(settings, on_spark=on_spark and scope is None) as (sets, sets_dir):
        summary.build_engine = "spark" if sets is not None else "duckdb"
        summary.core_counts = build.build_core(con, grid_households=settings.grid_households, scope=scope,
                                               sets=sets, sets_dir=sets_dir)
    summary.stage_seconds["build"] = time.perf_counter() - ts
    summary.resolution_mode = mode
    ts = time.perf_counter()
    resolution.check_warehouse(con, settings, run_id, summary, persons_table="_dp" if scope is not None else None)
    summary.stage_seconds["quality"] = time.perf_counter() - ts


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


def configure_warehouse(settings: Settings) -> None:
    """What the settings say about the warehouse's protection and its engines, given to
    the layers once: owner-only files, the officer warehouse's encryption key (resolved
    here from RESIDENTS_WAREHOUSE_KEY or `warehouse_key_file`; never a flow parameter),
    and DuckDB's memory limits for the warehouse connection (`memory_limit`) and the
    linkage model's databases (`linkage_memory_limit`; they spill, beyond it, to a private
    folder next to the warehouse)."""
    from pipelines.linkage.model import set_duckdb_options
    from warehouse import store

    store.set_owner_only(settings.owner_only_files)
    store.set_spare_copies(settings.spare_working_copy)
    store.set_key(settings.warehouse, settings.resolved_warehouse_key())
    limit = settings.resolved_memory_limit()
    store.set_memory_limit(limit)
    # the folder is made (owner-only) when a resolution starts, not here: a warehouse in a
    # folder that cannot be written is reported as such by the transaction
    model_limit = settings.resolved_linkage_memory_limit()
    set_duckdb_options(memory_limit=model_limit,
                       temp_directory=str(settings.resolved_spill_dir()) if model_limit else None)


def _retention(settings: Settings) -> Any:
    """Which snapshots of the published warehouse are kept (`warehouse.history`)."""
    from warehouse.history import Retention

    return Retention(settings.history_days, settings.history_every_publish_days, settings.schedule_timezone)


def _publishing(settings: Settings, summary: SyncSummary, selection: Selection,
                before_publish: Any) -> tuple[PublishTimer, dict[str, Any]]:
    """How a run publishes (`store.transaction`'s keywords): the snapshots it keeps,
    `before_publish` (the analyst file, and a sync's reports), the shared lake, the
    working copy checkpointed beside them after a scoped build, and the publish timed into
    the run's row (start the timer once the row is written)."""
    from warehouse.build import scoped_build

    timer = PublishTimer(settings.warehouse, summary, selection)
    return timer, dict(retention=_retention(settings), before_publish=before_publish, lake=_lake_target(settings),
                       on_lake=_lake_recorder(summary), after_publish=timer, checkpoint_beside=scoped_build)


def analyst_publisher(settings: Settings) -> Any:
    """The hook that writes the analysts' de-identified file with every publish."""
    from warehouse.analyst import publisher

    return publisher(settings.resolved_analyst_warehouse(), settings.resolved_pseudonym_key(),
                     grid_households=settings.grid_households)


@batch_gc
def run_sync(settings: Settings, *, flow_name: str = "nightly_sync", selection: Selection = Selection(),
             use_tasks: bool = False, progress: Callable[[str, int, int], None] | None = None,
             fail_before_publish: bool = False, reports: Any = None) -> SyncSummary:
    """Load what `selection` asks for into the warehouse, resolve, rebuild, publish.
    `reports` (a `warehouse.reports.ReportJob`): stage the officers' reports with the publish."""
    from connectors import discover_exports
    from connectors.discovery import DigestMemo, digest_memo_path
    from schemas.mapping import load_mappings, mapping_set, use_mappings_dir
    from warehouse import compaction, store
    from warehouse.queries import alert_counts, person_and_alert_counts
    from warehouse.reports import alongside

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
    memo_path = digest_memo_path(settings.warehouse)
    memo = DigestMemo.load(memo_path)  # an export is hashed once, not every run
    discovery = discover_exports(settings.inbox, tuple(mappings.values()), memo=memo)
    memo.save(memo_path)
    files = [f for f in discovery.files if selection.wants(f.source_system, f.export_date)]
    for problem in discovery.problems:
        ctx = getattr(problem, "context", {}) or {}
        summary.exports.append(ExportReport(ctx.get("source_system") or "unknown", "", Path(str(ctx.get("path", ""))).name,
                                            "problem", message=str(problem)))
    summary.stage_seconds["discover"] = time.perf_counter() - t0
    sql_maps = [m for m in mappings.values() if m.format == "sql" and selection.wants(m.source_system, None)
                and m.source_system in settings.sql_sources()]
    if not (selection.force or selection.full) and not export_stage.has_work(settings, files, sql_maps,
                                                                              discovery.problems, summary):
        # nothing new: the published warehouse is not copied, touched or rewritten
        summary.status = "unchanged"
        summary.persons_before, summary.alerts = person_and_alert_counts(settings.warehouse)
        summary.persons_after = summary.persons_before
        summary.finished_at = dt.datetime.now().isoformat(timespec="seconds")
        summary.stage_seconds["total"] = time.perf_counter() - t0
        from warehouse.runs import record_unchanged_run

        record_unchanged_run(settings.warehouse, summary_row(summary, selection),
                             lock_timeout_s=settings.lock_timeout_s)
        lake = _lake_target(settings)
        if lake is not None:  # the lake may lag behind after a failure: brought up to date
            store.catch_up_lake(settings.warehouse, lake, lock_timeout_s=settings.lock_timeout_s, run_id=run_id,
                                flow=flow_name, on_lake=_lake_recorder(summary))
        return summary

    from pipelines.normalize.address import remembered_keys

    existed = Path(settings.warehouse).exists()
    try:
        ts = time.perf_counter()
        published, publishing = _publishing(settings, summary, selection,
                                            alongside(analyst_publisher(settings), reports))
        with store.transaction(settings.warehouse, lock_timeout_s=settings.lock_timeout_s,
                               fail_before_publish=fail_before_publish, run_id=run_id, flow=flow_name,
                               **publishing) as con, \
                remembered_keys():  # the linkage features key the addresses the standardisation parsed
            summary.stage_seconds["open"] = time.perf_counter() - ts  # lock, working copy, migrations
            summary.persons_before = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
            export_stage.record_inbox_problems(con, run_id, discovery.problems, mappings)
            ts = time.perf_counter()
            until = dt.datetime.combine(selection.until, dt.time.max) if selection.until else None

            def is_new(ef: Any) -> bool:
                return export_stage.is_new(con, ef, selection)

            if any(map(is_new, files)):
                from pipelines.expectations import prepare_checks

                prepare_checks()  # Great Expectations imported on the checks' core meanwhile

            def read_file(ef: Any) -> Any:
                return _call(read_export_task, use_tasks, ef, mappings[ef.mapping])

            def read_sql(mapping: Any, since: dt.datetime | None) -> Any:
                return _read_sql(settings, mapping, since, until, use_tasks)

            district, raw_cache = district_stage.establish_district(
                con, settings, summary, files, sql_maps, mappings, is_new=is_new, read_file=read_file,
                read_sql=lambda m: read_sql(m, export_stage.sql_since(con, m, selection)))
            summary.stage_seconds["district"] = time.perf_counter() - ts
            exports = export_stage.stage_exports(
                con, settings, summary, run_id, files, sql_maps, mappings, selection, district, raw_cache,
                read_file=read_file, read_sql=read_sql, progress=progress,
                standardize=lambda raw, m, d, period: _call(standardize_task, use_tasks, raw, m, d, period))
            staged = exports.staged

            from warehouse.decisions import new_decision_mentions

            decided = new_decision_mentions(con)
            from warehouse.linkage_index import is_complete

            complete = bool(staged) or is_complete(con)
            if staged or selection.force or selection.full or summary.persons_before == 0 or decided or not complete:
                _resolve_and_build(con, settings, run_id, summary, use_tasks, district,
                                   full=selection.full or summary.persons_before == 0, decided=decided,
                                   index_current=not staged and complete)
            export_stage.write_expectations(con, run_id, summary, exports.pending_checks)
            ts = time.perf_counter()
            summary.compacted = compaction.compact(con)  # tables whose deleted rows piled up
            summary.stage_seconds["compact"] = time.perf_counter() - ts
            summary.persons_after = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
            summary.alerts = alert_counts(con)
            summary.status = "succeeded"
            summary.finished_at = dt.datetime.now().isoformat(timespec="seconds")
            summary.stage_seconds["total"] = time.perf_counter() - t0
            record_summary(con, summary, selection)
            published.start()
    except Exception as exc:
        summary.status = "failed"
        summary.finished_at = dt.datetime.now().isoformat(timespec="seconds")
        from warehouse.exceptions import WarehouseBusyError

        from settings import ConfigError

        # a configuration refused before anything was loaded (no [district] and the data
        # cannot tell it) leaves no warehouse behind where there was none
        refused_fresh = isinstance(exc, ConfigError) and summary.persons_before == 0 and not existed
        if not isinstance(exc, WarehouseBusyError) and not fail_before_publish and not refused_fresh:
            record_failed_summary(settings.warehouse, summary, selection, exc,
                                  lock_timeout_s=settings.lock_timeout_s, retention=_retention(settings))
        raise
    return summary


def _read_sql(settings: Settings, mapping: Any, since: Any, until: Any, use_tasks: bool) -> Any:
    """One SQL table, retried with backoff while the database is locked or unreachable."""
    from connectors.retry import with_retries

    return with_retries(lambda: _call(read_table_task, use_tasks, settings, mapping, since, until),
                        source_system=mapping.source_system, source_object=mapping.table,
                        where=export_stage.sql_where(settings, mapping.source_system), delays=settings.source_retry_delays_s)


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
    from pipelines.errors import advice
    from warehouse.reports import ReportJob

    reports = ReportJob(settings.resolved_reports_dir(), advice)
    try:
        summary = run_sync(settings, flow_name=flow_name, selection=selection, use_tasks=use_prefect,
                           progress=progress, reports=reports)
    except BaseException:
        reports.discard()
        raise
    if use_prefect:
        _publish_artifact(summary)
    _after_sync(settings, summary, reports)
    return summary


def _after_sync(settings: Settings, summary: SyncSummary, reports: Any) -> None:
    """After a published sync, the officers' reports (problem lists per department and
    the HTML summary) in `settings.resolved_reports_dir()`: those staged with the publish
    (`warehouse.reports.alongside`) are put in place."""
    from warehouse.reports import write_reports

    if summary.status != "succeeded":
        reports.discard()
        return
    try:
        if reports.error:
            raise RuntimeError(reports.error)
        paths = reports.publish() if reports.staged else write_reports(settings.warehouse, reports.out_dir,
                                                                       advice=reports.advice)
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
@batch_gc
def apply_decisions(settings: Settings, record: Callable[[Any], Any], *, flow_name: str = "decision") -> SyncSummary:
    """Run `record(con)` (which stores link decisions), re-cluster the persons the new
    decisions name (and those blocked with them), rebuild and publish."""
    from warehouse import store
    from warehouse.queries import alert_counts

    configure_warehouse(settings)
    run_id = dt.datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = SyncSummary(run_id=run_id, flow=flow_name, warehouse=str(settings.warehouse),
                          started_at=dt.datetime.now().isoformat(timespec="seconds"))
    t0 = time.perf_counter()
    published, publishing = _publishing(settings, summary, Selection(), analyst_publisher(settings))
    with store.transaction(settings.warehouse, lock_timeout_s=settings.lock_timeout_s, run_id=run_id,
                           flow=flow_name, **publishing) as con:
        summary.persons_before = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
        record(con)
        from warehouse.decisions import new_decision_mentions
        from warehouse.linkage_index import is_complete

        # a decision re-clusters a few persons: on the embedded engine whatever `engine` says
        # (the same scores; a Spark session would cost more than the work); it stages
        # nothing, so a complete linkage index is current
        _resolve_and_build(con, settings.model_copy(update={"engine": "duckdb"}), run_id, summary, False,
                           district_stage.district_context(settings, con), full=False,
                           decided=new_decision_mentions(con), index_current=is_complete(con))
        summary.persons_after = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
        summary.alerts = alert_counts(con)
        summary.status = "succeeded"
        summary.finished_at = dt.datetime.now().isoformat(timespec="seconds")
        summary.stage_seconds["total"] = time.perf_counter() - t0
        record_summary(con, summary, Selection())
        published.start()
    return summary
