"""GB/T 2260 administrative division codes, all revisions since 1980 in one table.

The table ``schemas/data/gb2260_regions.csv`` is built by
``schemas/data/build_gb2260.py`` (see its docstring for sources and columns) and is
shipped with the project, so nothing here needs the network.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

REGIONS_CSV = Path(__file__).parent / "data" / "gb2260_regions.csv"


@lru_cache(maxsize=1)
def load_regions() -> pd.DataFrame:
    """All historical codes: ``code`` (index too), ``name``, ``level``,
    ``first_year``/``last_year`` (nullable Int64), ``former_names``.

    Cached: callers must not modify the returned frame.
    """
    frame = pd.read_csv(
        REGIONS_CSV,
        dtype={"code": str, "name": str, "level": str, "former_names": str},
        keep_default_na=False,
    )
    for column in ("first_year", "last_year"):
        frame[column] = pd.to_numeric(frame[column].replace("", None)).astype("Int64")
    return frame.set_index("code", drop=False)


@lru_cache(maxsize=1)
def region_codes() -> frozenset[str]:
    """The set of every known six-digit code (for fast membership tests)."""
    return frozenset(load_regions()["code"])


def region_name(code: str) -> str | None:
    """The most recent name of a six-digit code, or ``None`` when unknown."""
    regions = load_regions()
    return regions.at[code, "name"] if code in regions.index else None
