"""Properties of the value normalisers: date round trips (hypothesis), contracts
(index, dtypes, registered error codes), code-table integrity, and a 1M-row smoke test."""

from __future__ import annotations

import calendar
import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.errors import ERROR_CODES
from pipelines.normalize.codes import code_error, map_codes, normalize_relationship
from pipelines.normalize.dates import EXCEL_SERIAL_MAX, parse_dates
from pipelines.normalize.names import normalize_names
from pipelines.normalize.phones import normalize_phones
from schemas.codes import CODE_TABLES, ETHNICITY, HEAD_OF_HOUSEHOLD_CODES, RELATIONSHIP

# ------------------------------------------------------------------ names (hypothesis)

@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=12))
def test_the_control_character_check_agrees_with_a_character_by_character_reading(text):
    """`_has_control_chars` skips the per-character reading for printable text; the
    answer is the Unicode categories' (Cc, Cf; whitespace allowed) for any text."""
    import unicodedata

    from pipelines.normalize.names import _has_control_chars

    expected = any(unicodedata.category(ch) in ("Cc", "Cf") and not ch.isspace() for ch in text)
    assert _has_control_chars(text) == expected
    assert _has_control_chars("张\u200b三") and _has_control_chars("李\x07四") and not _has_control_chars("王\u3000五")


# ------------------------------------------------------------------ dates (hypothesis)

_FULLWIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")

#: every supported way of writing a date, as functions of a datetime.date
DATE_FORMATS = {
    "iso": lambda d: d.strftime("%Y-%m-%d"),
    "slash_unpadded": lambda d: f"{d.year}/{d.month}/{d.day}",
    "compact": lambda d: d.strftime("%Y%m%d"),
    "dots": lambda d: d.strftime("%Y.%m.%d"),
    "chinese": lambda d: f"{d.year}年{d.month}月{d.day}日",
    "excel_cell": lambda d: d.strftime("%Y-%m-%d 00:00:00"),
    "fullwidth": lambda d: d.strftime("%Y-%m-%d").translate(_FULLWIDTH),
}
_SERIAL_EPOCH = dt.date(1899, 12, 30)


@settings(max_examples=300, deadline=None)
@given(day=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)),
       fmt=st.sampled_from(sorted(DATE_FORMATS)))
def test_any_valid_date_round_trips(day: dt.date, fmt: str) -> None:
    result = parse_dates(pd.Series([DATE_FORMATS[fmt](day)]))
    assert result["error"].iloc[0] is None
    assert result["value"].iloc[0] == pd.Timestamp(day)


@settings(max_examples=200, deadline=None)
@given(day=st.dates(min_value=dt.date(1927, 5, 18), max_value=dt.date(2100, 12, 31)))
def test_excel_serial_round_trips(day: dt.date) -> None:
    serial = (day - _SERIAL_EPOCH).days
    assert 10000 <= serial <= EXCEL_SERIAL_MAX
    result = parse_dates(pd.Series([str(serial)]))
    assert result["value"].iloc[0] == pd.Timestamp(day)


@st.composite
def impossible_days(draw: st.DrawFn) -> tuple[int, int, int]:
    year = draw(st.integers(1900, 2100))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(calendar.monthrange(year, month)[1] + 1, 99))
    return year, month, day


@settings(max_examples=300, deadline=None)
@given(ymd=impossible_days(), fmt=st.sampled_from(["{y}-{m:02d}-{d:02d}", "{y}/{m}/{d}", "{y}{m:02d}{d:02d}",
                                                   "{y}.{m:02d}.{d:02d}", "{y}年{m}月{d}日"]))
def test_day_beyond_month_length_is_an_error_never_a_date(ymd: tuple[int, int, int], fmt: str) -> None:
    y, m, d = ymd
    result = parse_dates(pd.Series([fmt.format(y=y, m=m, d=d)]))
    assert result["error"].iloc[0] == "date_invalid"
    assert pd.isna(result["value"].iloc[0])


@settings(max_examples=100, deadline=None)
@given(y=st.integers(1900, 2100), m=st.integers(13, 99), d=st.integers(1, 28))
def test_month_beyond_12_is_an_error(y: int, m: int, d: int) -> None:
    result = parse_dates(pd.Series([f"{y}-{m}-{d}"]))
    assert result["error"].iloc[0] == "date_invalid"


# ------------------------------------------------------------------- contracts

_NORMALISERS = {
    "names": normalize_names,
    "dates": parse_dates,
    "phones": normalize_phones,
    "relationship": normalize_relationship,
}


@pytest.mark.parametrize("name", sorted(_NORMALISERS))
def test_index_is_kept_and_errors_are_registered(name: str) -> None:
    raw = pd.Series(["张伟", None, "2026-10-01", "13912345678", "户主", "??x", "张伟"],
                    index=[10, 3, 7, 99, -1, 5, 0], dtype=object)
    result = _NORMALISERS[name](raw)
    assert list(result.index) == list(raw.index)
    assert {"value", "error"} <= set(result.columns)
    assert result["error"].dropna().isin(list(ERROR_CODES)).all()
    assert result["error"].iloc[1] is None and pd.isna(result["value"].iloc[1])


def test_empty_series() -> None:
    for normaliser in _NORMALISERS.values():
        result = normaliser(pd.Series([], dtype=object))
        assert len(result) == 0 and {"value", "error"} <= set(result.columns)


# ------------------------------------------------------------ code-table integrity

def test_ethnicity_table_has_the_56_groups() -> None:
    groups = {code: label for code, label in ETHNICITY.codes.items() if int(code) <= 56}
    assert sorted(groups) == [f"{i:02d}" for i in range(1, 57)]
    assert groups["01"] == "汉族" and groups["56"] == "基诺族"
    assert len(set(groups.values())) == 56
    assert ETHNICITY.codes["97"] == "其他" and ETHNICITY.codes["98"] == "外国血统中国籍人士"


@pytest.mark.parametrize("table", sorted(CODE_TABLES))
def test_every_code_and_label_maps_to_itself(table: str) -> None:
    code_table = CODE_TABLES[table]
    codes = list(code_table.codes)
    by_code = map_codes(pd.Series(codes, dtype=object), code_table)
    by_label = map_codes(pd.Series([code_table.codes[c] for c in codes], dtype=object), code_table)
    assert list(by_code["value"]) == codes
    assert list(by_label["value"]) == codes
    assert code_error(code_table) in ERROR_CODES


def test_roster_relationship_texts_are_covered() -> None:
    texts = ("户主 本人 配偶 妻 夫 妻子 丈夫 子 儿子 长子 次子 女 女儿 长女 父亲 母亲 "
             "孙子 孙女 儿媳 女婿 兄弟 姐妹 其他").split()
    result = map_codes(pd.Series(texts, dtype=object), RELATIONSHIP)
    assert result["error"].isna().all(), result[result["error"].notna()]
    heads = result["value"][[texts.index("户主"), texts.index("本人")]]
    assert set(heads) <= HEAD_OF_HOUSEHOLD_CODES


# ------------------------------------------------------------------- performance

@pytest.mark.slow
def test_one_million_rows_in_seconds() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    samples = {
        normalize_names: ["张伟", "張偉", "阿依古丽•买买提", "单雄信", "ZHANG WEI", None],
        parse_dates: ["2026-10-01", "20261001", "46296", "2026年10月1日", "2026-02-30", None],
        normalize_phones: ["13912345678", "+86 139 1234 5678", "0437-3221234", "123", None],
        normalize_relationship: ["户主", "配偶", "长子", "儿媳", "01", None],
    }
    for normaliser, values in samples.items():
        raw = pd.Series(np.array(values, dtype=object)[rng.integers(0, len(values), n)], dtype=object)
        start = time.perf_counter()
        result = normaliser(raw)
        elapsed = time.perf_counter() - start
        assert len(result) == n
        assert elapsed < 15, f"{normaliser.__name__}: {elapsed:.1f}s for 1M rows"
