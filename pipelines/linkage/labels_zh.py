"""Chinese names of the comparisons and their levels, for what officers read
(`residents explain`, the web page). Declared beside the comparisons; a test checks that
every declared comparison and level has one."""

from __future__ import annotations

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
