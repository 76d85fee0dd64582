"""Read an xlsx export into a raw string frame (ARCHITECTURE.md "Raw frames").

Values come from python-calamine (fast, cached values); merged ranges from calamine's
`merged_cell_ranges`; formula cells *without* a cached value are found by scanning the
sheet XML in the zip for `<f>` elements (only done when the sheet has formulas).

Per visible sheet: the header row is the row among the first
`mapping.header_search_rows` with the most alias matches; rows above it are title rows
(`统计月份：2026年10月` is kept in `metadata`). Sheets without a matching header are
skipped with a warning; a sheet that looks like data but lacks required columns fails
the file (`MissingColumnsError`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from xml.etree import ElementTree

import python_calamine as pc

from connectors.base import (
    META_STAT_MONTH,
    ConnectorWarning,
    RawRead,
    RejectedCell,
    SkippedRow,
    build_frame,
    check_required,
    clean_header,
    column_letter,
    dedupe_headers,
    is_total_row,
    labels,
    render_value,
    source_object_for,
)
from connectors.exceptions import (HeaderNotFoundError, MissingColumnsError, SourceUnavailableError,
                                   UnreadableFileError)
from connectors.retry import fault_kind
from schemas.mapping import SourceMapping, normalize_header

__all__ = ["read_xlsx"]

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"
_ENCRYPTED_MARK = "EncryptedPackage".encode("utf-16-le")
_CALAMINE_ERRORS = (pc.CalamineError, OSError, ValueError, RuntimeError)
_STAT_MONTH = re.compile(
    r"统计月份\s*[:：]?\s*(\d{4}\s*年\s*\d{1,2}\s*月|\d{4}[-./]\d{1,2}|\d{6}|[^\s:：]+)"
)


@dataclass
class _Ctx:
    """Who is being read (for errors and warnings)."""

    mapping: SourceMapping
    path: Path
    source_object: str

    def unreadable(self, reason: str, detail: str | None = None, sheet: str | None = None) -> UnreadableFileError:
        return UnreadableFileError(self.mapping.source_system, self.source_object, self.path,
                                   sheet=sheet, reason=reason, detail=detail)

    def warn(self, code: str, message: str, **kw: Any) -> ConnectorWarning:
        return ConnectorWarning(code, message, source_object=self.source_object, **kw)


@dataclass
class _Header:
    """The header row chosen for one sheet."""

    index: int                      # 0-based row index
    header_map: dict[str, str]      # on the cleaned, not yet deduplicated headers
    n_required: int                 # required fields matched


@dataclass
class _SheetRead:
    name: str
    columns: dict[str, list[str | None]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    locators: list[str] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)
    header_map: dict[str, str] = field(default_factory=dict)
    warnings: list[ConnectorWarning] = field(default_factory=list)
    rows_read: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    rejected_cells: list[RejectedCell] = field(default_factory=list)


# -- public -----------------------------------------------------------------------
def read_xlsx(path: str | Path, mapping: SourceMapping, *, source_object: str | None = None) -> RawRead:
    """Read every visible sheet of `path` whose header matches `mapping`.

    Raises `UnreadableFileError` (empty, truncated, encrypted, not a workbook),
    `HeaderNotFoundError` (no sheet has a header row), `MissingColumnsError`
    (a data sheet lacks a required column).
    """
    path = Path(path)
    ctx = _Ctx(mapping, path, source_object_for(path, source_object))
    _check_container(ctx)
    workbook = _open_workbook(ctx)
    formulas = _FormulaScanner(path)
    pool = ThreadPoolExecutor(max_workers=1)
    warnings: list[ConnectorWarning] = []
    candidates: list[tuple[str, list[list[Any]], _Header | None]] = []
    sheets: dict[str, pc.CalamineSheet] = {}
    for meta in workbook.sheets_metadata:
        if meta.visible != pc.SheetVisibleEnum.Visible:
            warnings.append(ctx.warn("hidden_sheet_skipped",
                                     f"隐藏工作表已跳过 / hidden sheet skipped: {meta.name}", sheet=meta.name))
            continue
        if meta.typ != pc.SheetTypeEnum.WorkSheet:
            continue
        sheets[meta.name] = _sheet(ctx, workbook, meta.name)
        head = _sheet_rows(ctx, sheets[meta.name], nrows=mapping.header_search_rows)
        candidates.append((meta.name, head, _find_header(head, mapping)))
    data_sheets = _choose_data_sheets(ctx, candidates, warnings)
    reads = []
    with pool:  # the XML scan for formulas overlaps with reading the values
        scans = {name: pool.submit(formulas.scan, name) for name, _h in data_sheets}
        for name, header in data_sheets:
            sheet = sheets[name]
            rows = _sheet_rows(ctx, sheet)
            merged = _merged_ranges(ctx, sheet)
            reads.append(_read_sheet(ctx, name, rows, header, merged, scans[name]))
    return _combine(ctx, reads, warnings)


# -- opening ----------------------------------------------------------------------
def _check_container(ctx: _Ctx) -> None:
    """Fail early and precisely on files that cannot be an xlsx workbook."""
    try:
        size = ctx.path.stat().st_size
        with ctx.path.open("rb") as fh:
            magic = fh.read(8)
            # an encrypted workbook is an OLE2 file with an EncryptedPackage stream; its
            # directory may sit anywhere in the file, so the whole file is searched
            encrypted = magic == _OLE_MAGIC and _ENCRYPTED_MARK in fh.read()
    except OSError as exc:  # permission denied, vanished: not a corrupt file
        raise SourceUnavailableError(ctx.mapping.source_system, ctx.source_object, ctx.path,
                                     kind=fault_kind(exc) or "io", detail=exc.strerror) from None
    if size == 0:
        raise ctx.unreadable("empty")
    if magic == _OLE_MAGIC:
        raise ctx.unreadable("password_protected" if encrypted else "not_xlsx",
                             detail=None if encrypted else "OLE2 container (legacy .xls?)")
    if not magic.startswith(_ZIP_MAGIC):
        raise ctx.unreadable("not_xlsx", detail=f"starts with {magic[:4]!r}, not a zip archive")
    try:
        with zipfile.ZipFile(ctx.path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile as exc:
        raise ctx.unreadable("truncated", detail=str(exc)) from exc
    if "xl/workbook.xml" not in names:
        raise ctx.unreadable("not_xlsx", detail="zip archive without xl/workbook.xml")


def _open_workbook(ctx: _Ctx) -> pc.CalamineWorkbook:
    try:
        return pc.CalamineWorkbook.from_path(str(ctx.path))
    except pc.PasswordError as exc:
        raise ctx.unreadable("password_protected", detail=str(exc)) from exc
    except _CALAMINE_ERRORS as exc:
        raise ctx.unreadable("corrupt", detail=f"{type(exc).__name__}: {exc}") from exc


def _sheet(ctx: _Ctx, workbook: pc.CalamineWorkbook, name: str) -> pc.CalamineSheet:
    """Load one sheet (calamine parses the whole sheet here)."""
    try:
        return workbook.get_sheet_by_name(name)
    except _CALAMINE_ERRORS as exc:
        raise ctx.unreadable("corrupt", detail=f"{type(exc).__name__}: {exc}", sheet=name) from exc


def _sheet_rows(ctx: _Ctx, sheet: pc.CalamineSheet, nrows: int | None = None) -> list[list[Any]]:
    """Cell values of a sheet from A1 (row index = Excel row - 1)."""
    try:
        return sheet.to_python(skip_empty_area=False, nrows=nrows)
    except _CALAMINE_ERRORS as exc:
        raise ctx.unreadable("corrupt", detail=f"{type(exc).__name__}: {exc}", sheet=sheet.name) from exc


def _merged_ranges(ctx: _Ctx, sheet: pc.CalamineSheet) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Merged ranges as ((row0, col0), (row1, col1)), 0-based inclusive."""
    try:
        ranges = sheet.merged_cell_ranges or []
    except _CALAMINE_ERRORS as exc:
        raise ctx.unreadable("corrupt", detail=f"{type(exc).__name__}: {exc}", sheet=sheet.name) from exc
    return ranges


# -- header -----------------------------------------------------------------------
def _find_header(rows: list[list[Any]], mapping: SourceMapping) -> _Header | None:
    """The row with the most alias matches among `rows` (first wins a tie), or None."""
    best: _Header | None = None
    required = {c.field for c in mapping.required_columns}
    for i, row in enumerate(rows[: mapping.header_search_rows]):
        headers = [clean_header(v) for v in row]
        hmap = mapping.match_headers([h for h in headers if h])
        if hmap and (best is None or len(hmap) > len(best.header_map)):
            best = _Header(i, hmap, len(required & set(hmap.values())))
    return best


def _choose_data_sheets(
    ctx: _Ctx, candidates: list[tuple[str, list[list[Any]], _Header | None]], warnings: list[ConnectorWarning]
) -> list[tuple[str, _Header]]:
    """Sheets to read. A sheet matching at least half the required fields is data:
    missing required columns there fail the file. Others are skipped with a warning."""
    mapping = ctx.mapping
    n_required = len(mapping.required_columns)
    threshold = max(1, math.ceil(n_required / 2)) if n_required else 1
    chosen: list[tuple[str, _Header]] = []
    partial: list[tuple[str, _Header]] = []
    for name, _rows, header in candidates:
        is_data = header is not None and (header.n_required >= threshold if n_required else True)
        if not is_data:
            if header is not None:
                partial.append((name, header))
            warnings.append(ctx.warn("sheet_without_header",
                                     f"工作表没有匹配的表头，已跳过 / sheet has no matching header, skipped: {name}",
                                     sheet=name))
            continue
        assert header is not None
        _raise_missing(ctx, name, header)
        chosen.append((name, header))
    if chosen:
        return chosen
    if partial:
        name, header = max(partial, key=lambda p: len(p[1].header_map))
        _raise_missing(ctx, name, header)
    raise HeaderNotFoundError(mapping.source_system, ctx.source_object, ctx.path,
                              sheet=candidates[0][0] if len(candidates) == 1 else None,
                              searched_rows=mapping.header_search_rows,
                              expected=[c.header for c in mapping.required_columns][:6])


def _raise_missing(ctx: _Ctx, sheet: str, header: _Header) -> None:
    missing = check_required(ctx.mapping, header.header_map)
    if missing:
        raise MissingColumnsError(ctx.mapping.source_system, ctx.source_object, ctx.path,
                                  sheet=sheet, row=header.index + 1, missing=missing,
                                  labels=labels(ctx.mapping), found=list(header.header_map))


# -- one sheet --------------------------------------------------------------------
def _read_sheet(
    ctx: _Ctx,
    name: str,
    rows: list[list[Any]],
    header: _Header,
    merged: list[tuple[tuple[int, int], tuple[int, int]]],
    scan: Future[tuple[set[tuple[int, int]], dict[tuple[int, int], str]]],
) -> _SheetRead:
    """Read the data rows below the header of one sheet into columns."""
    out = _SheetRead(name)
    h = header.index
    out.meta = _title_metadata(rows[:h]) | {"sheet": name, "header_row": h + 1}
    data = rows[h + 1:]
    while data and _is_blank(data[-1]):  # trailing formatted-but-empty rows are not rows
        data.pop()
    keep, names = _columns(ctx, name, rows[h], data, out)
    out.header_map = ctx.mapping.match_headers(names)
    household = {j for j, n in zip(keep, names) if n in out.header_map
                 and ctx.mapping.column(out.header_map[n]).household}
    markers = tuple(normalize_header(m) for m in ctx.mapping.total_row_markers)
    kept_rows: list[int] = []
    for i, row in enumerate(data):
        if _is_blank(row):
            reason = "blank_row"
        elif is_total_row(row[:2], markers):
            reason = "total_row"
        else:
            kept_rows.append(i)
            continue
        out.skipped.append(SkippedRow(f"{name}!{h + 2 + i}", reason,
                                      {n: render_value(row[j]) for j, n in zip(keep, names) if j < len(row)}))
    out.rows_read = len(data)
    out.locators = [f"{name}!{h + 2 + i}" for i in kept_rows]
    all_kept = len(kept_rows) == len(data)
    kept_data = data if all_kept else [data[i] for i in kept_rows]
    by_index: dict[int, list[str | None]] = {}
    transposed = list(zip(*kept_data)) if kept_data else [() for _ in range(max(keep, default=-1) + 1)]
    for j, n in zip(keep, names):
        by_index[j] = _render_column(transposed[j])
        out.columns[n] = by_index[j]
        out.order.append(n)
    position = None if all_kept else {i: k for k, i in enumerate(kept_rows)}
    _fill_merged(ctx, name, merged, h, {j: by_index[j] for j in household}, position,
                 dict(zip(keep, names)), out.warnings)
    formula_cells, error_cells = scan.result()
    _formula_warnings(ctx, name, formula_cells, h, dict(zip(keep, names)), out.warnings)
    kept = set(kept_rows)
    out.rejected_cells = [RejectedCell(f"{name}!{r + 1}", names[keep.index(c)], text, "excel_error_value",
                                       cell=f"{column_letter(c)}{r + 1}")
                          for (r, c), text in sorted(error_cells.items())
                          if r > h and (r - h - 1) in kept and c in keep]
    return out


def _columns(ctx: _Ctx, sheet: str, header_row: list[Any], data: list[list[Any]],
             out: _SheetRead) -> tuple[list[int], list[str]]:
    """Column indexes to keep and their unique names; warns on empty/duplicate headers."""
    cleaned = [clean_header(v) for v in header_row]
    keep = [j for j, hname in enumerate(cleaned) if hname or any(_has_value(r, j) for r in data)]
    fallback = [f"列{column_letter(j)}" for j in keep]
    names, renames = dedupe_headers([cleaned[j] for j in keep], fallback)
    for k, original, new in renames:
        col = column_letter(keep[k])
        if original:
            out.warnings.append(ctx.warn(
                "duplicate_header",
                f"重复的列名 {original}（第 {col} 列）已改名为 {new} / duplicate header {original} "
                f"(column {col}) renamed {new}", sheet=sheet, column=new, value=original))
        else:
            out.warnings.append(ctx.warn(
                "empty_header",
                f"第 {col} 列没有列名但有数据，命名为 {new} / column {col} has data but no header, named {new}",
                sheet=sheet, column=new))
    return keep, names


def _has_value(row: list[Any], j: int) -> bool:
    return j < len(row) and not (isinstance(row[j], str) and not row[j].strip())


def _is_blank(row: list[Any]) -> bool:
    """True if every cell is empty or whitespace."""
    for v in row:
        if v.__class__ is not str or v.strip():
            return False
    return True


def _render_column(values: Sequence[Any]) -> list[str | None]:
    """Cell values → raw strings (text as is, numbers/dates per the contract, '' → None)."""
    if set(map(type, values)) <= {str}:
        return [v or None for v in values]
    out: list[str | None] = []
    append = out.append
    for v in values:
        cls = v.__class__
        if cls is str:
            append(v or None)
        elif cls is float:
            append(str(int(v)) if v.is_integer() and -1e15 < v < 1e15 else repr(v))
        elif cls is dt.date:
            append(v.isoformat())
        else:
            append(render_value(v))
    return out


def _fill_merged(
    ctx: _Ctx,
    sheet: str,
    merged: list[tuple[tuple[int, int], tuple[int, int]]],
    h: int,
    targets: dict[int, list[str | None]],
    position: dict[int, int] | None,
    names: dict[int, str],
    warnings: list[ConnectorWarning],
) -> None:
    """Copy the top value of each vertical merged range of a household column down to
    the other rows *of that range only* (never beyond it).

    `targets` maps a household column index to its rendered values (kept rows only);
    data index i is sheet row index h + 1 + i; `position` maps a data index to its index
    in the values (None: every data row was kept, the identity). Vertical merges in
    other columns are reported, not filled.
    """
    other: dict[int, int] = {}
    first = h + 1
    for (r0, c0), (r1, _c1) in merged:
        if r1 <= r0 or r0 < first:
            continue
        values = targets.get(c0)
        if values is None:
            if c0 in names:
                other[c0] = other.get(c0, 0) + 1
            continue
        i0, i1 = r0 - first, r1 - first
        n = len(values)
        if position is None:
            if i0 < n:
                end = min(i1 + 1, n)
                values[i0 + 1:end] = [values[i0]] * (end - i0 - 1)
            continue
        top = position.get(i0)
        if top is None:
            continue
        for i in range(i0 + 1, i1 + 1):
            k = position.get(i)
            if k is not None:
                values[k] = values[top]
    for c, count in other.items():
        warnings.append(ctx.warn(
            "merged_non_household",
            f"列 {names[c]} 有 {count} 个纵向合并单元格，只有首行有值 / column {names[c]} has {count} vertical "
            f"merged ranges outside household columns: only their first row holds the value",
            sheet=sheet, column=names[c]))


def _title_metadata(title_rows: list[list[Any]]) -> dict[str, Any]:
    """Title text and 统计月份 from the rows above the header."""
    texts = [v.strip() for row in title_rows for v in row if isinstance(v, str) and v.strip()]
    meta: dict[str, Any] = {"title": texts[0] if texts else None, META_STAT_MONTH: None}
    for t in texts:
        m = _STAT_MONTH.search(t)
        if m:
            meta[META_STAT_MONTH] = re.sub(r"\s+", "", m.group(1))
            break
    meta["title_rows"] = texts
    return meta


def _formula_warnings(ctx: _Ctx, sheet: str, cells: set[tuple[int, int]], h: int,
                      names: dict[int, str], warnings: list[ConnectorWarning]) -> None:
    for r, c in sorted(cells):
        if r > h and c in names:
            warnings.append(ctx.warn(
                "formula_without_value",
                f"公式单元格没有缓存值，读为空 / formula cell without cached value read as empty: "
                f"{sheet}!{column_letter(c)}{r + 1}",
                sheet=sheet, row=r + 1, column=names[c]))


# -- combining sheets -------------------------------------------------------------
def _combine(ctx: _Ctx, reads: list[_SheetRead], warnings: list[ConnectorWarning]) -> RawRead:
    """One RawRead over all data sheets: columns are the union, in first-seen order."""
    order: list[str] = []
    header_map: dict[str, str] = {}
    for r in reads:
        order += [c for c in r.order if c not in order]
        for k, v in r.header_map.items():
            header_map.setdefault(k, v)
    n = sum(len(r.locators) for r in reads)
    columns: dict[str, list[str | None]] = {}
    for c in order:
        values: list[str | None] = []
        for r in reads:
            values += r.columns.get(c) or [None] * len(r.locators)
        columns[c] = values
    locators = [loc for r in reads for loc in r.locators]
    unknown = [c for c in order if c not in header_map]
    for r in reads:
        warnings += r.warnings
    for c in unknown:
        warnings.append(ctx.warn("unknown_column",
                                 f"映射中没有的列，照常读入 / column not in the mapping, loaded anyway: {c}",
                                 column=c))
    stat_months = [r.meta.get(META_STAT_MONTH) for r in reads if r.meta.get(META_STAT_MONTH)]
    titles = [r.meta.get("title") for r in reads if r.meta.get("title")]
    metadata = {
        META_STAT_MONTH: stat_months[0] if stat_months else None,
        "stat_month": stat_months[0] if stat_months else None,
        "title": titles[0] if titles else None,
        "sheets": [r.meta | {"rows_read": r.rows_read} for r in reads],
    }
    frame = build_frame(columns, order, n, ctx.mapping.source_system, ctx.source_object, locators)
    return RawRead(
        source_system=ctx.mapping.source_system,
        source_object=ctx.source_object,
        frame=frame,
        header_map=header_map,
        unknown_columns=unknown,
        skipped=[s for r in reads for s in r.skipped],
        rows_read=sum(r.rows_read for r in reads),
        warnings=warnings,
        metadata=metadata,
        rejected_cells=[c for r in reads for c in r.rejected_cells],
    )


# -- formulas without cached values (sheet XML) ----------------------------------
_CELL_REF = re.compile(rb'\br="([A-Z]{1,3})(\d+)"')
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


class _FormulaScanner:
    """Finds formula cells without a cached `<v>` in a sheet's XML (0-based (row, col))."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._paths: dict[str, str] | None = None

    def scan(self, sheet: str) -> tuple[set[tuple[int, int]], dict[tuple[int, int], str]]:
        """(formula cells without a cached value, cells holding an Excel error value →
        the error text such as ``#REF!``), 0-based (row, col). Calamine reads both as
        empty; only the sheet XML tells them apart from an empty cell."""
        try:
            with zipfile.ZipFile(self.path) as zf:
                member = self._sheet_paths(zf).get(sheet)
                if member is None:
                    return set(), {}
                xml = zf.read(member)
        except (zipfile.BadZipFile, KeyError, OSError, ElementTree.ParseError):
            return set(), {}  # calamine read the values; the scan is a best-effort check
        return _scan_formulas(xml), _scan_errors(xml)

    def _sheet_paths(self, zf: zipfile.ZipFile) -> dict[str, str]:
        """sheet name → zip member of its XML, via workbook.xml and its rels."""
        if self._paths is None:
            wb = ElementTree.fromstring(zf.read("xl/workbook.xml"))
            rels = ElementTree.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
            targets = {r.get("Id"): r.get("Target", "") for r in rels}
            self._paths = {}
            for s in wb.iter():
                if s.tag.endswith("}sheet") and s.get("name") is not None:
                    target = targets.get(s.get(_NS_REL), "")
                    target = target.lstrip("/") if target.startswith("/") else "xl/" + target
                    self._paths[s.get("name")] = target  # type: ignore[index]
        return self._paths


def _scan_formulas(xml: bytes) -> set[tuple[int, int]]:
    """Cells with an `<f>` element and no non-empty `<v>` element."""
    out: set[tuple[int, int]] = set()
    pos = xml.find(b"<f")
    while pos != -1:
        nxt = xml[pos + 2: pos + 3]
        if nxt in (b">", b" ", b"/"):
            start = xml.rfind(b"<c ", 0, pos)
            end = xml.find(b"</c>", pos)
            cell = xml[start:end if end != -1 else len(xml)]
            vpos = cell.find(b"<v>")
            empty = vpos == -1 or cell[vpos + 3: vpos + 7] == b"</v>"
            ref = _CELL_REF.search(cell[: cell.find(b">") + 1])
            if empty and ref:
                out.add((int(ref.group(2)) - 1, _col_index(ref.group(1).decode())))
            pos = xml.find(b"<f", end if end != -1 else pos + 2)
        else:
            pos = xml.find(b"<f", pos + 2)
    return out


_ERROR_CELL = re.compile(rb'<c\b([^>]*\bt="e"[^>]*)>(.*?)</c>', re.S)
_CACHED = re.compile(rb"<v>([^<]*)</v>")


def _scan_errors(xml: bytes) -> dict[tuple[int, int], str]:
    """Cells of type error (`t="e"`) with their cached error text (#REF!, #DIV/0!, …)."""
    out: dict[tuple[int, int], str] = {}
    if b't="e"' not in xml:
        return out
    for m in _ERROR_CELL.finditer(xml):
        ref = _CELL_REF.search(m.group(1))
        value = _CACHED.search(m.group(2))
        if ref:
            text = value.group(1).decode("utf-8", "replace") if value else "#ERROR"
            out[(int(ref.group(2)) - 1, _col_index(ref.group(1).decode()))] = text
    return out


def _col_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1
