"""How values get written: ID disguises, name typos, date / code / phone styles, addresses.

Every function takes arrays of true values and returns arrays of written values
(object dtype), drawing all randomness from the ``rng`` it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd

from . import reference as ref
from .config import District, NoiseConfig
from .ids import CHECK_CHARS, ymd_parts

FULLWIDTH = str.maketrans("0123456789Xx-", "０１２３４５６７８９Ｘｘ－")
EXCEL_EPOCH = np.datetime64("1899-12-30", "D")

# ----------------------------------------------------------------------------------------
# Citizen IDs
# ----------------------------------------------------------------------------------------

TEXT_QUIRKS = ("fullwidth", "spaces", "apostrophe", "typo", "empty", "placeholder")
EXCEL_TEXT_QUIRKS = ("excel_scientific", "excel_truncated")
CHANNEL_QUIRKS = {
    "xlsx": TEXT_QUIRKS + EXCEL_TEXT_QUIRKS + ("excel_numeric_cell",),
    "excel_csv": TEXT_QUIRKS + EXCEL_TEXT_QUIRKS,  # a CSV saved from Excel
    "csv": TEXT_QUIRKS,
    "sql": ("fullwidth", "spaces", "typo", "empty", "placeholder"),
}
_RATE_FIELD = {q: f"id_{q}" for q in TEXT_QUIRKS} | {q: q for q in EXCEL_TEXT_QUIRKS + ("excel_numeric_cell",)}


@dataclass
class WrittenIds:
    cells: np.ndarray  # what goes into the file: str, float (numeric xlsx cell) or None
    text: np.ndarray  # how a reader renders it (float cells as repr(float)); '' for empty
    quirk: np.ndarray

    def take(self, idx: np.ndarray) -> WrittenIds:
        return WrittenIds(self.cells[idx], self.text[idx], self.quirk[idx])


def _excel_scientific(s: str) -> str:
    mant, exp = f"{float(s):.5E}".split("E")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}E+{int(exp):02d}"


def _spaces(s: str, k: int) -> str:
    if k == 0:
        return f"{s[:6]} {s[6:14]} {s[14:]}"
    if k == 1:
        return f"{s[:6]} {s[6:]}"
    return s + " "


def _typo(s: str, k: int, pos: int, digit: int) -> str:
    if k == 0:  # wrong check digit
        wrong = [c for c in CHECK_CHARS if c != s[-1]]
        return s[:-1] + str(wrong[digit % len(wrong)])
    pos = pos % (len(s) - 1)
    d = (int(s[pos]) + 1 + digit % 9) % 10
    return s[:pos] + str(d) + s[pos + 1:]


def render_ids(rng: np.random.Generator, true_ids: np.ndarray, foreign: np.ndarray, birth: np.ndarray,
               noise: NoiseConfig, channel: str, excel_factor: float = 1.0) -> WrittenIds:
    """Write citizen IDs with the disguises allowed on this channel.

    ``true_ids``: the 18-digit ID, or the document number where ``foreign`` is set."""
    n = len(true_ids)
    ids = np.asarray(true_ids, dtype=object)
    quirks = CHANNEL_QUIRKS[channel]
    rates = np.array([getattr(noise, _RATE_FIELD[q]) * (excel_factor if q.startswith("excel") else 1.0)
                      for q in quirks])
    if rates.sum() > 0.9:
        rates *= 0.9 / rates.sum()
    u = rng.random(n)
    k = np.searchsorted(np.cumsum(rates), u, side="right")
    quirk = np.asarray(quirks + ("clean",), dtype=object)[np.minimum(k, len(quirks))]
    ends_x = np.array([s.endswith("X") for s in ids], dtype=bool) if n else np.zeros(0, bool)
    quirk[np.char.startswith(quirk.astype(str), "excel") & ends_x] = "clean"  # Excel keeps such an ID as text
    year = ymd_parts(birth)[0] if n else np.zeros(0, int)
    clean = quirk == "clean"
    quirk[clean & (year < 1980) & (year >= 1900) & (rng.random(n) < noise.id_old15)] = "old15"
    quirk[(quirk == "clean") & ends_x & (rng.random(n) < noise.id_lowercase_x)] = "lowercase_x"
    quirk[foreign] = "foreign_document"

    cells = ids.copy()
    text = ids.copy()
    kk, pos, dig = rng.integers(0, 3, n), rng.integers(0, 17, n), rng.integers(0, 100, n)
    for i in np.flatnonzero(quirk != "clean"):
        q, s = quirk[i], ids[i]
        if q == "lowercase_x":
            w = s[:-1] + "x"
        elif q == "fullwidth":
            w = s.translate(FULLWIDTH)
        elif q == "spaces":
            w = _spaces(s, kk[i])
        elif q == "apostrophe":
            w = "'" + s
        elif q == "old15":
            w = s[:6] + s[8:17]
        elif q == "typo":
            w = _typo(s, kk[i] % 2, pos[i], dig[i])
        elif q == "empty":
            w = ""
        elif q == "placeholder":
            w = "无" if dig[i] < 80 else ("不详" if dig[i] < 90 else "/")
        elif q == "excel_scientific":
            w = _excel_scientific(s)
        elif q == "excel_truncated":
            w = s[:15] + "000"
        elif q == "excel_numeric_cell":
            v = float(s[:15] + "000")
            cells[i], text[i] = v, repr(v)
            continue
        else:  # foreign_document
            w = s
        cells[i], text[i] = (w if w != "" else None), w
    return WrittenIds(cells, text, quirk)


# ----------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _s2t():
    import opencc

    return opencc.OpenCC("s2t")


def _replace_from(table: dict[str, str], s: str, r: int) -> str | None:
    hits = [i for i, c in enumerate(s) if c in table]
    if not hits:
        return None
    i = hits[r % len(hits)]
    alts = table[s[i]]
    return s[:i] + alts[r % len(alts)] + s[i + 1:]


def _latin(s: str, upper: bool) -> str:
    from pypinyin import lazy_pinyin

    py = lazy_pinyin(s)
    out = py[0].capitalize() + " " + "".join(py[1:])
    return out.upper() if upper else out.title()


def render_names(rng: np.random.Generator, names: np.ndarray, noise: NoiseConfig,
                 latin_ok: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Written names and the quirk applied to each (``clean`` when none)."""
    n = len(names)
    names = np.asarray(names, dtype=object)
    out = names.copy()
    quirk = np.full(n, "clean", dtype=object)
    kinds = ("traditional", "spaces", "homophone", "lookalike", "latin")
    rates = np.array([noise.name_traditional, noise.name_spaces, noise.name_homophone,
                      noise.name_lookalike, noise.name_latin])
    k = np.searchsorted(np.cumsum(rates), rng.random(n), side="right")
    r = rng.integers(0, 1000, n)
    dotted = np.array(["·" in s for s in names], dtype=bool) if n else np.zeros(0, bool)
    chinese = np.array([bool(s) and "\u4e00" <= s[0] <= "\u9fff" for s in names], dtype=bool) if n else dotted
    trad = np.flatnonzero((k == 0) & chinese)
    if len(trad):
        converted = _s2t().convert("\n".join(out[trad])).split("\n")
        for i, c in zip(trad, converted):
            if c != out[i]:
                out[i], quirk[i] = c, "traditional"
    for i in np.flatnonzero((k >= 1) & (k < len(kinds)) & chinese):
        kind, s = kinds[k[i]], out[i]
        if kind == "spaces":
            w = (s[0] + " " + s[1:]) if r[i] % 3 else (s + " " if r[i] % 2 else " " + s)
        elif kind == "homophone":
            w = _replace_from(ref.HOMOPHONES, s, int(r[i]))
        elif kind == "lookalike":
            w = _replace_from(ref.LOOKALIKES, s, int(r[i]))
        else:
            if dotted[i] or (latin_ok is not None and not latin_ok[i]):
                continue
            w = _latin(s, bool(r[i] % 2))
        if w and w != s:
            out[i], quirk[i] = w, kind
    dots = np.flatnonzero(dotted & (rng.random(n) < noise.name_dot_variant))
    for i in dots:
        out[i] = out[i].replace("·", ref.DOT_VARIANTS[r[i] % len(ref.DOT_VARIANTS)])
        quirk[i] = "dot_variant" if quirk[i] == "clean" else quirk[i]
    return out, quirk


# ----------------------------------------------------------------------------------------
# Dates, codes, phones
# ----------------------------------------------------------------------------------------

DATE_STYLES = ("iso", "slash", "compact", "dot", "chinese", "serial", "excel")


def render_dates(rng: np.random.Generator, dates: np.ndarray, house: str, noise: NoiseConfig,
                 excel_cells: bool = False) -> np.ndarray:
    """Dates written in the file's house style, a fraction in any other style of the spec.

    Excel date cells (``datetime.date`` objects) only where ``excel_cells``."""
    dates = np.asarray(dates, dtype="datetime64[D]")
    n = len(dates)
    styles = np.full(n, house, dtype=object)
    mix = rng.random(n) < noise.date_mix
    pool = [s for s in DATE_STYLES if excel_cells or s != "excel"]
    styles[mix] = np.asarray(pool, dtype=object)[rng.integers(0, len(pool), mix.sum())]
    out = np.full(n, None, dtype=object)
    ok = ~np.isnat(dates)
    y, m, d = ymd_parts(np.where(ok, dates, np.datetime64("2000-01-01")))
    iso = np.datetime_as_string(np.where(ok, dates, np.datetime64("2000-01-01")), unit="D").astype(object)
    for style in set(styles[ok].tolist()):
        sel = ok & (styles == style)
        if style == "iso":
            out[sel] = iso[sel]
        elif style == "compact":
            out[sel] = [s.replace("-", "") for s in iso[sel]]
        elif style == "dot":
            out[sel] = [s.replace("-", ".") for s in iso[sel]]
        elif style == "slash":
            out[sel] = [f"{a}/{b}/{c}" for a, b, c in zip(y[sel], m[sel], d[sel])]
        elif style == "chinese":
            out[sel] = [f"{a}年{b}月{c}日" for a, b, c in zip(y[sel], m[sel], d[sel])]
        elif style == "serial":
            out[sel] = ((dates[sel] - EXCEL_EPOCH) / np.timedelta64(1, "D")).astype(np.int64).astype(str)
        else:  # excel date cell
            out[sel] = [date(int(a), int(b), int(c)) for a, b, c in zip(y[sel], m[sel], d[sel])]
    return out


def render_gender(rng, codes: np.ndarray, style: str, noise: NoiseConfig) -> np.ndarray:
    codes = np.asarray(codes, dtype=object)
    words = np.where(codes == "1", "男", np.where(codes == "2", "女", "未知")).astype(object)
    flip = rng.random(len(codes)) < noise.code_mix
    use_code = (style == "code") ^ flip
    return np.where(use_code, codes, words).astype(object)


def render_ethnicity(rng, codes: np.ndarray, style: str, noise: NoiseConfig) -> np.ndarray:
    codes = np.asarray(codes, dtype=object)
    styles = np.full(len(codes), style, dtype=object)
    mix = rng.random(len(codes)) < noise.code_mix
    styles[mix] = np.asarray(["name", "short", "code"], dtype=object)[rng.integers(0, 3, mix.sum())]
    name = np.array([ref.ETHNICITY_NAME.get(c, "") for c in codes], dtype=object)
    short = np.array([ref.ETHNICITY_SHORT.get(c, "") for c in codes], dtype=object)
    out = np.where(styles == "code", codes, np.where(styles == "short", short, name)).astype(object)
    out[codes == ""] = None
    return out


def render_phones(rng, phones: np.ndarray, noise: NoiseConfig) -> np.ndarray:
    phones = np.asarray(phones, dtype=object)
    out = phones.copy()
    vary = np.flatnonzero(rng.random(len(phones)) < noise.phone_variant)
    k = rng.integers(0, 6, len(phones))
    for i in vary:
        p = phones[i]
        if not p:
            continue
        if "-" in p:  # landline
            area, num = p.split("-")
            out[i] = (f"({area}){num}", area + num, f"{area} {num}")[k[i] % 3]
        else:
            out[i] = ("+86" + p, "+86 " + p, "86-" + p, f"{p[:3]} {p[3:7]} {p[7:]}",
                      f"{p[:3]}-{p[3:7]}-{p[7:]}", "86" + p)[k[i]]
    out[out == ""] = None
    return out


# ----------------------------------------------------------------------------------------
# Addresses
# ----------------------------------------------------------------------------------------

_CN_DIGITS = "〇一二三四五六七八九"


def cn_number(n: int) -> str:
    """125 -> 一百二十五 (up to 9999)."""
    n = int(n)
    if n == 0:
        return "零"
    units = ((1000, "千"), (100, "百"), (10, "十"))
    out, zero = "", False
    for value, unit in units:
        q, n = divmod(n, value)
        if q:
            if zero:
                out += "零"
            out += ("" if (value == 10 and q == 1 and not out) else _CN_DIGITS[q]) + unit
            zero = False
        elif out:
            zero = True
    if n:
        out += ("零" if zero else "") + _CN_DIGITS[n]
    return out


def cn_digits(n: int) -> str:
    """501 -> 五〇一."""
    return "".join(_CN_DIGITS[int(c)] for c in str(int(n)))


_GROUP_WORDS = ("组", "组", "村民小组", "社", "第组", "队", "村民组", "组", "第村民小组")
ADDRESS_VARIANTS = ("full", "city", "community", "plain", "shorthand", "chinese")
_BUILDING_WORDS = ("号楼", "栋", "幢", "号楼")


def _flat_text(f, district: District, variant: str, bword: str, room_suffix: bool) -> str:
    sub = district.subdistricts[f.sub]
    comm = sub.communities[f.comm].name
    cn = variant == "chinese"
    num = (cn_number if cn else str)
    room = (cn_digits(f.room) if cn else str(f.room)) if f.kind != "rural" else ""
    suffix = "室" if room_suffix else ""
    if f.kind == "rural":
        if variant == "shorthand":
            return f"{comm}{cn_number(f.group)}社{f.house_no}号"
        # how the villager group is written varies with the clerk (三组, 3组, 三社, 第三村民小组, 3队)
        gword = _GROUP_WORDS[(int(f.group) * 7 + int(f.house_no)) % len(_GROUP_WORDS)] if variant != "full" else "组"
        gnum = cn_number(f.group) if (cn or bword == '栋') else str(f.group)
        if gword.startswith("第"):
            gnum, gword = "第" + gnum, gword[1:]
        loc = f"{sub.name}{comm}{gnum}{gword}{num(f.house_no)}号"
        head = {"full": f"{district.province}{district.city}{district.county}", "city": f"{district.city}{district.county}",
                "community": district.county, "chinese": district.county}.get(variant, "")
        return head + loc
    if f.kind == "estate":
        blk = f.block if not f.block.isdigit() else num(int(f.block))
        bw = "座" if not f.block.isdigit() else bword
        if variant == "shorthand":
            return f"{f.estate}{f.block}{'座' if not f.block.isdigit() else '栋'}{f.unit}-{f.room}"
        loc = f"{f.estate}{blk}{bw}{num(f.unit)}单元{room}{suffix}"
        if variant in ("city", "plain") and bword == "栋":
            loc = f"{f.road}{f.number}号" + loc
    else:
        if variant == "shorthand":
            return f"{f.road}{f.number}号{f.building}-{f.unit}-{f.room}"
        loc = f"{f.road}{num(f.number)}号{num(f.building)}{bword}{num(f.unit)}单元{room}{suffix}"
    if variant == "full":
        return f"{district.province}{district.city}{district.county}{sub.name}{comm}{loc}"
    if variant == "city":
        return f"{district.city}{district.county}{loc}"
    if variant in ("community", "chinese"):
        return f"{district.county}{comm}{loc}"
    return loc


def render_flat_addresses(rng, flats: pd.DataFrame, district: District, noise: NoiseConfig) -> np.ndarray:
    """One written address per row of ``flats`` (rows may repeat)."""
    n = len(flats)
    variant = np.full(n, "full", dtype=object)
    vary = rng.random(n) < noise.address_variant
    variant[vary] = np.asarray(ADDRESS_VARIANTS[1:], dtype=object)[rng.integers(0, len(ADDRESS_VARIANTS) - 1, vary.sum())]
    bword = np.where(vary, np.asarray(_BUILDING_WORDS, dtype=object)[rng.integers(0, 4, n)], "号楼")
    room_suffix = ~vary | (rng.random(n) < 0.5)
    fullwidth = (rng.random(n) < noise.address_fullwidth) & (variant != "chinese")
    out = np.empty(n, dtype=object)
    for i, f in enumerate(flats.itertuples(index=False)):
        s = _flat_text(f, district, variant[i], bword[i], room_suffix[i])
        out[i] = s.translate(FULLWIDTH) if fullwidth[i] else s
    return out


def render_outside_addresses(rng, households: pd.DataFrame, noise: NoiseConfig) -> np.ndarray:
    """Hukou addresses in other provinces (one per row of ``households``)."""
    n = len(households)
    drop_province = rng.random(n) < noise.address_variant * 0.5
    fullwidth = rng.random(n) < noise.address_fullwidth
    out = np.empty(n, dtype=object)
    for i, h in enumerate(households[["hukou_province", "hukou_city", "hukou_county", "hukou_rest"]].itertuples(index=False)):
        s = ("" if drop_province[i] and h.hukou_city else h.hukou_province) + h.hukou_city + h.hukou_county + h.hukou_rest
        out[i] = s.translate(FULLWIDTH) if fullwidth[i] else s
    return out
