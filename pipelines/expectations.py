"""Data expectations (Great Expectations 1.x), declared as data and run on frames.

Two kinds of suites:

* one per source object (`export_suite(mapping)`), derived from its mapping and run on
  the normalised records of each export (`Standardized.records`), once per export:
  at least one record, business keys present and unique, every coded field within
  its code table, citizen IDs mostly usable, dates plausible, names mostly present;
* one for the warehouse (`warehouse_suite(threshold)`), run after each build on
  frames the warehouse reads for it (`warehouse_frame_requests()`): unique keys,
  referential integrity between xref, persons, addresses and facts (`<col>__exists`
  columns), value sets of every coded field, null rates, and the row-count change of
  each export loaded in the run against the previous export of the same source.

`run_suite(frames, suite)` validates and returns one row per expectation
(`RESULT_COLUMNS`); it is pure (frames in, frame out). GE is imported lazily (it
takes seconds) with analytics and progress bars off: officers' machines are offline.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from schemas.codes import CODE_TABLES
from schemas.mapping import SourceMapping

__all__ = ["Check", "Suite", "FrameRequest", "RESULT_COLUMNS", "export_suite", "warehouse_suite",
           "warehouse_frame_requests", "run_suite", "validate_export"]

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


@dataclass(frozen=True)
class FrameRequest:
    """A warehouse frame the warehouse suite needs: `columns` of `table`, plus for each
    reference (column, parent table, parent column) a boolean `<column>__exists`
    (true when the value is null or found in the parent)."""

    table: str
    columns: tuple[str, ...]
    references: tuple[tuple[str, str, str], ...] = ()


# --------------------------------------------------------------------------------------
# suites per source object
# --------------------------------------------------------------------------------------
def _codes(table: str) -> list[str]:
    return sorted(CODE_TABLES[table].codes)


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
        if spec.kind == "code" and spec.code_table in CODE_TABLES:
            checks.append(Check("expect_column_values_to_be_in_set",
                                {"column": spec.field, "value_set": _codes(spec.code_table)},
                                f"{name}：标准化后均为{spec.code_table}代码表中的代码"))
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


# --------------------------------------------------------------------------------------
# the warehouse suite
# --------------------------------------------------------------------------------------
_P = ("core.person", "person_id")
_A = ("core.address", "address_id")


def warehouse_frame_requests() -> dict[str, FrameRequest]:
    """What the warehouse suite validates (read by `warehouse.quality.warehouse_frames`)."""
    def ref(col: str, parent: tuple[str, str] = _P) -> tuple[str, str, str]:
        return (col, parent[0], parent[1])

    return {
        "core.person": FrameRequest("core.person", ("person_id", "citizen_id", "name", "gender", "birth_date",
                                                    "ethnicity", "marital_status")),
        "core.person_xref": FrameRequest("core.person_xref", ("mention_id", "person_id", "source_system", "role"),
                                         (ref("person_id"), ("mention_id", "stg.mention", "mention_id"))),
        "stg.mention": FrameRequest("stg.mention", ("mention_id",), (("mention_id", "core.person_xref", "mention_id"),)),
        "core.address_xref": FrameRequest("core.address_xref", ("source_object", "source_locator", "field",
                                                                "address_id"), (ref("address_id", _A),)),
        "core.person_address": FrameRequest("core.person_address", ("person_id", "address_id", "kind"),
                                            (ref("person_id"), ref("address_id", _A))),
        "core.relationship": FrameRequest("core.relationship", ("kind", "person_id_from", "person_id_to"),
                                          (ref("person_id_from"), ref("person_id_to"))),
        "core.marriage_registration": FrameRequest(
            "core.marriage_registration", ("certificate_no", "business_type", "man_person_id", "woman_person_id"),
            (ref("man_person_id"), ref("woman_person_id"))),
        "core.cremation": FrameRequest("core.cremation", ("cremation_no", "person_id"), (ref("person_id"),)),
        "core.low_income_roster_line": FrameRequest(
            "core.low_income_roster_line", ("month", "source_object", "source_locator", "person_id", "role",
                                            "category", "relationship_to_head"), (ref("person_id"),)),
        "core.floating_registration": FrameRequest("core.floating_registration",
                                                   ("registration_no", "person_id", "status"), (ref("person_id"),)),
        "core.fp_woman": FrameRequest("core.fp_woman", ("ylfn_id", "person_id", "marital_status", "spouse_person_id"),
                                      (ref("person_id"), ref("spouse_person_id"))),
        "core.fp_child": FrameRequest("core.fp_child", ("zn_id", "person_id", "mother_person_id"),
                                      (ref("person_id"), ref("mother_person_id"))),
        "core.alert": FrameRequest("core.alert", ("alert_id", "alert_kind", "person_id"), (ref("person_id"),)),
    }


def warehouse_suite(row_count_change_threshold: float = 0.5) -> Suite:
    """Checks on the built warehouse. `quality.row_count_change` (one row per export
    loaded in the run that has a previous export of the same source) is produced by
    `warehouse.quality.row_count_changes`."""
    def c(target: str, expectation: str, description: str, severity: str = "error", **kwargs: Any) -> Check:
        return Check(expectation, kwargs, description, severity, target)

    unique, not_null, in_set = ("expect_column_values_to_be_unique", "expect_column_values_to_not_be_null",
                                "expect_column_values_to_be_in_set")

    def exists(target: str, col: str, what: str) -> Check:
        return c(target, in_set, f"{target}.{col}：{what}", column=f"{col}__exists", value_set=[True])

    checks = [
        c("core.person", unique, "人员编号唯一", column="person_id"),
        c("core.person", not_null, "人员编号不为空", column="person_id"),
        c("core.person", unique, "一个有效身份证号只对应一个人员", column="citizen_id"),
        c("core.person", "expect_column_values_to_match_regex", "身份证号均为18位有效格式",
          column="citizen_id", regex=r"^\d{17}[\dX]$"),
        c("core.person", in_set, "性别为GB/T 2261.1代码", column="gender", value_set=_codes("gender")),
        c("core.person", in_set, "民族为GB 3304代码", column="ethnicity", value_set=_codes("ethnicity")),
        c("core.person", in_set, "婚姻状况为GB/T 2261.2代码", column="marital_status",
          value_set=_codes("marital_status")),
        c("core.person", not_null, "至少99%的人员有姓名", "warning", column="name", mostly=0.99),
        c("core.person", not_null, "至少90%的人员有出生日期", "warning", column="birth_date", mostly=0.9),
        c("core.person", not_null, "至少80%的人员有有效身份证号", "warning", column="citizen_id", mostly=0.8),
        c("core.person_xref", unique, "每个人员提及只有一行交叉索引", column="mention_id"),
        exists("core.person_xref", "person_id", "交叉索引指向的人员都存在"),
        exists("core.person_xref", "mention_id", "交叉索引对应的人员提及都在暂存层"),
        exists("stg.mention", "mention_id", "每个人员提及都已解析到人员"),
        exists("core.address_xref", "address_id", "地址交叉索引指向的地址都存在"),
        exists("core.person_address", "person_id", "人—地址关系的人员都存在"),
        exists("core.person_address", "address_id", "人—地址关系的地址都存在"),
        exists("core.relationship", "person_id_from", "关系一方的人员都存在"),
        exists("core.relationship", "person_id_to", "关系另一方的人员都存在"),
        c("core.marriage_registration", not_null, "婚姻登记都有登记证字号", column="certificate_no"),
        exists("core.marriage_registration", "man_person_id", "男方人员都存在"),
        exists("core.marriage_registration", "woman_person_id", "女方人员都存在"),
        c("core.marriage_registration", in_set, "业务类型为标准代码", column="business_type",
          value_set=_codes("marriage_business")),
        c("core.cremation", unique, "火化证明编号唯一", column="cremation_no"),
        exists("core.cremation", "person_id", "逝者人员都存在"),
        c("core.low_income_roster_line", "expect_compound_columns_to_be_unique", "花名册每行只装载一次",
          column_list=["source_object", "source_locator", "role"]),
        exists("core.low_income_roster_line", "person_id", "低保成员人员都存在"),
        c("core.low_income_roster_line", in_set, "保障类别为标准代码", column="category",
          value_set=_codes("low_income_category")),
        c("core.low_income_roster_line", in_set, "与户主关系为GB/T 4761代码", column="relationship_to_head",
          value_set=_codes("relationship")),
        c("core.floating_registration", unique, "流动人口登记编号唯一", column="registration_no"),
        exists("core.floating_registration", "person_id", "流动人口登记人员都存在"),
        c("core.floating_registration", in_set, "登记状态为 active/cancelled", column="status",
          value_set=["active", "cancelled"]),
        c("core.fp_woman", unique, "育龄妇女编号唯一", column="ylfn_id"),
        exists("core.fp_woman", "person_id", "育龄妇女人员都存在"),
        exists("core.fp_woman", "spouse_person_id", "配偶人员都存在"),
        c("core.fp_woman", in_set, "婚姻状况为GB/T 2261.2代码", column="marital_status",
          value_set=_codes("marital_status")),
        c("core.fp_child", unique, "子女编号唯一", column="zn_id"),
        exists("core.fp_child", "person_id", "子女人员都存在"),
        exists("core.fp_child", "mother_person_id", "母亲人员都存在"),
        c("core.alert", unique, "预警编号唯一", column="alert_id"),
        exists("core.alert", "person_id", "预警涉及的人员都存在"),
        c("quality.row_count_change", "expect_column_values_to_be_between",
          f"与同一来源上一次导出相比，读取行数变化不超过{row_count_change_threshold:.0%}", "warning",
          column="change_ratio", min_value=0.0, max_value=float(row_count_change_threshold)),
    ]
    return Suite("warehouse", tuple(checks))


# --------------------------------------------------------------------------------------
# running a suite
# --------------------------------------------------------------------------------------
_GX: dict[str, Any] = {}


def _gx() -> tuple[Any, Any]:
    """(module great_expectations.expectations, whole-dataframe batch definition), made once."""
    if not _GX:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import logging

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
    cols: list[str] = []
    for ch in checks:
        for c in ch.kwargs.get("column_list", []) + ([ch.kwargs["column"]] if "column" in ch.kwargs else []):
            if c in frame.columns and c not in cols:
                cols.append(c)
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
