"""connectors.csv: encodings, locators, ragged rows, on files written in the tests."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from connectors import EncodingDetectionError, MissingColumnsError, UnreadableFileError, read_csv, read_export
from schemas.mapping import mapping_for

FLOATING = mapping_for("流动人口登记")
CREMATION = mapping_for("火化信息")

FLOAT_HEADERS = ["登记编号", "姓名", "性别", "公民身份号码", "现居住地址", "登记状态", "更新时间"]


def float_row(i: int, **over) -> list[str]:
    row = {"登记编号": f"LD{i:06d}", "姓名": f"阿依古丽·买买提{i}", "性别": "女",
           "公民身份号码": "65010219900101002X", "现居住地址": "人民大街125号3-2-501",
           "登记状态": "在住", "更新时间": "2026-11-21 14:03:22"}
    row.update(over)
    return [row[h] for h in FLOAT_HEADERS]


def csv_text(headers: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buf.getvalue()


def write(path: Path, text: str, encoding: str) -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def assert_contract(r) -> None:
    assert r.rows_read == len(r.frame) + len(r.skipped)
    assert all(str(t) == "object" for t in r.frame.dtypes)
    for col in r.frame.columns:
        assert all(v is None or isinstance(v, str) for v in r.frame[col]), col


# -- encodings --------------------------------------------------------------------
@pytest.mark.parametrize("encoding, expected", [
    ("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("gb18030", "gb18030"), ("gbk", "gb18030"),
])
def test_encoding_detected(tmp_path, encoding, expected):
    text = csv_text(FLOAT_HEADERS, [float_row(1), float_row(2, 姓名="張偉", 现居住地址="")])
    r = read_csv(write(tmp_path / "流动人口登记_20261121.csv", text, encoding), FLOATING)
    assert_contract(r)
    assert r.metadata["encoding"] == expected
    assert r.frame["姓名"].tolist() == ["阿依古丽·买买提1", "張偉"]
    assert r.frame["现居住地址"].tolist() == ["人民大街125号3-2-501", None]
    assert r.frame["source_locator"].tolist() == ["2", "3"]
    assert r.frame["source_object"].tolist() == ["流动人口登记_20261121.csv"] * 2
    assert r.header_map["公民身份号码"] == "citizen_id"


def test_latin1_garbage_fails_with_byte_offset(tmp_path):
    text = "Nom,Prénom,Café\nMüller,José,crème brûlée\n"
    path = write(tmp_path / "x.csv", text, "latin-1")
    with pytest.raises(EncodingDetectionError) as info:
        read_csv(path, FLOATING)
    err = info.value
    assert err.offset == text.encode("latin-1").index(b"\xe9")
    assert f"byte offset {err.offset}" in str(err) and f"字节偏移 {err.offset}" in str(err)
    assert err.tried == ("utf-8-sig", "utf-8", "gb18030")


def test_utf16_file_fails(tmp_path):
    path = write(tmp_path / "x.csv", csv_text(FLOAT_HEADERS, [float_row(1)]), "utf-16")
    with pytest.raises(EncodingDetectionError):
        read_csv(path, FLOATING)


def test_gb18030_file_with_a_utf8_line_is_mixed(tmp_path):
    data = (csv_text(FLOAT_HEADERS, [float_row(1)]).encode("gb18030")
            + csv_text(FLOAT_HEADERS, [float_row(2)]).split("\r\n", 1)[1].encode("utf-8")
            + csv_text(FLOAT_HEADERS, [float_row(3)]).split("\r\n", 1)[1].encode("gb18030"))
    path = tmp_path / "流动人口登记_20261121.csv"
    path.write_bytes(data)
    with pytest.raises(EncodingDetectionError) as info:
        read_csv(path, FLOATING)
    assert info.value.mixed == ("gb18030", "utf-8")
    assert info.value.row == 3
    assert "第 3 行" in str(info.value) and "row 3" in str(info.value)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_utf8_file_with_a_gb18030_line_is_mixed(tmp_path, encoding):
    data = (csv_text(FLOAT_HEADERS, [float_row(1), float_row(2)]).encode(encoding)
            + csv_text(FLOAT_HEADERS, [float_row(3)]).split("\r\n", 1)[1].encode("gb18030"))
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    with pytest.raises(EncodingDetectionError) as info:
        read_csv(path, FLOATING)
    assert info.value.row == 4
    assert info.value.mixed == (encoding, "gb18030")


def test_ascii_header_gb18030_body(tmp_path):
    """An ambiguous (ASCII) header: the body decides the encoding."""
    mapping = mapping_for("T_ZN")  # pinyin headers; any mapping with ASCII aliases works
    text = csv_text(["ZN_ID", "YLFN_ID", "XM", "GXSJ", "SCBZ"], [["1", "2", "张小明", "2026-11-21 10:00:00", "0"]])
    r = read_csv(write(tmp_path / "zn.csv", text, "gb18030"), mapping)
    assert r.metadata["encoding"] == "gb18030"
    assert r.frame["XM"].tolist() == ["张小明"]


# -- empty / header only / columns --------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\r\n  \r\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as info:
        read_csv(path, FLOATING)
    assert info.value.reason == "empty"


def test_header_only_file_is_zero_rows(tmp_path):
    r = read_csv(write(tmp_path / "x.csv", csv_text(FLOAT_HEADERS, []), "gb18030"), FLOATING)
    assert_contract(r)
    assert len(r.frame) == 0 and r.rows_read == 0 and r.skipped == []
    assert list(r.frame.columns) == [*FLOAT_HEADERS, "source_system", "source_object", "source_locator"]


def test_missing_required_column_names_aliases(tmp_path):
    headers = [h for h in FLOAT_HEADERS if h != "公民身份号码"]
    path = write(tmp_path / "流动人口登记_20261121.csv", csv_text(headers, []), "gb18030")
    with pytest.raises(MissingColumnsError) as info:
        read_csv(path, FLOATING)
    msg = str(info.value)
    for alias in ("公民身份号码", "身份证号", "身份证号码", "citizen_id", "流动人口登记_20261121.csv"):
        assert alias in msg


def test_renamed_header_and_unknown_column(tmp_path):
    headers = ["登记编号", "姓名", "身份证号", "现住址", "登记状态", "更新时间", "网格员"]
    rows = [["LD1", "张伟", "110105199001011234", "人民大街1号", "在住", "2026-11-21 08:00:00", "李四"]]
    r = read_csv(write(tmp_path / "x.csv", csv_text(headers, rows), "gb18030"), FLOATING)
    assert r.header_map["身份证号"] == "citizen_id"
    assert r.header_map["现住址"] == "current_address"
    assert r.unknown_columns == ["网格员"]
    assert r.frame["网格员"].tolist() == ["李四"]
    assert [w.column for w in r.warnings if w.code == "unknown_column"] == ["网格员"]


# -- locators and bad rows ------------------------------------------------------------
def test_embedded_newline_locator_is_the_line_where_the_record_starts(tmp_path):
    rows = [float_row(1), float_row(2, 现居住地址="人民大街125号\n3号楼2单元"), float_row(3),
            float_row(4, 姓名="多\n行\n名")]
    r = read_csv(write(tmp_path / "x.csv", csv_text(FLOAT_HEADERS, rows), "utf-8-sig"), FLOATING)
    assert r.frame["source_locator"].tolist() == ["2", "3", "5", "6"]
    assert r.frame.loc[1, "现居住地址"] == "人民大街125号\n3号楼2单元"


def test_ragged_rows_are_skipped_with_reason_never_dropped(tmp_path):
    text = csv_text(FLOAT_HEADERS, [float_row(1)]) + "LD9,太短\r\n" + \
        csv_text(FLOAT_HEADERS, [float_row(2) + ["多余"]]).split("\r\n", 1)[1] + \
        "\r\n" + csv_text(FLOAT_HEADERS, [float_row(3)]).split("\r\n", 1)[1]
    r = read_csv(write(tmp_path / "x.csv", text, "gb18030"), FLOATING)
    assert_contract(r)
    assert r.frame["source_locator"].tolist() == ["2", "6"]
    assert [(s.locator, s.reason) for s in r.skipped] == [("3", "field_count"), ("4", "field_count"),
                                                          ("5", "blank_row")]
    short, long_ = r.skipped[0], r.skipped[1]
    assert short.raw == {"登记编号": "LD9", "姓名": "太短"}
    assert long_.raw["#8"] == "多余" and "8" in long_.detail and "7" in long_.detail
    assert r.rows_read == 5


def test_ragged_rows_with_quoted_fields(tmp_path):
    text = csv_text(FLOAT_HEADERS, [float_row(1, 姓名="甲\n乙")]) + '"LD9","短"\r\n'
    r = read_csv(write(tmp_path / "x.csv", text, "utf-8"), FLOATING)
    assert r.frame["source_locator"].tolist() == ["2"]
    assert [(s.locator, s.reason) for s in r.skipped] == [("4", "field_count")]


def test_total_row_skipped(tmp_path):
    text = csv_text(FLOAT_HEADERS, [float_row(1), ["合计", "1人", "", "", "", "", ""]])
    r = read_csv(write(tmp_path / "x.csv", text, "utf-8"), FLOATING)
    assert [(s.locator, s.reason) for s in r.skipped] == [("3", "total_row")]
    assert len(r.frame) == 1


def test_cremation_bom_file_via_read_export(tmp_path):
    headers = ["火化证明编号", "逝者姓名", "身份证号码", "死亡日期"]
    path = write(tmp_path / "火化信息_20261121.csv",
                 csv_text(headers, [["HH001", "李娜", "220402194501011234", "2026-11-01"]]), "utf-8-sig")
    r = read_export(path, CREMATION)
    assert r.frame["逝者姓名"].tolist() == ["李娜"]
    assert r.metadata["encoding"] == "utf-8-sig"
    assert r.source_system == "civil_affairs"


def test_gb18030_lines_that_happen_to_be_valid_utf8_are_not_mixed(tmp_path):
    """Short GB18030 lines can be valid UTF-8 by chance (e.g. 2-byte sequences): they
    decode to non-CJK characters and must not be taken for UTF-8 lines."""
    chance = "詹"  # GB18030 D5B2: a valid UTF-8 two-byte sequence (U+0572)
    assert chance.encode("gb18030").decode("utf-8")
    text = csv_text(FLOAT_HEADERS, [float_row(1, 姓名=chance, 现居住地址="", 性别="", 登记状态="")])
    data = text.encode("gb18030")
    assert data.split(b"\r\n")[1].decode("utf-8")  # the data line is valid UTF-8
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    r = read_csv(path, FLOATING)
    assert r.metadata["encoding"] == "gb18030"
    assert r.frame["姓名"].tolist() == [chance]
