"""connectors package API: structured errors and `read_export` dispatch."""

from __future__ import annotations

import pickle

import openpyxl
import pytest

import connectors
from connectors import (
    ConnectorError,
    EncodingDetectionError,
    MissingColumnsError,
    UnreadableFileError,
    discover_exports,
    read_export,
)


def test_all_is_importable():
    for name in connectors.__all__:
        assert hasattr(connectors, name), name


def test_error_message_is_built_from_context_in_chinese_and_english():
    err = ConnectorError("low_income", "低保花名册_202610.xlsx", "/inbox/low_income/低保花名册_202610.xlsx",
                         sheet="东吉街道", row=7, column="成员身份证号", value="1.10105198001011e+17")
    msg = str(err)
    zh, en = msg.split(" | ")
    for part in ("低保花名册_202610.xlsx", "低保", "工作表 东吉街道", "第 7 行", "列 成员身份证号", "1.10105198001011e+17"):
        assert part in zh
    for part in ("file 低保花名册_202610.xlsx (low_income)", "sheet 东吉街道", "row 7", "column 成员身份证号",
                 "path /inbox/low_income/低保花名册_202610.xlsx"):
        assert part in en
    d = err.to_dict()
    assert d["sheet"] == "东吉街道" and d["row"] == 7 and d["message"] == msg


def test_errors_survive_pickling_with_their_context():
    err = MissingColumnsError("civil_affairs", "f.xlsx", "/x/f.xlsx", sheet="s", row=2,
                              missing={"man_id": ("男方证件号码", "男方身份证号")})
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is MissingColumnsError and copy.missing == err.missing and str(copy) == str(err)
    enc = pickle.loads(pickle.dumps(EncodingDetectionError("x", "f.csv", "f.csv", offset=12, tried=("utf-8",))))
    assert enc.offset == 12 and "12" in str(enc)


def test_unreadable_error_reasons_are_subclass_of_connector_error():
    err = UnreadableFileError("civil_affairs", "a.xlsx", "a.xlsx", reason="truncated")
    assert isinstance(err, ConnectorError) and err.code == "unreadable_file"
    assert "文件不完整" in str(err) and "truncated file" in str(err)


def test_discover_then_read_export(tmp_path):
    folder = tmp_path / "civil_affairs"
    folder.mkdir()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "婚姻登记"
    ws.append(["XX区婚姻登记信息导出"])
    ws.append(["登记证字号", "业务类型", "登记日期", "男方姓名", "男方证件号码", "女方姓名", "女方证件号码"])
    ws.append(["J1", "结婚登记", "2026-11-01", "张伟", "11010519800101123X", "王芳", "110105198202021246"])
    wb.save(folder / "婚姻登记_2026-11-21_补报.xlsx")
    (folder / "火化信息_20261121.csv").write_bytes(
        "\ufeff火化证明编号,逝者姓名,身份证号码,死亡日期\r\nHH1,李娜,220402194501011234,2026-11-01\r\n".encode())
    found = discover_exports(tmp_path)
    reads = {f.mapping: read_export(f) for f in found}
    assert reads["婚姻登记"].frame["source_object"].tolist() == ["婚姻登记_2026-11-21_补报.xlsx"]
    assert reads["婚姻登记"].frame["source_locator"].tolist() == ["婚姻登记!3"]
    assert reads["火化信息"].frame["source_locator"].tolist() == ["2"]


def test_read_export_of_sql_mapping_is_refused(tmp_path):
    from schemas.mapping import mapping_for

    with pytest.raises(ValueError, match="read_table"):
        read_export(tmp_path / "x", mapping_for("T_YLFN"))
