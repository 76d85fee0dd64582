"""Reading the golden-file tables (`tests/golden/*.tsv`): one case per line.

Cells are written so that every value fits on one tab-separated line: `<None>` is None,
`<empty>` the empty string, and `\\t`, `\\n`, `\\uXXXX`, `\\xXX` are escapes.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
_ESCAPE = re.compile(r"\\(t|n|u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2})")


def decode(cell: str) -> str | None:
    """A golden cell → the Python value it stands for."""
    if cell == "<None>":
        return None
    if cell == "<empty>":
        return ""
    return _ESCAPE.sub(lambda m: {"t": "\t", "n": "\n"}.get(m[1]) or chr(int(m[1][1:], 16)), cell)


def read_tsv(file_name: str) -> list[dict[str, str]]:
    """Rows of `tests/golden/<file_name>` as dicts (cells not yet decoded)."""
    with (GOLDEN / file_name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
