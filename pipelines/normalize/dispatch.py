"""One place that knows which normaliser runs for which value kind of a mapping.

Each normaliser takes a Series of raw strings and returns a frame with at least
`value` and `error` (see ARCHITECTURE.md); the kinds are those of
`schemas.mapping.Kind`.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

import pandas as pd

from pipelines.normalize.codes import _TRIM_CHARS, MISSING_TOKENS


def clean_text(raw: pd.Series) -> pd.Series:
    """Vectorised `codes.clean_text`: NFKC, trim, the 'no value' spellings → NA."""
    s = raw.astype("string").str.normalize("NFKC").str.strip(_TRIM_CHARS)
    return s.mask(s.str.upper().isin(MISSING_TOKENS) | s.isna())


def normalize_text(raw: pd.Series, **_: object) -> pd.DataFrame:
    s = clean_text(raw)
    # control characters never belong in a cell
    ctrl = s.str.contains(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", regex=True).fillna(False)
    err = pd.Series(None, index=raw.index, dtype=object).mask(ctrl, "text_control_chars")
    value = s.str.replace(r"[\x00-\x1f\x7f]", "", regex=True)
    too_long = value.str.len().fillna(0) > 500
    err = err.mask(too_long & err.isna(), "text_too_long")
    return pd.DataFrame({"value": value.astype(object).where(value.notna(), None), "error": err})


def normalize_amount(raw: pd.Series, **_: object) -> pd.DataFrame:
    s = clean_text(raw).str.replace(r"[,，元¥￥\s]", "", regex=True)
    num = pd.to_numeric(s, errors="coerce")
    bad = s.notna() & (num.isna() | (num < 0))
    err = pd.Series(None, index=raw.index, dtype=object).mask(bad, "amount_invalid")
    return pd.DataFrame({"value": num.round(2).where(~bad), "error": err})


def normalize_int(raw: pd.Series, **_: object) -> pd.DataFrame:
    s = clean_text(raw).str.replace(r"\.0+$", "", regex=True)
    num = pd.to_numeric(s, errors="coerce")
    bad = s.notna() & (num.isna() | (num % 1 != 0) | (num < 0))
    err = pd.Series(None, index=raw.index, dtype=object).mask(bad, "int_invalid")
    return pd.DataFrame({"value": num.where(~bad).astype("Int64"), "error": err})


def normalize_flag(raw: pd.Series, **_: object) -> pd.DataFrame:
    s = clean_text(raw).str.replace(r"\.0+$", "", regex=True)
    s = s.replace({"true": "1", "True": "1", "TRUE": "1", "false": "0", "False": "0", "FALSE": "0", "是": "1", "否": "0"})
    bad = s.notna() & ~s.isin(["0", "1"])
    err = pd.Series(None, index=raw.index, dtype=object).mask(bad, "flag_invalid")
    return pd.DataFrame({"value": s.fillna("0").where(~bad, None).astype(object), "error": err})


def normalize_address_text(raw: pd.Series, **_: object) -> pd.DataFrame:
    """Address cells stay text here; the address stage parses them into levels."""
    return normalize_text(raw)


def _ids(raw: pd.Series, **_: object) -> pd.DataFrame:
    from pipelines.normalize.ids import normalize_citizen_ids

    out = normalize_citizen_ids(raw)
    out["raw"] = raw
    return out


def _names(raw: pd.Series, **_: object) -> pd.DataFrame:
    from pipelines.normalize.names import normalize_names

    out = normalize_names(raw)
    out["raw"] = raw
    return out


def _dates(raw: pd.Series, *, birth_date: bool = False, today: dt.date | None = None, **_: object) -> pd.DataFrame:
    from pipelines.normalize.dates import parse_dates

    out = parse_dates(raw)
    out["value"] = pd.to_datetime(out["value"]).dt.date.astype(object).where(out["value"].notna(), None)
    if birth_date:
        check_birth_dates(out, today or dt.date.today())
    return out


#: oldest plausible age, in years
MAX_AGE_YEARS = 120


def check_birth_dates(out: pd.DataFrame, today: dt.date) -> None:
    """A parsed birth date after `today`, or more than MAX_AGE_YEARS before it, is an
    error (`birth_date_in_future`, `birth_date_too_old`) and not a value (in place)."""
    ok = out["error"].isna() & out["value"].notna()
    if not ok.any():
        return
    oldest = dt.date(today.year - MAX_AGE_YEARS, today.month, min(today.day, 28))
    values = out["value"]
    future = ok & values.map(lambda d: d is not None and d > today).astype(bool)
    too_old = ok & values.map(lambda d: d is not None and d < oldest).astype(bool)
    out["error"] = out["error"].astype(object).mask(future, "birth_date_in_future").mask(too_old, "birth_date_too_old")
    out["value"] = values.mask(future | too_old, None)


def _timestamps(raw: pd.Series, **_: object) -> pd.DataFrame:
    from pipelines.normalize.dates import parse_timestamps

    return parse_timestamps(raw)


def _months(raw: pd.Series, **_: object) -> pd.DataFrame:
    from pipelines.normalize.dates import parse_months

    return parse_months(raw)


def _codes(raw: pd.Series, *, code_table: object = None, **_: object) -> pd.DataFrame:
    """`code_table`: a `CodeTable` (a mapping's own, `SourceMapping.code_table_of`) or the
    name of a national one."""
    from pipelines.normalize.codes import map_codes
    from schemas.codes import CODE_TABLES

    if code_table is None:
        raise ValueError("a 'code' field needs a code_table")
    return map_codes(raw, CODE_TABLES[code_table] if isinstance(code_table, str) else code_table)


def _phones(raw: pd.Series, **_: object) -> pd.DataFrame:
    from pipelines.normalize.phones import normalize_phones

    return normalize_phones(raw)


NORMALIZERS: dict[str, Callable[..., pd.DataFrame]] = {
    "text": normalize_text,
    "document_type": normalize_text,
    "citizen_id": _ids,
    "name": _names,
    "date": _dates,
    "timestamp": _timestamps,
    "month": _months,
    "code": _codes,
    "phone": _phones,
    "address": normalize_address_text,
    "amount": normalize_amount,
    "int": normalize_int,
    "flag": normalize_flag,
}


def normalize_kind(kind: str, raw: pd.Series, *, code_table: object = None, **options: object) -> pd.DataFrame:
    """Run the normaliser of `kind` on a raw column (`options`: e.g. `birth_date=True`
    for a date column that holds birth dates)."""
    raw = raw if isinstance(raw, pd.Series) else pd.Series(raw)
    if raw.dtype != object:
        raw = raw.astype(object)
    res = NORMALIZERS[kind](raw, code_table=code_table, **options)
    res.index = raw.index
    if "error" not in res:
        res["error"] = None
    res["error"] = res["error"].astype(object).where(res["error"].notna(), None)
    return res


__all__ = ["NORMALIZERS", "normalize_kind", "clean_text", "MISSING_TOKENS"]
