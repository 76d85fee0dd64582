"""Citizen ID (公民身份号码, GB 11643) normalisation, vectorised.

``normalize_citizen_ids`` cleans the usual disguises of an ID (full-width digits,
spaces, Excel's text marker, lowercase ``x``, old 15-digit numbers) and classifies
everything else as an error code of ``pipelines/errors.py``.  Values damaged by Excel
(scientific notation, ``000`` truncation, ``.0`` floats) are never valid, but the
digits that survived are returned as *evidence* (region, birth date, sequence) for
probabilistic linkage, flagged ``evidence_only``.

No Python code runs per row: strings are handled by pandas' pyarrow string kernels,
and the checks by numpy on a matrix of digits.

Evidence model: every ID-like value is mapped onto the 18-digit layout as ``body``
(17 digits; a 15-digit number gets ``19`` inserted before the year, unknown digits
are padded with ``0``) plus ``trusted``, how many leading digits of ``body`` are
the real ones.  The region needs 6 trusted digits, the birth date 14, the sequence
(and gender) 17.  Known limit: a number of 15 or fewer significant digits is read as
Excel's stored (truncated) value; the double of a *full* 18-digit ID that happens to
print that short (``1.1010120000102e+17`` for ``110101200001019998``, sequence 99x)
is then read as the neighbouring ID's digits, one day off.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa

from schemas.regions import load_regions

__all__ = [
    "MISSING_TOKENS",
    "citizen_id_checksum",
    "classify_document",
    "clean_document_number",
    "id_region_codes",
    "normalize_citizen_ids",
    "upgrade_15_to_18",
]

STRING = pd.StringDtype()  # pyarrow-backed in pandas 3, missing = pd.NA

#: Cell contents meaning "no ID" (compared after cleaning and upper-casing).
MISSING_TOKENS = frozenset({
    "", "无", "暂无", "没有", "无证", "不详", "未知", "空", "/", "\\", "-", "--", "---",
    "—", "——", "…", "...", "NONE", "NULL", "NAN", "NA", "N/A", "#N/A",
})

#: Province-level codes that do head IDs: residence permits of Hong Kong, Macao and
#: Taiwan residents (830000 is not a GB/T 2260 code), and 台湾省.
_PROVINCE_ID_REGIONS = ("710000", "810000", "820000", "830000")

# GB 11643: weight of position i is 2^(17-i) mod 11; check = "10X98765432"[sum mod 11]
_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
_CHECK_CHARS = np.array(list(b"10X98765432"), dtype=np.uint8)
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_MIN_BIRTH = np.datetime64("1900-01-01", "D")
_EXCEL_DIGITS = 15  # Excel keeps 15 significant digits of a number
_FLOAT_ERROR = 128  # a double's ulp for numbers of 18 digits below 1e18

# Cleaning: whitespace of every kind (NFKC has turned U+3000 and NBSP into " "),
# control and zero-width characters; Excel's text markers '…, `…, ="…" around it.
_JUNK = "[\x00-\x20\x7f\u0085\u00a0\u1680\u2000-\u200f\u2028\u2029\u202f\u205f\u2060\u3000\ufeff]+"
_QUOTES = "\"'`\u2018\u2019\u201c\u201d"
_WRAPPER = f"^=?[{_QUOTES}]+|^=|[{_QUOTES}]+$"

# Shapes of the cleaned string (valid for RE2 and Python `re`).
_CLEAN_18 = r"[0-9]{17}[0-9X]"
_DIGITS_15 = r"[0-9]{15}"
_SCIENTIFIC = r"[0-9]+(?:[.,][0-9]*)?E[+-]?[0-9]+"
_SCIENTIFIC_ID = r"[1-9][0-9]*(?:[.,][0-9]*)?E\+?[0-9]{1,3}"  # one that may hold an ID
_FLOAT = r"[0-9]+[.,][0-9]+"
_ID_CHARS = r"[0-9]*X?"


@lru_cache(maxsize=1)
def id_region_codes() -> frozenset[str]:
    """Codes accepted as the first six digits of an ID: every county- or
    prefecture-level GB/T 2260 code of any year (a prefecture code heads the IDs
    of cities without districts, e.g. 东莞 441900), plus ``_PROVINCE_ID_REGIONS``.
    """
    regions = load_regions()
    usable = (regions["level"] != "province") | regions["code"].isin(_PROVINCE_ID_REGIONS)
    return frozenset(regions.loc[usable, "code"])


@lru_cache(maxsize=1)
def _id_region_ints() -> np.ndarray:
    return np.array(sorted(int(code) for code in id_region_codes()), dtype=np.int64)


# ----------------------------------------------------------------- small helpers
def _mask(s: pd.Series, pattern: str) -> np.ndarray:
    """Boolean numpy mask of ``s`` fully matching ``pattern`` (NA → False)."""
    return s.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)


def _ascii_bytes(s: pd.Series, width: int) -> np.ndarray:
    """ASCII strings as a fixed-width numpy bytes array (``S{width}``)."""
    return np.array(s.tolist(), dtype=f"S{width}")


def _digit_matrix(body: np.ndarray) -> np.ndarray:
    """``S17`` digit strings → (n, 17) int matrix of digit values."""
    return body.view(np.uint8).reshape(-1, 17).astype(np.int64) - ord("0")


def _string_column(chars: np.ndarray, keep: np.ndarray) -> pd.Series:
    """An (n, k) uint8 character matrix → string Series, ``NA`` where not ``keep``."""
    k = chars.shape[1]
    raw = np.ascontiguousarray(chars).view(f"S{k}").ravel()
    arr = pa.array(raw, mask=~keep, type=pa.binary()).cast(pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(arr))


def _checksum(digits: np.ndarray) -> np.ndarray:
    """Check characters (uint8 ASCII) of an (n, 17) digit matrix."""
    return _CHECK_CHARS[(digits @ _WEIGHTS) % 11]


def _birth_dates(digits: np.ndarray, today: np.datetime64) -> np.ndarray:
    """Birth dates (``datetime64[D]``) from digits 6-13; ``NaT`` unless the date
    exists and lies in [1900-01-01, today]."""
    number = digits[:, 6:14] @ (10 ** np.arange(7, -1, -1))
    year, month, day = number // 10000, number // 100 % 100, number % 100
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_ok = (month >= 1) & (month <= 12)
    days = _DAYS_IN_MONTH[np.clip(month - 1, 0, 11)] + ((month == 2) & leap)
    exists = month_ok & (day >= 1) & (day <= days)
    months = np.where(exists, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    dates = months.astype("datetime64[D]") + np.where(exists, day - 1, 0).astype("timedelta64[D]")
    ok = exists & (dates >= _MIN_BIRTH) & (dates <= today)
    return np.where(ok, dates, np.datetime64("NaT"))


# --------------------------------------------------------------------- check digit
def citizen_id_checksum(ids17: pd.Series) -> pd.Series:
    """GB 11643 check character (``0``-``9`` or ``X``) of each 17-digit body.

    ``ids17`` may hold longer strings (only the first 17 characters are used);
    a value whose first 17 characters are not all digits gives ``NA``.
    """
    body = ids17.astype(STRING).str.slice(0, 17)
    ok = _mask(body, r"[0-9]{17}")
    matrix = np.full((len(body), 1), ord("0"), dtype=np.uint8)
    if ok.any():
        matrix[ok, 0] = _checksum(_digit_matrix(_ascii_bytes(body[ok], 17)))
    return _string_column(matrix, ok).set_axis(ids17.index)


def upgrade_15_to_18(ids15: pd.Series) -> pd.Series:
    """Old 15-digit IDs to 18 digits (GB 11643): ``19`` before the two-digit year,
    then the check character.  Anything that is not exactly 15 digits gives ``NA``.
    """
    s = ids15.astype(STRING)
    body = s.str.slice(0, 6) + "19" + s.str.slice(6)
    return (body + citizen_id_checksum(body)).where(_mask(s, _DIGITS_15), pd.NA)


# -------------------------------------------------------------------------- cleaning
def clean_document_number(raw: pd.Series) -> pd.Series:
    """The string that gets judged: NFKC (full-width → ASCII), every whitespace,
    control and zero-width character removed (also inside), Excel's text markers
    (leading ``'``/`````, ``="…"``, surrounding quotes) stripped, upper-cased.

    ``None``/``NaN`` stays ``NA``.  Already clean 18-character values skip the work.
    """
    s = raw.astype(STRING)
    dirty = ~s.str.fullmatch(_CLEAN_18).fillna(True)
    if dirty.any():
        t = s[dirty]
        wide = ~t.str.isascii().fillna(True)
        if wide.any():  # NFKC runs per value in Python: only where it can matter
            t = t.mask(wide, t[wide].str.normalize("NFKC"))
        t = t.str.replace(_JUNK, "", regex=True).str.replace(_WRAPPER, "", regex=True)
        s = s.mask(dirty, t.str.upper())
    return s


# ---------------------------------------------------- ID-like shapes → body, trusted
def _layout(digits: pd.Series, trusted: np.ndarray, n_digits: np.ndarray
            ) -> tuple[pd.Series, np.ndarray]:
    """Digit strings of an 18- or 15-digit number onto the 18-digit layout.

    ``digits`` hold at least the ``trusted`` leading digits; rows whose number has
    another length get ``trusted = 0``.  Result: 17-digit bodies (zero-padded).
    """
    digits = digits.str.replace(r"[^0-9].*$", "", regex=True).str.pad(18, side="right", fillchar="0")
    is15 = n_digits == 15
    body = digits.str.slice(0, 17).where(~is15, digits.str.slice(0, 6) + "19" + digits.str.slice(6, 15))
    trusted = np.where(is15 & (trusted > 6), trusted + 2, trusted)
    return body, np.where((n_digits == 18) | is15, np.clip(trusted, 0, 17), 0)


def _number_trusted(digits: pd.Series, shown: np.ndarray, n_digits: np.ndarray) -> np.ndarray:
    """How many leading digits of a number written by Excel or a float survived.

    ``digits``: its significant digits as written, ``shown`` of them, for a number of
    ``n_digits`` integer digits.

    * Up to 13 digits shown: a display rounding (``1.10105E+17``), so the last shown
      digit may be rounded up — except the 6th of an 18-digit ID, followed by the
      century digit ``1``/``2``, which never rounds up.
    * 14 or 15: the exact repr of what Excel stored (it keeps 15 digits, truncating).
    * 16 or more (an 18-digit number): a double's full expansion, off by up to one
      ulp (128 below 1e18); only the digits on which ``value ± 128`` agree count.
    """
    trusted = np.where(shown >= 14, shown, shown - 1)
    trusted = np.where((n_digits == 18) & (shown == 6), 6, trusted)
    trusted = np.minimum(trusted, _EXCEL_DIGITS)
    long = (shown >= 16) & (n_digits == 18)
    if long.any():
        value = pd.to_numeric(digits[long].str.slice(0, 18)).to_numpy(dtype=np.int64)
        lo, hi = value - _FLOAT_ERROR, value + _FLOAT_ERROR
        same = np.array([lo // 10**k == hi // 10**k for k in range(19)])  # (19, m)
        trusted[long] = 18 - same.argmax(axis=0)
    return trusted


def _scientific(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``(body, trusted)`` of scientific-notation values (``1.10105E+17``): the
    mantissa digits are the number's leading digits; 18 digits (exponent 17) is an
    ID, 15 digits an old ID."""
    mantissa = s.str.replace(r"E.*$", "", regex=True)
    integer = mantissa.str.replace(r"[.,].*$", "", regex=True)
    mantissa = mantissa.str.replace(r"[.,]", "", regex=True)
    exponent = pd.to_numeric(s.str.replace(r"^.*E\+?", "", regex=True), errors="coerce")
    exponent = exponent.where(_mask(s, _SCIENTIFIC_ID), -99).to_numpy(dtype=np.int64)
    shown = mantissa.str.len().to_numpy(dtype=np.int64)
    n_digits = integer.str.len().to_numpy(dtype=np.int64) + exponent
    padded = mantissa.str.pad(18, side="right", fillchar="0")
    return _layout(padded, _number_trusted(padded, shown, n_digits), n_digits)


def _float(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``(body, trusted)`` of ``110105198001011234.0`` (the integer part counts)."""
    integer = s.str.replace(r"[.,].*$", "", regex=True)
    n_digits = integer.str.len().to_numpy(dtype=np.int64)
    return _layout(integer, _number_trusted(integer, n_digits, n_digits), n_digits)


def _bad_chars(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``(body, trusted)`` of an 18/15-char value: the digits before the first wrong one."""
    lead = s.str.replace(r"[^0-9].*$", "", regex=True).str.len().to_numpy(dtype=np.int64)
    return _layout(s, lead, s.str.len().to_numpy(dtype=np.int64))


def _bad_length(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``(body, trusted)`` of digit strings of the wrong length: 17 digits lost only
    the check character; of any other length only the region is trusted."""
    n = (s.str.len() - s.str.endswith("X").astype(int)).to_numpy(dtype=np.int64)
    trusted = np.where(n == 17, 17, np.where(n >= 6, 6, 0))
    return _layout(s, trusted, np.full(len(s), 18))


# ------------------------------------------------------------------- main function
def normalize_citizen_ids(raw: pd.Series, *, today: pd.Timestamp | None = None) -> pd.DataFrame:
    """Normalise raw citizen-ID cells.

    Returns a frame with ``raw``'s index and the columns

    * ``value``: the valid 18-character ID (upper ``X``) or ``NA``;
    * ``error``: ``None`` or an error code (``id_*`` of ``pipelines/errors.py``);
      a missing ID (empty, ``无``, ``/``, ``-``, ``不详``…) is not an error;
    * ``status``: ``valid``, ``upgraded_15``, ``missing`` or the error code;
    * ``clean``: the cleaned string that was judged;
    * ``region_code``, ``birth_date``, ``gender`` (``1`` male / ``2`` female),
      ``sequence``: parsed from the valid ID, or whatever trustworthy part survived
      in an invalid one (``NA`` otherwise);
    * ``evidence_only``: ``True`` for an invalid value (``error`` set): its parsed
      fields, where not ``NA``, are evidence for linkage, never a key.

    ``today`` (default: the current date) bounds birth dates from above.
    """
    today_d = np.datetime64(pd.Timestamp.today() if today is None else pd.Timestamp(today), "D")
    clean = clean_document_number(raw).reset_index(drop=True)  # positional inside
    n = len(clean)

    length = clean.str.len().fillna(0).to_numpy(dtype=np.int64)
    missing = (clean.isna() | clean.isin(MISSING_TOKENS)).to_numpy(dtype=bool)
    scientific = ~missing & _mask(clean, _SCIENTIFIC)
    floating = ~missing & ~scientific & _mask(clean, _FLOAT)
    id_chars = ~missing & _mask(clean, _ID_CHARS)
    bad_chars = ~missing & ~scientific & ~floating & ~id_chars
    d18 = id_chars & (length == 18)
    d15 = id_chars & (length == 15) & _mask(clean, _DIGITS_15)
    bad_length = id_chars & ~d18 & ~d15
    truncated = d18 & clean.str.endswith("000").fillna(False).to_numpy(dtype=bool)

    # every ID-like shape onto the 18-digit layout: body (S17) and trusted digits
    body = np.full(n, b"0" * 17, dtype="S17")
    trusted = np.zeros(n, dtype=np.int64)
    body[d18] = _ascii_bytes(clean[d18].str.slice(0, 17), 17)
    trusted[d18] = np.where(truncated[d18], _EXCEL_DIGITS, 17)
    body[d15] = _ascii_bytes(clean[d15].str.slice(0, 6) + "19" + clean[d15].str.slice(6), 17)
    trusted[d15] = 17
    for mask, shape in [(scientific, _scientific), (floating, _float),
                        (bad_chars & ((length == 18) | (length == 15)), _bad_chars),
                        (bad_length, _bad_length)]:
        if mask.any():
            sub_body, trusted[mask] = shape(clean[mask])
            body[mask] = _ascii_bytes(sub_body, 17)

    # evidence from the trusted digits
    digits = _digit_matrix(body)
    region_int = digits[:, :6] @ (10 ** np.arange(5, -1, -1))
    known = _id_region_ints()
    at = np.clip(np.searchsorted(known, region_int), 0, len(known) - 1)
    region_ok = (trusted >= 6) & (known[at] == region_int)
    birth = _birth_dates(digits, today_d)
    birth[trusted < 14] = np.datetime64("NaT")
    seq_ok = trusted >= 17
    chars = body.view(np.uint8).reshape(n, 17)

    # judge the well-formed candidates: check digit, region, then birth date
    candidate = (d18 & ~truncated) | d15
    check = _checksum(digits)
    given = np.zeros(n, dtype=np.uint8)
    given[d18] = np.frombuffer(_ascii_bytes(clean[d18].str.slice(17, 18), 1), dtype=np.uint8)
    status = np.full(n, "valid", dtype=object)
    status[d15] = "upgraded_15"
    for mask, code in [  # later assignments win: the most telling problem last
        (candidate & d18 & (given != check), "id_bad_checksum"),
        (candidate & ~region_ok, "id_bad_region"),
        (candidate & np.isnat(birth), "id_bad_birth_date"),
        (truncated, "id_excel_truncated"),
        (bad_length, "id_bad_length"),
        (bad_chars, "id_bad_chars"),
        (floating, "id_excel_float"),
        (scientific, "id_excel_scientific"),
        (missing, "missing"),
    ]:
        status[mask] = code

    is_error = ~np.isin(status, ["valid", "upgraded_15", "missing"])
    good = candidate & ~is_error
    odd = (digits[:, 16] % 2 == 1)
    gender = np.where(odd, ord("1"), ord("2")).astype(np.uint8)[:, None]
    out = pd.DataFrame({
        "value": _string_column(np.hstack([chars, check[:, None]]), good),
        "error": pd.Series(np.where(is_error, status, None), dtype=object),
        "status": pd.Series(status, dtype=STRING),
        "clean": clean,
        "region_code": _string_column(chars[:, :6], region_ok),
        "birth_date": pd.Series(birth.astype("datetime64[ns]")),
        "gender": _string_column(gender, seq_ok),
        "sequence": _string_column(chars[:, 14:17], seq_ok),
        "evidence_only": is_error,
    })
    return out.set_axis(raw.index)


# ------------------------------------------------------------------------ documents
#: Document types in the order they are tested against the type text: (type, keywords).
_DOCUMENT_KEYWORDS: list[tuple[str, tuple[str, ...]]] = [
    ("passport", ("护照", "PASSPORT", "414")),
    ("foreign_permanent", ("永久居留",  "553")),
    ("hk_macao_pass", ("港澳居民来往内地通行证", "来往内地通行证", "回乡证", "516")),
    ("taiwan_residence", ("台湾居民居住证", "台湾地区居民居住证")),
    ("hk_macao_residence", ("港澳居民居住证", "港澳台居民居住证", "香港居民居住证", "澳门居民居住证")),
    ("resident_id", ("居民身份证", "身份证", "身份号码", "111", "01", "1")),
]
_RESIDENCE_PREFIX = {"810000": "hk_macao_residence", "820000": "hk_macao_residence",
                     "830000": "taiwan_residence"}
_ID_LIKE = rf"[0-9]{{17}}[0-9X]|[0-9]{{15}}|{_SCIENTIFIC}|{_FLOAT}"


def classify_document(doc_type_raw: pd.Series, number_raw: pd.Series) -> pd.DataFrame:
    """Document type and cleaned number of each (type text, number) pair.

    ``document_type`` is one of ``resident_id``, ``hk_macao_residence``,
    ``taiwan_residence``, ``passport``, ``foreign_permanent``, ``hk_macao_pass``,
    ``other``, or ``NA`` when both cells are missing.  The type text decides (keywords,
    or the usual certificate codes ``111``/``414``/``516``/``553``); an empty type
    with an ID-like number is a ``resident_id`` (``other`` for any other number); an
    ID or residence-permit typed number starting ``810000``/``820000``/``830000`` is
    the residence permit that prefix says.
    ``document_number`` is ``clean_document_number(number_raw)`` (``NA`` if missing).

    Only ``resident_id`` and the two residence permits should be passed on to
    ``normalize_citizen_ids``: a passport number is not an ID error.
    """
    kind = clean_document_number(doc_type_raw)
    kind = kind.where(~kind.isin(MISSING_TOKENS), pd.NA)
    number = clean_document_number(number_raw.set_axis(doc_type_raw.index))
    number = number.where(~number.isin(MISSING_TOKENS), pd.NA)

    typed = kind.notna().to_numpy(dtype=bool)
    doc = np.where(typed, "other", None).astype(object)
    decided = np.zeros(len(kind), dtype=bool)
    for doc_type, keywords in _DOCUMENT_KEYWORDS:  # first matching type wins
        hit = kind.isin([k for k in keywords if k.isdigit()]).to_numpy(dtype=bool)
        for word in (k for k in keywords if not k.isdigit()):
            hit = hit | kind.str.contains(word, regex=False).fillna(False).to_numpy(dtype=bool)
        doc[hit & ~decided] = doc_type
        decided |= hit

    has_number = number.notna().to_numpy(dtype=bool)
    id_like = _mask(number, _ID_LIKE)
    doc[~typed & has_number] = np.where(id_like[~typed & has_number], "resident_id", "other")
    head = number.str.slice(0, 6)
    permit_type = np.where(head.isin(["810000", "820000"]).to_numpy(dtype=bool), "hk_macao_residence",
                           np.where((head == "830000").fillna(False).to_numpy(dtype=bool),
                                    "taiwan_residence", None))
    overridable = np.isin(doc, ["resident_id", "hk_macao_residence", "taiwan_residence"])
    doc = np.where(overridable & pd.notna(permit_type), permit_type, doc)
    return pd.DataFrame({"document_type": pd.Series(doc, index=kind.index, dtype=STRING),
                         "document_number": number})
