"""Map raw code-table values (codes, labels, aliases) to national codes.

Also home of the small text helpers shared by the normalisers of this package
(missing-value tokens, NFKC cleaning, "work on the distinct values, broadcast back").

Every normaliser takes a ``pd.Series`` of raw strings and returns a ``pd.DataFrame``
with the same index and at least the columns ``value`` and ``error`` (see
ARCHITECTURE.md, "Normalisers").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import numpy as np
import pandas as pd

from schemas.codes import ETHNICITY, GENDER, MARITAL_STATUS, RELATIONSHIP, CodeTable

__all__ = [
    "MISSING_TOKENS",
    "apply_unique",
    "clean_text",
    "code_error",
    "map_codes",
    "normalize_gender",
    "normalize_ethnicity",
    "normalize_marital_status",
    "normalize_relationship",
]

# --------------------------------------------------------------- shared helpers

#: Texts that mean "no value" in department exports (compared after NFKC, strip and
#: upper-casing).  They give ``value = NA`` and ``error = None``.
MISSING_TOKENS: frozenset[str] = frozenset({
    "", "无", "/", "\\", "-", "--", "---", "—", "——", "_", "*", "?", "??",
    "不详", "未知不详", "暂无", "空", "空白", "无数据",
    "NULL", "NONE", "NAN", "NA", "N/A", "#N/A", "NAT", "<NA>",
})

_TRIM_CHARS = " \t\r\n\ufeff\u200b\u3000'"


def clean_text(value: object) -> str | None:
    """NFKC-normalise and trim one raw cell; ``None`` if it is a missing token.

    A leading apostrophe (Excel's text marker) and a BOM are trimmed with the
    whitespace.  Non-string values (numbers from a driver) are converted with ``str``.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = unicodedata.normalize("NFKC", str(value)).strip(_TRIM_CHARS)
    return None if text.upper() in MISSING_TOKENS else text


def apply_unique(raw: pd.Series, func: Callable[[pd.Series], pd.DataFrame]) -> pd.DataFrame:
    """Run ``func`` on the distinct values of ``raw`` only, then broadcast back.

    ``func`` receives an object Series of the distinct raw values (the last element is
    ``None``, standing for every missing input) with a 0..n-1 index, and returns one
    result row per element in the same order.  The result has ``raw``'s index.
    """
    codes, uniques = pd.factorize(raw.to_numpy(dtype=object), use_na_sentinel=True)
    distinct = pd.Series(list(uniques) + [None], dtype=object)
    result = func(distinct)
    positions = np.where(codes < 0, len(uniques), codes)
    out = result.take(positions)
    out.index = raw.index
    return out


def code_error(table: CodeTable) -> str:
    """Error code for a value that is not in ``table`` (registered in pipelines/errors.py)."""
    return f"code_unknown_{table.name}"


# ------------------------------------------------------------------ code tables

_DECIMAL_ZERO = re.compile(r"^(\d+)\.0+$")
_KEY_SPACES = re.compile(r"\s+")

_LOOKUPS: dict[int, tuple[CodeTable, dict[str, str]]] = {}


def _key(text: str) -> str:
    """Lookup key of a cleaned text: no whitespace, upper case."""
    return _KEY_SPACES.sub("", text).upper()


def _lookup(table: CodeTable) -> dict[str, str]:
    """key -> code for every code, label and alias of ``table`` (cached per table)."""
    cached = _LOOKUPS.get(id(table))
    if cached is not None and cached[0] is table:
        return cached[1]
    lookup: dict[str, str] = {}
    pairs = [*((code, code) for code in table.codes),
             *((label, code) for code, label in table.codes.items()),
             *table.aliases.items()]
    for text, code in pairs:
        lookup[_key(clean_text(text) or text)] = code
    _LOOKUPS[id(table)] = (table, lookup)
    return lookup


def _numeric_width(table: CodeTable) -> int | None:
    """Width of the table's codes if they are all digit strings of one width."""
    widths = {len(code) for code in table.codes}
    if len(widths) == 1 and all(code.isdigit() for code in table.codes):
        return widths.pop()
    return None


def _resolve(text: str | None, lookup: dict[str, str], width: int | None) -> str | None:
    """Code for one cleaned text, or None when it is unknown."""
    key = _key(text)
    code = lookup.get(key)
    if code is not None:
        return code
    match = _DECIMAL_ZERO.match(key)
    if match:  # "1.0" from a numeric driver
        key = match.group(1)
        code = lookup.get(key)
    if code is None and width is not None and key.isdigit() and len(key) <= width + 2:
        code = lookup.get(str(int(key)).zfill(width))  # "1" / "001" for "01"
    return code


def map_codes(raw: pd.Series, table: CodeTable) -> pd.DataFrame:
    """Map raw texts to the codes of ``table``.

    Accepts codes (for numeric tables also without or with extra leading zeros:
    ``1``/``001`` for ``01``), labels and aliases, after NFKC, trimming, removing inner
    whitespace and upper-casing.  Missing tokens give NA and no error; any other
    unknown text gives NA and the error ``code_unknown_<table.name>``.

    Returns columns ``value`` (code, string dtype), ``label`` (the standard's label)
    and ``error``.
    """
    lookup = _lookup(table)
    width = _numeric_width(table)
    error = code_error(table)

    def on_distinct(distinct: pd.Series) -> pd.DataFrame:
        values, errors = [], []
        for raw_value in distinct:
            text = clean_text(raw_value)
            code = None if text is None else _resolve(text, lookup, width)
            values.append(code)
            errors.append(error if text is not None and code is None else None)
        value = pd.Series(values, dtype="string")
        return pd.DataFrame({
            "value": value,
            "label": value.map(table.codes, na_action="ignore").astype("string"),
            "error": pd.Series(errors, dtype=object),
        })

    return apply_unique(raw, on_distinct)


def normalize_gender(raw: pd.Series) -> pd.DataFrame:
    """GB/T 2261.1 gender code (``1`` 男, ``2`` 女, ``0`` 未知, ``9`` 未说明)."""
    return map_codes(raw, GENDER)


def normalize_ethnicity(raw: pd.Series) -> pd.DataFrame:
    """GB 3304 two-digit ethnicity code from a name, short name or code."""
    return map_codes(raw, ETHNICITY)


def normalize_marital_status(raw: pd.Series) -> pd.DataFrame:
    """GB/T 2261.2 marital status code."""
    return map_codes(raw, MARITAL_STATUS)


def normalize_relationship(raw: pd.Series) -> pd.DataFrame:
    """GB/T 4761 family relationship code (relationship to the head of household)."""
    return map_codes(raw, RELATIONSHIP)
