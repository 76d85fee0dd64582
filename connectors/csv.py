"""Read a CSV export into a raw string frame (ARCHITECTURE.md "Raw frames").

Encoding: UTF-8 with BOM, UTF-8 or GB18030, decoded strictly. Without a BOM the
header line is decoded with each candidate and the one whose header matches the most
mapping aliases wins (UTF-8 on a tie). A file that decodes in none fails with
`EncodingDetectionError` (byte offset and line); a file mixing encodings (a UTF-8 line
in a GB18030 file or the reverse) fails naming the first line in the other encoding.

Header on line 1; `source_locator` is the physical line where a record starts (the
header is line 1, a quoted field with embedded newlines spans several lines). Rows
with more or fewer fields than the header are skipped with reason ``field_count``
(for the quarantine), blank lines with ``blank_row``, total lines with ``total_row``.
"""

from __future__ import annotations

import csv as _csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from connectors.base import (
    ConnectorWarning,
    RawRead,
    RejectedCell,
    SkippedRow,
    frame_from_array,
    printable,
    check_required,
    clean_header,
    dedupe_headers,
    is_total_row,
    labels,
    source_object_for,
)
from connectors.exceptions import (EncodingDetectionError, MissingColumnsError, SourceUnavailableError,
                                   UnreadableFileError)
from connectors.retry import fault_kind
from schemas.mapping import SourceMapping, normalize_header

__all__ = ["read_csv", "detect_encoding"]

_BOM = b"\xef\xbb\xbf"
CANDIDATES = ("utf-8-sig", "utf-8", "gb18030")
_csv.field_size_limit(1 << 24)


@dataclass(frozen=True)
class _Source:
    mapping: SourceMapping
    path: Path
    source_object: str

    def encoding_error(self, **kw: Any) -> EncodingDetectionError:
        return EncodingDetectionError(self.mapping.source_system, self.source_object, self.path,
                                      tried=CANDIDATES, **kw)


# -- public -----------------------------------------------------------------------
def read_csv(path: str | Path, mapping: SourceMapping, *, source_object: str | None = None) -> RawRead:
    """Read one CSV export. Raises `UnreadableFileError` (empty), `EncodingDetectionError`,
    `MissingColumnsError` (required header absent)."""
    path = Path(path)
    src = _Source(mapping, path, source_object_for(path, source_object))
    try:
        data = path.read_bytes()
    except OSError as exc:  # permission denied, vanished: not a corrupt file
        raise SourceUnavailableError(mapping.source_system, src.source_object, path,
                                     kind=fault_kind(exc) or "io", detail=exc.strerror) from None
    if not data.strip() or data.strip() == _BOM:
        raise UnreadableFileError(mapping.source_system, src.source_object, path, reason="empty")
    text, encoding = _decode_text(src, data)
    return _parse(src, text, encoding)


def detect_encoding(data: bytes, mapping: SourceMapping) -> str:
    """The encoding `read_csv` would use for `data` (`utf-8-sig`, `utf-8` or `gb18030`)."""
    return _decode_text(_Source(mapping, Path("<bytes>"), "<bytes>"), data)[1]


# -- encoding ---------------------------------------------------------------------
def _decode_text(src: _Source, data: bytes) -> tuple[str, str]:
    """Decode the whole file strictly in the encoding that fits; (text, encoding)."""
    nul = data.find(b"\x00")
    if nul != -1 and (data[:2] in (b"\xff\xfe", b"\xfe\xff") or data.count(b"\x00") * 10 > len(data)):
        # NUL in every other byte: UTF-16 text or a binary file (a few NULs are cells: `_strip_nul`)
        raise src.encoding_error(offset=nul, row=data.count(b"\n", 0, nul) + 1,
                                 detail="many NUL bytes: UTF-16 or binary file?")
    if data.startswith(_BOM):
        return _decode(src, data, "utf-8-sig"), "utf-8-sig"
    ranked = _rank_by_header(src, data)
    first, first_score = ranked[0]
    try:
        return _decode(src, data, first), first
    except EncodingDetectionError:
        # The header is ambiguous (e.g. ASCII): the body decides.
        if len(ranked) > 1 and ranked[1][1] == first_score:
            try:
                return _decode(src, data, ranked[1][0]), ranked[1][0]
            except EncodingDetectionError:
                pass
        raise


def _rank_by_header(src: _Source, data: bytes) -> list[tuple[str, int]]:
    """Candidates that decode the header line, best alias score first (UTF-8 on a tie)."""
    end = data.find(b"\n")
    header = data if end == -1 else data[:end]
    ranked: list[tuple[str, int]] = []
    first_error: UnicodeDecodeError | None = None
    for enc in ("utf-8", "gb18030"):
        try:
            text = header.decode(enc)
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
            continue
        ranked.append((enc, len(src.mapping.match_headers(_split_header(text)))))
    if not ranked:
        assert first_error is not None
        raise src.encoding_error(offset=first_error.start, row=1,
                                 value=header[max(0, first_error.start - 8): first_error.start + 8])
    return sorted(ranked, key=lambda r: -r[1])


def _split_header(text: str) -> list[str]:
    try:
        return [clean_header(h) for h in next(_csv.reader([text]))]
    except (StopIteration, _csv.Error):
        return []


def _decode(src: _Source, data: bytes, encoding: str) -> str:
    """Strict decode; a failure names the byte offset, the line and, if the line reads in
    another candidate, the mixing. A GB18030 file with a line that is valid non-ASCII
    UTF-8 is also mixed (UTF-8 Chinese usually *decodes* as GB18030 mojibake)."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1
        line = _line_bytes(data, exc.start)
        other = next((e for e in ("utf-8", "gb18030") if e != encoding.replace("-sig", "") and _decodes(line, e)), None)
        raise src.encoding_error(offset=exc.start, row=line_no,
                                 value=data[max(0, exc.start - 8): exc.start + 8],
                                 mixed=(encoding, other) if other else None) from exc
    if encoding == "gb18030":
        _check_no_utf8_lines(src, data)
    return text


def _check_no_utf8_lines(src: _Source, data: bytes) -> None:
    """Fail on the first line of a GB18030 file that reads as UTF-8 Chinese text."""
    if data.isascii():
        return
    offset = 0
    for line_no, line in enumerate(data.split(b"\n"), start=1):
        if not line.isascii() and _looks_utf8_chinese(line):
            raise src.encoding_error(offset=offset, row=line_no, value=line[:40],
                                     mixed=("gb18030", "utf-8"))
        offset += len(line) + 1


def _looks_utf8_chinese(line: bytes) -> bool:
    """Valid UTF-8 whose non-ASCII characters are all CJK text or punctuation, with at
    least one ideograph. GB18030 bytes that happen to be valid UTF-8 almost always
    decode to some Latin/Greek/Cyrillic character instead, so they do not pass."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    ideograph = False
    for ch in text:
        o = ord(ch)
        if o < 0x80:
            continue
        if 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x3FFFF:
            ideograph = True
        elif not (o == 0xB7 or 0x2000 <= o <= 0x206F or 0x3000 <= o <= 0x303F or 0xFF00 <= o <= 0xFFEF):
            return False
    return ideograph


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _line_bytes(data: bytes, offset: int) -> bytes:
    start = data.rfind(b"\n", 0, offset) + 1
    end = data.find(b"\n", offset)
    return data[start: end if end != -1 else len(data)]


# -- parsing ----------------------------------------------------------------------
def _parse(src: _Source, text: str, encoding: str) -> RawRead:
    """Split records with the csv module; keep the line where each record starts."""
    mapping = src.mapping
    reader = _csv.reader(io.StringIO(text, newline=""))
    try:
        raw_header = next(reader)
    except StopIteration:  # pragma: no cover - empty text is rejected before
        raise UnreadableFileError(mapping.source_system, src.source_object, src.path, reason="empty")
    warnings: list[ConnectorWarning] = []
    names = _header(src, raw_header, warnings)
    header_map = mapping.match_headers(names)
    missing = check_required(mapping, header_map)
    if missing:
        raise MissingColumnsError(mapping.source_system, src.source_object, src.path, row=1,
                                  missing=missing, labels=labels(mapping), found=names)
    width = len(names)
    try:
        if '"' in text:  # a quoted field may span lines: follow the reader's line count
            records, starts = _records_with_lines(reader)
        else:            # one record per physical line
            records = list(reader)
            starts = list(range(reader.line_num - len(records) + 1, reader.line_num + 1))
    except _csv.Error as exc:
        raise UnreadableFileError(mapping.source_system, src.source_object, src.path, row=reader.line_num,
                                  reason="corrupt", detail=f"CSV syntax: {exc}") from exc
    rows, starts, skipped = _split_bad_rows(names, records, starts)
    rows, starts = _drop_total_rows(mapping, names, rows, starts, skipped)
    skipped.sort(key=lambda r: int(r.locator))
    frame = frame_from_array(_to_array(rows, width), names, mapping.source_system, src.source_object,
                             list(map(str, starts)))
    rejected = _strip_nul(frame, names) if "\x00" in text else []
    unknown = [n for n in names if n not in header_map]
    for n in unknown:
        warnings.append(ConnectorWarning("unknown_column",
                                         f"映射中没有的列，照常读入 / column not in the mapping, loaded anyway: {n}",
                                         source_object=src.source_object, column=n))
    return RawRead(
        source_system=mapping.source_system,
        source_object=src.source_object,
        frame=frame,
        header_map=header_map,
        unknown_columns=unknown,
        skipped=skipped,
        rows_read=len(frame) + len(skipped),
        warnings=warnings,
        metadata={"encoding": encoding, "header_line": 1, "lines": reader.line_num},
        rejected_cells=rejected,
    )


def _strip_nul(frame: Any, names: list[str]) -> list[RejectedCell]:
    """NUL bytes inside cells (a fault of the exporting system): removed from the value,
    each such cell reported as a rejected value with its line and column."""
    out: list[RejectedCell] = []
    for name in names:
        col = frame[name]
        hit = col.map(lambda v: isinstance(v, str) and "\x00" in v)
        if not hit.any():
            continue
        for i in hit[hit].index:
            value = col.at[i]
            out.append(RejectedCell(frame.at[i, "source_locator"], name, printable(value), "text_nul_byte"))
            frame.at[i, name] = value.replace("\x00", "") or None
    return out


def _header(src: _Source, raw_header: list[str], warnings: list[ConnectorWarning]) -> list[str]:
    """Cleaned, unique header names; warns on renames."""
    cleaned = [clean_header(h) for h in raw_header]
    names, renames = dedupe_headers(cleaned, [f"列{i + 1}" for i in range(len(cleaned))])
    for i, original, new in renames:
        code = "duplicate_header" if original else "empty_header"
        warnings.append(ConnectorWarning(
            code,
            f"第 {i + 1} 列的列名 {original or '（空）'} 改为 {new} / header of field {i + 1} "
            f"{original or '(empty)'} renamed {new}",
            source_object=src.source_object, row=1, column=new, value=original or None))
    return names


def _records_with_lines(reader: Any) -> tuple[list[list[str]], list[int]]:
    """Records and the physical line where each starts."""
    records: list[list[str]] = []
    starts: list[int] = []
    line = reader.line_num
    for record in reader:
        records.append(record)
        starts.append(line + 1)
        line = reader.line_num
    return records, starts


def _split_bad_rows(names: list[str], records: list[list[str]],
                    starts: list[int]) -> tuple[list[list[str]], list[int], list[SkippedRow]]:
    """Keep well-formed records; blank lines and records with a wrong field count are
    skipped rows (reason ``blank_row`` / ``field_count``) for the quarantine."""
    width = len(names)
    bad = [i for i, r in enumerate(records) if len(r) != width or not r[0]]
    if not bad:
        return records, starts, []
    skipped: list[SkippedRow] = []
    drop: set[int] = set()
    for i in bad:
        record = records[i]
        if _blank(record):
            skipped.append(SkippedRow(str(starts[i]), "blank_row", _raw(names, record)))
        elif len(record) != width:
            skipped.append(SkippedRow(
                str(starts[i]), "field_count", _raw(names, record),
                f"{len(record)} 个字段，表头有 {width} 个 / {len(record)} fields, header has {width}"))
        else:
            continue  # first field empty, others not: a data row
        drop.add(i)
    keep = [i for i in range(len(records)) if i not in drop]
    return [records[i] for i in keep], [starts[i] for i in keep], skipped


def _drop_total_rows(mapping: SourceMapping, names: list[str], rows: list[list[str]], starts: list[int],
                     skipped: list[SkippedRow]) -> tuple[list[list[str]], list[int]]:
    """Move total rows (合计 in the first or second field) from `rows` to `skipped`."""
    markers = tuple(normalize_header(m) for m in mapping.total_row_markers)
    if not markers or not rows:
        return rows, starts
    last_chars = {m[-1] for m in markers}
    suspects = [i for i, r in enumerate(rows)
                if any(ch in r[0] or (len(r) > 1 and ch in r[1]) for ch in last_chars)]
    totals = {i for i in suspects if is_total_row(rows[i][:2], markers)}
    if not totals:
        return rows, starts
    for i in sorted(totals):
        skipped.append(SkippedRow(str(starts[i]), "total_row", _raw(names, rows[i])))
    keep = [i for i in range(len(rows)) if i not in totals]
    return [rows[i] for i in keep], [starts[i] for i in keep]


def _blank(record: list[str]) -> bool:
    return not any(v.strip() for v in record)


def _raw(names: list[str], record: list[str]) -> dict[str, Any]:
    """The raw row for the quarantine: header → value, extra fields as `#<n>`."""
    raw: dict[str, Any] = {n: (v or None) for n, v in zip(names, record)}
    for i in range(len(names), len(record)):
        raw[f"#{i + 1}"] = record[i] or None
    return raw


def _to_array(rows: list[list[str]], width: int) -> np.ndarray:
    """Rows (all `width` long) → 2-D object array with '' → None."""
    if not rows:
        return np.empty((0, width), dtype=object)
    values = np.array(rows, dtype=object).reshape(len(rows), width)
    values[values == ""] = None
    return values
