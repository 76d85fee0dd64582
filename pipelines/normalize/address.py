"""Parse free-text Chinese resident addresses into levels, a standard text and a flat key.

`parse_addresses(raw, context=None, default_district=None)` takes a Series of raw address
strings and returns a DataFrame with the same index and the columns in `COLUMNS`:

* administrative levels ``province, city, county`` (names as in GB/T 2260 / MCA 2025) with
  their 6-digit codes, ``town`` (街道/乡镇, ``town_code`` 9-digit when known) and
  ``community`` (社区/村);
* the levels below: ``road`` (街路巷), ``house_number`` (门牌号), ``estate`` (小区/楼宇名,
  or a rural 屯), ``building`` (栋/幢/号楼/座 → ``3`` or ``B``), ``unit``, ``floor`` (层),
  ``room`` and ``rural_group`` (组/社/队);
* ``standard_text``: one canonical rendering, e.g.
  ``吉林省辽源市龙山区东吉街道泰安社区人民大街125号3栋2单元501室``;
* ``address_key`` (see below), ``confidence`` (0–1), ``status`` (``parsed``, ``partial``,
  ``unparsed``) and ``error`` (None, ``address_unparsed`` or ``address_empty``).

Nothing raises on bad input: an empty value gets ``error='address_empty'``, text that
yields nothing recognisable gets ``status='unparsed'``, ``error='address_unparsed'`` and
a key derived from its cleaned text (so it is kept, and identical garbage groups together,
but never merges with a parsed flat).

Cosmetic normalisation (`address_rules.clean_text`): NFKC (full-width digits, letters and
dashes → ASCII), upper-case letters, whitespace/punctuation removed (whitespace between two
numbers becomes ``-``), Chinese numerals in numeric positions converted (一百二十五号 → 125号,
五〇一 → 501, 三组 → 3组; numerals inside names such as 八一路 are kept), 街道办事处 → 街道,
社区居委会/居委会 → 社区, 村委会 → 村, leading zeros of numbers dropped, ``室`` optional.
Buildings: ``3栋 3幢 3号楼 3座 3# 3楼`` (楼 only before the unit) → ``3``; ``B座`` → ``B``.
Shorthands: ``3-2-501`` (building-unit-room), ``3栋2-501`` (unit-room), ``125-3-2-501``
after a road (number-building-unit-room), ``3-501`` (building-room, or unit-room once the
building is known). A floor (``5层``/``5楼`` after the unit) is folded into a short room
(``5层1室`` → room ``501``) and otherwise ignored when a room is given.

Administrative levels: named levels are matched against the MCA 2025 table
(`address_rules.gazetteer`), by full or suffix-stripped name. Ambiguous county names
(朝阳区: Beijing and 长春; 西安区: 辽源 and 牡丹江) are resolved by the city or province
named, else by the default district, else by the township that follows. When the text
names no county, the county is inferred from a named township (within the named city, or
the default district, or uniquely in China), else taken from `default_district` provided
what is named (province/city) agrees with it. An address naming another province, city or
county (the hukou address of a floating resident) keeps its own hierarchy. `context` may
carry per-row ``town`` / ``community`` (e.g. a roster's 街道/社区 columns): they fill those
levels when the text does not name them.

Key rule (``address_key``)
--------------------------
The key is built only from levels that identify the flat and that no cosmetic variant
omits; optional levels (province, city, 街道/乡镇, 社区, the road number in front of an
estate name) never enter it::

    <admin> | <anchor> | b:<building> | u:<unit> | f:<floor, only without room> | r:<room>

* ``admin``: ``county_code`` (named, inferred or filled from the default district); if no
  county is known, the named county name (``n:``), else ``c:<city_code>``, ``p:<province_code>``
  or empty.
* ``anchor`` (first that applies):
  1. rural (a 村 or a 组 is named, no road): ``t:<town>|v:<village>|e:<屯>|g:<group>|n:<number>``.
     Within the default district the township is left out (``v:…`` only) because local
     variants drop it (``寿山村三社18号``) just as urban ones drop the 街道, and the district's
     village names are its own; outside it (hukou addresses, always written with their
     township, where 前进村 may exist under several townships of one county) it stays in.
     Without a village the township always stays in;
  2. an estate (小区/楼宇名) is named: ``e:<estate>`` — the road and number in front of it
     (``人民大街125号金城花园3栋``) are optional, so ``金城花园3栋`` gets the same key;
  3. a road: ``r:<road>|n:<house number>``;
  4. otherwise ``v:<community>`` / ``t:<town>`` (with ``n:<number>``).

  Known trade-offs: the same flat written once with only its estate name and once with
  only its road number gets two keys (nothing in the text links them); two villages of the
  same name in different townships of the default district share keys for equal group and
  number; an outside rural address written once with and once without its township splits.
* leftover text that could not be parsed is appended as ``x:<text>`` so that a partly
  parsed address never merges with a different flat.

`address_id_from_key(key)` gives the stable id: ``A`` + the first 16 hex digits of the
SHA-1 of the key (UTF-8).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import numpy as np
import pandas as pd

from pipelines.normalize import address_rules as R
from pipelines.parallel import map_items

__all__ = ["COLUMNS", "DistrictContext", "address_id_from_key", "parse_addresses", "parse_one", "town_candidates"]

COLUMNS = [
    "province", "city", "county", "town", "community", "road", "house_number", "estate",
    "building", "unit", "floor", "room", "rural_group", "province_code", "city_code",
    "county_code", "town_code", "standard_text", "address_key", "confidence", "status", "error",
]

_ESTATE_SUFFIX_RE = re.compile(
    r"(?:花园|小区|家园|公寓|大厦|苑|园|城|府|庭|居|院|湾|新村|里|楼|广场|中心|公馆|宿舍|山庄|名邸|华庭|嘉园|雅居)$"
)


@dataclass(frozen=True)
class DistrictContext:
    """The district an export belongs to (configured); fills levels an address omits."""

    province: str | None = None
    city: str | None = None
    county: str | None = None
    county_code: str | None = None

    @classmethod
    def from_code(cls, county_code: str) -> DistrictContext:
        g = R.gazetteer()
        p = g.path(county_code)
        name = lambda lv: g.by_code[p[lv]].name if lv in p else None  # noqa: E731
        return cls(name(1), name(2), name(3), county_code)

    def codes(self) -> tuple[str | None, str | None, str | None]:
        """(province_code, city_code, county_code), resolved from names when no code is given."""
        return _district_codes(self)


def _district_codes(d: DistrictContext) -> tuple[str | None, str | None, str | None]:
    g = R.gazetteer()
    county = d.county_code if d.county_code in g.by_code else None
    if county is None:
        prov = g.find_code(d.province, 1)
        city = g.find_code(d.city, 2, prov)
        county = g.find_code(d.county, 3, city or prov)
        if county is None:
            return prov, city, None
    p = g.path(county)
    return p.get(1), p.get(2), county


def address_id_from_key(key: str | None) -> str | None:
    """Stable address id: ``A`` + first 16 hex of sha1(key)."""
    if key is None or (isinstance(key, float) and np.isnan(key)):
        return None
    return "A" + hashlib.sha1(str(key).encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------------------
# Administrative prefix
# --------------------------------------------------------------------------------------

_SHORT_BLOCK = set("街路道巷大市省区县州盟旗镇乡村")
_ESTATE_HEAD_RE = re.compile(
    r"花园|小区|家园|公寓|大厦|广场|新村|华庭|嘉园|名苑|山庄|公馆|宿舍|中心|苑|园|城|府|庭|居|院|湾|里|楼|社区"
)


def _compatible(g: R.Gazetteer, code: str, last: str | None) -> bool:
    if last is None:
        return True
    return g.by_code[code].level > g.by_code[last].level and g.is_ancestor(last, code)


def _admin_matches_at(g: R.Gazetteer, s: str, pos: int, last: str | None, *, lookahead: bool = True) -> list[tuple[int, str]]:
    n = len(s) - pos
    first = s[pos:pos + 1]
    for L in g.full_lens.get(first, ()):
        if L > n:
            continue
        cands = g.full.get(s[pos:pos + L])
        if cands:
            ok = [c for c in cands if _compatible(g, c, last)]
            if ok:
                return [(L, c) for c in ok]
    for L in g.short_lens.get(first, ()):
        if L > min(6, n):
            continue
        cands = g.short.get(s[pos:pos + L])
        if not cands:
            continue
        nxt = s[pos + L: pos + L + 1]
        if nxt in _SHORT_BLOCK or nxt.isdigit() or _ESTATE_HEAD_RE.match(s, pos + L):
            continue  # 吉林大街, 辽源路, 龙山家园: a name, not the division
        ok = [c for c in cands if _compatible(g, c, last)]
        if last is None and lookahead:
            # at the start a short name must be followed by one of its own children
            ok = [c for c in ok
                  if _admin_matches_at(g, s, pos + L, c, lookahead=False) or _town_at(g, s, pos + L, [c]) is not None]
        if ok:
            return [(L, c) for c in ok]
    return []


def _chains(g: R.Gazetteer, s: str, pos: int, last: str | None, depth: int = 0) -> list[tuple[int, tuple[str, ...]]]:
    matches = _admin_matches_at(g, s, pos, last) if depth < 4 else []
    if not matches:
        return [(pos, ())]
    out: list[tuple[int, tuple[str, ...]]] = []
    for L, code in matches:
        for end, chain in _chains(g, s, pos + L, code, depth + 1):
            out.append((end, (code, *chain)))
    best = max(e for e, _ in out)
    return [x for x in out if x[0] == best]


@lru_cache(maxsize=4096)
def _towns_under(under: tuple[str, ...]) -> tuple[dict[str, list[str]], dict[str, tuple[int, ...]]]:
    g = R.gazetteer()
    names: dict[str, list[str]] = {}
    for u in under:
        for county in g.counties_under(u):
            for name, code in g.towns_by_county.get(county, {}).items():
                names.setdefault(name, []).append(code)
    return names, R.name_lengths(names)


def _town_at(g: R.Gazetteer, s: str, pos: int, under: list[str]) -> tuple[int, str] | None:
    """Longest township name at `pos` among the townships of the counties under `under`."""
    names, lens = _towns_under(tuple(under))
    n = len(s) - pos
    for L in lens.get(s[pos:pos + 1], ()):
        if L > n:
            continue
        hits = names.get(s[pos:pos + L])
        if hits:
            return (L, hits[0]) if len(hits) == 1 else None
    return None


def _global_town_at(g: R.Gazetteer, s: str, pos: int) -> tuple[int, list[str]] | None:
    n = len(s) - pos
    for L in g.town_lens.get(s[pos:pos + 1], ()):
        if L > n:
            continue
        hits = g.town_codes.get(s[pos:pos + L])
        if hits:
            return L, hits
    return None


def town_candidates(clean: str) -> list[str]:
    """County codes of the townships whose name a cleaned address starts with (one
    for a name unique in China, several for 城关镇), empty when it starts with none."""
    g = R.gazetteer()
    hit = _global_town_at(g, clean, 0)
    if not hit:
        return []
    return sorted({g.by_code[c].parent for c in hit[1]})


# --------------------------------------------------------------------------------------
# One address
# --------------------------------------------------------------------------------------


def _num(x: str) -> str:
    return (x.lstrip("0") or "0") if x.isdigit() else x


def _parse_tail(s: str, pos: int, rec: dict[str, Any]) -> None:
    """Parse road / number / estate / building / unit / floor / room / group from s[pos:]."""
    rural = bool(rec["community"] and rec["community"].endswith("村")) or bool(
        rec["town"] and rec["town"].endswith(("镇", "乡"))
    )
    n = len(s)
    guard = 0
    while pos < n and guard < 40:
        guard += 1
        ch = s[pos]
        if ch in "-#":
            pos += 1
            continue
        m = None
        if rec["road"] is None and rec["house_number"] is None and (m := R.ROAD_NUM_RE.match(s, pos)):
            rec["road"], rec["house_number"] = m.group(1), "-".join(_num(p) for p in m.group(2).split("-"))
            pos = m.end()
            if s.startswith("弄", pos):
                rec["house_number"] += "弄"
                pos += 1
            continue
        if rec["rural_group"] is None and (m := R.GROUP_RE.match(s, pos)):
            rec["rural_group"] = _num(m.group(1))
            rural = True
            pos = m.end()
            continue
        if (
            rec["road"] is None and rec["house_number"] is None and (rural or rec["rural_group"])
            and rec["building"] is None and (m := re.compile(r"(\d+(?:-\d+)?)号?(?=$|-)").match(s, pos))
        ):
            rec["house_number"] = "-".join(_num(p) for p in m.group(1).split("-"))
            pos = m.end()
            continue
        if rec["road"] is not None and rec["house_number"] is None and (m := R.DASH4_RE.match(s, pos)):
            rec["house_number"] = _num(m.group(1))
            rec["building"], rec["unit"], rec["room"] = _num(m.group(2)), _num(m.group(3)), _num(m.group(4))
            pos = m.end()
            continue
        if rec["room"] is None and (m := R.DASH3_RE.match(s, pos)) and not _more_dash(s, m.end()):
            a, b, c = _num(m.group(1)), _num(m.group(2)), _num(m.group(3))
            if rec["building"] is None:
                rec["building"], rec["unit"], rec["room"] = a, b, c
            else:
                rec["unit"], rec["floor"], rec["room"] = a, b, c
            pos = m.end()
            continue
        if (rec["room"] is None and (m := R.DASH2_RE.match(s, pos))
                and not _more_dash(s, m.end()) and not _unit_marker(s, m.end())):
            a, b = _num(m.group(1)), _num(m.group(2))
            if rec["building"] is None and rec["unit"] is None:
                rec["building"], rec["room"] = a, b
            elif rec["unit"] is None:
                rec["unit"], rec["room"] = a, b
            else:
                rec["floor"], rec["room"] = a, b
            pos = m.end()
            continue
        if (m := R.BUILDING_RE.match(s, pos)):
            tok, marker = _num(m.group(1)), m.group(2)
            if marker == "楼" and (rec["building"] is not None or rec["unit"] is not None):
                rec["floor"] = tok
            elif rec["building"] is None:
                rec["building"] = tok
            else:
                break
            pos = m.end()
            continue
        if (m := R.UNIT_RE.match(s, pos)) and rec["unit"] is None:
            rec["unit"] = _num(m.group(1))
            pos = m.end()
            continue
        if (m := R.FLOOR_RE.match(s, pos)) and rec["floor"] is None:
            rec["floor"] = _num(m.group(1))
            pos = m.end()
            continue
        if (m := R.BUILDING_HAO_RE.match(s, pos)):
            tok = _num(m.group(1))
            if rec["road"] is not None and rec["house_number"] is None:
                rec["house_number"] = tok
            elif rec["building"] is None and rec["unit"] is None and _has_more_number(s, m.end()):
                rec["building"] = tok
            elif rec["room"] is None and (rec["building"] is not None or rec["unit"] is not None):
                rec["room"] = tok
            elif rec["building"] is None and rec["house_number"] is None:
                rec["house_number"] = tok
            elif rec["building"] is None:
                rec["building"] = tok
            else:
                break
            pos = m.end()
            continue
        if rec["room"] is None and (m := R.ROOM_RE.match(s, pos)) and (m.end() == n or s[m.end()] == "-"):
            rec["room"] = _num(m.group(1))
            pos = m.end()
            continue
        if (m := R.PHASE_RE.match(s, pos)) and rec["estate"] is not None:
            rec["estate"] += f"{_num(m.group(1))}期"
            pos = m.end()
            continue
        if rec["estate"] is None and rural and (m := R.TUN_RE.match(s, pos)):
            rec["estate"] = m.group(1)
            pos = m.end()
            continue
        if rec["road"] is None and rec["estate"] is None and (m := R.ROAD_ONLY_RE.match(s, pos)):
            m2 = R.ESTATE_RE.match(s, pos)
            if m2 is None or m2.end() <= m.end() or _ESTATE_SUFFIX_RE.search(m2.group(1)) is None:
                rec["road"] = m.group(1)
                pos = m.end()
                continue
        if rec["estate"] is None and (m := R.ESTATE_RE.match(s, pos)) and m.end() > pos:
            rec["estate"] = m.group(1)
            pos = m.end()
            continue
        break
    if pos < n:
        rec["rest"] = s[pos:]


def _more_dash(s: str, end: int) -> bool:
    return end < len(s) - 1 and s[end] == "-" and s[end + 1].isalnum()


def _unit_marker(s: str, end: int) -> bool:
    return s[end:end + 1] in ("单", "栋", "幢", "座", "楼", "层", "号", "门")


def _has_more_number(s: str, end: int) -> bool:
    return bool(re.match(r"-?[0-9A-Z]", s[end:end + 2]))


def _empty_rec() -> dict[str, Any]:
    return {c: None for c in COLUMNS} | {"rest": None, "town_inferred": False, "county_filled": False,
                                        "county_ambiguous": False, "in_default_county": False}


def parse_one(raw: Any, default: tuple[str | None, str | None, str | None] = (None, None, None)) -> dict[str, Any]:
    """Parse one address (levels only; `parse_addresses` adds key, text and status).

    `default` is ``(province_code, city_code, county_code)`` of the default district.
    """
    g = R.gazetteer()
    rec = _empty_rec()
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        rec["error"] = "address_empty"
        return rec
    raw_s = str(raw).strip()
    if raw_s.lower() in R.EMPTY_VALUES:
        rec["error"] = "address_empty"
        return rec
    s = R.clean_text(raw_s)
    rec["clean"] = s
    if not s or s.lower() in R.EMPTY_VALUES:
        rec["error"] = "address_empty"
        return rec

    d_prov, d_city, d_county = default
    # ---- province / city / county
    chains = _chains(g, s, 0, None)
    pos = chains[0][0]
    county_name: str | None = None
    if len(chains) > 1:
        chains = _resolve_ambiguous(g, s, pos, chains, d_county)
    chain = chains[0][1] if len(chains) == 1 else ()
    if len(chains) > 1:
        # still ambiguous: keep what all chains agree on, remember the county name
        common: list[str] = []
        for codes in zip(*(c[1] for c in chains)):
            if len(set(codes)) == 1:
                common.append(codes[0])
            else:
                break
        chain = tuple(common)
        county_name = g.by_code[chains[0][1][-1]].name
        rec["county_ambiguous"] = True
    deepest = chain[-1] if chain else None
    path = g.path(deepest) if deepest else {}

    # ---- township
    town_code: str | None = None
    if 3 in path:
        t = _town_at(g, s, pos, [path[3]])
        if t:
            town_code = t[1]
            pos += t[0]
    elif deepest is not None and not rec["county_ambiguous"]:
        t = _town_at(g, s, pos, [deepest])
        if t:
            town_code = t[1]
            pos += t[0]
            rec["town_inferred"] = True
    elif deepest is None and not rec["county_ambiguous"]:
        t = None
        if d_county:
            t = _town_at(g, s, pos, [d_county])
        if t is None and d_city:
            t = _town_at(g, s, pos, [d_city])
            if t:
                rec["town_inferred"] = True
        if t is None:
            gt = _global_town_at(g, s, pos)
            if gt and len(gt[1]) == 1 and _TOWN_TAIL.match(s, pos + gt[0]):
                t = (gt[0], gt[1][0])
                rec["town_inferred"] = True
            elif gt and len(gt[1]) > 1:
                rec["county_ambiguous"] = True  # a real township name, but not ours and not unique
        if t:
            town_code = t[1]
            pos += t[0]
    if town_code:
        rec["town"] = g.by_code[town_code].name
        rec["town_code"] = town_code
        path = g.path(town_code)
    else:
        m = R.TOWN_RE.match(s, pos)
        if m and not s.startswith("街", m.end()):
            rec["town"] = m.group(1)
            pos = m.end()

    # ---- fill from the default district when no county is known
    if 3 not in path and d_county and not rec["county_ambiguous"]:
        if not path or any(path.get(lv) == c for lv, c in g.path(d_county).items() if lv == max(path)):
            path = g.path(d_county)
            rec["county_filled"] = True
    for lv, col in ((1, "province"), (2, "city"), (3, "county")):
        if lv in path:
            rec[f"{col}_code"] = path[lv]
            rec[col] = g.by_code[path[lv]].name
    if rec["county"] is None and county_name:
        rec["county"] = county_name
    rec["in_default_county"] = bool(d_county) and path.get(3) == d_county

    # ---- community / village
    m = R.COMMUNITY_RE.match(s, pos)
    if m:
        rec["community"] = m.group(1)
        pos = m.end()
    else:
        m = R.VILLAGE_RE.match(s, pos)
        if m and (
            (rec["town"] or "").endswith(("镇", "乡"))
            or re.match(r"\d+(?:组|社|队)|[\u4e00-\u9fff]{1,6}?屯|\d+号?$|$", s[m.end():])
        ):
            rec["community"] = m.group(1)
            pos = m.end()

    _parse_tail(s, pos, rec)
    return rec


_TOWN_TAIL = re.compile(r"[\u4e00-\u9fff]")
_HAS_CJK = re.compile(r"[\u4e00-\u9fff]")


def _resolve_ambiguous(g: R.Gazetteer, s: str, pos: int, chains: list, d_county: str | None) -> list:
    if d_county:
        # the candidate closest to the default district (same county, else same city, else province)
        dpath = set(g.path(d_county).values())
        score = [len(dpath & set(g.path(c[1][-1]).values())) for c in chains]
        best = max(score)
        ok = [c for c, sc in zip(chains, score) if sc == best]
        if best >= 2 and len(ok) == 1:  # same city (or county) as the default district
            return ok
        if best >= 2:
            chains = ok
    ok = [c for c in chains if _town_at(g, s, pos, [c[1][-1]]) is not None]
    if len(ok) == 1:
        return ok
    return chains


# --------------------------------------------------------------------------------------
# Finishing: context fill, standard text, key, status
# --------------------------------------------------------------------------------------

_CTX_TOWN = ("town", "街道", "乡镇", "街道乡镇")
_CTX_COMMUNITY = ("community", "社区", "村", "社区村", "居委会")


def _ctx_value(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    v = str(v).strip()
    if v.lower() in R.EMPTY_VALUES:
        return None
    return R.clean_text(v) or None


def _building_label(b: str) -> str:
    return f"{b}栋" if b[0].isdigit() else f"{b}座"


def _finish(rec: dict[str, Any], ctx_town: str | None, ctx_comm: str | None) -> dict[str, Any]:
    out = {c: rec.get(c) for c in COLUMNS}
    if rec["error"] == "address_empty":
        out.update(status="unparsed", confidence=0.0, error="address_empty")
        return out
    if ctx_town and out["town"] is None:
        out["town"] = ctx_town
        if out["county_code"]:
            code = R.gazetteer().towns_by_county.get(out["county_code"], {}).get(ctx_town)
            out["town_code"] = code
    if ctx_comm and out["community"] is None:
        out["community"] = ctx_comm
    rest = rec.get("rest")
    # fold a floor into a short room: 5层1室 -> 501
    room, floor = out["room"], out["floor"]
    if room is not None and floor is not None and floor.isdigit() and room.isdigit():
        if len(room) <= 2:
            out["room"] = room = f"{floor}{int(room):02d}"
        out["floor"] = floor = None if room.startswith(floor) else floor

    named_something = any(
        rec.get(k) for k in ("road", "town", "community", "building", "unit", "rural_group")
    ) or (rec.get("county_code") and not rec["county_filled"]) or (rec.get("estate") and (
        _ESTATE_SUFFIX_RE.search(rec["estate"]) or rec.get("building") or rec.get("room")))
    clean = rec.get("clean", "")
    mostly_rest = bool(rest) and len(rest) >= len(clean) * 0.6 and not rec.get("road")
    if not named_something or not _HAS_CJK.search(clean) or mostly_rest:
        out.update(
            status="unparsed", error="address_unparsed", confidence=0.0,
            address_key="raw:" + rec.get("clean", ""), standard_text=rec.get("clean", ""),
        )
        for c in COLUMNS[:COLUMNS.index("standard_text")]:
            admin = c in ("province", "city", "county", "province_code", "city_code", "county_code")
            if not admin or rec["county_filled"]:
                out[c] = None  # nothing below the named levels is trusted; filled levels are dropped
        return out

    community = out["community"] or ""
    village = community if community.endswith("村") else None
    rural = bool(village or out["rural_group"])
    # -- standard text
    parts = [out[c] or "" for c in ("province", "city", "county", "town", "community")]
    if out["road"]:
        parts.append(out["road"])
    if out["house_number"]:
        hn = out["house_number"]
        parts.append(hn if hn.endswith("弄") else f"{hn}号")
    if out["estate"]:
        # rural: 村 屯 组 号 (the 屯 comes before the group)
        if rural and out["house_number"] and not out["road"]:
            parts.insert(len(parts) - 1, out["estate"])
        else:
            parts.append(out["estate"])
    if out["rural_group"]:
        idx = len(parts) - 1 if (rural and out["house_number"] and not out["road"]) else len(parts)
        parts.insert(idx, f"{out['rural_group']}组")
    if out["building"]:
        parts.append(_building_label(out["building"]))
    if out["unit"]:
        parts.append(f"{out['unit']}单元")
    if out["floor"]:
        parts.append(f"{out['floor']}层")
    if out["room"]:
        parts.append(f"{out['room']}室")
    if rest:
        parts.append(rest)
    out["standard_text"] = "".join(parts)

    # -- key
    if out["county_code"]:
        admin = out["county_code"]
    elif out["county"]:
        admin = "n:" + out["county"]
    elif out["city_code"]:
        admin = "c:" + out["city_code"]
    elif out["province_code"]:
        admin = "p:" + out["province_code"]
    else:
        admin = ""
    if rural and not out["road"]:
        anchor = f"v:{village or ''}|e:{out['estate'] or ''}|g:{out['rural_group'] or ''}|n:{out['house_number'] or ''}"
        if not village or not rec["in_default_county"]:
            anchor = f"t:{out['town'] or ''}|" + anchor
    elif out["estate"]:
        # 人民大街125号金城花园3栋 is keyed like 金城花园3栋: the road in front is optional
        anchor = f"e:{out['estate']}"
        if out["house_number"] and not out["road"]:
            anchor += f"|n:{out['house_number']}"
    elif out["road"]:
        anchor = f"r:{out['road']}|n:{out['house_number'] or ''}"
    elif community:
        anchor = f"v:{community}|n:{out['house_number'] or ''}"
    else:
        anchor = f"t:{out['town'] or ''}|n:{out['house_number'] or ''}"
    key = (f"{admin}|{anchor}|b:{out['building'] or ''}|u:{out['unit'] or ''}"
           f"|f:{(out['floor'] or '') if not out['room'] else ''}|r:{out['room'] or ''}")
    if rest:
        key += f"|x:{rest}"
    out["address_key"] = key

    # -- status / confidence
    conf = 1.0
    has_anchor = bool((out["road"] and out["house_number"]) or out["estate"] or (rural and out["house_number"])
                      or (community and (out["building"] or out["house_number"])))
    if not out["county_code"]:
        conf -= 0.3 if not rec["county_ambiguous"] else 0.25
    elif rec["county_filled"]:
        conf -= 0.05
    if rec["town_inferred"]:
        conf -= 0.05
    if out["road"] and not out["house_number"]:
        conf -= 0.15
    if not has_anchor:
        conf -= 0.3
    if rest:
        conf -= 0.3
    out["confidence"] = round(max(0.05, min(1.0, conf)), 2)
    out["status"] = "parsed" if (out["county_code"] and has_anchor and not rest) else "partial"
    out["error"] = None
    return out


def _parse_many(values: list[Any], default: tuple[str | None, str | None, str | None]) -> list[dict[str, Any]]:
    """`parse_one` over a list (the unit of work `pipelines.parallel.map_items` spreads)."""
    return [parse_one(v, default) for v in values]


#: while a `remembered_keys()` block runs, per default district (its codes), each text
#: `parse_addresses` parsed → the key it parses to without a context (`_plain_key`)
_REMEMBERED: list[dict[tuple[str | None, str | None, str | None], dict[str, str | None]]] = []


@contextlib.contextmanager
def remembered_keys() -> Iterator[None]:
    """While the block runs, `parse_addresses` remembers the key each distinct text
    parses to without a context, and `plain_keys` answers from it. A sync parses each
    address of its exports while standardising them; the linkage features of the same
    mentions want the same texts' keys (`pipelines.linkage.features`): parsed once, not
    twice (at 1M residents ~700 000 distinct texts, ~19 s). Forgotten when the block ends."""
    _REMEMBERED.append({})
    try:
        yield
    finally:
        _REMEMBERED.pop()


def forget_remembered_keys() -> None:
    """Empty what the innermost `remembered_keys()` block remembers (its last reader is
    done: the memory goes to what follows); nothing outside a block."""
    if _REMEMBERED:
        _REMEMBERED[-1].clear()


def _plain_key(row: dict[str, Any]) -> str | None:
    """A finished row's key, None when the text did not parse to one."""
    key = row.get("address_key")
    return key if row.get("error") is None and isinstance(key, str) else None


def plain_keys(texts: pd.Series, default_district: DistrictContext | None = None) -> list[str | None]:
    """The address key each text parses to without a context (None: no key; the text
    unparsed, empty or missing), in order: answered from what a `remembered_keys()`
    block remembers, the other texts parsed (and remembered)."""
    default = default_district.codes() if default_district is not None else (None, None, None)
    memo = _REMEMBERED[-1].get(default, {}) if _REMEMBERED else {}
    values = texts.astype(object).tolist()
    missing = list(dict.fromkeys(v for v in values if isinstance(v, str) and v not in memo))
    found: dict[str, str | None] = {}
    if missing:
        parsed = parse_addresses(pd.Series(missing, dtype=object), default_district=default_district)
        ok = parsed["error"].isna() & parsed["address_key"].notna()
        found = dict(zip(missing, parsed["address_key"].where(ok, None)))
    return [(memo[v] if v in memo else found.get(v)) if isinstance(v, str) else None for v in values]


def parse_addresses(
    raw: pd.Series,
    *,
    context: pd.DataFrame | None = None,
    default_district: DistrictContext | None = None,
) -> pd.DataFrame:
    """Parse a Series of raw address strings (see the module docstring). Index is kept.

    Unique strings are parsed once and mapped back, so the cost follows the number of
    distinct addresses, not rows.
    """
    default = default_district.codes() if default_district is not None else (None, None, None)
    values = raw.astype(object)
    ctx_town = ctx_comm = None
    if context is not None:
        ctx = context.reindex(raw.index)
        tcol = next((c for c in _CTX_TOWN if c in ctx.columns), None)
        ccol = next((c for c in _CTX_COMMUNITY if c in ctx.columns), None)
        ctx_town = ctx[tcol].astype(object) if tcol else None
        ctx_comm = ctx[ccol].astype(object) if ccol else None

    # factorize raw (and context) so each distinct combination is finished once
    codes_raw, uniq_raw = pd.factorize(values.to_numpy(), sort=False, use_na_sentinel=True)
    parsed = map_items(partial(_parse_many, default=default), uniq_raw.tolist())
    parsed.append(parse_one(None, default))  # code -1: missing
    codes_raw = np.where(codes_raw < 0, len(parsed) - 1, codes_raw).astype(np.int64)
    t_codes = c_codes = None
    t_uniq: Any = []
    c_uniq: Any = []
    if ctx_town is not None:
        t_codes, t_uniq = pd.factorize(ctx_town.to_numpy(), use_na_sentinel=True)
    if ctx_comm is not None:
        c_codes, c_uniq = pd.factorize(ctx_comm.to_numpy(), use_na_sentinel=True)
    plain = None
    if t_codes is None and c_codes is None:
        combo_codes = codes_raw
        rows = plain = [_finish(p, None, None) for p in parsed]
    else:
        nt, nc = len(t_uniq) + 1, len(c_uniq) + 1
        tc = (t_codes + 1) if t_codes is not None else np.zeros(len(codes_raw), np.int64)
        cc = (c_codes + 1) if c_codes is not None else np.zeros(len(codes_raw), np.int64)
        combined = (codes_raw * nt + tc) * nc + cc
        combo_codes, uniq_combo = pd.factorize(combined, sort=False)
        t_clean = [None] + [_ctx_value(v) for v in t_uniq]
        c_clean = [None] + [_ctx_value(v) for v in c_uniq]
        rows = []
        for k in uniq_combo.tolist():
            rest, ci = divmod(k, nc)
            r, ti = divmod(rest, nt)
            rows.append(_finish(parsed[r], t_clean[ti], c_clean[ci]))
    if _REMEMBERED:
        memo = _REMEMBERED[-1].setdefault(default, {})
        for i, text in enumerate(uniq_raw.tolist()):
            if isinstance(text, str) and text not in memo:  # a roster month restates most texts
                memo[text] = _plain_key(plain[i] if plain is not None else _finish(parsed[i], None, None))
    idx = np.asarray(combo_codes)
    data: dict[str, Any] = {}
    for c in COLUMNS:
        col = np.empty(len(rows), dtype=object if c != "confidence" else float)
        col[:] = [r[c] for r in rows]
        data[c] = pd.Series(col[idx], index=raw.index, dtype=col.dtype, copy=False)
    # object columns holding str or None (pandas 3 would otherwise infer its str dtype with NaN)
    return pd.DataFrame(data, index=raw.index, copy=False)
