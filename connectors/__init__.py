"""Connectors: find department exports and read them into raw string frames.

Only bytes → raw frames with lineage (ARCHITECTURE.md "Raw frames"); no mapping of
values, no normalisation. `discover_exports` lists the inbox; `read_export` reads one
discovered file with the reader for its mapping's format; `read_table` reads a SQL
source. Everything that cannot be read raises a structured `ConnectorError`.
"""

from __future__ import annotations

from pathlib import Path

from connectors.base import LINEAGE_COLUMNS, ConnectorWarning, RawRead, SkippedRow
from connectors.csv import read_csv
from connectors.discovery import DiscoveryResult, ExportFile, FileDate, discover_exports, parse_file_date
from connectors.exceptions import (
    ConnectorError,
    EncodingDetectionError,
    HeaderNotFoundError,
    InvalidFileDateError,
    MissingColumnsError,
    TableNotFoundError,
    UnreadableFileError,
    UnrecognizedFileError,
    WrongFolderError,
)
from connectors.sql import open_engine, read_table
from connectors.xlsx import read_xlsx
from schemas.mapping import SourceMapping, mapping_for

__all__ = [
    "LINEAGE_COLUMNS",
    "ConnectorError",
    "ConnectorWarning",
    "DiscoveryResult",
    "EncodingDetectionError",
    "ExportFile",
    "FileDate",
    "HeaderNotFoundError",
    "InvalidFileDateError",
    "MissingColumnsError",
    "RawRead",
    "SkippedRow",
    "TableNotFoundError",
    "UnreadableFileError",
    "UnrecognizedFileError",
    "WrongFolderError",
    "discover_exports",
    "open_engine",
    "parse_file_date",
    "read_csv",
    "read_export",
    "read_table",
    "read_xlsx",
]


def read_export(export_file: ExportFile | str | Path, mapping: SourceMapping | None = None) -> RawRead:
    """Read one discovered export with the reader for its mapping's format.

    `mapping` defaults to the mapping named by `export_file.mapping`. A bare path needs
    a mapping. SQL sources are not files: use `read_table(open_engine(url), mapping)`.
    """
    if isinstance(export_file, ExportFile):
        path, source_object = export_file.path, export_file.source_object
        mapping = mapping or mapping_for(export_file.mapping)
    else:
        if mapping is None:
            raise ValueError("read_export(path) needs a mapping")
        path, source_object = Path(export_file), Path(export_file).name
    readers = {"xlsx": read_xlsx, "csv": read_csv}
    if mapping.format in readers:
        try:
            return readers[mapping.format](path, mapping, source_object=source_object)
        except OSError as exc:  # permission denied, vanished, I/O error: this file fails alone
            from connectors.exceptions import SourceUnavailableError
            from connectors.retry import fault_kind

            raise SourceUnavailableError(mapping.source_system, source_object, path, kind=fault_kind(exc) or "io",
                                         detail=exc.strerror or str(exc)) from None
    raise ValueError(f"{mapping.source_object}: format {mapping.format!r} is not a file format; use read_table")
