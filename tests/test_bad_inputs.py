"""The catalogue of bad inputs (README "Bad-input catalogue"): each case syncs a small
inbox holding that bad file and asserts a clear error (ledger status `failed` with a
message naming the file and where) or a quarantine record / finding with its exact
location, and that the counts add up (rows read = accepted + rejected)."""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile

import openpyxl
import pytest

from tests.bad_inputs_helpers import (
    CREMATION_HEADERS, FLOAT_HEADERS, assert_counts_add_up, cremation_row, csv_bytes, findings, float_row, ledger, q,
    rejected, roster_member, run, write_cremation, write_floating, write_marriage, marriage_row, write_roster,
)


@pytest.fixture
def inbox(tmp_path):
    return tmp_path / "inbox"


@pytest.fixture
def wh(tmp_path):
    return tmp_path / "warehouse.duckdb"


def failed_message(wh, name: str) -> str:
    led = ledger(wh)
    row = led[led["source_object"] == name]
    assert len(row) == 1, led[["source_object", "status", "message"]]
    assert row["status"].iloc[0] == "failed"
    msg = row["message"].iloc[0]
    assert name in msg
    return msg


def only_problem(wh, code: str):
    r = rejected(wh)
    hits = r[r["error_code"] == code]
    assert len(hits) >= 1, r[["source_locator", "source_column", "error_code"]]
    return hits


# ---------------------------------------------------------------------------------- files
def test_01_wrong_encoding_fails_the_file_naming_it(inbox, wh):
    path = write_floating(inbox, [float_row(1)])
    path.write_bytes(csv_bytes(FLOAT_HEADERS, [float_row(1)], "gb18030").decode("gb18030").encode("utf-16"))
    run(inbox, wh)
    msg = failed_message(wh, path.name)
    assert "编码" in msg and "encoding" in msg


def test_02_mixed_encodings_fail_naming_the_line(inbox, wh):
    path = write_floating(inbox, [float_row(1), float_row(2)])
    utf8_line = csv_bytes(FLOAT_HEADERS, [float_row(3)], "utf-8").split(b"\r\n", 1)[1]
    path.write_bytes(path.read_bytes() + utf8_line)
    run(inbox, wh)
    msg = failed_message(wh, path.name)
    assert "编码混杂" in msg and "第 4 行" in msg


def test_03_truncated_xlsx_fails(inbox, wh):
    path = write_marriage(inbox, [marriage_row(i) for i in range(40)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    run(inbox, wh)
    assert "不完整" in failed_message(wh, path.name) or "损坏" in failed_message(wh, path.name)


def test_04_password_protected_xlsx_fails(inbox, wh):
    path = inbox / "civil_affairs" / "婚姻登记_20261121.xlsx"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504 + "EncryptedPackage".encode("utf-16-le")
                     + b"\0" * 512)
    run(inbox, wh)
    assert "加密" in failed_message(wh, path.name)


def test_05_formula_cells_cached_value_loads_missing_value_is_a_finding(inbox, wh):
    path = write_marriage(inbox, [marriage_row(1), marriage_row(2)])
    wb = openpyxl.load_workbook(path)
    ws = wb["婚姻登记"]
    ws["L4"] = '=CONCATENATE("龙山","区民政局")'   # openpyxl stores no cached value
    wb.save(path)
    run(inbox, wh)
    f = findings(wh)
    hit = f[f["finding_kind"] == "formula_without_value"]
    assert len(hit) == 1
    assert (hit["source_object"].iloc[0], hit["source_locator"].iloc[0], hit["source_column"].iloc[0]) == \
        (path.name, "婚姻登记!4", "登记机关")
    assert "L4" in hit["detail"].iloc[0]
    assert ledger(wh)["rows_accepted"].iloc[0] == 2
    assert_counts_add_up(wh)


def test_06_hidden_sheet_is_skipped_and_recorded(inbox, wh):
    path = write_roster(inbox, [[roster_member(1, 0), roster_member(1, 1)]],
                        hidden=[[roster_member(9, 0)]])
    run(inbox, wh)
    f = findings(wh)
    hit = f[f["finding_kind"] == "hidden_sheet_skipped"]
    assert len(hit) == 1 and "旧数据" in hit["detail"].iloc[0] and hit["source_object"].iloc[0] == path.name
    led = ledger(wh)
    assert led["rows_read"].iloc[0] == 2  # the hidden sheet's rows are not data
    assert q(wh, "SELECT count(*) AS n FROM stg.mention WHERE source_locator LIKE '旧数据%'")["n"][0] == 0
    assert_counts_add_up(wh)


def test_07_empty_file_fails(inbox, wh):
    path = write_cremation(inbox, [])
    path.write_bytes(b"")
    run(inbox, wh)
    assert "文件为空" in failed_message(wh, path.name)


def test_08_header_only_file_loads_zero_rows_and_fails_the_row_count_expectation(inbox, wh):
    write_cremation(inbox, [])
    run(inbox, wh)
    led = ledger(wh)
    assert (led["status"].iloc[0], led["rows_read"].iloc[0], led["rows_accepted"].iloc[0]) == ("loaded", 0, 0)
    exp = q(wh, "SELECT * FROM quality.expectation_result WHERE expectation = 'expect_table_row_count_to_be_between' "
                "AND export_id IS NOT NULL")
    assert len(exp) == 1 and not exp["success"].iloc[0] and exp["observed_value"].iloc[0] == "0"
    assert_counts_add_up(wh)


def test_09_duplicate_header_is_renamed_and_recorded(inbox, wh):
    headers = [*FLOAT_HEADERS, "服务处所"]
    write_floating(inbox, [float_row(1)], headers=headers)
    run(inbox, wh)
    f = findings(wh)
    hit = f[f["finding_kind"] == "duplicate_header"]
    assert len(hit) == 1 and hit["source_column"].iloc[0] == "服务处所#2"
    assert ledger(wh)["rows_accepted"].iloc[0] == 1
    assert_counts_add_up(wh)


def test_10_missing_required_column_fails_naming_field_and_every_alias(inbox, wh):
    headers = [h for h in FLOAT_HEADERS if h != "公民身份号码"]
    path = write_floating(inbox, [float_row(1)], headers=headers)
    run(inbox, wh)
    msg = failed_message(wh, path.name)
    assert "缺少必需列" in msg
    for alias in ("公民身份号码", "身份证号", "身份证号码"):
        assert alias in msg


def test_11_unknown_column_loads_with_a_warning_in_ledger_and_quality_table(inbox, wh):
    path = write_floating(inbox, [float_row(1), float_row(2)], headers=[*FLOAT_HEADERS, "备注"])
    run(inbox, wh)
    led = ledger(wh)
    assert led["status"].iloc[0] == "loaded" and "备注" in led["message"].iloc[0]
    f = findings(wh)
    hit = f[f["finding_kind"] == "unknown_column"]
    assert hit[["source_object", "source_column"]].values.tolist() == [[path.name, "备注"]]
    assert_counts_add_up(wh)


def test_12_renamed_header_known_alias_loads(inbox, wh):
    renamed = {"公民身份号码": "身份证号", "现居住地址": "现住址", "服务处所": "工作单位"}
    headers = [renamed.get(h, h) for h in FLOAT_HEADERS]
    rows = [{renamed.get(k, k): v for k, v in float_row(i).items()} for i in (1, 2)]
    write_floating(inbox, rows, headers=headers)
    run(inbox, wh)
    led = ledger(wh)
    assert led["status"].iloc[0] == "loaded" and led["rows_accepted"].iloc[0] == 2
    m = q(wh, "SELECT citizen_id, id_status FROM stg.mention ORDER BY source_locator")
    assert m["id_status"].tolist() == ["valid", "valid"]
    assert findings(wh).empty and rejected(wh).empty
    assert_counts_add_up(wh)


# ---------------------------------------------------------------------------------- values
def test_13_impossible_date_is_quarantined_with_its_location(inbox, wh):
    path = write_floating(inbox, [float_row(1), float_row(2, 出生日期="1985-02-30")])
    run(inbox, wh)
    hit = only_problem(wh, "date_invalid")
    assert hit[["source_object", "source_locator", "source_column", "raw_value"]].values.tolist() == \
        [[path.name, "3", "出生日期", "1985-02-30"]]
    assert not hit["is_row_rejected"].iloc[0]
    assert_counts_add_up(wh)


def test_14_future_birth_date_is_a_value_error(inbox, wh):
    future = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    write_cremation(inbox, [cremation_row(1, 出生日期=future), cremation_row(2)])
    run(inbox, wh)
    hit = only_problem(wh, "birth_date_in_future")
    assert hit[["source_locator", "source_column", "raw_value"]].values.tolist() == [["2", "出生日期", future]]
    assert q(wh, "SELECT birth_date FROM stg.mention WHERE source_locator = '2'")["birth_date"].isna().all()
    assert_counts_add_up(wh)


def test_15_age_over_120_is_a_value_error(inbox, wh):
    write_marriage(inbox, [marriage_row(1, 男方出生日期="1901-03-04"), marriage_row(2)])
    run(inbox, wh)
    hit = only_problem(wh, "birth_date_too_old")
    assert hit[["source_locator", "source_column", "raw_value"]].values.tolist() == \
        [["婚姻登记!3", "男方出生日期", "1901-03-04"]]
    assert "120" in hit["message"].iloc[0]
    assert_counts_add_up(wh)


def test_16_id_with_letters_is_quarantined_and_the_record_still_loads(inbox, wh):
    write_floating(inbox, [float_row(1, 公民身份号码="2204021985A2020123"), float_row(2)])
    run(inbox, wh)
    hit = only_problem(wh, "id_bad_chars")
    assert hit[["source_locator", "source_column", "raw_value"]].values.tolist() == \
        [["2", "公民身份号码", "2204021985A2020123"]]
    assert ledger(wh)["rows_accepted"].iloc[0] == 2
    assert_counts_add_up(wh)


def test_17_extremely_long_cells_are_flagged(inbox, wh):
    long_text = "某" * 5000
    write_floating(inbox, [float_row(1, 服务处所=long_text), float_row(2, 姓名="张" * 40)])
    run(inbox, wh)
    hit = only_problem(wh, "text_too_long")
    assert hit[["source_locator", "source_column"]].values.tolist() == [["2", "服务处所"]]
    assert only_problem(wh, "name_too_long")["source_locator"].tolist() == ["3"]
    assert_counts_add_up(wh)


def test_18_control_characters_are_flagged(inbox, wh):
    write_cremation(inbox, [cremation_row(1, 逝者姓名="钱\x07甲", 生前住址="人民大街\x01 1号"), cremation_row(2)])
    run(inbox, wh)
    assert only_problem(wh, "name_control_chars")[["source_locator", "source_column"]].values.tolist() == \
        [["2", "逝者姓名"]]
    assert only_problem(wh, "text_control_chars")[["source_locator", "source_column"]].values.tolist() == \
        [["2", "生前住址"]]
    assert_counts_add_up(wh)


def test_19_duplicate_rows_reject_the_repeat_naming_the_first(inbox, wh):
    write_cremation(inbox, [cremation_row(1), cremation_row(2), cremation_row(1)])
    run(inbox, wh)
    hit = only_problem(wh, "row_duplicate")
    assert hit["source_locator"].tolist() == ["4"] and hit["is_row_rejected"].all()
    assert "第 2 行" in hit["message"].iloc[0]
    led = ledger(wh)
    assert (led["rows_read"].iloc[0], led["rows_accepted"].iloc[0], led["rows_rejected"].iloc[0]) == (3, 2, 1)
    assert_counts_add_up(wh)


def test_20_the_same_file_twice_is_loaded_once(inbox, wh):
    first = write_cremation(inbox, [cremation_row(1), cremation_row(2)])
    shutil.copy2(first, first.with_name("火化信息_20261122.csv"))
    summary = run(inbox, wh)
    statuses = sorted(e.status for e in summary.exports)
    assert statuses == ["duplicate", "loaded"]
    again = run(inbox, wh)
    assert all(e.status == "duplicate" for e in again.exports)
    assert len(ledger(wh)) == 1
    assert q(wh, "SELECT count(*) AS n FROM stg.mention")["n"][0] == 2
    assert_counts_add_up(wh)


def test_21_file_in_the_wrong_source_folder_fails_naming_the_right_one(inbox, wh):
    path = write_cremation(inbox, [cremation_row(1)], folder="low_income")
    write_floating(inbox, [float_row(1)])
    run(inbox, wh)
    msg = failed_message(wh, path.name)
    assert "放错了文件夹" in msg and "civil_affairs" in msg and "low_income" in msg
    run(inbox, wh)  # reported once, not a new ledger row every night
    assert (ledger(wh)["status"] == "failed").sum() == 1
    assert_counts_add_up(wh)


def test_22_total_row_in_the_middle_is_skipped_not_a_person(inbox, wh):
    write_roster(inbox, [[roster_member(1, 0), roster_member(1, 1)], [roster_member(2, 0)]], total_after=0)
    run(inbox, wh)
    led = ledger(wh)
    assert (led["rows_read"].iloc[0], led["rows_accepted"].iloc[0], led["rows_skipped"].iloc[0]) == (3, 3, 1)
    assert q(wh, "SELECT count(*) AS n FROM stg.mention WHERE name LIKE '%合计%'")["n"][0] == 0
    assert q(wh, "SELECT count(*) AS n FROM stg.mention")["n"][0] == 3
    assert_counts_add_up(wh)


def test_23_ragged_csv_row_is_rejected_with_its_line(inbox, wh):
    path = write_floating(inbox, [float_row(1), float_row(2)])
    path.write_bytes(path.read_bytes() + "LD999,多,余,的,字段\r\n".encode("gb18030"))
    run(inbox, wh)
    hit = only_problem(wh, "row_field_count")
    assert hit["source_locator"].tolist() == ["4"] and hit["is_row_rejected"].all()
    assert_counts_add_up(wh)


def test_24_excel_number_id_is_quarantined_with_sheet_and_row(inbox, wh):
    path = write_marriage(inbox, [marriage_row(1), marriage_row(2)])
    wb = openpyxl.load_workbook(path)
    wb["婚姻登记"]["F4"] = 2.20402199001013e17   # the ID typed into a number cell
    wb.save(path)
    run(inbox, wh)
    r = rejected(wh)
    hit = r[r["error_code"].str.startswith("id_excel")]
    assert hit[["source_locator", "source_column"]].values.tolist() == [["婚姻登记!4", "男方证件号码"]]
    assert_counts_add_up(wh)


def test_25_missing_required_value_rejects_the_row(inbox, wh):
    write_cremation(inbox, [cremation_row(1, 死亡日期=""), cremation_row(2)])
    run(inbox, wh)
    hit = only_problem(wh, "value_missing")
    assert hit[["source_locator", "source_column"]].values.tolist() == [["2", "死亡日期"]]
    assert hit["is_row_rejected"].all()
    assert_counts_add_up(wh)


def test_26_not_an_xlsx_at_all_fails(inbox, wh):
    path = inbox / "civil_affairs" / "婚姻登记_20261121.xlsx"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "not a workbook")
    run(inbox, wh)
    assert "xlsx" in failed_message(wh, path.name)


def test_catalogue_has_at_least_twenty_cases():
    cases = [name for name in globals() if name.startswith("test_") and name[5:7].isdigit()]
    assert len(cases) >= 20
    assert CREMATION_HEADERS  # the helpers describe the real headers
