"""Parse the date, timestamp and month spellings of the department exports.

Accepted date forms (see docs/SOURCE_FORMATS.md), after NFKC and trimming:

=========================  =====================================================
``2026-10-01``             also ``/`` or ``.`` separators, 1- or 2-digit month/day
``2026年10月1日``          ``日`` or ``号`` or nothing at the end
``20261001``               also SQL ``VARCHAR`` ``YYYYMMDD``
``2026-10-01 00:00:00``    an Excel date cell as the connector renders it (time dropped)
``46296``                  an Excel serial number stored as text (5 digits, up to
                           2100-12-31 = 73415; 1900 leap-year bug: serial 60 is invalid)
=========================  =====================================================

Errors: ``date_unparseable`` (no supported form), ``date_invalid`` (the form is right
but the date does not exist: ``2026-02-30``, month 13), ``date_out_of_range`` (before
``min_year`` or after ``max_date``; also anything beyond what ``datetime64[ns]`` holds).

Everything is vectorised: regular expressions extract year/month/day columns from the
*distinct* raw values, numpy validates and assembles them, results are broadcast back.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.normalize.codes import apply_unique, clean_text

__all__ = ["parse_dates", "parse_timestamps", "parse_months", "excel_serial_to_date",
           "EXCEL_SERIAL_MAX"]

_SEP = r"\s*[-/.]\s*"
_TIME = r"(?:\s*[T ]\s*(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}(?:\.\d+)?))?)"
_YMD_SEPARATED = (
    rf"^(?P<year>\d{{4}})(?:{_SEP}|\s*年\s*)(?P<month>\d{{1,2}})(?:{_SEP}|\s*月\s*)"
    rf"(?P<day>\d{{1,2}})\s*[日号]?"
)
_YMD_COMPACT = r"^(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})"

#: date patterns, tried in order (named groups year, month, day, hour, minute, second, serial)
DATE_PATTERNS: tuple[str, ...] = (
    rf"{_YMD_SEPARATED}{_TIME}?$",
    rf"{_YMD_COMPACT}$",
    r"^(?P<serial>\d{5})(?:\.0+)?$",
)
#: timestamp patterns (a date alone means midnight)
TIMESTAMP_PATTERNS: tuple[str, ...] = (
    rf"{_YMD_SEPARATED}{_TIME}?$",
    rf"{_YMD_COMPACT}(?:\s*(?P<hour>\d{{2}}):?(?P<minute>\d{{2}}):?(?P<second>\d{{2}}(?:\.\d+)?))?$",
)
_YM_SEPARATED = rf"(?P<year>\d{{4}})(?:{_SEP}|\s*年\s*)(?P<month>\d{{1,2}})(?:\s*月份?)?"
#: month patterns; a full date is accepted and floored to its month
MONTH_PATTERNS: tuple[str, ...] = (
    rf"^{_YM_SEPARATED}$",
    r"^(?P<year>\d{4})(?P<month>\d{2})$",
    *DATE_PATTERNS[:2],
)

#: Excel serial of 2100-12-31: larger 5-digit numbers are not taken for dates
EXCEL_SERIAL_MAX = 73415
_EXCEL_EPOCH = np.datetime64("1899-12-30", "D")   # serials after the phantom 1900-02-29
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_FIELDS = ("year", "month", "day", "hour", "minute", "second", "serial")
# datetime64[ns] holds 1677-09-21 .. 2262-04-11
_NS_MIN, _NS_MAX = np.datetime64("1678-01-01", "D"), np.datetime64("2261-12-31", "D")


def excel_serial_to_date(serial: np.ndarray) -> np.ndarray:
    """``datetime64[D]`` of Excel (1900 date system) serial numbers; NaT for serial 60.

    Excel counts 1900-01-01 as 1 and believes in a 1900-02-29 (serial 60), so serials
    from 61 on are days since 1899-12-30 and serials below 60 days since 1899-12-31.
    """
    serial = np.asarray(serial, dtype="float64")
    whole = np.nan_to_num(serial, nan=0).astype("int64")
    days = np.where(whole < 60, whole + 1, whole)
    dates = _EXCEL_EPOCH + days.astype("timedelta64[D]")
    return np.where(np.isnan(serial) | (whole == 60) | (whole < 1), np.datetime64("NaT"), dates)


# --------------------------------------------------------------------- parsing

def _extract(text: pd.Series, patterns: tuple[str, ...], *, search: bool = False) -> pd.DataFrame:
    """Numeric ``_FIELDS`` columns from the first pattern each text matches.

    A row that matches no pattern has NaN in every column.  ``search`` drops the
    ``^``/``$`` anchors, to find a value inside a longer text.
    """
    parts = pd.DataFrame(np.nan, index=text.index, columns=list(_FIELDS))
    pending = text.notna()
    for pattern in patterns:
        if not pending.any():
            break
        if search:
            pattern = pattern.removeprefix("^").removesuffix("$")
        found = text[pending].astype(str).str.extract(re.compile(pattern))
        hit = found.notna().any(axis=1)
        rows = hit.index[hit]
        for column in found.columns:
            parts.loc[rows, column] = pd.to_numeric(found.loc[rows, column]).to_numpy(dtype="float64")
        pending.loc[rows] = False
    return parts


def _serials_to_parts(parts: pd.DataFrame) -> pd.DataFrame:
    """Fill year/month/day of the rows that hold an Excel serial (in place, returned)."""
    serial = parts["serial"].to_numpy()
    usable = ~np.isnan(serial) & (serial <= EXCEL_SERIAL_MAX)
    dates = excel_serial_to_date(np.where(usable, serial, np.nan))
    ok = ~np.isnat(dates)
    years = dates.astype("datetime64[Y]").astype("int64") + 1970
    months = dates.astype("datetime64[M]").astype("int64") % 12 + 1
    days = (dates - dates.astype("datetime64[M]")).astype("int64") + 1
    parts.loc[ok, "year"], parts.loc[ok, "month"], parts.loc[ok, "day"] = years[ok], months[ok], days[ok]
    # serial 60 (the phantom 1900-02-29): a date that does not exist
    phantom = usable & (np.floor(np.nan_to_num(serial)) == 60)
    parts.loc[phantom, ["year", "month", "day"]] = [1900, 2, 29]
    return parts


def _assemble(parts: pd.DataFrame, *, min_date: np.datetime64 | None,
              max_date: np.datetime64 | None) -> pd.DataFrame:
    """Validate numeric date parts and build ``value`` (datetime64[ns]) and ``error``."""
    year, month, day = (parts[c].to_numpy() for c in ("year", "month", "day"))
    hour, minute, second = (np.nan_to_num(parts[c].to_numpy()) for c in ("hour", "minute", "second"))
    parsed = ~np.isnan(year)
    y = np.nan_to_num(year).astype("int64")
    m = np.nan_to_num(month).astype("int64")
    d = np.nan_to_num(day).astype("int64")
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    month_ok = (m >= 1) & (m <= 12)
    month_days = _DAYS_IN_MONTH[np.clip(m, 1, 12) - 1] + (leap & (m == 2))
    time_ok = (hour < 24) & (minute < 60) & (second < 60)
    valid = parsed & month_ok & (d >= 1) & (d <= month_days) & time_ok

    safe_y, safe_m, safe_d = np.where(valid, y, 1970), np.where(valid, m, 1), np.where(valid, d, 1)
    days = (((safe_y - 1970) * 12 + safe_m - 1).astype("datetime64[M]").astype("datetime64[D]")
            + (safe_d - 1).astype("timedelta64[D]"))
    low = _NS_MIN if min_date is None else max(min_date, _NS_MIN)
    high = _NS_MAX if max_date is None else min(max_date, _NS_MAX)
    in_range = (days >= low.astype("datetime64[D]")) & (days <= high.astype("datetime64[D]"))
    ok = valid & in_range
    seconds = np.where(ok, hour * 3600 + minute * 60 + second, 0)
    stamps = days.astype("datetime64[ns]") + (seconds * 1e9).round().astype("timedelta64[ns]")
    if max_date is not None:  # a timestamp later on the last allowed day
        late = ok & (stamps > max_date.astype("datetime64[ns]"))
        ok, in_range = ok & ~late, in_range & ~late

    error = np.full(len(parts), None, dtype=object)
    error[~parsed] = "date_unparseable"
    error[parsed & ~valid] = "date_invalid"
    error[valid & ~in_range] = "date_out_of_range"
    return pd.DataFrame({
        "value": pd.Series(np.where(ok, stamps, np.datetime64("NaT", "ns")), dtype="datetime64[ns]"),
        "error": pd.Series(error, dtype=object),
    })


def _as_day(value: object | None, *, end_of_day: bool = False) -> np.datetime64 | None:
    """A bound given as str/date/Timestamp → ``datetime64[ns]`` (None stays None)."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    if end_of_day and stamp == stamp.normalize():
        stamp = stamp + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return stamp.to_datetime64().astype("datetime64[ns]")


_ISO_DAY = r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
_ISO_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
#: canonical forms parsed by the fast path: (strict RE2 pattern, strptime format)
FAST_DATE = (rf"^{_ISO_DAY}$", "%Y-%m-%d")
FAST_TIMESTAMP = (rf"^{_ISO_DAY} {_ISO_TIME}$", "%Y-%m-%d %H:%M:%S")


def _fast_parts(distinct: pd.Series, formats: tuple[tuple[str, str], ...]) -> tuple[pd.DataFrame, np.ndarray]:
    """Parts of the values already in a canonical form, parsed in C (pyarrow + pandas).

    Fast path for columns with (nearly) all-distinct values such as timestamps.  A
    strict regex (pyarrow/RE2) selects the candidates first, because strptime is
    lenient (it accepts second 61); pandas then parses them, and an impossible day
    (``2026-02-30``) fails there and is left to the general path.  Returns the parts
    frame and the mask of values parsed here.
    """
    parts = pd.DataFrame(np.nan, index=distinct.index, columns=list(_FIELDS))
    done = np.zeros(len(distinct), dtype=bool)
    if not formats or distinct.empty:
        return parts, done
    is_text = np.fromiter((type(value) is str for value in distinct), dtype=bool, count=len(distinct))
    texts = pa.array(distinct.where(is_text, None).tolist(), type=pa.string())
    for pattern, fmt in formats:
        candidate = is_text & ~done
        candidate &= pc.fill_null(pc.match_substring_regex(texts, pattern), False).to_numpy(zero_copy_only=False)
        if not candidate.any():
            continue
        stamps = pd.to_datetime(distinct[candidate], format=fmt, errors="coerce")
        hit = stamps.notna().to_numpy()
        rows = stamps.index[hit]
        stamps = stamps[hit].dt
        for column, values in (("year", stamps.year), ("month", stamps.month), ("day", stamps.day),
                               ("hour", stamps.hour), ("minute", stamps.minute),
                               ("second", stamps.second)):
            parts.loc[rows, column] = values.to_numpy(dtype="float64")
        done[np.flatnonzero(candidate)[hit]] = True
    return parts, done


def _parse(raw: pd.Series, patterns: tuple[str, ...], *, min_year: int, max_date: object | None,
           floor_to_month: bool = False, search: bool = False,
           fast_formats: tuple[tuple[str, str], ...] = ()) -> pd.DataFrame:
    """Shared driver of parse_dates / parse_timestamps / parse_months."""
    min_date = np.datetime64(f"{min_year:04d}-01-01", "ns")
    max_bound = _as_day(max_date, end_of_day=True)

    def on_distinct(distinct: pd.Series) -> pd.DataFrame:
        parts, done = _fast_parts(distinct, fast_formats)
        text = distinct[~done].map(clean_text)
        parts.loc[text.index] = _serials_to_parts(_extract(text, patterns, search=search))
        if floor_to_month:
            parts.loc[parts["year"].notna(), "day"] = 1
            parts[["hour", "minute", "second"]] = np.nan
        result = _assemble(parts, min_date=min_date, max_date=max_bound)
        missing = text.index[text.isna()]
        result.loc[missing, "error"] = None  # missing input: NA, no error
        return result

    return apply_unique(raw, on_distinct)


def parse_dates(raw: pd.Series, *, min_year: int = 1900, max_date: object | None = None) -> pd.DataFrame:
    """Parse dates; columns ``value`` (datetime64[ns], NaT when missing or bad) and ``error``.

    ``max_date`` (inclusive; str, date or Timestamp) is usually the export date, so that
    a birth date in the future is ``date_out_of_range``.  Any time part is dropped.
    """
    result = _parse(raw, DATE_PATTERNS, min_year=min_year, max_date=max_date,
                    fast_formats=(FAST_DATE, FAST_TIMESTAMP))
    result["value"] = result["value"].dt.normalize()
    return result


def parse_timestamps(raw: pd.Series, *, min_year: int = 1900, max_date: object | None = None) -> pd.DataFrame:
    """Parse timestamps such as ``2026-11-21 14:03:22`` (also ``T``, ``/``, fractions,
    ``20261121143322``; a date alone is midnight).  Same columns and errors as parse_dates.
    """
    return _parse(raw, TIMESTAMP_PATTERNS, min_year=min_year, max_date=max_date,
                  fast_formats=(FAST_TIMESTAMP,))


def parse_months(raw: pd.Series, *, min_year: int = 1900, max_date: object | None = None,
                 search: bool = False) -> pd.DataFrame:
    """Parse months (``2026年10月``, ``202610``, ``2026-10``; a full date is floored).

    ``value`` is the first day of the month.  ``search=True`` finds the month inside a
    longer text, e.g. the roster line ``统计月份：2026年10月    单位：元``.
    """
    return _parse(raw, MONTH_PATTERNS, min_year=min_year, max_date=max_date,
                  floor_to_month=True, search=search)
