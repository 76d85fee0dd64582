"""What every reader returns, and the helpers the readers share.

A reader turns one export (xlsx sheet(s), CSV file, SQL table) into a `RawRead`:
the raw string frame of ARCHITECTURE.md (source headers + lineage columns, every value
a `str` or `None`), plus what the pipelines and the officers need to know about how it
was read: the header → field map, unknown columns, skipped rows, warnings.

Invariant (no silent drops): ``rows_read == len(frame) + len(skipped)``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from schemas.mapping import SourceMapping, normalize_header

__all__ = [
    "LINEAGE_COLUMNS",
    "RawRead",
    "SkippedRow",
    "RejectedCell",
    "ConnectorWarning",
    "clean_header",
    "dedupe_headers",
    "render_number",
    "render_value",
    "is_total_row",
    "build_frame",
    "frame_from_array",
]

LINEAGE_COLUMNS = ("source_system", "source_object", "source_locator")

# metadata keys
META_STAT_MONTH = "统计月份"


@dataclass(frozen=True)
class SkippedRow:
    """A source row not put in the frame, with why. `raw` is header → raw value.

    reason codes: ``total_row`` (合计/总计/小计), ``blank_row``, ``field_count``
    (CSV row with more/fewer fields than the header: quarantine it).
    """

    locator: str
    reason: str
    raw: dict[str, Any]
    detail: str = ""


@dataclass(frozen=True)
class ConnectorWarning:
    """Something the reader worked around, reported, never fatal.

    codes: ``unknown_column``, ``duplicate_header``, ``empty_header``,
    ``hidden_sheet_skipped``, ``sheet_without_header``, ``formula_without_value``,
    ``merged_non_household``.
    """

    code: str
    message: str
    source_object: str | None = None
    sheet: str | None = None
    row: int | str | None = None
    column: str | None = None
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code, "message": self.message, "source_object": self.source_object,
            "sheet": self.sheet, "row": self.row, "column": self.column,
            "value": None if self.value is None else str(self.value),
        }


@dataclass(frozen=True)
class RejectedCell:
    """A cell whose value the reader could not pass on as written: its frame value is
    empty (an Excel error such as ``#REF!``) or cleaned (NUL bytes removed), and the
    pipelines record it as a rejected value at `locator`/`column`.

    error codes (pipelines/errors.py): ``excel_error_value``, ``text_nul_byte``.
    `raw_value` is printable (control characters escaped, never raw bytes); `cell` the
    Excel reference (``C5``) where there is one."""

    locator: str
    column: str
    raw_value: str
    error_code: str
    cell: str | None = None


@dataclass
class RawRead:
    """The result of reading one export.

    frame            raw string frame: source headers + source_system/object/locator
    header_map       source header → mapping field (headers the mapping knows)
    unknown_columns  source headers the mapping does not know (loaded anyway)
    skipped          rows not in the frame (total rows, blank rows, ragged CSV rows)
    rows_read        data rows seen (skipped included)
    warnings         structured `ConnectorWarning`s
    metadata         reader-specific facts: xlsx 统计月份/title/sheets, csv encoding,
                     sql max_watermark
    rejected_cells   cells passed on empty or cleaned (Excel error values, NUL bytes)
    """

    source_system: str
    source_object: str
    frame: pd.DataFrame
    header_map: dict[str, str]
    unknown_columns: list[str] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)
    rows_read: int = 0
    warnings: list[ConnectorWarning] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    rejected_cells: list[RejectedCell] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.rows_read != len(self.frame) + len(self.skipped):
            raise AssertionError(
                f"{self.source_object}: rows_read {self.rows_read} != "
                f"{len(self.frame)} in frame + {len(self.skipped)} skipped"
            )

    def column_for(self, field_name: str) -> str | None:
        """The (first) source header carrying `field_name`, or None."""
        for header, f in self.header_map.items():
            if f == field_name:
                return header
        return None


# -- headers ----------------------------------------------------------------------
def printable(text: str) -> str:
    """`text` with control characters written as escapes (``\\x00``), for messages."""
    return "".join(ch if ch.isprintable() or ch in "\t " else f"\\x{ord(ch):02x}" if ord(ch) < 256
                   else f"\\u{ord(ch):04x}" for ch in text)


def clean_header(text: Any) -> str:
    """Header text as the frame column: surrounding whitespace stripped, inner newlines removed."""
    if text is None:
        return ""
    s = text if isinstance(text, str) else render_value(text) or ""
    return re.sub(r"[\r\n]+", "", s).strip()


def dedupe_headers(headers: Sequence[str], fallback: Sequence[str]) -> tuple[list[str], list[tuple[int, str, str]]]:
    """Make headers unique. Empty headers get `fallback[i]` (e.g. `列F`), repeats `name#2`.

    Returns the unique names and a list of (index, original, new) renames.
    """
    seen: set[str] = set()
    out: list[str] = []
    renames: list[tuple[int, str, str]] = []
    for i, h in enumerate(headers):
        name = h or fallback[i]
        base, n = name, 1
        while name in seen:
            n += 1
            name = f"{base}#{n}"
        if name != h:
            renames.append((i, h, name))
        seen.add(name)
        out.append(name)
    return out, renames


# -- values -----------------------------------------------------------------------
def render_number(x: float | int) -> str:
    """ARCHITECTURE.md numeric rendering: integral with |x| < 1e15 → digits, else repr(float)."""
    if isinstance(x, bool):
        return "TRUE" if x else "FALSE"
    if isinstance(x, int):
        if abs(x) < 10**15:
            return str(x)
        return repr(float(x))
    if math.isfinite(x) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def render_value(v: Any) -> str | None:
    """Any cell/column value as the raw string of the contract ('' and None → None)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v if v != "" else None
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return render_number(v)
    if isinstance(v, dt.datetime):
        if v.hour == v.minute == v.second == v.microsecond == 0:
            return v.strftime("%Y-%m-%d")
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dt.time):
        return v.strftime("%H:%M:%S")
    if isinstance(v, dt.timedelta):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return str(v)


# -- rows -------------------------------------------------------------------------
def _marker_set(mapping: SourceMapping) -> tuple[str, ...]:
    return tuple(normalize_header(m) for m in mapping.total_row_markers)


def is_total_row(first_cells: Iterable[Any], markers: tuple[str, ...]) -> bool:
    """True if the first or second cell reads as a total marker (合计, 总计, 本页合计：…).

    `markers` are normalised (`normalize_header`) marker texts.
    """
    for v in first_cells:
        if v.__class__ is not str or not v or not any(m[-1] in v for m in markers):
            continue  # cheap pre-check: every marker's last character must occur
        s = normalize_header(v).strip(":：")
        if len(s) <= 8 and any(s.startswith(m) or s.endswith(m) for m in markers):
            return True
    return False


def build_frame(
    columns: dict[str, list[str | None]],
    column_order: Sequence[str],
    n_rows: int,
    source_system: str,
    source_object: str,
    locators: list[str],
) -> pd.DataFrame:
    """The raw frame from column lists (a column missing from `columns` is all None)."""
    values = np.empty((n_rows, len(column_order)), dtype=object)
    for j, c in enumerate(column_order):
        col = columns.get(c)
        values[:, j] = None if col is None else col
    return frame_from_array(values, column_order, source_system, source_object, locators)


def frame_from_array(
    values: np.ndarray,
    column_order: Sequence[str],
    source_system: str,
    source_object: str,
    locators: Sequence[str],
) -> pd.DataFrame:
    """The raw frame (object dtype everywhere): source columns then lineage columns.

    `values` is a 2-D object array, rows × source columns, of `str` / `None`.
    """
    n, k = len(locators), len(column_order)
    full = np.empty((n, k + len(LINEAGE_COLUMNS)), dtype=object)
    if n and k:
        full[:, :k] = values
    full[:, k] = source_system
    full[:, k + 1] = source_object
    if n:
        full[:, k + 2] = list(locators)
    return pd.DataFrame(full, columns=[*column_order, *LINEAGE_COLUMNS], dtype=object, copy=False)


def column_letter(index: int) -> str:
    """0-based column index → Excel letters (0 → A, 26 → AA)."""
    s = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        s = chr(65 + rem) + s
    return s


def check_required(mapping: SourceMapping, header_map: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Required fields absent from `header_map`, each with every alias tried."""
    present = set(header_map.values())
    return {c.field: c.aliases for c in mapping.required_columns if c.field not in present}


def labels(mapping: SourceMapping) -> dict[str, str]:
    return {c.field: c.label_zh for c in mapping.columns if c.label_zh}


def source_object_for(path: Path, source_object: str | None) -> str:
    return source_object if source_object is not None else Path(path).name
