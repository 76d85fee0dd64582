"""warehouse.workbook: the officers' xlsx, read back with openpyxl (and pandas)."""

from __future__ import annotations

import datetime as dt
import string
import zipfile

import openpyxl
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warehouse.workbook import CELL_LIMIT, Sheet, write_workbook


def _read(path, sheet):
    ws = openpyxl.load_workbook(path)[sheet]
    return ws, [[c.value for c in row] for row in ws.iter_rows()]


def test_values_keep_their_type_and_text_is_never_a_formula(tmp_path):
    df = pd.DataFrame({
        "文本": ["a<b&c>", "=1+1", None, "0012", "http://x.cn"],
        "数": [1, 2.5, None, float("nan"), -3],
        "日期": [dt.date(2026, 4, 11), None, dt.datetime(2026, 1, 2, 3, 4, 5), pd.Timestamp("2026-02-03"), pd.NaT],
        "混": ["s", 3, True, None, False],
    })
    path = tmp_path / "w.xlsx"
    write_workbook(path, [Sheet("问题清单", df)])
    ws, rows = _read(path, "问题清单")
    assert rows[0] == ["文本", "数", "日期", "混"]
    assert [r[0] for r in rows[1:]] == ["a<b&c>", "=1+1", None, "0012", "http://x.cn"]
    assert all(ws.cell(r, 1).data_type == "s" for r in (2, 3, 5, 6))  # text, whatever it looks like
    assert [r[1] for r in rows[1:]] == [1, 2.5, None, None, -3]
    assert [r[2] for r in rows[1:]] == [dt.datetime(2026, 4, 11), None, dt.datetime(2026, 1, 2, 3, 4, 5),
                                        dt.datetime(2026, 2, 3), None]
    assert ws.cell(2, 3).is_date and ws.cell(2, 3).number_format.replace("\\", "") == "yyyy-mm-dd"
    assert [r[3] for r in rows[1:]] == ["s", 3, True, None, False]


def test_the_header_is_styled_frozen_and_filtered_and_widths_apply(tmp_path):
    df = pd.DataFrame({"文件": ["a"] * 3, "说明": ["b"] * 3, "其他": ["c"] * 3})
    path = tmp_path / "w.xlsx"
    write_workbook(path, [Sheet("清单", df, {"文件": 30, "说明": 60})])
    ws = openpyxl.load_workbook(path)["清单"]
    head = ws["A1"]
    assert head.font.b and head.fill.fgColor.rgb == "FFDDEBF7" and head.alignment.wrap_text
    assert head.border.left.style == "thin"
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:C4"
    widths = [ws.column_dimensions[c].width for c in "ABC"]
    assert widths[0] > widths[2] and widths[1] > widths[0]


def test_several_sheets_an_empty_one_and_their_order(tmp_path):
    path = tmp_path / "w.xlsx"
    write_workbook(path, [Sheet("问题清单", pd.DataFrame({"a": [1]})),
                          Sheet("跨部门预警", pd.DataFrame(columns=["预警类型", "说明"])),
                          Sheet("说明", pd.DataFrame({"项目": ["部门", "待处理问题"], "数值": ["低保", 5]}))])
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["问题清单", "跨部门预警", "说明"]
    assert [c.value for c in wb["跨部门预警"][1]] == ["预警类型", "说明"] and wb["跨部门预警"].max_row == 1
    frames = pd.read_excel(path, sheet_name=None, engine="openpyxl")
    assert frames["说明"].to_dict("list") == {"项目": ["部门", "待处理问题"], "数值": ["低保", 5]}
    # a second, independent reader (calamine, Rust: what the connectors read exports with)
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(str(path))
    assert book.sheet_names == ["问题清单", "跨部门预警", "说明"]
    assert book.get_sheet_by_name("说明").to_python() == [["项目", "数值"], ["部门", "低保"], ["待处理问题", 5]]
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None


def test_control_characters_are_escaped_and_long_text_is_cut(tmp_path):
    path = tmp_path / "w.xlsx"
    write_workbook(path, [Sheet("s", pd.DataFrame({"v": ["x\x01y", "长" * (CELL_LIMIT + 10), "_x0041_"]}))])
    with zipfile.ZipFile(path) as z:
        xml = z.read("xl/sharedStrings.xml").decode()
    assert "x_x0001_y" in xml and "\x01" not in xml   # as Excel writes it: the file stays XML
    assert "_x005F_x0041_" in xml                       # a literal escape-like text shows as written
    _, rows = _read(path, "s")
    assert len(rows[2][0]) == CELL_LIMIT


@pytest.mark.parametrize("name", ["", "a" * 32, "a/b", "a[1]", "x:y", "'q"])
def test_a_sheet_name_excel_refuses_is_refused(tmp_path, name):
    with pytest.raises(ValueError):
        write_workbook(tmp_path / "w.xlsx", [Sheet(name, pd.DataFrame({"a": [1]}))])


def test_two_sheets_of_one_name_are_refused(tmp_path):
    with pytest.raises(ValueError):
        write_workbook(tmp_path / "w.xlsx", [Sheet("甲", pd.DataFrame()), Sheet("甲", pd.DataFrame())])


# text without control characters and Excel's escape pattern: read back exactly
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(list("&<>\"'=+-@ \n\t")),
                max_size=40).filter(lambda s: "_x" not in s and "\r" not in s)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_TEXT | st.none(), st.integers(-10**12, 10**12) | st.none(),
                               st.sampled_from(string.ascii_letters)), max_size=30))
def test_any_text_and_numbers_read_back_as_written(tmp_path, rows):
    df = pd.DataFrame(rows, columns=["文本", "数", "字母"]).astype(object)
    path = tmp_path / "h.xlsx"
    write_workbook(path, [Sheet("表", df)])
    _, got = _read(path, "表")
    assert got[0] == ["文本", "数", "字母"]
    want = [list(r) for r in rows]
    assert [list(r) for r in got[1:]] == want
