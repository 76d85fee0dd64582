"""The exports stage of a sync: whether there is anything to load, then each new export
read, standardised, checked (its expectation suite on the checks' worker) and staged into
the working copy. A file or a source that fails, fails alone: a failed ledger row naming
why and a line in the run's report; the others load. The flow hands over the readers and
the standardiser (Prefect tasks, or plain functions outside Prefect); this decides what
each export becomes.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from settings import Settings
from warehouse import load
from warehouse.runs import ExportReport, Selection, SyncSummary

STILL_FAILED = "该文件（相同路径和内容）此前装载失败，仍未更正"


@dataclass
class StagedExports:
    """What `stage_exports` did: how many exports it staged, and each staged export's
    checks still running (collected by `write_expectations`)."""

    staged: int = 0
    pending_checks: list[Any] = field(default_factory=list)  # (Deferred expectation results, export id)


def stage_exports(con: Any, settings: Settings, summary: SyncSummary, run_id: str, files: list[Any],
                  sql_maps: list[Any], mappings: dict[str, Any], selection: Selection, district: Any,
                  raw_cache: dict[str, Any], *, read_file: Callable[[Any], Any],
                  read_sql: Callable[[Any, dt.datetime | None], Any], standardize: Callable[..., Any],
                  progress: Callable[[str, int, int], None] | None = None) -> StagedExports:
    """Stage this run's new exports, files first, then the SQL sources' changed rows (a
    parent table before its children). `raw_cache`: exports the district stage read
    already; `read_sql(mapping, since)`: the rows changed since the source's watermark.
    Stage times go into `summary.stage_seconds` (read, standardize, stage)."""
    from connectors.exceptions import ConnectorError, SourceUnavailableError

    staged = 0
    pending_checks: list[Any] = []  # (Deferred expectation results, export id)
    total = len(files) + len(sql_maps)
    t_read = t_std = t_stage = 0.0
    for i, ef in enumerate(files, 1):
        if progress:
            progress(ef.source_object, i, total)
        mapping = mappings[ef.mapping]
        meta = meta_for_file(ef)
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
            raw = raw_cache.pop(str(ef.path), None) or read_file(ef)
        except ConnectorError as exc:  # a bad or unreadable file fails alone, reported
            _record_failed(con, summary, run_id, meta, exc)
            continue
        t_read += time.perf_counter() - ts
        staged += _stage(con, summary, run_id, meta, mapping, raw, standardize, district, timers := {},
                         pending_checks)
        t_std += timers.get("standardize", 0.0)
        t_stage += timers.get("stage", 0.0)
    sql_down: dict[str, Any] = {}  # source system → the fault of its database this run
    if sql_maps:
        for j, mapping in enumerate(sorted(sql_maps, key=lambda m: m.parent is not None), len(files) + 1):
            if progress:
                progress(mapping.table or mapping.source_object, j, total)
            ts = time.perf_counter()
            since = sql_since(con, mapping, selection)
            try:
                down = sql_down.get(mapping.source_system)
                if down:  # the database is down: its other tables fail without new retries
                    raise down.for_object(mapping.table)
                raw = raw_cache.pop(f"sql:{mapping.source_object}", None) or read_sql(mapping, since)
            except ConnectorError as exc:  # locked / unreachable after retries: this source fails alone
                if isinstance(exc, SourceUnavailableError):
                    sql_down.setdefault(mapping.source_system, exc)
                _record_failed(con, summary, run_id,
                               _sql_meta(mapping, sql_where(settings, mapping.source_system), since), exc)
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
            staged += _stage(con, summary, run_id, meta, mapping, raw, standardize, district,
                             timers := {}, pending_checks)
            t_std += timers.get("standardize", 0.0)
            t_stage += timers.get("stage", 0.0)
    summary.stage_seconds.update(read=t_read, standardize=t_std, stage=t_stage)
    return StagedExports(staged, pending_checks)


def is_new(con: Any, ef: Any, selection: Selection) -> bool:
    """Whether the export file `ef` is to be loaded: `--force`, or the warehouse has neither
    loaded nor refused this content under this name."""
    m = meta_for_file(ef)
    return selection.force or (load.find_loaded(con, m) is None and load.find_failed(con, m) is None)


def meta_for_file(ef: Any) -> Any:
    return load.ExportMeta(
        source_system=ef.source_system, mapping=ef.mapping, source_object=ef.source_object,
        path=str(ef.path), content_sha256=ef.content_sha256, size_bytes=ef.size_bytes,
        export_date=ef.export_date, period=ef.period, is_correction=ef.is_correction)


def redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url


def _stage(con: Any, summary: SyncSummary, run_id: str, meta: Any, mapping: Any, raw: Any,
           standardize: Callable[..., Any], district: Any, timers: dict[str, float], pending_checks: list[Any]) -> int:
    ts = time.perf_counter()
    from pipelines.expectations import checked_records, validate_export
    from pipelines.parallel import Deferred
    from warehouse import quality

    try:  # pure computation on this export: a failure here fails this export alone
        std = standardize(raw, mapping, district, meta.period)
        timers["standardize"] = time.perf_counter() - ts
    except Exception as exc:  # noqa: BLE001 - reported with its type, nothing staged
        from pipelines.exceptions import ExportProcessingError

        _record_failed(con, summary, run_id, meta, ExportProcessingError(meta.source_object, exc))
        return 0
    # the export's suite runs on another core while the run goes on; collected at the end
    checks = Deferred(validate_export, checked_records(std.records, mapping), mapping)
    ts = time.perf_counter()
    export_id = load.next_export_id(con)
    old_ids = load.superseded_exports(con, meta, mapping)
    load.supersede(con, mapping, old_ids, export_id)
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


def write_expectations(con: Any, run_id: str, summary: SyncSummary, pending: list[Any]) -> None:
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


def _record_failed(con: Any, summary: SyncSummary, run_id: str, meta: Any, exc: BaseException) -> None:
    """One export or source that failed alone: a failed ledger row and the run's report.
    A transient fault (unavailable, program error) is tried again by the next run."""
    load.record_failed_export(con, export_id=load.next_export_id(con), run_id=run_id, meta=meta, message=str(exc),
                              remember=not getattr(exc, "transient", False))
    summary.exports.append(ExportReport(meta.source_system, meta.mapping, meta.source_object, "failed",
                                        message=str(exc)))


def sql_where(settings: Settings, system: str) -> str:
    """The database of a source system, as shown in messages and the ledger (no password)."""
    source = settings.sql_sources().get(system)
    return redact_url(source) if isinstance(source, str) else (source.redacted_url if source else "")


def _sql_meta(mapping: Any, url: str, since: Any) -> Any:
    return load.ExportMeta(source_system=mapping.source_system, mapping=mapping.source_object,
                      source_object=mapping.table or mapping.source_object, path=redact_url(url),
                      content_sha256="", size_bytes=None, export_date=None, period=None,
                      watermark_from=since)


def has_work(settings: Settings, files: list[Any], sql_maps: list[Any], problems: list[Any],
              summary: SyncSummary) -> bool:
    """Whether a sync would change the warehouse: an export not in the ledger, a new
    inbox problem, new rows in a SQL source or an officer's decision not applied yet.
    Asked on a read-only connection, so a sync with nothing to do costs only discovery
    (hashing the inbox) and never copies the warehouse. Files that failed before and
    are still uncorrected are reported in `summary` (as a sync that runs reports them)."""
    from warehouse import store
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
            meta = meta_for_file(ef)
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
                                where=sql_where(settings, system), delays=settings.source_retry_delays_s)
                   for m in sql_maps if m.source_system == system):
                return True
        except ConnectorError:
            return True  # the sync runs, retries the reads and records the source as failed
        finally:
            engine.dispose()
    summary.exports += still_failed
    return False


def _problem_key(problem: Any, path: Path) -> tuple[str, int | None]:
    """The ledger key of a misplaced file: its content's hash; for a link that leaves the
    inbox, a hash of the link's own text (its target is never opened, not even hashed)."""
    from connectors.discovery import content_key
    from connectors.exceptions import OutsideInboxError

    if isinstance(problem, OutsideInboxError) or path.is_symlink() and not path.is_file():
        import hashlib

        return hashlib.sha256(b"symlink:" + os.fsencode(os.readlink(path))).hexdigest(), None
    return content_key(path)


def record_inbox_problems(con: Any, run_id: str, problems: list[Any], mappings: dict[str, Any]) -> None:
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


def sql_since(con: Any, mapping: Any, selection: Selection) -> dt.datetime | None:
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
