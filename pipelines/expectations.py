"""Data expectations (Great Expectations 1.x) on each new export, declared as data.

One suite per source object (`export_suite(mapping)`), derived from its mapping and run
on the normalised records of each export (`Standardized.records`), once per export: at
least one record, business keys present and unique, every coded field within its code
table, citizen IDs mostly usable, dates plausible, names mostly present. The checks of
the built warehouse (unique keys, references, code sets, null rates, row-count changes)
are aggregate SQL run where the data is (`warehouse.quality.check_invariants`): a
suite over frames of whole tables cost minutes and gigabytes at a million residents.

`run_suite(frames, suite)` validates and returns one row per expectation
(`RESULT_COLUMNS`); it is pure (frames in, frame out). GE is imported lazily (it
takes seconds) with analytics and progress bars off: officers' machines are offline.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from schemas.mapping import SourceMapping

__all__ = ["Check", "Suite", "RESULT_COLUMNS", "export_suite", "run_suite", "validate_export"]

RESULT_COLUMNS = [
    "suite", "target", "expectation", "column_name", "kwargs", "description", "severity", "success",
    "element_count", "unexpected_count", "unexpected_percent", "observed_value", "unexpected_examples",
    "exception",
]

#: citizen-ID statuses that are not a problem (see pipelines/normalize/ids.py)
USABLE_ID_STATUSES = ["valid", "upgraded_15", "missing"]
MIN_DATE = dt.datetime(1900, 1, 1)


@dataclass(frozen=True)
class Check:
    """One expectation: a GE expectation type and its arguments, on one target frame."""

    expectation: str                 # e.g. "expect_column_values_to_be_unique"
    kwargs: dict[str, Any]
    description: str                 # what it means, in Chinese (for the report)
    severity: str = "error"          # error | warning
    target: str = "records"

    @property
    def column(self) -> str | None:
        if "column" in self.kwargs:
            return self.kwargs["column"]
        if "column_list" in self.kwargs:
            return ",".join(self.kwargs["column_list"])
        return None


@dataclass(frozen=True)
class Suite:
    name: str
    checks: tuple[Check, ...]

    @property
    def targets(self) -> list[str]:
        return list(dict.fromkeys(c.target for c in self.checks))


# --------------------------------------------------------------------------------------
# suites per source object
# --------------------------------------------------------------------------------------
def export_suite(mapping: SourceMapping, *, today: dt.date | None = None) -> Suite:
    """The suite of one source object, derived from its mapping (run on normalised records)."""
    today = today or dt.date.today()
    label = mapping.label_zh or mapping.source_object
    checks: list[Check] = [
        Check("expect_table_row_count_to_be_between", {"min_value": 1},
              f"{label}：导出中至少有一条可接收的记录", "warning"),
        Check("expect_column_values_to_not_be_null", {"column": mapping.record_key},
              f"{label}：业务主键（{_label(mapping, mapping.record_key)}）不为空"),
    ]
    if mapping.granularity != "household_rows":
        if mapping.load_semantics == "delta_upsert" and mapping.event_time:
            checks.append(Check("expect_compound_columns_to_be_unique",
                                {"column_list": [mapping.record_key, mapping.event_time]},
                                f"{label}：同一{_label(mapping, mapping.record_key)}在同一更新时间只出现一次"))
        else:
            checks.append(Check("expect_column_values_to_be_unique", {"column": mapping.record_key},
                                f"{label}：{_label(mapping, mapping.record_key)}在一个导出中唯一"))
    birth_fields = {p.fields.get("birth_date") for p in mapping.persons}
    # names of persons every record has (not an optional spouse)
    name_fields = {p.fields.get("name") for p in mapping.persons if not p.present_if_any}
    for spec in mapping.columns:
        name = spec.label_zh or spec.field
        if spec.kind == "code":
            table = mapping.code_table_of(spec)
            checks.append(Check("expect_column_values_to_be_in_set",
                                {"column": spec.field, "value_set": sorted(table.codes)},
                                f"{name}：标准化后均为{table.label_zh}（{spec.code_table}）代码表中的代码"))
        elif spec.kind == "citizen_id":
            checks.append(Check("expect_column_values_to_be_in_set",
                                {"column": f"{spec.field}__status", "value_set": USABLE_ID_STATUSES, "mostly": 0.9},
                                f"{name}：至少90%的证件号码可用（有效、可升级或为空）", "warning"))
        elif spec.kind == "date":
            upper = today if spec.field in birth_fields else dt.date(2100, 12, 31)
            checks.append(Check("expect_column_values_to_be_between",
                                {"column": spec.field, "min_value": MIN_DATE.isoformat(),
                                 "max_value": dt.datetime.combine(upper, dt.time()).isoformat()},
                                f"{name}：日期在1900-01-01至{upper.isoformat()}之间"))
        elif spec.kind == "name" and spec.field in name_fields:
            checks.append(Check("expect_column_values_to_not_be_null", {"column": spec.field, "mostly": 0.95},
                                f"{name}：至少95%的记录有姓名", "warning"))
        if spec.not_null and spec.field != mapping.record_key:
            checks.append(Check("expect_column_values_to_not_be_null", {"column": spec.field},
                                f"{name}：必填项不为空"))
    return Suite(mapping.source_object, tuple(checks))


def _label(mapping: SourceMapping, field_name: str) -> str:
    for spec in mapping.columns:
        if spec.field == field_name:
            return spec.label_zh or field_name
    return field_name


def validate_export(records: pd.DataFrame, mapping: SourceMapping, *, today: dt.date | None = None) -> pd.DataFrame:
    """Run the source object's suite on one export's normalised records."""
    return run_suite({"records": records}, export_suite(mapping, today=today))


def checked_records(records: pd.DataFrame, mapping: SourceMapping) -> pd.DataFrame:
    """The columns of `records` the source object's suite reads (`_prepare` keeps no
    others), every row: what `validate_export` is sent to its worker process with. The
    normalised records carry each field's raw value and extras besides (a roster month:
    ~3× the columns), which were pickled across for nothing."""
    return records[_checked_columns(export_suite(mapping).checks, records)]


def _checked_columns(checks: Iterable[Check], frame: pd.DataFrame) -> list[str]:
    """The columns of `frame` that `checks` name, in order, once each."""
    cols: list[str] = []
    for ch in checks:
        for c in ch.kwargs.get("column_list", []) + ([ch.kwargs["column"]] if "column" in ch.kwargs else []):
            if c in frame.columns and c not in cols:
                cols.append(c)
    return cols


# --------------------------------------------------------------------------------------
# running a suite
# --------------------------------------------------------------------------------------
_GX: dict[str, Any] = {}


@contextlib.contextmanager
def _spark_hidden() -> Iterator[None]:
    """Hide `pyspark` while Great Expectations is imported.

    GE imports it (inside `try: … except ImportError`) only to support Spark data frames;
    the checks validate pandas frames. Hidden, its import costs the checks' worker
    ~0.25 CPU-s less (pyspark.ml, scipy.sparse), and pyspark 4 cannot end the process:
    it calls `sys.exit(0)` ("Skipping doctests") when `pyspark.sql.connect` is imported
    from a `__main__` with neither `__spec__` nor `__file__` (a `python -c` process:
    pytest-xdist workers, some process pools) and its Spark Connect extras are not
    installed. A `None` in `sys.modules` turns the import into an ImportError, which GE
    handles; the entry is removed afterwards, so the Spark engine imports the real package
    when it needs it. A process that imported pyspark already keeps it."""
    name = "pyspark"
    if name in sys.modules:
        with _hidden("pyspark.sql.connect"):
            yield
        return
    with _hidden(name):
        yield


@contextlib.contextmanager
def _hidden(name: str) -> Iterator[None]:
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get(name, 0) is None:
            del sys.modules[name]


def _scipy_stats_on_first_use() -> None:
    """Make `scipy.stats` a module loaded on its first attribute access
    (`importlib.util.LazyLoader`): GE imports it at import time for three expectations and
    metrics (KL divergence, KS tests) that our suites never run — 0.5 CPU-s of the checks'
    worker's ~4. It is put on the `scipy` package too: Python 3.11's `import_module`
    touches a module's `__spec__`, which would load it at once."""
    import importlib.util

    if "scipy.stats" in sys.modules:
        return
    try:
        import scipy
    except ImportError:  # GE then fails on its own import, with its own message
        return
    spec = importlib.util.find_spec("scipy.stats")
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["scipy.stats"] = module
    spec.loader.exec_module(module)
    scipy.stats = module  # type: ignore[attr-defined]


def prepare_checks() -> None:
    """Have the worker that runs the deferred checks (`pipelines.parallel.Deferred`)
    import Great Expectations now: 3-4 s of CPU that would otherwise start with the first
    export's check, beside the run's standardisation and resolution."""
    from pipelines.parallel import prepare_deferred

    prepare_deferred(_import_gx)


def _import_gx() -> None:
    _gx()


def _gx() -> tuple[Any, Any]:
    """(module great_expectations.expectations, whole-dataframe batch definition), made once."""
    if not _GX:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import logging

        _scipy_stats_on_first_use()
        with _spark_hidden():
            import great_expectations as gx
            import great_expectations.expectations as gxe
            from great_expectations.data_context.types.base import (
                DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig)

        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        cfg = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(), analytics_enabled=False,
                                progress_bars=ProgressBarsConfig(globally=False))
        ctx = gx.get_context(mode="ephemeral", project_config=cfg)
        batch_def = (ctx.data_sources.add_pandas("residents").add_dataframe_asset("frame")
                     .add_batch_definition_whole_dataframe("whole"))
        _GX.update(gx=gx, gxe=gxe, batch=batch_def)
    return _GX["gxe"], _GX["batch"]


def _class_name(expectation: str) -> str:
    return "".join(part.capitalize() for part in expectation.split("_"))


def _prepare(frame: pd.DataFrame, checks: list[Check]) -> pd.DataFrame:
    """Only the checked columns; dates as datetime64 (GE compares them with ISO bounds)."""
    cols = _checked_columns(checks, frame)
    out = frame[cols].copy() if cols else pd.DataFrame(index=frame.index)
    bounded = {ch.kwargs["column"] for ch in checks
               if ch.expectation == "expect_column_values_to_be_between" and ch.kwargs.get("column") in out}
    for c in bounded:
        s = out[c]
        if s.dtype == object:
            sample = s.dropna()
            if len(sample) and isinstance(sample.iloc[0], (dt.date, dt.datetime, pd.Timestamp)):
                out[c] = pd.to_datetime(s, errors="coerce")
            elif len(sample) and isinstance(sample.iloc[0], str):
                out[c] = pd.to_datetime(s, errors="coerce")
            else:
                out[c] = pd.to_numeric(s, errors="coerce")
    for c in out.columns:  # nullable extension dtypes → plain objects GE understands
        if str(out[c].dtype) in ("string", "boolean", "Int64"):
            out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def _kwargs_for_gx(ch: Check) -> dict[str, Any]:
    kw = dict(ch.kwargs)
    if ch.expectation == "expect_column_values_to_be_between":
        for k in ("min_value", "max_value"):
            if isinstance(kw.get(k), str):
                kw[k] = dt.datetime.fromisoformat(kw[k])
    return kw


def _json_value(v: Any) -> Any:
    if isinstance(v, (dt.date, dt.datetime, pd.Timestamp)):
        return v.isoformat()
    if isinstance(v, float) and v != v:
        return None
    return v


def run_suite(frames: dict[str, pd.DataFrame], suite: Suite) -> pd.DataFrame:
    """Validate `frames` (target name → frame) against `suite`: one GE validation per
    target. Returns one row per check (`RESULT_COLUMNS`); a target frame that is absent
    or empty has nothing to violate, except a row-count check, which fails."""
    gxe, batch_def = _gx()
    gx = _GX["gx"]
    rows: list[dict[str, Any]] = []
    for target in suite.targets:
        checks = [c for c in suite.checks if c.target == target]
        frame = frames.get(target)
        if frame is None:
            frame = pd.DataFrame()
        gx_suite = gx.ExpectationSuite(name=f"{suite.name}:{target}")
        for ch in checks:
            gx_suite.add_expectation(getattr(gxe, _class_name(ch.expectation))(**_kwargs_for_gx(ch)))
        data = _prepare(frame, checks)
        if data.empty and len(data.columns) == 0 and len(data) > 0:
            data = pd.DataFrame({"_row": range(len(data))})
        result = batch_def.get_batch(batch_parameters={"dataframe": data}).validate(gx_suite, result_format="SUMMARY")
        by_key = {}
        for r in result.results:
            cfg = r.expectation_config
            kw = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
            by_key.setdefault((cfg.type, json.dumps(kw, sort_keys=True, default=str)), []).append(r)
        for ch in checks:
            key = (ch.expectation, json.dumps(_kwargs_for_gx(ch), sort_keys=True, default=str))
            found = by_key.get(key)
            r = found.pop(0) if found else None
            rows.append(_row(suite, ch, r, frame))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _row(suite: Suite, ch: Check, r: Any, frame: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = {
        "suite": suite.name, "target": ch.target, "expectation": ch.expectation, "column_name": ch.column,
        "kwargs": json.dumps(ch.kwargs, ensure_ascii=False, default=str), "description": ch.description,
        "severity": ch.severity,
    }
    if r is None:
        return row | {"success": False, "exception": "expectation result missing"}
    res = r.result or {}
    exc = _exception_text(r.exception_info)
    missing_column = exc is not None and ch.column is not None and len(frame) == 0
    examples = res.get("partial_unexpected_list")
    observed = res.get("observed_value")
    row.update(
        success=bool(r.success) or missing_column,
        element_count=res.get("element_count"),
        unexpected_count=res.get("unexpected_count"),
        unexpected_percent=_json_value(res.get("unexpected_percent")),
        observed_value=None if observed is None else str(_json_value(observed)),
        unexpected_examples=json.dumps([_json_value(v) for v in examples[:10]], ensure_ascii=False, default=str)
        if examples else None,
        exception=None if missing_column else exc,
    )
    return row


def _exception_text(info: Any) -> str | None:
    if not info:
        return None
    if isinstance(info, dict):
        if "raised_exception" in info:
            return info.get("exception_message") if info.get("raised_exception") else None
        msgs = [v.get("exception_message") for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
        msgs = [m for m in msgs if m]
        return "; ".join(dict.fromkeys(msgs))[:500] if msgs else None
    return str(info)[:500]


def summarize(results: pd.DataFrame) -> dict[str, int]:
    """Counts of checks by outcome (for logs and the sync summary)."""
    if results.empty:
        return {"checks": 0, "failed": 0}
    failed = ~results["success"].astype(bool)
    return {"checks": len(results), "failed": int(failed.sum()),
            "failed_errors": int((failed & results["severity"].eq("error")).sum())}


def suite_failure(exc: BaseException) -> pd.DataFrame:
    """The result of an export's suite that could not run at all (a program error): one
    failed check saying so, so the run reports it instead of losing the export's checks."""
    row = {c: None for c in RESULT_COLUMNS}
    row.update(suite="export", target="records", expectation="suite_runs", kwargs="{}",
               description="本文件的数据期望检查无法运行（程序错误），请联系技术人员",
               severity="error", success=False, element_count=0, unexpected_count=0, unexpected_percent=0.0,
               exception=f"{type(exc).__name__}: {exc}"[:500])
    return pd.DataFrame([row], columns=RESULT_COLUMNS)
