"""connectors.xlsx: hand-made workbooks written in the tests (openpyxl / xlsxwriter)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter

from connectors import (
    HeaderNotFoundError,
    MissingColumnsError,
    RawRead,
    UnreadableFileError,
    read_xlsx,
)
from schemas.mapping import mapping_for

MARRIAGE = mapping_for("婚姻登记")
ROSTER = mapping_for("低保花名册")

MARRIAGE_HEADERS = ["登记证字号", "业务类型", "登记日期", "男方姓名", "男方证件类型", "男方证件号码",
                    "女方姓名", "女方证件类型", "女方证件号码", "登记机关"]
ROSTER_HEADERS = ["序号", "街道", "社区", "户主姓名", "户主身份证号", "成员姓名", "与户主关系",
                  "成员身份证号", "性别", "出生日期", "保障类别", "家庭保障人口", "月保障金额（元）",
                  "家庭住址", "联系电话", "审批日期"]
HOUSEHOLD_COLS = [i for i, h in enumerate(ROSTER_HEADERS)
                  if ROSTER.column(ROSTER.match_headers([h])[h]).household]


def marriage_row(i: int, **over) -> list:
    row = {"登记证字号": f"J2026-{i:04d}", "业务类型": "结婚登记", "登记日期": "2026-11-0" + str(1 + i % 9),
           "男方姓名": f"张{i}", "男方证件类型": "居民身份证", "男方证件号码": "11010519800101123X",
           "女方姓名": f"王{i}", "女方证件类型": "居民身份证", "女方证件号码": "110105198202021246",
           "登记机关": "龙山区民政局"}
    row.update(over)
    return row


def write_marriage(path: Path, rows: list[dict], headers=MARRIAGE_HEADERS, title=True) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "婚姻登记"
    if title:
        ws.append(["XX区婚姻登记信息导出"])
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(headers))
    ws.append(headers)
    for r in rows:
        ws.append([r.get(h) for h in headers])
    wb.save(path)
    return path


def roster_sheet(ws, households: list[list[dict]], *, total: bool = True, month="2026年10月") -> None:
    """Title, 统计月份 row, headers, then each household's member rows with the
    household cells merged vertically over them; optional 合计 row."""
    ws.append(["XX区城市居民最低生活保障对象花名册"])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(ROSTER_HEADERS))
    ws.append([f"统计月份：{month}    单位：元"])
    ws.append(ROSTER_HEADERS)
    for members in households:
        first = ws.max_row + 1
        for k, m in enumerate(members):
            row = [m.get(h) for h in ROSTER_HEADERS]
            if k:
                row = [None if j in HOUSEHOLD_COLS else v for j, v in enumerate(row)]
            ws.append(row)
        if len(members) > 1 and members[0].get("_merge", True):
            for j in HOUSEHOLD_COLS:
                ws.merge_cells(start_row=first, start_column=j + 1, end_row=first + len(members) - 1,
                               end_column=j + 1)
    if total:
        ws.append(["合计", None, None, None, None, None, None, None, None, None, None,
                   sum(len(m) for m in households), 100.0 * len(households)])


def member(seq: int, name: str, rel: str = "户主", **over) -> dict:
    m = {"序号": seq, "街道": "东吉街道", "社区": "泰安社区", "户主姓名": f"户主{seq}",
         "户主身份证号": "11010519800101123X", "成员姓名": name, "与户主关系": rel,
         "成员身份证号": "110105198001011234", "性别": "男", "出生日期": dt.date(1980, 1, 1),
         "保障类别": "A类", "家庭保障人口": 2, "月保障金额（元）": 100.0, "家庭住址": "人民大街125号",
         "联系电话": "13800000000", "审批日期": dt.date(2026, 1, 1)}
    m.update(over)
    return m


def assert_contract(r: RawRead) -> None:
    """ARCHITECTURE.md raw frame contract + no silent drops."""
    assert r.rows_read == len(r.frame) + len(r.skipped)
    assert list(r.frame.columns[-3:]) == ["source_system", "source_object", "source_locator"]
    assert r.frame.columns.is_unique
    assert all(str(t) == "object" for t in r.frame.dtypes)
    for col in r.frame.columns:
        assert all(v is None or isinstance(v, str) for v in r.frame[col]), col


# -- header search, aliases, required/unknown columns -----------------------------
def test_title_row_skipped_header_found_locators_are_excel_rows(tmp_path):
    path = write_marriage(tmp_path / "婚姻登记_20261121.xlsx", [marriage_row(1), marriage_row(2)])
    r = read_xlsx(path, MARRIAGE)
    assert_contract(r)
    assert r.frame["source_locator"].tolist() == ["婚姻登记!3", "婚姻登记!4"]
    assert r.frame["source_object"].tolist() == ["婚姻登记_20261121.xlsx"] * 2
    assert set(r.frame["source_system"]) == {"civil_affairs"}
    assert r.frame["男方姓名"].tolist() == ["张1", "张2"]
    assert r.header_map["登记证字号"] == "certificate_no"
    assert r.metadata["title"] == "XX区婚姻登记信息导出"
    assert r.metadata["sheets"][0]["header_row"] == 2


def test_header_on_first_row_without_title(tmp_path):
    path = write_marriage(tmp_path / "m.xlsx", [marriage_row(1)], title=False)
    r = read_xlsx(path, MARRIAGE)
    assert r.frame["source_locator"].tolist() == ["婚姻登记!2"]


def test_renamed_header_matched_by_alias_and_headers_cleaned(tmp_path):
    headers = ["证件编号", *MARRIAGE_HEADERS[1:5], " 男方身份证号\n", *MARRIAGE_HEADERS[6:]]
    rows = [{"证件编号": "J1", " 男方身份证号\n": "11010519800101123X", **{h: "x" for h in MARRIAGE_HEADERS[1:5]},
             **{h: "y" for h in MARRIAGE_HEADERS[6:]}}]
    r = read_xlsx(write_marriage(tmp_path / "m.xlsx", rows, headers=headers), MARRIAGE)
    assert r.header_map["证件编号"] == "certificate_no"
    assert r.header_map["男方身份证号"] == "man_id"        # whitespace/newline stripped
    assert r.frame["男方身份证号"].tolist() == ["11010519800101123X"]
    assert r.unknown_columns == []


def test_missing_required_column_names_field_and_every_alias(tmp_path):
    headers = [h for h in MARRIAGE_HEADERS if h != "男方证件号码"]
    path = write_marriage(tmp_path / "婚姻登记_20261121.xlsx", [marriage_row(1)], headers=headers)
    with pytest.raises(MissingColumnsError) as info:
        read_xlsx(path, MARRIAGE)
    err = info.value
    assert err.missing == {"man_id": ("男方证件号码", "男方身份证号", "男方身份证号码")}
    msg = str(err)
    for text in ("man_id", "男方证件号码", "男方身份证号", "男方身份证号码", "婚姻登记_20261121.xlsx",
                 "工作表 婚姻登记", "sheet 婚姻登记", "缺少必需列", "missing required columns"):
        assert text in msg
    assert err.row == 2
    assert err.to_dict()["error_code"] == "missing_columns"


def test_unknown_extra_column_warned_and_loaded(tmp_path):
    headers = [*MARRIAGE_HEADERS, "备注"]
    r = read_xlsx(write_marriage(tmp_path / "m.xlsx", [marriage_row(1, 备注="补办")], headers=headers), MARRIAGE)
    assert r.unknown_columns == ["备注"]
    assert r.frame["备注"].tolist() == ["补办"]
    assert any(w.code == "unknown_column" and w.column == "备注" for w in r.warnings)


def test_duplicate_header_renamed_with_warning(tmp_path):
    headers = [*MARRIAGE_HEADERS, "登记机关"]
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(headers)
    ws.append([*[marriage_row(1)[h] for h in MARRIAGE_HEADERS], "第二个"])
    wb.save(tmp_path / "m.xlsx")
    r = read_xlsx(tmp_path / "m.xlsx", MARRIAGE)
    assert r.frame["登记机关#2"].tolist() == ["第二个"]
    assert r.frame["登记机关"].tolist() == ["龙山区民政局"]
    assert any(w.code == "duplicate_header" for w in r.warnings)


def test_no_header_anywhere(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(["甲", "乙"])
    wb.active.append([1, 2])
    wb.save(tmp_path / "m.xlsx")
    with pytest.raises(HeaderNotFoundError) as info:
        read_xlsx(tmp_path / "m.xlsx", MARRIAGE)
    assert "未找到表头" in str(info.value) and "header not found" in str(info.value)


# -- roster: merged household cells, totals, several sheets ------------------------
def test_merged_household_cells_filled_only_within_their_range(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "东吉街道"
    households = [
        [member(1, "甲"), member(1, "甲妻", "配偶"), member(1, "甲子", "子")],
        # an unmerged household row whose household cells are empty: stays empty
        [member(2, "乙", "户主", _merge=False, 序号=None, 户主姓名=None, 户主身份证号=None,
                **{"月保障金额（元）": None})],
        [member(3, "丙"), member(3, "丙女", "女")],
    ]
    roster_sheet(ws, households)
    wb.save(tmp_path / "低保花名册_202610.xlsx")
    r = read_xlsx(tmp_path / "低保花名册_202610.xlsx", ROSTER)
    assert_contract(r)
    f = r.frame.set_index("source_locator")
    assert f.loc["东吉街道!4":"东吉街道!6", "户主姓名"].tolist() == ["户主1"] * 3
    assert f.loc["东吉街道!4":"东吉街道!6", "月保障金额（元）"].tolist() == ["100"] * 3
    assert f.loc["东吉街道!7", "户主姓名"] is None           # not merged: never forward-filled
    assert f.loc["东吉街道!7", "序号"] is None
    assert f.loc["东吉街道!7", "成员姓名"] == "乙"
    assert f.loc["东吉街道!8":"东吉街道!9", "序号"].tolist() == ["3", "3"]
    # member-level cells are never filled
    assert f.loc["东吉街道!5", "与户主关系"] == "配偶"
    assert r.metadata["统计月份"] == "2026年10月"


def test_merged_range_followed_by_unmerged_empty_cell_stays_empty(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(ROSTER_HEADERS)
    ws.append([member(1, "甲")[h] for h in ROSTER_HEADERS])
    ws.append([None] * 5 + ["甲妻", "配偶"])
    ws.append([None] * 5 + ["无户", "其他"])        # below the merged range, same column empty
    ws.merge_cells("A2:A3")
    ws.merge_cells("D2:D3")
    wb.save(tmp_path / "r.xlsx")
    r = read_xlsx(tmp_path / "r.xlsx", ROSTER)
    assert r.frame["序号"].tolist() == ["1", "1", None]
    assert r.frame["户主姓名"].tolist() == ["户主1", "户主1", None]
    assert r.frame["街道"].tolist() == ["东吉街道", None, None]   # B not merged


def test_total_rows_at_end_and_in_the_middle_are_skipped_and_counted(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(ROSTER_HEADERS)
    ws.append([member(1, "甲")[h] for h in ROSTER_HEADERS])
    ws.append([None, "小计"] + [None] * 10 + [100])
    ws.append([member(2, "乙")[h] for h in ROSTER_HEADERS])
    ws.append([])                                    # a blank row in the middle
    ws.append([member(3, "丙")[h] for h in ROSTER_HEADERS])
    ws.append(["总 计："] + [None] * 11 + [300])
    wb.save(tmp_path / "r.xlsx")
    r = read_xlsx(tmp_path / "r.xlsx", ROSTER)
    assert_contract(r)
    assert r.frame["成员姓名"].tolist() == ["甲", "乙", "丙"]
    assert [(s.locator, s.reason) for s in r.skipped] == [
        ("Sheet!3", "total_row"), ("Sheet!5", "blank_row"), ("Sheet!7", "total_row")]
    assert r.skipped[0].raw["月保障金额（元）"] == "100"
    assert r.rows_read == 6


def test_several_sheets_one_per_street_and_non_data_sheet(tmp_path):
    wb = openpyxl.Workbook()
    ws1 = wb.active
    ws1.title = "东吉街道"
    roster_sheet(ws1, [[member(1, "甲"), member(1, "甲妻", "配偶")]])
    ws2 = wb.create_sheet("西宁街道")
    roster_sheet(ws2, [[member(1, "乙", 街道="西宁街道")]])
    notes = wb.create_sheet("填表说明")
    notes.append(["本表由街道填报"])
    wb.save(tmp_path / "r.xlsx")
    r = read_xlsx(tmp_path / "r.xlsx", ROSTER)
    assert_contract(r)
    assert r.frame["source_locator"].tolist() == ["东吉街道!4", "东吉街道!5", "西宁街道!4"]
    assert r.frame["街道"].tolist() == ["东吉街道", "东吉街道", "西宁街道"]
    assert len(r.skipped) == 2 and {s.reason for s in r.skipped} == {"total_row"}
    assert any(w.code == "sheet_without_header" and w.sheet == "填表说明" for w in r.warnings)
    assert [s["sheet"] for s in r.metadata["sheets"]] == ["东吉街道", "西宁街道"]


def test_data_sheet_missing_required_column_fails_even_if_another_sheet_is_fine(tmp_path):
    wb = openpyxl.Workbook()
    roster_sheet(wb.active, [[member(1, "甲")]])
    ws = wb.create_sheet("西宁街道")
    ws.append([h for h in ROSTER_HEADERS if h != "成员身份证号"])
    wb.save(tmp_path / "r.xlsx")
    with pytest.raises(MissingColumnsError) as info:
        read_xlsx(tmp_path / "r.xlsx", ROSTER)
    assert info.value.sheet == "西宁街道"
    assert "member_id" in info.value.missing


def test_hidden_sheet_skipped_with_warning(tmp_path):
    wb = openpyxl.Workbook()
    roster_sheet(wb.active, [[member(1, "甲")]], total=False)
    hidden = wb.create_sheet("旧数据")
    roster_sheet(hidden, [[member(9, "隐")]], total=False)
    hidden.sheet_state = "hidden"
    wb.save(tmp_path / "r.xlsx")
    r = read_xlsx(tmp_path / "r.xlsx", ROSTER)
    assert r.frame["成员姓名"].tolist() == ["甲"]
    assert [w.sheet for w in r.warnings if w.code == "hidden_sheet_skipped"] == ["旧数据"]


# -- cell rendering ---------------------------------------------------------------
def test_numeric_cells_dates_and_formulas_rendered_per_contract(tmp_path):
    path = tmp_path / "m.xlsx"
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet("婚姻登记")
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    ts_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    ws.write_row(0, 0, [*MARRIAGE_HEADERS, "男方出生日期", "备注"])
    ws.write_row(1, 0, ["J1", "结婚登记"])
    ws.write_datetime(1, 2, dt.datetime(2026, 11, 3), date_fmt)          # date cell
    ws.write_row(1, 3, ["张三", "居民身份证"])
    ws.write_number(1, 5, 110105198001011234)                         # ID typed as a number
    ws.write_row(1, 6, ["李四", "居民身份证", "110105198202021246"])
    ws.write_formula(1, 9, '="龙山"&"区民政局"', None, "龙山区民政局")  # formula with cached value
    ws.write_datetime(1, 10, dt.datetime(1980, 1, 1, 8, 30), ts_fmt)
    ws.write_number(1, 11, 42)
    ws.write_row(2, 0, ["J2", "离婚登记", "2026/11/4", "王五", "护照", "E12345678", "赵六", "居民身份证"])
    ws.write_number(2, 8, 1.10105198001011e17)                        # Excel kept 15 digits
    ws.write_number(2, 11, 2.5)
    wb.close()
    r = read_xlsx(path, MARRIAGE)
    f = r.frame
    assert f["登记日期"].tolist() == ["2026-11-03", "2026/11/4"]
    # xlsxwriter stores 16 significant digits: the ID arrives as repr(float), detectably corrupt
    assert f["男方证件号码"].tolist() == ["1.101051980010112e+17", "E12345678"]
    assert f.loc[1, "女方证件号码"] == "1.10105198001011e+17"
    assert f.loc[0, "登记机关"] == "龙山区民政局"
    assert f.loc[0, "男方出生日期"] == "1980-01-01 08:30:00"
    assert f["备注"].tolist() == ["42", "2.5"]
    assert f.loc[1, "登记机关"] is None


def test_formula_without_cached_value_is_warned(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "婚姻登记"
    ws.append(MARRIAGE_HEADERS)
    row = marriage_row(1)
    ws.append([row[h] for h in MARRIAGE_HEADERS])
    ws["J2"] = '=CONCATENATE("龙山","区民政局")'                   # openpyxl stores no cached value
    wb.save(tmp_path / "m.xlsx")
    r = read_xlsx(tmp_path / "m.xlsx", MARRIAGE)
    assert r.frame.loc[0, "登记机关"] is None
    [w] = [w for w in r.warnings if w.code == "formula_without_value"]
    assert (w.sheet, w.row, w.column) == ("婚姻登记", 2, "登记机关")
    assert "J2" in w.message


def test_header_only_workbook_gives_zero_rows(tmp_path):
    r = read_xlsx(write_marriage(tmp_path / "m.xlsx", []), MARRIAGE)
    assert_contract(r)
    assert len(r.frame) == 0 and r.rows_read == 0
    assert "男方姓名" in r.frame.columns


# -- unreadable files -------------------------------------------------------------
def test_truncated_xlsx(tmp_path):
    good = write_marriage(tmp_path / "good.xlsx", [marriage_row(i) for i in range(50)])
    data = good.read_bytes()
    bad = tmp_path / "婚姻登记_20261121.xlsx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFileError) as info:
        read_xlsx(bad, MARRIAGE)
    assert info.value.reason == "truncated"
    assert "婚姻登记_20261121.xlsx" in str(info.value) and "truncated" in str(info.value)


def test_password_protected_workbook(tmp_path):
    # An encrypted xlsx is an OLE2 compound file holding an `EncryptedPackage` stream.
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504 + "EncryptedPackage".encode("utf-16-le") + b"\0" * 512
    path = tmp_path / "m.xlsx"
    path.write_bytes(ole)
    with pytest.raises(UnreadableFileError) as info:
        read_xlsx(path, MARRIAGE)
    assert info.value.reason == "password_protected"
    assert "密码" in str(info.value)


def test_non_zip_file_named_xlsx(tmp_path):
    path = tmp_path / "m.xlsx"
    path.write_text("登记证字号,业务类型\nJ1,结婚登记\n", encoding="utf-8")
    with pytest.raises(UnreadableFileError) as info:
        read_xlsx(path, MARRIAGE)
    assert info.value.reason == "not_xlsx"


def test_empty_xlsx_file(tmp_path):
    path = tmp_path / "m.xlsx"
    path.write_bytes(b"")
    with pytest.raises(UnreadableFileError) as info:
        read_xlsx(path, MARRIAGE)
    assert info.value.reason == "empty"
    assert "文件为空" in str(info.value) and "empty file" in str(info.value)


def test_corrupt_sheet_xml_inside_valid_zip(tmp_path):
    import zipfile

    good = write_marriage(tmp_path / "good.xlsx", [marriage_row(1)])
    bad = tmp_path / "bad.xlsx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]
            dst.writestr(item, data)
    with pytest.raises(UnreadableFileError):
        read_xlsx(bad, MARRIAGE)
