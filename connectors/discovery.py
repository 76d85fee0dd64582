"""Find the exports waiting in an inbox (one sub-folder per source system).

`discover_exports(inbox)` lists every recognised export file with its source system,
mapping, export date (from the file name), correction flag and content hash, sorted
by (export date, corrections last, name). Files it cannot place are *problems*
(structured `ConnectorError`s collected, not raised), so one stray file never stops
discovery: unrecognised names, files in another system's folder, names without a
valid date.

Ignored: hidden files and folders, Excel lock files (`~$…`), anything under `_truth/`,
and the SQLite database in `family_planning/` (that source is read through SQL).

The inbox keeps every export it ever received (a year of 流动人口 day files, every month's
roster), and the ledger keys each by its content hash: hashing them all on every sync
made even a sync with nothing new cost a read of the whole history. `DigestMemo`
remembers each file's hash with its status (device, inode, size, modification and change
times); a file whose status is unchanged is opened (so a file that became unreadable
still fails) but not read again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from connectors.exceptions import (
    ConnectorError,
    InboxNotFoundError,
    InvalidFileDateError,
    OutsideInboxError,
    SourceUnavailableError,
    UnrecognizedFileError,
    WrongFolderError,
)
from schemas.mapping import SourceMapping, load_mappings, source_systems

__all__ = ["ExportFile", "DiscoveryResult", "FileDate", "DigestMemo", "discover_exports", "parse_file_date",
           "file_sha256", "content_key", "digest_memo_path"]

CORRECTION_MARK = "补报"
_DB_SUFFIXES = (".sqlite", ".sqlite3", ".db", ".sqlite-journal", ".sqlite-wal", ".sqlite-shm")
_DB_FOLDERS = ("family_planning",)

_DATE = re.compile(
    r"""(?<![0-9A-Za-z])
    (?:
        (?P<y1>\d{4})(?P<m1>\d{2})(?P<d1>\d{2})                          # 20261121
      | (?P<y2>\d{4})(?P<s2>[-._])(?P<m2>\d{1,2})(?P=s2)(?P<d2>\d{1,2})   # 2026-11-21, 2026.11.21
      | (?P<y3>\d{4})年(?P<m3>\d{1,2})月(?:(?P<d3>\d{1,2})日)?           # 2026年11月21日, 2026年10月
      | (?P<y4>\d{4})(?P<s4>[-.]?)(?P<m4>\d{2})                         # 202610, 2026-10 (a month)
    )
    (?!\d)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class FileDate:
    """The export date written in a file name."""

    date: dt.date          # the day; a monthly file → first day of the month
    period: str            # '2026-10-21', or '2026-10' for a monthly file
    suffix: str            # what follows the date ('补报'), separators stripped
    text: str              # the date as written ('2026.10.21')

    @property
    def is_correction(self) -> bool:
        return CORRECTION_MARK in self.suffix


@dataclass(frozen=True)
class ExportFile:
    """One export file found in the inbox."""

    path: Path
    source_system: str
    source_object: str      # the file's base name with extension (lineage)
    mapping: str            # logical source object of its mapping (婚姻登记, 低保花名册…)
    export_date: dt.date
    period: str
    is_correction: bool
    content_sha256: str
    size_bytes: int
    suffix: str = ""

    @property
    def sort_key(self) -> tuple[dt.date, bool, str]:
        return (self.export_date, self.is_correction, self.source_object)


@dataclass
class DiscoveryResult:
    """Recognised exports (sorted), problems (structured errors) and ignored paths."""

    files: list[ExportFile] = field(default_factory=list)
    problems: list[ConnectorError] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)

    def __iter__(self):
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


# -- dates ------------------------------------------------------------------------
def parse_file_date(text: str) -> FileDate | None:
    """The first date written in `text` (a file name without its prefix/extension).

    Returns None when there is no date-like part; raises `ValueError` (with the date
    text as its argument) when there is one but it is not a real date (`20260230`).
    """
    m = _DATE.search(unicodedata.normalize("NFKC", text))
    if m is None:
        return None
    g = m.groupdict()
    year = g["y1"] or g["y2"] or g["y3"] or g["y4"]
    month = g["m1"] or g["m2"] or g["m3"] or g["m4"]
    day = g["d1"] or g["d2"] or g["d3"]
    try:
        if not 1900 <= int(year) <= 2199:
            raise ValueError("year out of range")
        date = dt.date(int(year), int(month), int(day or 1))
    except ValueError:
        raise ValueError(m.group(0)) from None
    period = date.isoformat() if day else date.strftime("%Y-%m")
    suffix = m.string[m.end():].strip(" _-.")
    return FileDate(date, period, suffix, m.group(0))


# -- discovery --------------------------------------------------------------------
def discover_exports(inbox: str | Path, mappings: Sequence[SourceMapping] | None = None, *,
                     memo: DigestMemo | None = None) -> DiscoveryResult:
    """Every export file under `inbox`, recognised by the mappings' file prefixes; `memo`:
    the hashes of files seen before, not read again while their status is unchanged."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise InboxNotFoundError(None, None, inbox)
    file_mappings = [m for m in (mappings if mappings is not None else load_mappings()) if m.file_prefixes]
    result = DiscoveryResult()
    for path in _walk(inbox, result):
        rel = path.relative_to(inbox)
        if _ignored(rel):
            result.ignored.append(path)
            continue
        found = _classify(path, rel, file_mappings, memo)
        if isinstance(found, ExportFile):
            result.files.append(found)
        else:
            result.problems.append(found)
    result.files.sort(key=lambda f: f.sort_key)
    return result


def _walk(inbox: Path, result: DiscoveryResult) -> list[Path]:
    """Every file under `inbox`, sorted; a folder that cannot be listed is a problem
    (`SourceUnavailableError`), never silently empty."""
    files: list[Path] = []

    def unreadable(exc: OSError) -> None:
        folder = Path(exc.filename or inbox)
        rel = folder.relative_to(inbox) if folder.is_relative_to(inbox) else folder
        if rel.parts and _ignored(rel):
            return
        system = rel.parts[0] if rel.parts and rel.parts[0] in source_systems() else None
        result.problems.append(SourceUnavailableError(system, folder.name, folder, kind=_os_kind(exc),
                                                      detail=exc.strerror))

    real_inbox = inbox.resolve()
    for root, dirs, names in os.walk(inbox, onerror=unreadable):
        dirs.sort()
        for d in dirs:  # a linked folder is not walked (os.walk): say so when it leaves the inbox
            _refuse_if_outside(inbox, real_inbox, Path(root) / d, result)
        for n in names:
            path = Path(root) / n
            if _refuse_if_outside(inbox, real_inbox, path, result):
                continue
            if path.is_file():
                files.append(path)
    return sorted(files)


def _refuse_if_outside(inbox: Path, real_inbox: Path, path: Path, result: DiscoveryResult) -> bool:
    """True (and an `OutsideInboxError` problem) for a symbolic link whose target is not
    inside the inbox. Only the link's name goes into the message: the target is never
    opened. Links that stay inside the inbox are followed as before."""
    if not path.is_symlink():
        return False
    try:
        target = path.resolve(strict=False)
    except (OSError, RuntimeError):  # a loop: cannot lead anywhere useful
        target = None
    if target is not None and target.is_relative_to(real_inbox):
        return False
    rel = path.relative_to(inbox)
    if _ignored(rel):
        return True
    system = rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in source_systems() else None
    result.problems.append(OutsideInboxError(system, path.name, path))
    return True


def _os_kind(exc: OSError) -> str:
    return "permission" if isinstance(exc, PermissionError) else "io"


def _ignored(rel: Path) -> bool:
    """Hidden things, Excel lock files, truth files, the family-planning database."""
    parts = rel.parts
    if any(p.startswith(".") or p == "_truth" for p in parts):
        return True
    name = parts[-1]
    if name.startswith("~$"):
        return True
    return len(parts) > 1 and parts[0] in _DB_FOLDERS and name.lower().endswith(_DB_SUFFIXES)


def _classify(path: Path, rel: Path, mappings: Sequence[SourceMapping],
              memo: DigestMemo | None = None) -> ExportFile | ConnectorError:
    """An ExportFile, or the problem that keeps `path` from being one."""
    name = path.name
    folder = rel.parts[0] if len(rel.parts) > 1 else None
    system = folder if folder in source_systems() else None
    mapping = _mapping_for_name(name, mappings)
    if mapping is None:
        return UnrecognizedFileError(system, name, path)
    if folder != mapping.source_system:
        return WrongFolderError(mapping.source_system, name, path, folder=folder,
                                expected_folder=mapping.source_system)
    nfkc = unicodedata.normalize("NFKC", name)
    prefix = next(p for p in sorted(mapping.file_prefixes, key=len, reverse=True) if nfkc.startswith(p))
    ext = next(e for e in mapping.file_extensions if nfkc.lower().endswith(e.lower()))
    middle = nfkc[len(prefix): len(nfkc) - len(ext)]
    try:
        date = parse_file_date(middle)
    except ValueError as exc:
        return InvalidFileDateError(mapping.source_system, name, path, date_text=str(exc))
    if date is None:
        return InvalidFileDateError(mapping.source_system, name, path)
    try:
        digest, size = memo.digest(path) if memo is not None else file_sha256(path)
    except OSError as exc:  # unreadable file (permission denied, vanished, I/O error): fails alone
        return SourceUnavailableError(mapping.source_system, name, path, kind=_os_kind(exc), detail=exc.strerror)
    return ExportFile(
        path=path, source_system=mapping.source_system, source_object=name,
        mapping=mapping.source_object, export_date=date.date, period=date.period,
        is_correction=date.is_correction, content_sha256=digest, size_bytes=size, suffix=date.suffix,
    )


def _mapping_for_name(name: str, mappings: Sequence[SourceMapping]) -> SourceMapping | None:
    """The mapping whose file prefix matches `name` (the longest prefix wins)."""
    best: tuple[int, SourceMapping] | None = None
    nfkc = unicodedata.normalize("NFKC", name)
    for m in mappings:
        if m.matches_file(name):
            length = max(len(p) for p in m.file_prefixes if nfkc.startswith(p))
            if best is None or length > best[0]:
                best = (length, m)
    return best[1] if best else None


#: the content key of a file that cannot be read (its failure is remembered by path)
UNREADABLE_CONTENT = "unreadable"


def content_key(path: Path) -> tuple[str, int | None]:
    """`file_sha256`, or (UNREADABLE_CONTENT, None) for a file that cannot be read."""
    try:
        return file_sha256(path)
    except OSError:
        return UNREADABLE_CONTENT, None


def file_sha256(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file's content, read in 1 MiB blocks."""
    with path.open("rb") as fh:
        return _sha256_of(fh)


def _sha256_of(fh: Any) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while block := fh.read(1 << 20):
        h.update(block)
        size += len(block)
    return h.hexdigest(), size


def digest_memo_path(warehouse: str | os.PathLike[str]) -> Path:
    """Where the sync of `warehouse` keeps its `DigestMemo`: `<warehouse>.digests.json`."""
    warehouse = Path(warehouse)
    return warehouse.with_name(warehouse.name + ".digests.json")


#: a file changed this recently is not remembered: a change within the same tick of the
#: file system's clock (a few milliseconds) could leave its status as it was ("racy git")
RACY_SECONDS = 2.0


@dataclass
class DigestMemo:
    """Content hashes of files by path, each with the file's status when it was read:
    `digest(path)` returns the remembered hash while the status (device, inode, size,
    modification and change times — the change time moves with any write, rename into
    place or `touch`, and cannot be set back) is the same, else reads the file. `save`
    keeps what this run saw (files gone from the inbox are forgotten); `load` of a
    missing or unreadable memo gives an empty one (every file is read)."""

    entries: dict[str, list[Any]] = field(default_factory=dict)   # absolute path → [dev, ino, size, mtime, ctime, sha256]
    seen: dict[str, list[Any]] = field(default_factory=dict)
    read: int = 0            # files whose content was read (not answered from the memo)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DigestMemo:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            entries = {str(k): list(v) for k, v in data["files"].items()
                       if isinstance(v, list) and len(v) == 6}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            entries = {}
        return cls(entries=entries)

    def digest(self, path: Path) -> tuple[str, int]:
        """(hex sha256, size) of `path`'s content; raises OSError as reading it would."""
        key = os.path.abspath(path)  # a relative inbox names other files from another folder
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            status = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
            known = self.entries.get(key)
            if known is not None and known[:5] == status:
                self.seen[key] = known
                return known[5], st.st_size
            digest, size = _sha256_of(fh)
        self.read += 1
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_SECONDS * 1e9 and size == st.st_size:
            self.seen[key] = status + [digest]
        return digest, size

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write what this run saw to `path` (owner-only, replaced atomically) when it
        differs from what was loaded; best effort: a folder that cannot be written only
        means the next run reads the files again."""
        if self.seen == self.entries:
            return
        path = Path(path)
        temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            try:
                with open(temp, "w", encoding="utf-8",
                          opener=lambda name, flags: os.open(name, flags, 0o600)) as fh:
                    json.dump({"files": self.seen}, fh, ensure_ascii=False)
                os.replace(temp, path)
            finally:
                temp.unlink(missing_ok=True)
