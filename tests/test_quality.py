"""Expectation suites (GE 1.x), warehouse checks, cross-source findings, corrections."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import synth
from pipelines.expectations import Check, Suite, checked_records, export_suite, run_suite, validate_export
from schemas.mapping import mapping_for
from tests.bad_inputs_helpers import (
    assert_counts_add_up, citizen_id, cremation_row, findings, float_row, ledger, q, rejected, roster_member, run,
    write_cremation, write_floating, write_roster,
)
from tests.e2e_helpers import sync


# ------------------------------------------------------------------------ suites as data
def test_export_suite_is_derived_from_the_mapping():
    suite = export_suite(mapping_for("火化信息"))
    kinds = {(c.expectation, c.column) for c in suite.checks}
    assert ("expect_column_values_to_be_unique", "cremation_no") in kinds
    assert ("expect_column_values_to_be_in_set", "gender") in kinds
    assert ("expect_column_values_to_be_in_set", "citizen_id__status") in kinds
    assert ("expect_column_values_to_be_between", "birth_date") in kinds
    floating = export_suite(mapping_for("流动人口登记"))
    assert ("expect_compound_columns_to_be_unique", "registration_no,updated_at") in \
        {(c.expectation, c.column) for c in floating.checks}
    roster = export_suite(mapping_for("低保花名册"))
    assert not any(c.expectation == "expect_column_values_to_be_unique" for c in roster.checks)  # 序号 repeats per member


def test_the_checks_import_great_expectations_without_pyspark_or_scipy_stats(tmp_path):
    """The checks' worker imports GE without the modules only its Spark and statistical
    expectations use (pyspark hidden, scipy.stats loaded on first use), runs a suite, and
    both still work in the same process afterwards."""
    import subprocess
    import sys

    code = """
import sys
import pandas as pd
from pipelines.expectations import Check, Suite, run_suite
res = run_suite({"records": pd.DataFrame({"g": ["1", "7"]})},
                Suite("t", (Check("expect_column_values_to_be_in_set", {"column": "g", "value_set": ["1", "2"]}, "g"),)))
assert not res["success"].all(), res
assert "pyspark" not in sys.modules and "scipy.stats._stats_py" not in sys.modules, "loaded"
import scipy
assert abs(scipy.stats.entropy([0.5, 0.5]) - 0.6931471805599453) < 1e-12
from scipy.stats import kstest  # noqa: F401
import pyspark  # noqa: F401
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_run_suite_reports_duplicates_codes_and_missing_rows():
    records = pd.DataFrame({"cremation_no": ["A", "A", "B"], "gender": ["1", "7", None],
                            "citizen_id__status": ["valid", "id_bad_checksum", "valid"]})
    suite = Suite("t", (
        Check("expect_column_values_to_be_unique", {"column": "cremation_no"}, "唯一"),
        Check("expect_column_values_to_be_in_set", {"column": "gender", "value_set": ["1", "2"]}, "代码"),
        Check("expect_column_values_to_be_in_set",
              {"column": "citizen_id__status", "value_set": ["valid"], "mostly": 0.9}, "可用", "warning"),
        Check("expect_table_row_count_to_be_between", {"min_value": 1}, "非空"),
    ))
    res = run_suite({"records": records}, suite).set_index("description")
    assert not res.loc["唯一", "success"] and res.loc["唯一", "unexpected_count"] == 2
    assert not res.loc["代码", "success"] and "7" in res.loc["代码", "unexpected_examples"]
    assert not res.loc["可用", "success"] and res.loc["可用", "severity"] == "warning"
    assert res.loc["非空", "success"] and res.loc["非空", "observed_value"] == "3"
    assert res["exception"].isna().all()
    empty = run_suite({"records": records.iloc[0:0]}, suite).set_index("description")
    assert not empty.loc["非空", "success"] and empty.drop(index="非空")["success"].all()


def test_export_suite_runs_on_normalised_records_of_a_real_mapping():
    from pipelines.standardize import standardize

    mapping = mapping_for("火化信息")
    raw = pd.DataFrame([cremation_row(1), cremation_row(2), cremation_row(2, 身份证号码="110105194001011230")])
    raw["source_system"], raw["source_object"], raw["source_locator"] = "civil_affairs", "火化信息_x.csv", ["2", "3", "4"]
    std = standardize(raw.astype(object), mapping)
    res = validate_export(std.records, mapping)
    assert res["exception"].isna().all(), res[res["exception"].notna()]
    failed = res[~res["success"]]
    assert failed[failed["severity"] == "error"]["column_name"].tolist() == ["cremation_no"]  # HH202600002 twice
    assert failed[failed["severity"] == "warning"]["column_name"].tolist() == ["citizen_id__status"]  # 1 of 3 bad
    # what a sync sends to the checks' worker: only the columns the suite reads, every row,
    # and the same results as the whole records
    sent = checked_records(std.records, mapping)
    assert len(sent) == len(std.records) and len(sent.columns) < len(std.records.columns) / 2
    pd.testing.assert_frame_equal(validate_export(sent, mapping), res)


# ------------------------------------------------------------------------ on a sync
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "inbox"
    synth.generate(out, households=30, seed=5, noise="realistic")
    wh = out.parent / "warehouse.duckdb"
    summary = sync(out, wh)
    assert summary.status == "succeeded"
    return out, wh, summary


def test_expectations_run_per_export_and_on_the_warehouse(generated):
    _inbox, wh, summary = generated
    res = q(wh, "SELECT * FROM quality.expectation_result")
    loaded = q(wh, "SELECT export_id FROM quality.load_ledger WHERE status = 'loaded'")
    assert set(loaded["export_id"]) <= set(res["export_id"].dropna().astype(int))
    wh_res = res[res["suite"] == "warehouse"]
    assert len(wh_res) >= 30
    assert res["exception"].isna().all(), res[res["exception"].notna()][["suite", "target", "exception"]]
    errors = wh_res[(wh_res["severity"] == "error") & ~wh_res["success"]]
    assert errors.empty, errors[["target", "expectation", "column_name", "unexpected_count", "unexpected_examples"]]
    assert summary.quality["warehouse_checks"] == len(wh_res)
    assert summary.stage_seconds["expectations"] + summary.stage_seconds["quality"] < 30


def _invariants(wh: Path, run_id: str) -> pd.DataFrame:
    from warehouse import quality

    con = duckdb.connect(str(wh), read_only=True)
    try:
        return quality.check_invariants(con, run_id, row_count_change_threshold=0.5)
    finally:
        con.close()


def test_sql_invariants_pass_on_a_synced_warehouse(generated):
    _inbox, wh, summary = generated
    sql = _invariants(wh, summary.run_id)
    assert sql[sql["severity"] == "error"]["success"].all()
    assert not sql.set_index("target").loc["quality.row_count_change", "success"]  # synthetic exports vary


def test_sql_invariants_flag_a_corrupted_warehouse(generated, tmp_path):
    _inbox, wh, summary = generated
    bad = tmp_path / "corrupted.duckdb"
    shutil.copy(wh, bad)
    con = duckdb.connect(str(bad))
    try:
        con.execute("CREATE OR REPLACE TABLE core.person AS SELECT * FROM core.person")  # key lost
        con.execute("""
            INSERT INTO core.person SELECT * FROM core.person ORDER BY person_id LIMIT 3;
            UPDATE core.person SET gender = '7' WHERE person_id IN (SELECT person_id FROM core.person
                                                                   ORDER BY person_id DESC LIMIT 4);
            UPDATE core.person SET name = NULL, citizen_id = '123' WHERE person_id IN (
              SELECT person_id FROM core.person ORDER BY person_id LIMIT 2 OFFSET 10);
            DELETE FROM core.person WHERE person_id IN (SELECT person_id FROM core.cremation LIMIT 2);
            DELETE FROM core.person_xref WHERE mention_id IN (SELECT mention_id FROM stg.mention LIMIT 1 OFFSET 5);
            INSERT INTO core.low_income_roster_line SELECT * FROM core.low_income_roster_line LIMIT 2;
            INSERT INTO core.cremation SELECT * FROM core.cremation LIMIT 1;
            INSERT INTO core.person_address SELECT * REPLACE ('A-missing' AS address_id) FROM core.person_address
              LIMIT 1;
            UPDATE core.fp_woman SET marital_status = '99' WHERE ylfn_id IN (SELECT ylfn_id FROM core.fp_woman
                                                                            LIMIT 2);
        """)
    finally:
        con.close()
    sql = _invariants(bad, summary.run_id)
    failed = sql[~sql["success"]]
    assert {("core.person", "person_id"), ("core.person", "gender"), ("core.person", "citizen_id"),
            ("core.cremation", "cremation_no"), ("core.person_address", "address_id__exists"),
            ("stg.mention", "mention_id__exists"), ("core.fp_woman", "marital_status")} <= set(
        zip(failed["target"], failed["column_name"])), failed[["target", "column_name"]]
    assert len(failed) >= 12 and (failed["severity"] == "error").sum() >= 10, failed[["target", "column_name"]]
    shown = failed[failed["expectation"] != "expect_column_values_to_not_be_null"]  # a null has nothing to show
    assert shown["unexpected_examples"].notna().all()


def test_cross_source_findings_name_records_and_columns(tmp_path):
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    shared = citizen_id("19800505", 123)  # male
    write_floating(inbox, [float_row(1, 公民身份号码=shared, 姓名="赵伟", 性别="女", 出生日期="1980-05-05"), float_row(2)])
    write_cremation(inbox, [cremation_row(1, 身份证号码=shared, 逝者姓名="钱强", 性别="男", 出生日期="1980-06-06")])
    run(inbox, wh)
    f = findings(wh)
    by_kind = {k: g for k, g in f.groupby("finding_kind")}
    for kind in ("id_conflict_name", "id_conflict_birth_date", "id_conflict_gender"):
        assert kind in by_kind, f[["finding_kind", "detail"]]
        row = by_kind[kind].iloc[0]
        assert row["citizen_id"] == shared
        assert "火化信息_20261121.csv!2" in row["detail"] and "流动人口登记_20261121.csv!2" in row["detail"]
    b = by_kind["birth_date_contradicts_id"]
    assert b[["source_object", "source_locator", "source_column", "raw_value"]].values.tolist() == \
        [["火化信息_20261121.csv", "2", "出生日期", "1980-06-06"]]
    g = by_kind["gender_contradicts_id"]
    assert g[["source_object", "source_locator", "source_column", "raw_value"]].values.tolist() == \
        [["流动人口登记_20261121.csv", "2", "性别", "女"]]
    assert "1980-05-05" in b["detail"].iloc[0]
    # recomputed, not accumulated, on the next sync
    run(inbox, wh)
    assert len(findings(wh)) == len(f)


def test_row_count_change_beyond_threshold_is_a_failed_check(tmp_path):
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    write_cremation(inbox, [cremation_row(i) for i in range(1, 11)], name="火化信息_20261120.csv")
    run(inbox, wh)
    write_cremation(inbox, [cremation_row(i) for i in range(20, 22)], name="火化信息_20261121.csv")
    run(inbox, wh)
    res = q(wh, "SELECT * FROM quality.expectation_result WHERE target = 'quality.row_count_change'")
    assert len(res) == 2
    last = res.sort_values("evaluated_at").iloc[-1]
    assert not last["success"] and last["unexpected_count"] == 1 and last["severity"] == "warning"


def test_correction_resolves_the_rows_it_fixes_and_the_rest_stays_open(tmp_path):
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    write_floating(inbox, [float_row(1, 公民身份号码="2.20402198502020e+17"), float_row(2, 出生日期="1985-02-30"),
                           float_row(3, 更新时间="")])
    run(inbox, wh)
    before = rejected(wh)
    assert set(before["status"]) == {"open"} and len(before) == 3
    write_floating(inbox, [float_row(1), float_row(3)], name="流动人口登记_20261121_补报.csv")
    run(inbox, wh)
    after = rejected(wh).set_index("record_key")
    assert after.loc["LD202600001", "status"] == "resolved"
    assert after.loc["LD202600003", "status"] == "resolved"
    assert after.loc["LD202600002", "status"] == "open"
    corr = ledger(wh)
    corr_id = corr[corr["source_object"] == "流动人口登记_20261121_补报.csv"]["export_id"].iloc[0]
    assert (after[after["status"] == "resolved"]["resolved_by_export_id"] == corr_id).all()
    assert_counts_add_up(wh)

    from pipelines.errors import advice
    from warehouse.reports import problem_list
    from warehouse.store import connect_read_only

    con = connect_read_only(wh)
    try:
        pl = problem_list(con, "floating_population", advice)
    finally:
        con.close()
    assert pl["状态"].tolist() == ["待处理", "已解决", "已解决"]
    assert pl.iloc[0]["行号/主键"] == "3" and pl.iloc[0]["列"] == "出生日期"
    assert set(pl.iloc[1:]["更正文件"]) == {"流动人口登记_20261121_补报.csv"}


def test_quality_tables_are_declared_with_chinese_comments():
    from warehouse.ddl import quality_tables

    names = {t.qualified for t in quality_tables()}
    assert {"quality.expectation_result", "quality.finding"} <= names
    for t in quality_tables():
        assert all(c.comment for c in t.columns)


def test_great_expectations_imports_in_a_python_c_process_with_pyspark_installed():
    """pyspark 4 (the Spark engine's dependency) ends a `python -c` process with
    sys.exit(0) when Great Expectations imports `pyspark.sql.connect`: every sync in a
    pytest-xdist worker failed with SystemExit: 0. `_gx` hides that package while GE is
    imported; afterwards pyspark still imports."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("from pipelines.expectations import _gx; assert _gx()[1] is not None; "
            "import importlib.util, sys; "
            "assert importlib.util.find_spec('pyspark') is None or __import__('pyspark.sql') is not None; "
            "print('imported')")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "imported" in out.stdout, out.stderr[-2000:]


def _problems(wh, system: str):
    from pipelines.errors import advice
    from warehouse.reports import problem_counts, problem_list
    from warehouse.store import connect_read_only

    con = connect_read_only(wh)
    try:
        return problem_list(con, system, advice), problem_counts(con, system)
    finally:
        con.close()


def test_a_newer_roster_month_supersedes_the_problems_of_the_earlier_ones(tmp_path):
    """A roster restates its whole population each month: the open problems of earlier
    months are closed as superseded by the newest (which lists those still wrong), so the
    list holds one month's problems, not every month's again."""
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    bad_x = {"成员身份证号": "2.20402200001015e+17"}        # Excel's scientific notation
    bad_y = {"成员身份证号": "22040220000101"}              # truncated
    write_roster(inbox, [[roster_member(1, 0), roster_member(1, 1, **bad_x)], [roster_member(2, 0), roster_member(2, 1, **bad_y)]],
                 name="低保花名册_202610.xlsx")
    run(inbox, wh)
    first, _ = _problems(wh, "low_income")
    assert len(first) == 2 and set(first["状态"]) == {"待处理"}
    # November: X still wrong, Y put right at the source
    write_roster(inbox, [[roster_member(1, 0), roster_member(1, 1, **bad_x)], [roster_member(2, 0), roster_member(2, 1)]],
                 name="低保花名册_202611.xlsx")
    run(inbox, wh)
    rej = rejected(wh)
    led = ledger(wh).set_index("source_object")
    oct_rows = rej[rej["source_object"] == "低保花名册_202610.xlsx"]
    assert set(oct_rows["status"]) == {"superseded"} and len(oct_rows) == 2
    assert set(oct_rows["resolved_by_export_id"]) == {led.loc["低保花名册_202611.xlsx", "export_id"]}
    listed, counts = _problems(wh, "low_income")
    assert listed["文件"].tolist() == ["低保花名册_202611.xlsx"] and listed["状态"].tolist() == ["待处理"]
    assert counts == {"resolved_earlier": 0, "superseded": 2}
    # a late roster of an earlier month is superseded at once
    write_roster(inbox, [[roster_member(3, 0), roster_member(3, 1, **bad_y)]], name="低保花名册_202609.xlsx")
    run(inbox, wh)
    rej = rejected(wh)
    assert set(rej[rej["source_object"] == "低保花名册_202609.xlsx"]["status"]) == {"superseded"}
    assert set(rej[rej["source_object"] == "低保花名册_202611.xlsx"]["status"]) == {"open"}
    assert _problems(wh, "low_income")[1]["superseded"] == 3
    assert_counts_add_up(wh)


def test_problems_resolved_long_ago_leave_the_list_but_are_counted(tmp_path):
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    write_floating(inbox, [float_row(1, 公民身份号码="2.20402198502020e+17"), float_row(2, 出生日期="1985-02-30")])
    run(inbox, wh)
    write_floating(inbox, [float_row(1)], name="流动人口登记_20261121_补报.csv")
    run(inbox, wh)
    listed, counts = _problems(wh, "floating_population")
    assert listed["状态"].tolist() == ["待处理", "已解决"] and counts["resolved_earlier"] == 0
    con = duckdb.connect(str(wh))   # the correction loaded 40 days ago
    try:
        con.execute("UPDATE quality.load_ledger SET loaded_at = loaded_at - INTERVAL 40 DAY "
                    "WHERE source_object = '流动人口登记_20261121_补报.csv'")
    finally:
        con.close()
    listed, counts = _problems(wh, "floating_population")
    assert listed["状态"].tolist() == ["待处理"] and listed.iloc[0]["列"] == "出生日期"
    assert counts == {"resolved_earlier": 1, "superseded": 0}
