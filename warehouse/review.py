"""The officers' review workbook: uncertain pairs out as xlsx (in Chinese), decisions back in."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from schemas.codes import GENDER
from schemas.person import SOURCE_SYSTEM_LABELS_ZH
from warehouse.exceptions import WarehouseError

DECISION_YES = ("是", "是同一人", "同一人", "Y", "YES", "1")
DECISION_NO = ("否", "不是", "不是同一人", "不同人", "N", "NO", "0")

REASONS_ZH = {"uncertain": "匹配概率不确定", "names_differ": "概率高但姓名不同（可能是双胞胎或同名）"}

COLUMNS_ZH = {
    "mention_id_a": "记录A编号", "mention_id_b": "记录B编号", "match_probability": "匹配概率", "reason": "复核原因",
    "person_id_a": "A当前人员编号", "person_id_b": "B当前人员编号",
    "system_a": "A来源", "object_a": "A文件/表", "locator_a": "A位置", "name_a": "A姓名", "id_a": "A身份证号",
    "id_raw_a": "A身份证号原值", "birth_a": "A出生日期", "gender_a": "A性别", "phone_a": "A电话", "address_a": "A地址",
    "system_b": "B来源", "object_b": "B文件/表", "locator_b": "B位置", "name_b": "B姓名", "id_b": "B身份证号",
    "id_raw_b": "B身份证号原值", "birth_b": "B出生日期", "gender_b": "B性别", "phone_b": "B电话", "address_b": "B地址",
}
DECISION_COL, BY_COL, WHY_COL = "是否同一人（填 是/否）", "决定人", "理由"


class ReviewFileError(WarehouseError):
    template = "复核表 {path} 有问题：{detail}"


def write_review_workbook(queue: pd.DataFrame, path: Path) -> int:
    """One row per pair; officers fill the last three columns. Returns the row count."""
    import xlsxwriter

    df = queue.copy()
    df["reason"] = df["reason"].map(lambda r: REASONS_ZH.get(r, f"约束拒绝：{str(r)[8:]}" if str(r).startswith("refused:") else r))
    df["match_probability"] = df["match_probability"].round(4)
    for side in ("a", "b"):   # codes as labels, dates as dates: what an officer reads
        df[f"gender_{side}"] = df[f"gender_{side}"].map(lambda c: GENDER.codes.get(str(c), c) if pd.notna(c) else None)
        df[f"system_{side}"] = df[f"system_{side}"].map(lambda c: SOURCE_SYSTEM_LABELS_ZH.get(c, c))
        df[f"birth_{side}"] = pd.to_datetime(df[f"birth_{side}"], errors="coerce")
    df = df.rename(columns=COLUMNS_ZH)[list(COLUMNS_ZH.values())]
    df[DECISION_COL] = ""
    df[BY_COL] = ""
    df[WHY_COL] = ""
    from warehouse.store import make_dir, make_private, private_umask

    make_dir(path.parent)
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("待复核")
    head = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "text_wrap": True, "border": 1})
    fill = wb.add_format({"bg_color": "#FFF2CC", "border": 1})
    text = wb.add_format({"num_format": "@"})
    day = wb.add_format({"num_format": "yyyy-mm-dd"})
    dates = {j for j, col in enumerate(df.columns) if col in (COLUMNS_ZH["birth_a"], COLUMNS_ZH["birth_b"])}
    probability = df.columns.get_loc(COLUMNS_ZH["match_probability"])
    for j, col in enumerate(df.columns):
        ws.write_string(0, j, col, head)
        ws.set_column(j, j, 14 if j < len(df.columns) - 3 else 18, day if j in dates else text)
    for i, row in enumerate(df.itertuples(index=False), start=1):
        for j, v in enumerate(row):
            if v is None or v is pd.NaT or (isinstance(v, float) and pd.isna(v)):
                ws.write_blank(i, j, None, fill if j >= len(df.columns) - 3 else None)
            elif j in dates:
                ws.write_datetime(i, j, v.to_pydatetime(), day)
            elif j == probability:
                ws.write_number(i, j, float(v))
            else:
                ws.write_string(i, j, str(v), fill if j >= len(df.columns) - 3 else None)
    ws.freeze_panes(1, 2)
    ws.data_validation(1, len(df.columns) - 3, max(len(df), 1), len(df.columns) - 3,
                       {"validate": "list", "source": ["是", "否"]})
    notes = wb.add_worksheet("说明")
    for i, line in enumerate([
        "每行是一对可能属于同一人的记录。请核对两条记录后，在“是否同一人”列填写“是”或“否”，并填写决定人和理由。",
        "留空表示暂不决定。填写完成后由数据专员运行：residents review import 本文件 --by 姓名",
        "“是”会把两条记录合并为同一人；“否”会保证两条记录今后不会被合并。决定会保存在仓库中，每次同步都会执行。",
    ]):
        notes.write_string(i, 0, line)
    notes.set_column(0, 0, 120)
    with private_umask():  # the pairs carry names and IDs: owner-only
        wb.close()
    make_private(path)
    return len(df)


def read_review_decisions(path: Path) -> pd.DataFrame:
    """mention_id_a, mention_id_b, decision, decided_by, reason of the filled rows."""
    try:
        df = pd.read_excel(path, sheet_name="待复核", dtype=str, engine="openpyxl")
    except (OSError, ValueError) as exc:
        raise ReviewFileError(path=str(path), detail=str(exc)) from None
    needed = [COLUMNS_ZH["mention_id_a"], COLUMNS_ZH["mention_id_b"], DECISION_COL]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ReviewFileError(path=str(path), detail=f"缺少列 {missing}")
    df = df.fillna("")
    answer = df[DECISION_COL].str.strip().str.upper()
    bad = df[(answer != "") & ~answer.isin([a.upper() for a in DECISION_YES + DECISION_NO])]
    if len(bad):
        rows = ", ".join(str(i + 2) for i in bad.index[:10])
        raise ReviewFileError(path=str(path), detail=f"第 {rows} 行的“是否同一人”只能填 是 或 否")
    filled = df[answer != ""]
    return pd.DataFrame({
        "mention_id_a": filled[COLUMNS_ZH["mention_id_a"]].to_numpy(),
        "mention_id_b": filled[COLUMNS_ZH["mention_id_b"]].to_numpy(),
        "decision": ["must_link" if a in [x.upper() for x in DECISION_YES] else "cannot_link"
                     for a in answer[answer != ""]],
        "decided_by": filled.get(BY_COL, pd.Series("", index=filled.index)).to_numpy(),
        "reason": filled.get(WHY_COL, pd.Series("", index=filled.index)).to_numpy(),
    })
