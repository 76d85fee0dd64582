"""Normalise personal names (姓名) and derive matching keys.

``normalize_names(raw)`` returns, per input row:

* ``value``      the cleaned name as written (NFKC, no stray spaces in Chinese names,
                 one middle-dot form ``·``; Latin names upper-cased, single spaces)
* ``error``      ``name_control_chars`` / ``name_has_digits`` / ``name_too_long`` or None
* ``simplified`` ``value`` converted Traditional -> Simplified (OpenCC ``t2s``)
* ``pinyin``     space-free, lower-case, toneless key of ``simplified`` with the
                 *surname* reading of heteronym surnames (单 shan, 曾 zeng, 区 ou …)
* ``pinyin_alt`` the plain reading without surname handling (equal when no difference)
* ``script``     ``han``, ``latin`` or ``mixed``

When ``error`` is set, ``value``/``simplified``/``pinyin``/``pinyin_alt`` are NA
(``script`` is still given).  All work is done once per distinct raw value.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc
import pandas as pd
from pypinyin import Style, lazy_pinyin

from pipelines.normalize.codes import apply_unique, clean_text

__all__ = ["normalize_names", "MAX_NAME_LENGTH", "SURNAME_READINGS", "COMPOUND_SURNAMES"]

MAX_NAME_LENGTH = 30

MIDDLE_DOT = "·"
#: every middle-dot look-alike seen in names (after NFKC, ``．`` is ``.`` and ``･`` is ``・``)
DOT_FORMS = ".·•‧・･．∙⋅˙·\u2e31\u318d"

_HAN = r"\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_HAN_CHAR = re.compile(f"[{_HAN}]")
_DOTS = re.compile(f"[{re.escape(DOT_FORMS)}]")
_NON_ASCII_DOTS = re.compile(f"[{re.escape(DOT_FORMS.replace('.', ''))}]")
_SPACES_IN_HAN = re.compile(rf"(?<=[{_HAN}·])\s+(?=[{_HAN}·])")
_SPACES = re.compile(r"\s+")
_REPEATED_DOTS = re.compile(r"·{2,}")
_DIGIT = re.compile(r"\d")
_ONLY_HAN = re.compile(f"^[{_HAN}·]+$")
_ONLY_LATIN = re.compile(r"^[A-Za-z\u00c0-\u024f .'\-·,]+$")
_NOT_LETTER = re.compile(r"[^a-z]")

# --------------------------------------------------------------------- surnames

#: reading of a character when it is a surname, where that differs from (or is not
#: reliably) pypinyin's default reading.  Toneless, ``v`` for ``ü``.
SURNAME_READINGS: dict[str, str] = {
    "单": "shan", "曾": "zeng", "区": "ou", "仇": "qiu", "解": "xie", "朴": "piao",
    "查": "zha", "乐": "yue", "翟": "zhai", "盖": "ge", "缪": "miao", "繁": "po",
    "覃": "qin", "召": "shao", "种": "chong", "秘": "bi", "员": "yun", "贲": "ben",
    "折": "she", "隗": "wei", "句": "gou", "藏": "zang", "柏": "bai", "逄": "pang",
    "卜": "bu", "薄": "bo", "孛": "bo", "阚": "kan", "郇": "huan", "洗": "xian",
    "能": "nai", "便": "pian", "长": "chang", "重": "chong", "都": "du", "粘": "nian",
    "祭": "zhai", "乜": "nie", "佴": "nai", "宿": "su", "那": "na", "眭": "sui",
    "於": "yu", "任": "ren", "沈": "shen", "车": "che", "石": "shi", "贾": "jia",
    "谷": "gu", "宁": "ning", "尚": "shang", "叶": "ye", "殷": "yin", "尹": "yin",
    "和": "he", "强": "qiang", "占": "zhan", "咸": "xian", "莘": "shen", "行": "xing",
    "朝": "chao", "尉": "wei", "万": "wan", "牟": "mou",
    "纪": "ji", "燕": "yan", "哈": "ha", "黑": "hei", "钭": "tou", "訾": "zi",
}

#: two-character surnames and their readings (checked before single characters).
COMPOUND_SURNAMES: dict[str, str] = {
    "尉迟": "yuchi", "万俟": "moqi", "长孙": "zhangsun", "单于": "chanyu",
    "欧阳": "ouyang", "司马": "sima", "上官": "shangguan", "诸葛": "zhuge",
    "东方": "dongfang", "皇甫": "huangfu", "令狐": "linghu", "慕容": "murong",
    "司徒": "situ", "司空": "sikong", "夏侯": "xiahou", "澹台": "tantai",
    "公孙": "gongsun", "宇文": "yuwen", "轩辕": "xuanyuan", "呼延": "huyan",
    "端木": "duanmu", "濮阳": "puyang", "闻人": "wenren", "南宫": "nangong",
    "西门": "ximen", "独孤": "dugu", "拓跋": "tuoba", "申屠": "shentu",
    "公冶": "gongye", "太史": "taishi", "钟离": "zhongli", "赫连": "helian",
    "百里": "baili", "东郭": "dongguo", "左丘": "zuoqiu", "乐正": "yuezheng",
    "亓官": "qiguan", "仉督": "zhangdu", "羊舌": "yangshe", "巫马": "wuma",
    "第五": "diwu", "鲜于": "xianyu", "闾丘": "lvqiu",
}

_T2S = opencc.OpenCC("t2s")


# ------------------------------------------------------------------ cleaning

def _clean_name(text: str) -> str:
    """Canonical written form of one NFKC-cleaned, non-empty name."""
    text = _SPACES.sub(" ", text)
    if _HAN_CHAR.search(text):
        text = _DOTS.sub(MIDDLE_DOT, text)
        text = _SPACES.sub(" ", text.replace(" ·", "·").replace("· ", "·"))
        text = _SPACES_IN_HAN.sub("", text)
        text = _REPEATED_DOTS.sub(MIDDLE_DOT, text).strip(" " + MIDDLE_DOT)
        return text
    # Latin (or other) names: keep ASCII '.' after initials, unify the other dots
    text = _NON_ASCII_DOTS.sub(MIDDLE_DOT, text)
    return text.strip().upper()


def _script(text: str) -> str:
    """``han``, ``latin`` or ``mixed``."""
    if _ONLY_HAN.match(text):
        return "han"
    if _ONLY_LATIN.match(text):
        return "latin"
    return "mixed"


def _has_control_chars(text: str) -> bool:
    """Control (Cc) or format (Cf) characters, other than whitespace. Every such character
    is non-printable: a printable text (nearly every name; `str.isprintable` runs in C) has
    none, and only the others are read character by character."""
    return not text.isprintable() and any(unicodedata.category(ch) in ("Cc", "Cf") and not ch.isspace()
                                          for ch in text)


def _name_error(text: str) -> str | None:
    """Error code of a cleaned name, or None (checked in order of severity)."""
    if _has_control_chars(text):
        return "name_control_chars"
    if _DIGIT.search(text):
        return "name_has_digits"
    if len(text) > MAX_NAME_LENGTH:
        return "name_too_long"
    return None


def _to_simplified(names: list[str]) -> list[str]:
    """OpenCC t2s over many names in one call (newline-separated batch)."""
    if not names:
        return []
    converted = _T2S.convert("\n".join(names)).split("\n")
    if len(converted) != len(names):  # defensive: fall back to one call per name
        converted = [_T2S.convert(name) for name in names]
    return converted


# ------------------------------------------------------------------- pinyin

@lru_cache(maxsize=500_000)
def _plain_pinyin(text: str) -> str:
    """Toneless, lower-case, space-free reading of ``text`` (non-Han letters kept).

    Cached: given names repeat across surnames, so most calls are cache hits.
    """
    syllables = lazy_pinyin(text, style=Style.NORMAL, errors="default")
    return _NOT_LETTER.sub("", "".join(syllables).lower())


def _split_surname(name: str) -> tuple[str, str]:
    """(surname, given name) of a Han name without a middle dot."""
    if len(name) > 2 and name[:2] in COMPOUND_SURNAMES:
        return name[:2], name[2:]
    return name[:1], name[1:]


def _pinyin_keys(simplified: str, script: str) -> tuple[str, str]:
    """(pinyin with surname readings, plain pinyin) of a simplified name.

    Surname and given name are read separately (the given name is not read in the
    surname's phrase context); the plain key reads the surname with pypinyin's
    default reading.  Names with a middle dot (transliterated minority names), mixed
    names and single characters are read as a whole, with no surname rule.
    """
    if script == "latin":
        key = _NOT_LETTER.sub("", simplified.lower())
        return key, key
    if script != "han" or MIDDLE_DOT in simplified or len(simplified) < 2:
        plain = _plain_pinyin(simplified)
        return plain, plain
    surname, given = _split_surname(simplified)
    given_reading = _plain_pinyin(given)
    default = _plain_pinyin(surname)
    reading = COMPOUND_SURNAMES.get(surname) or SURNAME_READINGS.get(surname) or default
    return reading + given_reading, default + given_reading


# --------------------------------------------------------------------- public

_COLUMNS = ["value", "error", "simplified", "pinyin", "pinyin_alt", "script"]


def _normalize_distinct(distinct: pd.Series) -> pd.DataFrame:
    """normalize_names on distinct raw values (one Python pass over them)."""
    rows: list[list[str | None]] = []
    to_convert: list[int] = []
    for raw_value in distinct:
        text = clean_text(raw_value)
        if text is None:
            rows.append([None] * 6)
            continue
        name = _clean_name(text)
        script = _script(name)
        error = _name_error(name)
        if error is not None:
            rows.append([None, error, None, None, None, script])
            continue
        rows.append([name, None, name, None, None, script])
        if script != "latin":
            to_convert.append(len(rows) - 1)
    for position, simplified in zip(to_convert, _to_simplified([rows[i][0] for i in to_convert])):
        rows[position][2] = simplified
    for row in rows:
        if row[2] is not None:
            row[3], row[4] = _pinyin_keys(row[2], row[5])
    frame = pd.DataFrame(rows, columns=_COLUMNS, dtype=object)
    for column in ("value", "simplified", "pinyin", "pinyin_alt", "script"):
        frame[column] = frame[column].astype("string")
    return frame


def normalize_names(raw: pd.Series) -> pd.DataFrame:
    """Normalise names; columns ``value, error, simplified, pinyin, pinyin_alt, script``.

    Missing input (None, empty, ``无`` …) gives NA everywhere and no error.
    """
    return apply_unique(raw, _normalize_distinct)
