"""Normalise contact phone numbers (联系电话).

Canonical forms:

* mobile    11 digits ``1[3-9]xxxxxxxxx`` (a ``+86`` / ``86`` / ``0086`` country prefix
            is dropped);
* landline  ``<area code>-<local number>``, e.g. ``0437-3221234``: area codes 010 and
            020–029 have 3 digits and an 8-digit local number, every other area code
            (03xx–09xx) has 4 digits and a 7- or 8-digit local number.  A ``+86``/``0086``
            prefix before an area code without its trunk ``0`` is accepted.

Spaces, dashes, dots and parentheses are ignored.  A cell listing several numbers
(``139…/0437-…``, ``、``, ``,``, ``，``, ``;``, ``|``) yields the first valid one in ``value`` and the
other valid ones in ``others`` (``;``-separated).

Columns: ``value``, ``error`` (``phone_invalid``, ``phone_no_area_code``), ``kind``
(``mobile`` / ``landline``), ``others``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.normalize.codes import apply_unique, clean_text

__all__ = ["normalize_phones"]

_SEPARATORS = re.compile(r"[\s\-–—‐‑()\[\].]")
_LIST_SPLIT = re.compile(r"[/、,，;；|]")
_MOBILE = re.compile(r"^(?:\+?86|0086)?(1[3-9]\d{9})$")
_LANDLINE_3 = re.compile(r"^(?:(?:\+86|0086)0?|0)(10|2\d)(\d{8})$")
_LANDLINE_4 = re.compile(r"^(?:(?:\+86|0086)0?|0)([3-9]\d{2})(\d{7,8})$")
_LOCAL_ONLY = re.compile(r"^[2-9]\d{6,7}$")


def _classify(number: str) -> tuple[str | None, str | None, str | None]:
    """(value, kind, error) of one cleaned phone number."""
    digits = _SEPARATORS.sub("", number)
    if (match := _MOBILE.match(digits)) is not None:
        return match.group(1), "mobile", None
    for pattern in (_LANDLINE_3, _LANDLINE_4):
        if (match := pattern.match(digits)) is not None:
            return f"0{match.group(1)}-{match.group(2)}", "landline", None
    if _LOCAL_ONLY.match(digits):
        return None, None, "phone_no_area_code"
    return None, None, "phone_invalid"


def _normalize_one(text: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    """(value, error, kind, others) of one cleaned cell (possibly several numbers)."""
    if text is None:
        return None, None, None, None
    parts = [part for part in _LIST_SPLIT.split(text) if part.strip()]
    results = [_classify(part) for part in parts] or [_classify(text)]
    valid = [(value, kind) for value, kind, _ in results if value is not None]
    if not valid:
        return None, results[0][2], None, None
    others = ";".join(value for value, _ in valid[1:]) or None
    return valid[0][0], None, valid[0][1], others


def _canonical_mobiles(distinct: pd.Series) -> np.ndarray:
    """Mask of values that already are a bare 11-digit mobile (pyarrow/RE2, in C)."""
    if distinct.empty:
        return np.zeros(0, dtype=bool)
    is_text = np.fromiter((type(value) is str for value in distinct), dtype=bool, count=len(distinct))
    texts = pa.array(distinct.where(is_text, None).tolist(), type=pa.string())
    matches = pc.fill_null(pc.match_substring_regex(texts, r"^1[3-9]\d{9}$"), False)
    return matches.to_numpy(zero_copy_only=False)


def normalize_phones(raw: pd.Series) -> pd.DataFrame:
    """Normalise phone numbers; columns ``value, error, kind, others``.

    Values that already are a bare mobile number take a fast path; the others are
    parsed one distinct value at a time.
    """

    def on_distinct(distinct: pd.Series) -> pd.DataFrame:
        canonical = _canonical_mobiles(distinct)
        frame = pd.DataFrame({"value": distinct.where(canonical, None), "error": None,
                              "kind": np.where(canonical, "mobile", None), "others": None},
                             index=distinct.index, dtype=object)
        rest = distinct[~canonical]
        rows = [_normalize_one(clean_text(value)) for value in rest]
        if rows:
            frame.loc[rest.index, ["value", "error", "kind", "others"]] = pd.DataFrame(
                rows, index=rest.index, columns=["value", "error", "kind", "others"], dtype=object)
        for column in ("value", "kind", "others"):
            frame[column] = frame[column].astype("string")
        frame["error"] = frame["error"].astype(object).where(frame["error"].notna(), None)
        return frame

    return apply_unique(raw, on_distinct)
