"""Every person a record names is a mention (issue 13, item 4): a roster's head named only
in the household columns 户主姓名/户主身份证号, with no member row of their own in that
household, is a mention with role `head`, and the household's members relate to it."""

from __future__ import annotations

import pandas as pd

from pipelines.standardize import standardize
from schemas.mapping import mapping_for

HEADERS = ["序号", "街道", "社区", "户主姓名", "户主身份证号", "成员姓名", "与户主关系", "成员身份证号", "性别",
           "出生日期", "保障类别", "家庭保障人口", "月保障金额", "家庭住址", "联系电话"]


def _row(seq, head, head_id, member, relation, member_id, gender, birth):
    return dict(zip(HEADERS, [seq, "东吉街道", "北寿社区", head, head_id, member, relation, member_id, gender, birth,
                              "A", "2", "800", "福镇路8号2-1-101", "13904371234"]))


def _roster() -> pd.DataFrame:
    rows = [
        # 1: the head has a row of their own
        _row("1", "赵国庆", "220402195001010015", "赵国庆", "户主", "220402195001010015", "男", "1950-01-01"),
        _row("1", "赵国庆", "220402195001010015", "钱秀兰", "配偶", "220402195202020025", "女", "1952-02-02"),
        # 2: the head (孙立本) died; the widow is listed first, the head has no row
        _row("2", "孙立本", "220402196005050051", "李凤霞", "配偶", "220402196506060063", "女", "1965-06-06"),
        _row("2", "孙立本", "220402196005050051", "孙晓", "子", "22040219800303003X", "男", "1980-03-03"),
        # 3: the head's own row lost its relationship text, but carries the head's ID
        _row("3", "周敏", "22040219820404004X", "周敏", None, "22040219820404004X", "女", "1982-04-04"),
    ]
    raw = pd.DataFrame(rows)
    raw["source_system"], raw["source_object"] = "low_income", "低保花名册_202611.xlsx"
    raw["source_locator"] = [f"花名册!{r}" for r in range(4, 4 + len(rows))]
    return raw.astype(object)


def test_a_head_named_only_in_household_columns_is_a_head_mention():
    std = standardize(_roster(), mapping_for("低保花名册"))
    m = std.mentions.set_index("mention_id")
    heads = m[m["role"] == "head"]
    assert sorted(heads["name"]) == ["孙立本", "赵国庆"]
    sun = heads[heads["name"] == "孙立本"].iloc[0]
    # at the household's first row (where the household cells are), with the head's ID
    assert sun["source_locator"] == "花名册!6" and sun["citizen_id"] == "220402196005050051"
    assert sun["relationship_to_head"] == "02" and sun["id_status"] == "valid"
    # the row of the widow stays hers (a member), so the row has two mentions
    assert set(m.loc[m["source_locator"] == "花名册!6", "role"]) == {"head", "member"}
    # one mention per person otherwise: the listed heads (by role, or by ID) get none
    assert len(m) == 5 + 1
    assert (m["name"] == "周敏").sum() == 1 and (m["name"] == "赵国庆").sum() == 1
    # the household's members relate to the head named in the household columns
    rel = std.relationships
    to_sun = rel[rel["from_mention_id"] == sun.name]
    assert set(m.loc[to_sun["to_mention_id"], "name"]) == {"李凤霞", "孙晓"}


def test_no_head_mention_when_the_household_columns_are_empty():
    raw = _roster()
    raw.loc[raw["序号"] == "2", ["户主姓名", "户主身份证号"]] = None
    std = standardize(raw, mapping_for("低保花名册"))
    assert sorted(std.mentions.loc[std.mentions["role"] == "head", "name"]) == ["赵国庆"]


def test_a_head_listed_by_name_alone_gets_no_second_mention():
    """The head's own row without an ID or a relationship text is still the head by name
    (Simplified: 吳靜 is 吴静); a household whose rows name someone else gets its head."""
    rows = [
        _row("4", "吴静", "220402197007070027", "吳靜", None, None, "女", "1970-07-07"),
        _row("4", "吴静", "220402197007070027", "郑好", "子", "220402199508080011", "男", "1995-08-08"),
        _row("5", "王建国", "220402196809090031", "王芳", None, None, "女", "1969-10-10"),
    ]
    raw = pd.DataFrame(rows)
    raw["source_system"], raw["source_object"] = "low_income", "低保花名册_202611.xlsx"
    raw["source_locator"] = [f"花名册!{r}" for r in range(4, 4 + len(rows))]
    m = standardize(raw.astype(object), mapping_for("低保花名册")).mentions
    assert sorted(m.loc[m["role"] == "head", "name"]) == ["王建国"]
    assert len(m) == 3 + 1
