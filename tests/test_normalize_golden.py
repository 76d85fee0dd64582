"""Table-driven tests of the normalisers against tests/golden/*.tsv.

Golden file conventions (tab-separated, header row, last column ``note``):

* ``raw``: ``<None>`` is a missing cell, ``<empty>`` the empty string; ``\\uXXXX``,
  ``\\xXX`` and ``\\t`` escapes are decoded (control characters, special spaces);
* expected cells: empty means NA / no error; ``*`` means "not checked".

Each golden file has one parametrized test; the test id is the note (or the raw value).
All rows of a file are normalised in one call (they share a Series), which also
exercises the distinct-value path; each case then checks its own row.
"""

from __future__ import annotations

from functools import cache

import pandas as pd
import pytest

from pipelines.errors import ERROR_CODES
from tests.golden_files import decode, read_tsv
from pipelines.normalize.codes import (
    normalize_ethnicity,
    normalize_gender,
    normalize_marital_status,
    normalize_relationship,
)
from pipelines.normalize.dates import parse_dates, parse_months, parse_timestamps
from pipelines.normalize.names import normalize_names
from pipelines.normalize.phones import normalize_phones

@cache
def load_golden(name: str) -> list[dict[str, str]]:
    """Rows of ``tests/golden/<name>.tsv`` as dicts (raw already decoded)."""
    rows = read_tsv(f"{name}.tsv")
    for row in rows:
        row["raw"] = decode(row["raw"])
    return rows


def cases(name: str) -> list:
    """pytest params (row index) with the note (or the raw value) as id."""
    rows = load_golden(name)
    ids, seen = [], set()
    for i, row in enumerate(rows):
        ident = row.get("note") or repr(row["raw"])
        if ident in seen:
            ident = f"{ident} #{i}"
        seen.add(ident)
        ids.append(ident)
    return [pytest.param(i, id=ident) for i, ident in enumerate(ids)]


def _raw_series(name: str) -> pd.Series:
    return pd.Series([row["raw"] for row in load_golden(name)], dtype=object)


def _as_text(value: object, *, with_time: bool = False) -> str:
    """A result cell as the golden files write it (NA → empty string)."""
    if value is None or value is pd.NA or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        if value == value.normalize() and not with_time:
            return value.strftime("%Y-%m-%d")
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        return text + (f".{value.microsecond // 1000:03d}" if value.microsecond else "")
    return str(value)


def _check(result_row: pd.Series, expected: dict[str, str], columns: list[str], *,
           with_time: bool = False) -> None:
    """Compare the checked columns of one result row with the golden row."""
    for column in columns:
        want = expected[column]
        if want == "*":
            continue
        got = _as_text(result_row[column], with_time=with_time)
        assert got == want, f"{column}: got {got!r}, want {want!r} (raw {expected['raw']!r})"
    if expected.get("error"):
        assert expected["error"] in ERROR_CODES, f"error code {expected['error']} is not registered"


# ------------------------------------------------------------------- code tables

_CODE_NORMALISERS = {
    "gender": normalize_gender,
    "ethnicity": normalize_ethnicity,
    "marital": normalize_marital_status,
    "relationship": normalize_relationship,
}


@cache
def _code_result(name: str) -> pd.DataFrame:
    return _CODE_NORMALISERS[name](_raw_series(name))


@pytest.mark.parametrize("i", cases("gender"))
def test_gender(i: int) -> None:
    _check(_code_result("gender").iloc[i], load_golden("gender")[i], ["value", "error"])


@pytest.mark.parametrize("i", cases("ethnicity"))
def test_ethnicity(i: int) -> None:
    _check(_code_result("ethnicity").iloc[i], load_golden("ethnicity")[i], ["value", "error"])


@pytest.mark.parametrize("i", cases("marital"))
def test_marital(i: int) -> None:
    _check(_code_result("marital").iloc[i], load_golden("marital")[i], ["value", "error"])


@pytest.mark.parametrize("i", cases("relationship"))
def test_relationship(i: int) -> None:
    _check(_code_result("relationship").iloc[i], load_golden("relationship")[i], ["value", "error"])


# ------------------------------------------------------------------------ names

@cache
def _names_result() -> pd.DataFrame:
    return normalize_names(_raw_series("names"))


@pytest.mark.parametrize("i", cases("names"))
def test_names(i: int) -> None:
    _check(_names_result().iloc[i], load_golden("names")[i],
           ["value", "error", "simplified", "pinyin", "pinyin_alt", "script"])


# ------------------------------------------------------------------------ dates

_DATE_FUNCS = {
    "date": parse_dates,
    "timestamp": parse_timestamps,
    "month": parse_months,
    "month_search": lambda raw, **kw: parse_months(raw, search=True, **kw),
}


@pytest.mark.parametrize("i", cases("dates"))
def test_dates(i: int) -> None:
    row = load_golden("dates")[i]
    kwargs = {"max_date": row["max_date"]} if row["max_date"] else {}
    result = _DATE_FUNCS[row["func"]](pd.Series([row["raw"]], dtype=object, index=[i]), **kwargs)
    assert str(result["value"].dtype) == "datetime64[ns]"
    _check(result.loc[i], row, ["value", "error"], with_time=row["func"] == "timestamp")


# ----------------------------------------------------------------------- phones

@cache
def _phones_result() -> pd.DataFrame:
    return normalize_phones(_raw_series("phones"))


@pytest.mark.parametrize("i", cases("phones"))
def test_phones(i: int) -> None:
    _check(_phones_result().iloc[i], load_golden("phones")[i], ["value", "error", "kind"])
