"""Property tests: cosmetic variants of one flat share one address_key; a different flat does not."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.normalize.address import DistrictContext, parse_addresses

DEFAULT = DistrictContext("吉林省", "辽源市", "龙山区", "220402")

ROADS = ["人民大街", "龙山路", "八一路", "二道街", "吉林大街", "中山东路", "东宁大路", "北寿街", "站前路",
         "向阳胡同", "福镇大路", "西宁大路"]
TOWNS = ["东吉街道", "南康街道", "北寿街道", "向阳街道"]
COMMUNITIES = ["泰安社区", "新华社区", "北寿社区", "兴华社区"]
ESTATES = ["金城花园", "龙山家园", "阳光小区", "盛世华庭"]
PREFIXES = ["吉林省辽源市龙山区", "辽源市龙山区", "龙山区", "", "吉林辽源市龙山区", "吉林省辽源市", "辽源市"]
FW = str.maketrans("0123456789ABCDEF-", "０１２３４５６７８９ＡＢＣＤＥＦ－")
CD = "〇一二三四五六七八九"


def cn_pos(n: int) -> str:
    """Positional Chinese numeral: 125 -> 一百二十五, 205 -> 二百零五, 12 -> 十二."""
    if n < 10:
        return CD[n]
    if n < 20:
        return "十" + (CD[n % 10] if n % 10 else "")
    s, units, out, zero = str(n), ["", "十", "百", "千"], [], False
    for i, ch in enumerate(s):
        d = int(ch)
        if d == 0:
            zero = True
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(CD[d] + units[len(s) - 1 - i])
    return "".join(out)


def cn_dig(n: int, zero: str = "〇") -> str:
    return "".join(zero if c == "0" else CD[int(c)] for c in str(n))


@dataclass(frozen=True)
class Flat:
    road: str
    number: int
    building: str  # "3" or "B"
    unit: int
    room: int
    town: str
    community: str
    estate: str  # "" for a numbered building on a road; else the estate the flat is in


flats = st.builds(
    Flat,
    road=st.sampled_from(ROADS),
    number=st.integers(1, 2999),
    building=st.one_of(st.integers(1, 40).map(str), st.sampled_from(list("ABCDEF"))),
    unit=st.integers(1, 9),
    room=st.builds(lambda f, d: f * 100 + d, st.integers(1, 30), st.integers(1, 12)),
    town=st.sampled_from(TOWNS),
    community=st.sampled_from(COMMUNITIES),
    estate=st.sampled_from(["", "", *ESTATES]),
)


@st.composite
def rendering(draw, flat: Flat) -> str:
    def num(n: int, *, room: bool = False) -> str:
        style = draw(st.sampled_from(["ascii", "fw", "cn"]))
        if style == "ascii":
            return str(n)
        if style == "fw":
            return str(n).translate(FW)
        if room:
            return cn_dig(n, draw(st.sampled_from(["〇", "零"])))
        return cn_pos(n)

    sep = draw(st.sampled_from(["", "", " ", "，"]))
    prefix = draw(st.sampled_from(PREFIXES))
    town = flat.town if draw(st.booleans()) else ""
    community = flat.community if draw(st.booleans()) else ""
    if town and draw(st.booleans()):
        town += "办事处"
    if community and draw(st.booleans()):
        community = community[:-2] + "社区居委会"
    head = sep.join(x for x in (prefix, town, community) if x)
    b = flat.building
    bnum = b.isdigit()
    no = num(flat.number) + draw(st.sampled_from(["号", "号", "号院"]))
    estate = flat.estate
    # an estate flat is written with or without the road number in front of the estate name
    with_road = not estate or draw(st.booleans())
    form = draw(st.sampled_from(["long", "long", "bur", "b_ur"] + (["nbur"] if not estate else [])))
    if form == "long":
        if bnum:
            bb = num(int(b)) + draw(st.sampled_from(["栋", "幢", "号楼", "座", "#", "号"]))
        else:
            bb = draw(st.sampled_from([b, b.lower(), b.translate(FW)])) + draw(st.sampled_from(["座", "栋", "号楼"]))
        uu = num(flat.unit) + "单元"
        rr = num(flat.room, room=True) + draw(st.sampled_from(["", "室", "号"]))
        tail = sep.join([bb, uu, rr])
    elif form == "bur":
        tail = f"{b}-{flat.unit}-{flat.room}" + draw(st.sampled_from(["", "室"]))
    elif form == "b_ur":
        marker = "栋" if bnum else "座"
        tail = f"{b}{marker}{flat.unit}-{flat.room}" + draw(st.sampled_from(["", "室"]))
    else:  # 125-3-2-501 directly after the road
        return sep.join(x for x in (head, flat.road) if x) + f"{flat.number}-{b}-{flat.unit}-{flat.room}"
    road = flat.road + sep + no + sep if with_road else ""
    body = road + (estate + sep if estate else "") + tail
    return sep.join(x for x in (head, body) if x)


def keys(texts: list[str]) -> list[str]:
    out = parse_addresses(pd.Series(texts, dtype=object), default_district=DEFAULT)
    assert (out["status"] == "parsed").all(), out[out["status"] != "parsed"][["standard_text", "status"]]
    return out["address_key"].tolist()


def canonical(flat: Flat) -> str:
    marker = "栋" if flat.building.isdigit() else "座"
    return f"吉林省辽源市龙山区{flat.road}{flat.number}号{flat.estate}{flat.building}{marker}{flat.unit}单元{flat.room}室"


EXAMPLES = int(os.environ.get("ADDRESS_PROPERTY_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data(), flats)
def test_cosmetic_variants_share_one_key(data, flat):
    variants = [data.draw(rendering(flat)) for _ in range(4)]
    ks = keys([canonical(flat), *variants])
    assert len(set(ks)) == 1, list(zip([canonical(flat), *variants], ks))


@SETTINGS
@given(st.data(), flats, st.sampled_from(["room", "unit", "building", "number", "road", "estate"]))
def test_a_different_flat_gets_a_different_key(data, flat, what):
    if what == "room":
        other = replace(flat, room=flat.room + data.draw(st.sampled_from([1, 100, -1])))
    elif what == "unit":
        other = replace(flat, unit=flat.unit % 9 + 1)
    elif what == "building":
        b = flat.building
        other = replace(flat, building=str(int(b) + 1) if b.isdigit() else chr(ord(b) + 1))
    elif what == "number":
        if flat.estate:
            return  # the road number in front of an estate is optional, so it is not in the key
        other = replace(flat, number=flat.number + data.draw(st.integers(1, 50)))
    elif what == "estate":
        other = replace(flat, estate=data.draw(st.sampled_from([e for e in ["", *ESTATES] if e != flat.estate])))
        if not flat.estate or not other.estate:  # a road building vs an estate: keep them on different roads
            other = replace(other, road=data.draw(st.sampled_from([r for r in ROADS if r != flat.road])))
    else:
        if flat.estate:  # the road in front of an estate is optional, so only the estate identifies it
            return
        other = replace(flat, road=data.draw(st.sampled_from([r for r in ROADS if r != flat.road])))
    a = data.draw(rendering(flat))
    b = data.draw(rendering(other))
    ka, kb = keys([a, b])
    assert ka != kb, (a, b, ka)


# ------------------------------------------------------------------ rural
VILLAGES = ["红旗村", "永安村", "新发村", "东升村", "太平村"]


@st.composite
def rural_case(draw):
    town = draw(st.sampled_from(["寿山镇", "工农乡"]))
    village = draw(st.sampled_from(VILLAGES))
    group = draw(st.integers(1, 15))
    number = draw(st.integers(1, 99))
    return town, village, group, number


@st.composite
def rural_rendering(draw, case):
    town, village, group, number = case
    prefix = draw(st.sampled_from(["吉林省辽源市龙山区", "辽源市龙山区", "龙山区", ""]))
    sep = draw(st.sampled_from(["", " "]))
    if draw(st.integers(0, 3)) == 0:  # the township dropped, as the 社 shorthand does
        town = ""
    v = draw(st.sampled_from([village, village[:-1] + "村委会"]))
    g = draw(st.sampled_from([str(group), str(group).translate(FW), cn_pos(group), "第" + cn_pos(group)]))
    gm = draw(st.sampled_from(["组", "组", "社"]))
    n = draw(st.sampled_from([str(number), cn_pos(number), str(number).translate(FW)]))
    nm = draw(st.sampled_from(["号", "号", ""]))
    return sep.join(x for x in (prefix, town, v, g + gm, n + nm) if x)


@SETTINGS
@given(st.data(), rural_case())
def test_rural_variants_share_one_key(data, case):
    variants = [data.draw(rural_rendering(case)) for _ in range(4)]
    ks = keys(variants)
    assert len(set(ks)) == 1, list(zip(variants, ks))


@SETTINGS
@given(st.data(), rural_case(), st.sampled_from(["group", "number", "village"]))
def test_rural_different_flat_gets_a_different_key(data, case, what):
    town, village, group, number = case
    if what == "group":
        other = (town, village, group % 15 + 1, number)
    elif what == "number":
        other = (town, village, group, number % 99 + 1)
    else:
        other = (town, data.draw(st.sampled_from([v for v in VILLAGES if v != village])), group, number)
    ka, kb = keys([data.draw(rural_rendering(case)), data.draw(rural_rendering(other))])
    assert ka != kb


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_never_raises_on_arbitrary_text(text):
    out = parse_addresses(pd.Series([text, text]), default_district=DEFAULT)
    assert len(out) == 2
    assert set(out["status"]) <= {"parsed", "partial", "unparsed"}
    assert out["confidence"].between(0, 1).all()
    assert out.iloc[0].to_dict() == out.iloc[1].to_dict()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="人民大街龙山区社村组号栋幢楼座单元室层一二三四五六七八九十百〇0123456789-# 镇乡街道花园AB", max_size=30))
def test_never_raises_on_address_like_noise(text):
    out = parse_addresses(pd.Series([text]), default_district=DEFAULT)
    row = out.iloc[0]
    assert row["status"] in {"parsed", "partial", "unparsed"}
    assert (row["error"] is None) == (row["status"] != "unparsed")
