"""Chinese names of the comparisons and their levels, for what officers read
(`residents explain`, the web page). Declared beside the comparisons; a test checks that
every declared comparison and level has one."""

from __future__ import annotations

import pandas as pd

COMPARISON_LABELS_ZH: dict[str, str] = {
    "citizen_id": "身份证号", "name": "姓名", "birth_date": "出生日期", "gender": "性别", "phone": "电话",
    "address": "地址", "context": "关系人", "source": "来源文件",
    "prior": "先验概率", "total": "合计",
}

#: (comparison, level) → label; a level label shared by many comparisons is under ("*", level)
LEVEL_LABELS_ZH: dict[tuple[str, str], str] = {
    ("*", "null"): "缺失（不计权重）",
    ("*", "different"): "不同",
    ("*", "exact"): "完全相同",
    ("*", "same"): "相同",
    ("citizen_id", "different_valid"): "均为有效号码但不同",
    ("citizen_id", "one_edit"): "仅差一位（顺序码相同）",
    ("citizen_id", "sequence_edit"): "仅顺序码差一位（双胞胎特征）",
    ("citizen_id", "two_edits"): "差两位",
    ("citizen_id", "region_birth"): "损坏号码：地区码与出生日期相同",
    ("citizen_id", "region"): "仅地区码相同",
    ("citizen_id", "disagree"): "不同",
    ("name", "pinyin"): "拼音相同（同音字、繁简、多音字）",
    ("name", "one_char"): "差一个字",
    ("name", "surname"): "仅同姓",
    ("birth_date", "day_month_swapped"): "日月颠倒",
    ("birth_date", "within_3_days"): "相差三天内",
    ("address", "same_flat"): "同一户",
    ("address", "same_building"): "同一楼/门牌",
    ("context", "shared"): "有共同关系人",
    ("source", "same_object"): "同一文件",
}

MATCH_METHOD_LABELS_ZH = {"citizen_id": "身份证号一致", "probabilistic": "概率匹配", "must_link": "人工确认",
                          "singleton": "单独成人"}


def comparison_label(comparison: str) -> str:
    return COMPARISON_LABELS_ZH.get(comparison, comparison)


def level_label(comparison: str, level: str) -> str:
    """Chinese label of a level (the code name itself when none is declared)."""
    return LEVEL_LABELS_ZH.get((comparison, level)) or LEVEL_LABELS_ZH.get(("*", level)) or level


# ------------------------------------------------------------------ explain, for officers
def records_display(records: pd.DataFrame) -> pd.DataFrame:
    """A person's mentions with Chinese headers and labels instead of codes."""
    from pipelines.errors import ERROR_CODES
    from pipelines.linkage.labels_zh import MATCH_METHOD_LABELS_ZH
    from schemas.person import ROLE_LABELS_ZH, SOURCE_SYSTEM_LABELS_ZH

    out = records.copy()
    out["source_system"] = out["source_system"].map(lambda v: SOURCE_SYSTEM_LABELS_ZH.get(v, v))
    out["role"] = out["role"].map(lambda v: ROLE_LABELS_ZH.get(v, v))
    out["match_method"] = out["match_method"].map(lambda v: MATCH_METHOD_LABELS_ZH.get(v, v))
    status_zh = {"valid": "有效", "upgraded_15": "由15位升级", "missing": "缺失",
                 **{code: e.message_zh for code, e in ERROR_CODES.items()}}
    out["id_status"] = out["id_status"].map(lambda v: status_zh.get(v, v))
    return out.rename(columns={
        "mention_id": "记录编号", "source_system": "部门", "source_locator": "位置", "role": "身份",
        "match_method": "匹配方式", "match_probability": "匹配概率", "name": "姓名", "citizen_id": "身份证号",
        "id_status": "身份证号状态", "birth_date": "出生日期"})


def explain_display(frame: pd.DataFrame) -> pd.DataFrame:
    """An `explain_pair` frame narrowed for a terminal (five short columns)."""
    import numpy as np

    from pipelines.linkage.labels_zh import comparison_label, level_label

    level = pd.Series([level_label(c, lv) for c, lv in zip(frame["comparison"], frame["level"].astype(str))],
                      index=frame.index, dtype=object)
    level[frame["comparison"] == "prior"] = "先验"
    m, u, w = (pd.to_numeric(frame[c], errors="coerce") for c in ("m_probability", "u_probability", "match_weight"))
    adjusted = (m > 0) & (u > 0) & ((w - np.log2(m / u)).abs() > 0.01)
    level[adjusted] = level[adjusted] + "（频率调整）"  # a common name weighs less than m/u says
    total = frame["comparison"] == "total"
    if total.any() and "match_probability" in frame:
        level[total] = "概率 " + frame.loc[total, "match_probability"].map(lambda p: f"{p:.6f}")
    return pd.DataFrame({
        "比对项": frame["comparison"].map(comparison_label),
        "结果": level,
        "m": frame["m_probability"].map(lambda v: "" if pd.isna(v) else f"{v:.3g}"),
        "u": frame["u_probability"].map(lambda v: "" if pd.isna(v) else f"{v:.3g}"),
        "权重": frame["match_weight"].map(lambda v: f"{v:+.2f}"),
    })
