"""Officer reports: problem lists per department (xlsx) and the offline HTML summary."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import duckdb
import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

import synth
from tests.bad_inputs_helpers import float_row, run, write_floating
from tests.e2e_helpers import sync, truth_mentions

CORRUPTED = ["excel_scientific", "excel_truncated", "excel_numeric_cell", "typo"]
SYSTEM_ZH = {"civil_affairs": "民政", "low_income": "低保", "floating_population": "流动人口", "family_planning": "计生"}


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A generated inbox, synced, reported with `residents report`."""
    from cli import app

    base = tmp_path_factory.mktemp("rep")
    inbox, wh, out = base / "inbox", base / "warehouse.duckdb", base / "reports"
    synth.generate(inbox, households=30, seed=7, noise="realistic")
    assert sync(inbox, wh).status == "succeeded"
    result = CliRunner().invoke(app, ["report", "--warehouse", str(wh), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return inbox, wh, out


def read_list(out: Path, system: str) -> pd.DataFrame:
    return pd.read_excel(out / f"问题清单_{SYSTEM_ZH[system]}.xlsx", sheet_name="问题清单", dtype=str,
                         engine="openpyxl").fillna("")


def test_every_corrupted_or_mistyped_id_is_in_its_departments_problem_list(reported):
    """Every corrupted ID is listed — but a roster's earlier months: their problems are
    closed as superseded by the newest month (which lists those still wrong)."""
    inbox, wh, out = reported
    truth = truth_mentions(inbox)
    bad = truth[truth["id_quirk"].isin(CORRUPTED)]
    assert len(bad) > 0
    con = duckdb.connect(str(wh), read_only=True)
    try:
        ledger = con.execute("SELECT source_object, mapping, period FROM quality.load_ledger "
                             "WHERE status = 'loaded'").df()
        superseded_at = set(con.execute("SELECT source_object, source_locator FROM quality.rejected_record "
                                        "WHERE status = 'superseded' AND error_code LIKE 'id_%'").fetchall())
    finally:
        con.close()
    rosters = ledger[ledger["period"].notna() & ledger["source_object"].str.startswith("低保")]
    earlier = set(rosters[rosters["period"] < rosters["period"].max()]["source_object"])
    assert len(earlier) >= 1, rosters     # the generator writes several roster months
    missing, seen_superseded = [], 0
    for system, group in bad.groupby("source_system"):
        pl = read_list(out, system)
        where = set(zip(pl["文件"], pl["工作表"], pl["行号/主键"], pl["错误代码"].str.startswith("id_")))
        for m in group.itertuples():
            if m.source_object in earlier:
                seen_superseded += 1
                if (m.source_object, m.source_locator) not in superseded_at:
                    missing.append((system, m.source_object, m.source_locator, "not superseded"))
                continue
            sheet, row = (m.source_locator.rsplit("!", 1) if "!" in m.source_locator else ("", m.source_locator))
            if (m.source_object, sheet, row, True) not in where:
                missing.append((system, m.source_object, m.source_locator, m.id_quirk, m.id_written))
    assert not missing, missing[:10]
    assert seen_superseded > 0
    listed = set(read_list(out, "low_income")["文件"])
    assert listed and not (listed & earlier), listed


def test_problem_lists_have_the_chinese_columns_and_open_problems_first(reported):
    _inbox, _wh, out = reported
    files = sorted(p.name for p in out.glob("问题清单_*.xlsx"))
    assert files and all(name.endswith(".xlsx") for name in files)
    for path in out.glob("问题清单_*.xlsx"):
        wb = openpyxl.load_workbook(path, read_only=True)
        assert wb.sheetnames == ["问题清单", "跨部门预警", "核查提示", "说明"]
        header = [c.value for c in next(wb["问题清单"].iter_rows(max_row=1))]
        for col in ("文件", "工作表", "行号/主键", "列", "原始值", "问题说明", "处理建议", "状态"):
            assert col in header
        pl = pd.read_excel(path, sheet_name="问题清单", dtype=str,
                         engine="openpyxl").fillna("")
        status = pl["状态"].tolist()
        assert status == sorted(status, key=lambda s: s != "待处理")
        assert (pl["问题说明"] != "").all() and (pl["处理建议"] != "").all()


def test_raw_values_are_written_as_text_never_as_formulas(tmp_path):
    from pipelines.errors import advice
    from warehouse.reports import write_reports

    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    write_floating(inbox, [float_row(1, 公民身份号码="=1+1"), float_row(2, 服务处所="x\x01" + "长" * 40000)])
    run(inbox, wh)
    write_reports(wh, tmp_path / "r", advice=advice)
    ws = openpyxl.load_workbook(tmp_path / "r" / "问题清单_流动人口.xlsx")["问题清单"]
    header = [c.value for c in ws[1]]
    raw = header.index("原始值") + 1
    values = {ws.cell(r, raw).value for r in range(2, ws.max_row + 1)}
    assert "=1+1" in values
    cell = next(ws.cell(r, raw) for r in range(2, ws.max_row + 1) if ws.cell(r, raw).value == "=1+1")
    assert cell.data_type == "s"


def test_html_summary_is_self_contained_and_has_every_section(reported):
    _inbox, _wh, out = reported
    page = (out / "质量报告.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "url(" not in page
    for section in ("各来源装载情况", "拒收原因", "趋势", "跨部门冲突与预警", "数据期望检查", "文件级警告"):
        assert section in page
    assert not re.search(r"\b\d{17}[\dX]\b", page), "full citizen IDs must not appear in the summary"


def test_html_summary_renders_in_headless_chromium(reported, tmp_path):
    _inbox, _wh, out = reported
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed but CI=true: the HTML render check must run in CI")
        pytest.skip("chromium not installed (apt-get install chromium)")
    png = tmp_path / "report.png"
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--window-size=1280,1600", f"--screenshot={png}", (out / "质量报告.html").as_uri()],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert png.exists() and png.stat().st_size > 20_000, proc.stderr[-2000:]
    pixels = _png_bytes(png)
    drawn = sum(1 for b in pixels if b not in (0, 255))
    assert drawn > 0.01 * len(pixels), "the screenshot is (nearly) blank"


def _png_bytes(path: Path) -> bytes:
    """The decompressed scanlines of a PNG (stdlib only): a blank page is all 0/255."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


def test_the_flow_writes_the_reports_after_a_sync(tmp_path):
    """The reports are staged from the committed working copy while the analyst file is
    written (`warehouse.reports.alongside`) and put in place with the publish."""
    from flows import sync as flow_sync
    from settings import load_settings

    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    write_floating(inbox, [float_row(1), float_row(2, 出生日期="1985-02-30")])
    settings = load_settings(inbox=inbox, warehouse=wh, reports_dir=tmp_path / "out", lock_timeout_s=30,
                             resolution_mode="deterministic", district={"county_code": "220402"})
    assert flow_sync(settings).status == "succeeded"
    assert (tmp_path / "out" / "质量报告.html").exists()
    pl = pd.read_excel(tmp_path / "out" / "问题清单_流动人口.xlsx", sheet_name="问题清单", dtype=str, engine="openpyxl")
    assert pl[["文件", "行号/主键", "列", "原始值", "状态"]].values.tolist() == \
        [["流动人口登记_20261121.csv", "3", "出生日期", "1985-02-30", "待处理"]]
    assert not [p.name for p in (tmp_path / "out").iterdir() if ".tmp" in p.name]


def test_the_flow_writes_the_reports_of_an_encrypted_warehouse(tmp_path):
    """An encrypted warehouse is attached to an in-memory DuckDB instance: the reports
    staged beside the analyst file read it all the same, after a first load and after a
    scoped one (which also checkpoints beside them)."""
    from flows import sync as flow_sync
    from settings import load_settings
    from warehouse import store

    inbox, wh, out = tmp_path / "inbox", tmp_path / "w.duckdb", tmp_path / "out"
    write_floating(inbox, [float_row(1), float_row(2, 出生日期="1985-02-30")])
    settings = load_settings(inbox=inbox, warehouse=wh, reports_dir=out, lock_timeout_s=30,
                             resolution_mode="deterministic", district={"county_code": "220402"},
                             env={"RESIDENTS_WAREHOUSE_KEY": "k3y-For-Report-Tests"})
    try:
        for day, row in ((None, None), ("20261122", float_row(3, 出生日期="1990-13-01"))):
            if day:
                write_floating(inbox, [row], name=f"流动人口登记_{day}.csv")
            assert flow_sync(settings).status == "succeeded"
            assert (out / "质量报告.html").exists()
        pl = pd.read_excel(out / "问题清单_流动人口.xlsx", sheet_name="问题清单", dtype=str, engine="openpyxl")
        assert sorted(pl["原始值"]) == ["1985-02-30", "1990-13-01"]
        with pytest.raises(duckdb.Error, match="encrypted"):
            duckdb.connect(str(wh), read_only=True)
    finally:
        store.set_key(wh, None)


def test_a_sync_that_fails_at_the_publish_leaves_the_reports_as_they_were(tmp_path, monkeypatch):
    """Reports staged for a publish that then fails are removed: the officers keep the
    lists of the warehouse that is still published, and no temporary file stays."""
    import flows
    from settings import load_settings

    inbox, wh, out = tmp_path / "inbox", tmp_path / "w.duckdb", tmp_path / "out"
    write_floating(inbox, [float_row(1), float_row(2, 出生日期="1985-02-30")])
    settings = load_settings(inbox=inbox, warehouse=wh, reports_dir=out, lock_timeout_s=30,
                             resolution_mode="deterministic", district={"county_code": "220402"})
    flows.sync(settings)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_floating(inbox, [float_row(3, 出生日期="1990-13-01")], name="流动人口登记_20261122.csv")

    def failing(con):
        import time
        time.sleep(0.5)  # the reports are staged meanwhile
        raise RuntimeError("analyst file failed")

    monkeypatch.setattr(flows, "analyst_publisher", lambda settings: failing)
    with pytest.raises(RuntimeError, match="analyst file failed"):
        flows.sync(settings)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_report_command_on_a_missing_warehouse_fails_clearly(tmp_path):
    from cli import app

    result = CliRunner().invoke(app, ["report", "--warehouse", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path)])
    assert result.exit_code == 1


def test_unchanged_problem_lists_are_not_rewritten(reported, tmp_path):
    """A nightly sync rewrites only the lists whose content changed."""
    from warehouse import store
    from warehouse.reports import write_reports

    _inbox, wh, _out = reported
    work = tmp_path / "w.duckdb"
    shutil.copy2(wh, work)
    out = tmp_path / "reports"
    first = {p.name: p.stat().st_mtime_ns for p in write_reports(work, out) if p.suffix == ".xlsx"}
    assert len(first) >= 3
    again = {p.name: p.stat().st_mtime_ns for p in write_reports(work, out) if p.suffix == ".xlsx"}
    assert again == first
    with store.transaction(work) as con:  # one low-income problem is resolved
        con.execute("UPDATE quality.rejected_record SET status = 'resolved' WHERE rowid = (SELECT min(rowid) FROM "
                    "quality.rejected_record WHERE source_system = 'low_income' AND status = 'open')")
    third = {p.name: p.stat().st_mtime_ns for p in write_reports(work, out) if p.suffix == ".xlsx"}
    changed = {name for name in third if third[name] != first[name]}
    assert changed == {"问题清单_低保.xlsx"}, changed


def test_each_departments_list_carries_the_alerts_on_its_records(reported):
    """The 低保 office sees, in its own workbook, every deceased person still on a roster,
    with the roster rows to stop (file!sheet!row) and the full ID."""
    _inbox, wh, out = reported
    with duckdb.connect(str(wh), read_only=True) as con:
        expected = con.execute(
            "SELECT a.person_id, p.citizen_id, CAST(a.evidence AS VARCHAR) FROM core.alert a "
            "JOIN core.person p USING (person_id) WHERE alert_kind = 'deceased_receiving_benefit'").fetchall()
    assert expected, "the fixture district has a deceased person on a roster"
    sheet = pd.read_excel(out / "问题清单_低保.xlsx", sheet_name="跨部门预警", dtype=str, engine="openpyxl").fillna("")
    rows = {r["人员编号"]: r for _, r in sheet.iterrows()}
    for person_id, citizen_id, evidence in expected:
        row = rows[person_id]
        assert row["预警类型"] == "死亡后仍在低保花名册" and row["公民身份号码"] == (citizen_id or "")
        cited = row["本部门记录（文件!工作表!行）"].split("；")
        assert cited and all(rec in evidence and rec.startswith("低保花名册") for rec in cited)
        assert "停发" in row["处理建议"]
    # the alert's date is a date cell, shown as one (it was a bare day number once)
    ws = openpyxl.load_workbook(out / "问题清单_低保.xlsx")["跨部门预警"]
    dates = [ws.cell(r, [c.value for c in ws[1]].index("日期") + 1) for r in range(2, ws.max_row + 1)]
    assert dates and all(c.is_date and "yy" in c.number_format for c in dates if c.value is not None)
    # the family-planning list has no 低保 alert of its own
    fp = pd.read_excel(out / "问题清单_计生.xlsx", sheet_name="跨部门预警", dtype=str, engine="openpyxl")
    assert "死亡后仍在低保花名册" not in set(fp["预警类型"])


def test_a_department_whose_only_problem_is_a_failed_source_gets_its_problem_list(tmp_path):
    """A department with no rejected record, only a source that failed (an unreachable
    database): its list says 整个文件 (the all-NULL columns of that query came back as
    integers and the report generation failed with "Invalid value '（整行）' for dtype Int32")."""
    from warehouse import store
    from warehouse.reports import problem_list

    wh = tmp_path / "w.duckdb"
    store.initialise(wh)
    with store.transaction(wh) as con:
        con.execute("""INSERT INTO quality.load_ledger (export_id, run_id, source_system, mapping, source_object,
                       content_sha256, status, loaded_at, message)
                       VALUES (1, 'r1', 'family_planning', 'fp_woman', 'T_YLFN', 'x', 'failed', now(),
                               '无法连接数据来源（已尝试 3 次）')""")
        got = problem_list(con, "family_planning")
    assert list(got["列"]) == ["（整个文件）"] and list(got["问题类型"]) == ["文件无法装载"]
