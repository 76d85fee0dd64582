"""Tiny hand-made inboxes for the bad-input catalogue and the quality tests: a few
rows per file, written with the headers the departments use (docs/SOURCE_FORMATS.md)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import duckdb
import openpyxl
import pandas as pd

from flows import run_sync
from settings import load_settings

W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


def given(i: int) -> str:
    """A digit-free given name for number i (names with digits are errors)."""
    return _GIVEN[i % 20] + ("" if i < 20 else _GIVEN[(i // 20) % 20])


def citizen_id(birth: str, seq: int, region: str = "220402") -> str:
    """A valid GB 11643 ID; `seq` odd → male, even → female."""
    body = f"{region}{birth}{seq:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, W)) % 11]


FLOAT_HEADERS = ["登记编号", "姓名", "性别", "民族", "出生日期", "公民身份号码", "户籍地址", "现居住地址", "居住事由",
                 "登记日期", "居住证编号", "居住证签发日期", "居住证有效期至", "联系电话", "服务处所", "登记状态",
                 "注销日期", "更新时间"]
CREMATION_HEADERS = ["火化证明编号", "逝者姓名", "性别", "民族", "身份证号码", "出生日期", "死亡日期", "火化日期",
                     "户籍地址", "生前住址", "经办人联系电话"]
MARRIAGE_HEADERS = ["登记证字号", "业务类型", "登记日期", "男方姓名", "男方证件类型", "男方证件号码", "男方出生日期",
                    "女方姓名", "女方证件类型", "女方证件号码", "女方出生日期", "登记机关"]
ROSTER_HEADERS = ["序号", "街道", "社区", "户主姓名", "户主身份证号", "成员姓名", "与户主关系", "成员身份证号", "性别",
                  "出生日期", "保障类别", "家庭保障人口", "月保障金额（元）", "家庭住址", "联系电话", "审批日期"]


def float_row(i: int, **over: str) -> dict[str, str]:
    birth = f"1985{1 + i % 12:02d}{1 + i % 28:02d}"
    row = {"登记编号": f"LD2026{i:05d}", "姓名": f"赵{given(i)}", "性别": "男" if i % 2 else "女",
           "民族": "汉族", "出生日期": f"{birth[:4]}-{birth[4:6]}-{birth[6:]}",
           "公民身份号码": citizen_id(birth, 100 + 2 * i + (i % 2)), "户籍地址": "河北省保定市莲池区东风路1号",
           "现居住地址": f"龙山区人民大街{100 + i}号3-2-501", "居住事由": "务工", "登记日期": "2026-11-01",
           "居住证编号": "", "居住证签发日期": "", "居住证有效期至": "", "联系电话": f"1380000{i:04d}",
           "服务处所": "龙山区某公司", "登记状态": "在住", "注销日期": "", "更新时间": f"2026-11-21 10:{i % 60:02d}:00"}
    row.update(over)
    return row


def cremation_row(i: int, **over: str) -> dict[str, str]:
    birth = f"1940{1 + i % 12:02d}{1 + i % 28:02d}"
    row = {"火化证明编号": f"HH2026{i:05d}", "逝者姓名": f"钱{given(i)}",
           "性别": "男" if i % 2 else "女", "民族": "汉族", "身份证号码": citizen_id(birth, 200 + 2 * i + (i % 2)),
           "出生日期": f"{birth[:4]}-{birth[4:6]}-{birth[6:]}", "死亡日期": "2026-11-10", "火化日期": "2026-11-12",
           "户籍地址": f"龙山区东吉街道泰安社区人民大街{i}号", "生前住址": f"龙山区人民大街{i}号", "经办人联系电话": "13900000000"}
    row.update(over)
    return row


def csv_bytes(headers: list[str], rows: list[dict[str, str]], encoding: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(headers)
    for r in rows:
        w.writerow([r.get(h, "") for h in headers])
    return buf.getvalue().encode(encoding)


def write_floating(inbox: Path, rows: list[dict[str, str]], name: str = "流动人口登记_20261121.csv",
                   headers: list[str] = FLOAT_HEADERS, folder: str = "floating_population") -> Path:
    path = inbox / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_bytes(headers, rows, "gb18030"))
    return path


def write_cremation(inbox: Path, rows: list[dict[str, str]], name: str = "火化信息_20261121.csv",
                    headers: list[str] = CREMATION_HEADERS, folder: str = "civil_affairs") -> Path:
    path = inbox / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_bytes(headers, rows, "utf-8-sig"))
    return path


def marriage_row(i: int, **over: object) -> dict[str, object]:
    row = {"登记证字号": f"J2026-{i:04d}", "业务类型": "结婚登记", "登记日期": "2026-11-05",
           "男方姓名": f"孙{given(i)}", "男方证件类型": "居民身份证", "男方证件号码": citizen_id("19900101", 300 + 2 * i + 1),
           "男方出生日期": "1990-01-01", "女方姓名": f"李{given(i)}", "女方证件类型": "居民身份证",
           "女方证件号码": citizen_id("19920202", 300 + 2 * i), "女方出生日期": "1992-02-02", "登记机关": "龙山区民政局"}
    row.update(over)
    return row


def write_marriage(inbox: Path, rows: list[dict[str, object]], name: str = "婚姻登记_20261121.xlsx",
                   headers: list[str] = MARRIAGE_HEADERS) -> Path:
    path = inbox / "civil_affairs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "婚姻登记"
    ws.append(["XX区婚姻登记信息导出"])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(headers))
    ws.append(headers)
    for r in rows:
        ws.append([r.get(h) for h in headers])
    wb.save(path)
    return path


def roster_member(seq: int, k: int, **over: object) -> dict[str, object]:
    head_id = citizen_id("19700101", 400 + 2 * seq + 1)
    m = {"序号": seq, "街道": "东吉街道", "社区": "泰安社区", "户主姓名": f"周{given(seq)}", "户主身份证号": head_id,
         "成员姓名": f"周{given(seq)}" if k == 0 else f"周{given(seq)}{given(k + 7)}", "与户主关系": "户主" if k == 0 else "子",
         "成员身份证号": head_id if k == 0 else citizen_id("20000101", 500 + 10 * seq + 2 * k + 1),
         "性别": "男", "出生日期": "1970-01-01" if k == 0 else "2000-01-01", "保障类别": "A类", "家庭保障人口": 2,
         "月保障金额（元）": 800.0, "家庭住址": f"龙山区人民大街{seq}号", "联系电话": "13700000000",
         "审批日期": "2025-01-01"}
    m.update(over)
    return m


def roster_sheet(ws, households: list[list[dict[str, object]]], *, total_after: int | None = None) -> None:
    ws.append(["XX区城市居民最低生活保障对象花名册"])
    ws.append(["统计月份：2026年10月    单位：元"])
    ws.append(ROSTER_HEADERS)
    for h, members in enumerate(households):
        for k, m in enumerate(members):
            ws.append([m.get(c) for c in ROSTER_HEADERS])  # household cells repeated, not merged
        if total_after is not None and h == total_after:
            ws.append(["合计", None, None, None, None, None, None, None, None, None, None, 99, 9999.0])


def write_roster(inbox: Path, households: list[list[dict[str, object]]], name: str = "低保花名册_202610.xlsx",
                 *, total_after: int | None = None, hidden: list[list[dict[str, object]]] | None = None) -> Path:
    path = inbox / "low_income" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "低保对象"
    roster_sheet(ws, households, total_after=total_after)
    if hidden is not None:
        hs = wb.create_sheet("旧数据")
        roster_sheet(hs, hidden)
        hs.sheet_state = "hidden"
    wb.save(path)
    return path


# --------------------------------------------------------------------------------------
# sync and look
# --------------------------------------------------------------------------------------
def run(inbox: Path, wh: Path, **settings):
    """Sync `inbox` into `wh`. Deterministic person resolution: these cases are about
    the quality of inputs, not about linkage (and stay fast). The district is configured,
    as an officer would for a handful of rows (too few to infer it from: the rows here
    are written for 龙山区, 220402)."""
    inbox.mkdir(parents=True, exist_ok=True)
    settings.setdefault("resolution_mode", "deterministic")
    settings.setdefault("district", {"county_code": "220402"})
    return run_sync(load_settings(inbox=inbox, warehouse=wh, lock_timeout_s=30, **settings))


def q(wh: Path, sql: str, params: list | None = None) -> pd.DataFrame:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def ledger(wh: Path) -> pd.DataFrame:
    return q(wh, "SELECT * FROM quality.load_ledger ORDER BY export_id")


def rejected(wh: Path) -> pd.DataFrame:
    return q(wh, "SELECT * FROM quality.rejected_record ORDER BY export_id, source_locator")


def findings(wh: Path) -> pd.DataFrame:
    return q(wh, "SELECT * FROM quality.finding ORDER BY finding_id")


def assert_counts_add_up(wh: Path) -> None:
    """Every loaded export: rows read = accepted + rejected, and the rejected rows are
    exactly the distinct locators of its row-level quarantine records."""
    bad = q(wh, "SELECT source_object, rows_read, rows_accepted, rows_rejected FROM quality.load_ledger "
                "WHERE status = 'loaded' AND rows_read <> rows_accepted + rows_rejected")
    assert bad.empty, bad
    mismatch = q(wh, """
        SELECT l.export_id, l.rows_rejected,
               count(DISTINCT r.source_locator) FILTER (WHERE r.is_row_rejected) AS n
        FROM quality.load_ledger l LEFT JOIN quality.rejected_record r USING (export_id)
        WHERE l.status = 'loaded' GROUP BY ALL HAVING l.rows_rejected <> n""")
    assert mismatch.empty, mismatch
    accepted = q(wh, "SELECT coalesce(sum(rows_accepted), 0) AS n FROM quality.load_ledger WHERE status = 'loaded'")
    persons = q(wh, "SELECT count(DISTINCT source_object || '|' || source_locator) AS n FROM stg.mention")
    assert persons["n"][0] <= accepted["n"][0]


def today() -> dt.date:
    return dt.date.today()
