"""The matching rules as data: comparisons, their levels, blocking rules, link requirements.

Every comparison is a small declarative object (like Splink's comparison library): an
ordered list of levels, each an SQL condition over the linkage columns of the two
mentions (``<column>_l`` / ``<column>_r``, see `features.linkage_frame`); the first level
whose condition holds applies. A level may carry a *prior* m probability (used as is when
``fix_m``, otherwise as the fallback before training) and an ``m_floor`` (the least m a
trained level may get, so that a level never seen among the training matches is strong
evidence against, not an impossibility).

Names are compared on characters with rapidfuzz (the DuckDB function
``zh_char_distance``, registered by `model.register_functions`), never with DuckDB's
byte-based ``levenshtein``/``jaro_winkler`` (they count UTF-8 bytes: one Chinese
character is three). ``hamming`` is only used on ASCII digit strings.

The blocking rules decide which pairs are compared at all. They are OR-ed (a pair found
by several is compared once). Each is an equality on a short key so that DuckDB hash-joins
it. The broadest, ``birth_initial`` (birth date + first pinyin letter of the name), keeps
a mention's namesakes, homophone and Traditional spellings and one-character typos (which
keep the surname) of the same birth date; on its own the birth date would give about 40
mentions per date at a million mentions, ~20 million pairs, of which only those with
equivalent names can ever be linked (`LINK_REQUIREMENTS`). A name whose first letter is
mistyped is still found by ``birth_id_sequence`` when its ID is (one-digit typos keep the
sequence digits: the only way such a pair can link) and by the pinyin rules when its birth
date is mistyped instead. Each birth-date rule is narrowed by a
second key (initial, ID sequence digits, phone) and an Excel-damaged ID is still compared
with every ID of its region + birth digits. Measured at 100 000 households (228 000
mentions, tests/benchmarks): the birth date alone gave 1.37 M pairs (2.0 M over all
rules), about 26 M at a million mentions; now 0.26 M (0.9 M over all rules), of the
114 826 pairs scoring ≥ 0.5 seven are no longer compared, none of them linkable (names
differing in their first letter, nothing else in common but the birth date); accuracy
at 10 000 households is unchanged (tests/benchmarks/accuracy.py).

`LINK_REQUIREMENTS` are hard conditions on a pair's levels for a probabilistic link
(checked before clustering): a pair must have equivalent names (identical Simplified
form; or identical pinyin — homophone typos, surname heteronyms, Latin spellings — when
the two mentions come from different export files), or a one-digit ID edit together with
a one-character name edit; and birth dates that do not disagree. Twins share birth date,
surname, address, phone, mother and household, and their given names are one character
apart: Fellegi–Sunter's independence assumption would happily multiply those agreements
into a certain match. Requiring equivalent names keeps twins (and a look-alike typo of one
twin's name next to the other) apart at the cost of a few missed look-alike typos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Level:
    """One level of a comparison."""

    label: str
    sql: str
    m: float | None = None          # prior m probability (among true matches)
    u: float | None = None          # prior u probability (among random pairs)
    fix_m: bool = False             # keep `m` as given instead of training it
    fix_u: bool = False             # keep `u` as given instead of training it
    m_floor: float = 1e-3           # a trained m is never below this
    null: bool = False              # the 'no evidence' level (weight 0)
    tf: str | None = None           # term-frequency adjustment column (common names weigh less)

    def to_splink(self) -> dict[str, Any]:
        d: dict[str, Any] = {"sql_condition": self.sql, "label_for_charts": self.label}
        if self.null:
            d["is_null_level"] = True
            return d
        if self.m is not None:
            d["m_probability"] = self.m
        if self.u is not None:
            d["u_probability"] = self.u
        if self.fix_m:
            d["fix_m_probability"] = True
        if self.fix_u:
            d["fix_u_probability"] = True
        if self.tf:
            d["tf_adjustment_column"] = self.tf
            d["tf_adjustment_weight"] = 1.0
        return d


@dataclass(frozen=True)
class Comparison:
    """A named piece of evidence with its ordered levels."""

    name: str
    description: str
    levels: tuple[Level, ...]

    def to_splink(self) -> dict[str, Any]:
        return {
            "output_column_name": self.name,
            "comparison_description": self.description,
            "comparison_levels": [lv.to_splink() for lv in self.levels],
        }

    def level(self, label: str) -> Level:
        for lv in self.levels:
            if lv.label == label:
                return lv
        raise KeyError(f"{self.name} has no level {label!r}")

    def gamma(self, label: str) -> int:
        """Splink's comparison vector value of a level (null = -1, last = 0)."""
        non_null = [lv.label for lv in self.levels if not lv.null]
        if label not in non_null:
            return -1
        return len(non_null) - 1 - non_null.index(label)

    def label_of(self, gamma: int) -> str:
        if gamma is None or gamma < 0:
            return next(lv.label for lv in self.levels if lv.null)
        non_null = [lv.label for lv in self.levels if not lv.null]
        return non_null[len(non_null) - 1 - int(gamma)]


@dataclass(frozen=True)
class BlockingRule:
    """Pairs to compare: an SQL condition on ``l.<column>`` and ``r.<column>``."""

    name: str
    sql: str
    reason: str = ""


@dataclass(frozen=True)
class LinkRequirement:
    """A probabilistic link needs one of `any_of`: each alternative maps comparisons
    to the levels they must be at (all of them)."""

    any_of: tuple[dict[str, tuple[str, ...]], ...] = field(default_factory=tuple)

    def holds(self, levels: dict[str, str]) -> bool:
        return any(all(levels.get(c) in allowed for c, allowed in alt.items()) for alt in self.any_of)


# ------------------------------------------------------------------------------ ID
_BOTH_VALID = "id_kind_l = 'valid' AND id_kind_r = 'valid'"
_BODIES = ("id_kind_l IN ('valid', 'typo') AND id_kind_r IN ('valid', 'typo') "
           "AND length(id_digits_l) = 17 AND length(id_digits_r) = 17")
_SEQ_EQ = "substr(id_digits_l, 15, 3) = substr(id_digits_r, 15, 3)"
_SHORTER = "least(length(id_digits_l), length(id_digits_r))"
_PREFIX_EQ = f"left(id_digits_l, {_SHORTER}) = left(id_digits_r, {_SHORTER})"

#: The ID's digits 7–14 *are* the birth date, which `BIRTH_DATE` already weighs, and
#: people born on one day in one county have IDs that differ only in the three sequence
#: digits (twins, or namesakes born the same day). Random-pair u values would count the
#: birth-date agreement twice and make "same region and birth, other sequence" look like
#: strong evidence of a match, when it is the very signature of a different person. So
#: the ID levels carry fixed m *and* u, with u taken among non-matches that already agree
#: on the birth date (in a county, about a third of them share the region code):
#: exact 1e-6; a one-digit edit outside the sequence 1e-4; one sequence digit differing
#: 0.01 (⅓ share the region × 3·9/1000 sequences one digit apart: neutral, m = u; the
#: twin case is kept apart by `LINK_REQUIREMENTS`, not by this weight);
#: two edits 0.05; region + birth of a damaged ID 0.01 (0.07 × ⅓, less with the first
#: sequence digit); region only 0.003; disagreeing digits 0.6.
#: DuckDB evaluates both sides of an AND on whole vectors, so `_BODIES` (both 17 digits)
#: does not keep `hamming` from rows of unequal lengths, where it raises ("Strings must
#: be of equal length"; a 1M-resident full sync failed on it): both sides are padded or
#: cut to 17 characters, which changes nothing where `_BODIES` holds
_HAMMING = "hamming(rpad(id_digits_l, 17, '_'), rpad(id_digits_r, 17, '_'))"

CITIZEN_ID = Comparison(
    "citizen_id",
    "公民身份号码：有效号码相同/不同；错号与另一号码仅差一位（顺序码相同）；仅顺序码差一位（双胞胎特征）；"
    "差两位；Excel 损坏号码残留的地区码+出生日期(+顺序码首位)；仅地区码",
    (
        Level("null", "id_digits_l IS NULL OR id_digits_r IS NULL", null=True),
        Level("exact", f"{_BOTH_VALID} AND cid_l = cid_r", m=0.86, u=1e-6, fix_m=True, fix_u=True),
        Level("different_valid", _BOTH_VALID, m=0.0005, u=0.99, fix_m=True, fix_u=True),
        Level("one_edit", f"{_BODIES} AND {_HAMMING} <= 1 AND {_SEQ_EQ}",
              m=0.04, u=1e-4, fix_m=True, fix_u=True),
        Level("sequence_edit", f"{_BODIES} AND {_HAMMING} <= 1",
              m=0.01, u=0.01, fix_m=True, fix_u=True),
        Level("two_edits", f"{_BODIES} AND {_HAMMING} = 2",
              m=0.003, u=0.05, fix_m=True, fix_u=True),
        Level("region_birth", f"{_SHORTER} >= 14 AND {_PREFIX_EQ}", m=0.07, u=0.01, fix_m=True, fix_u=True),
        Level("region", f"{_SHORTER} < 14 AND left(id_digits_l, 6) = left(id_digits_r, 6)",
              m=0.01, u=0.003, fix_m=True, fix_u=True),
        Level("disagree", "TRUE", m=0.0065, u=0.6, fix_m=True, fix_u=True),
    ),
)

# ---------------------------------------------------------------------------- name
_PINYIN_EQ = ("name_py_l = name_py_r OR name_py_alt_l = name_py_alt_r "
              "OR name_py_l = name_py_alt_r OR name_py_alt_l = name_py_r")

NAME = Comparison(
    "name",
    "姓名：简体相同；拼音相同（同音字、繁简、姓氏多音字）；差一个字；同姓",
    (
        Level("null", "name_s_l IS NULL OR name_s_r IS NULL", null=True),
        Level("exact", "name_s_l = name_s_r", m=0.95, u=2e-4, tf="name_s"),
        Level("pinyin", _PINYIN_EQ, m=0.02, u=1e-4),
        Level("one_char", "zh_char_distance(name_s_l, name_s_r) <= 1", m=0.01, u=1e-3),
        Level("surname", "surname_l = surname_r", m=0.01, u=0.05),
        Level("different", "TRUE", m=0.01, u=0.95),
    ),
)

# ---------------------------------------------------------------------- birth date
BIRTH_DATE = Comparison(
    "birth_date",
    "出生日期：相同；日月颠倒；相差三天内",
    (
        Level("null", "birth_l IS NULL OR birth_r IS NULL", null=True),
        Level("exact", "birth_l = birth_r", m=0.97, u=4e-5),
        Level("day_month_swapped", "year(birth_l) = year(birth_r) AND month(birth_l) = day(birth_r) "
                                   "AND day(birth_l) = month(birth_r)", m=0.01, u=1e-6),
        Level("within_3_days", "abs(date_diff('day', birth_l, birth_r)) <= 3", m=0.01, u=2e-4),
        Level("different", "TRUE", m=0.01, u=0.9997),
    ),
)

GENDER = Comparison(
    "gender",
    "性别（填写的，或身份证号码推出的）",
    (
        Level("null", "sex_l IS NULL OR sex_r IS NULL", null=True),
        Level("same", "sex_l = sex_r", m=0.995, u=0.5),
        Level("different", "TRUE", m=0.005, u=0.5),
    ),
)

PHONE = Comparison(
    "phone",
    "联系电话",
    (
        Level("null", "phone_l IS NULL OR phone_r IS NULL", null=True),
        Level("same", "phone_l = phone_r", m=0.7, u=1e-4),
        Level("different", "TRUE", m=0.3, u=0.9999),
    ),
)

ADDRESS = Comparison(
    "address",
    "地址（户籍地址或现居住地址，解析后的地址键）：同一户；同一楼/门牌",
    (
        Level("null", "len(addr_flats_l) = 0 OR len(addr_flats_r) = 0", null=True),
        Level("same_flat", "len(list_intersect(addr_flats_l, addr_flats_r)) > 0", m=0.6, u=5e-4),
        Level("same_building", "len(list_intersect(addr_blds_l, addr_blds_r)) > 0", m=0.05, u=5e-3),
        Level("different", "TRUE", m=0.35, u=0.9945),
    ),
)

CONTEXT = Comparison(
    "context",
    "关系人：同一配偶、户主、母亲或子女（按身份证号或拼音+出生日期）",
    (
        Level("null", "len(ctx_l) = 0 OR len(ctx_r) = 0", null=True),
        Level("shared", "len(list_intersect(ctx_l, ctx_r)) > 0", m=0.5, u=1e-4),
        Level("different", "TRUE", m=0.5, u=0.9999),
    ),
)

#: Weight 0 (m = u): it only feeds `LINK_REQUIREMENTS`. Two mentions of one export file
#: (one roster month, one day's registrations) written with different characters are two
#: people (twins named 陈利佳 / 陈利嘉 on consecutive rows), not a homophone typo.
SOURCE = Comparison(
    "source",
    "来源文件/表：同一文件（只用于硬性条件，不计权重）",
    (
        Level("null", "source_object_l IS NULL OR source_object_r IS NULL", null=True),
        Level("same_object", "source_object_l = source_object_r", m=0.05, u=0.05, fix_m=True, fix_u=True),
        Level("different", "TRUE", m=0.95, u=0.95, fix_m=True, fix_u=True),
    ),
)

COMPARISONS: tuple[Comparison, ...] = (CITIZEN_ID, NAME, BIRTH_DATE, GENDER, PHONE, ADDRESS, CONTEXT, SOURCE)

BLOCKING_RULES: tuple[BlockingRule, ...] = (
    BlockingRule("birth_initial", "l.birth = r.birth AND l.name_initial = r.name_initial",
                 "出生日期几乎总有且少有错误；再按姓名拼音首字母分组：百万条记录时每组约 3 条"
                 "（仅按出生日期约 40 条，约 2000 万对）"),
    BlockingRule("birth_id_sequence",
                 "l.birth = r.birth AND substr(l.id_digits, 15, 3) = substr(r.id_digits, 15, 3)",
                 "姓名首字笔误（拼音首字母不同）而身份证号码仅错一位：出生日期+顺序码相同"),
    BlockingRule("pinyin_year", "l.name_py = r.name_py AND l.birth_year = r.birth_year",
                 "出生日期有笔误（日月颠倒、差几天）时由同名同年找回"),
    BlockingRule("pinyin_alt_year", "l.name_py_alt = r.name_py_alt AND l.birth_year = r.birth_year",
                 "姓氏多音字读法不一"),
    BlockingRule("id_region_birth", "l.id_p14 = r.id_p14 AND l.name_initial = r.name_initial",
                 "出生日期缺失或写错而身份证号码带有地区码+出生日期（再按姓名拼音首字母）"),
    # an Excel-damaged ID (only its leading digits survive) against any ID with the same
    # region + birth digits, whatever the names: two rules, one per side of the pair
    # (Splink compares each pair once, left id < right id)
    BlockingRule("damaged_id_left", "l.id_p14 = r.id_p14 AND l.id_kind = 'partial'",
                 "Excel 损坏的身份证号码残留的地区码+出生日期"),
    BlockingRule("damaged_id_right", "l.id_p14 = r.id_p14 AND r.id_kind = 'partial'",
                 "同上（记录对的另一侧）"),
    BlockingRule("birth_phone", "l.birth = r.birth AND l.phone = r.phone",
                 "姓名首字写错：同出生日期同电话（供人工复核的候选对）"),
    BlockingRule("pinyin_phone", "l.name_py = r.name_py AND l.phone = r.phone",
                 "出生日期缺失：同名同电话"),
    BlockingRule("birth_given", "l.birth = r.birth AND length(l.name_s) >= 3 "
                                "AND substr(l.name_s, 2) = substr(r.name_s, 2)",
                 "姓氏写错（李忠建/季忠建）：同出生日期、姓以外的部分相同（两字以上的名）"),
)

#: hard conditions for a probabilistic link (see module docstring). Besides the names:
#: the birth dates must not disagree (beyond a day/month swap or a few days) — family
#: members share address, phone and head of household, and only the birth date (and the
#: name) tells sisters 汤丽 / 汤莉 apart when one has no usable ID.
_BIRTH_OK = ("exact", "day_month_swapped", "within_3_days", "null")
LINK_REQUIREMENTS = LinkRequirement(any_of=(
    {"name": ("exact",), "birth_date": _BIRTH_OK},
    {"name": ("pinyin",), "birth_date": _BIRTH_OK, "source": ("different", "null")},
    # a one-digit ID typo outside the sequence digits, with a one-character name typo
    {"name": ("one_char",), "citizen_id": ("one_edit",), "birth_date": _BIRTH_OK},
))


def comparison(name: str) -> Comparison:
    for c in COMPARISONS:
        if c.name == name:
            return c
    raise KeyError(name)
