"""What encrypting the officer warehouse costs (issue 11): plain vs encrypted DuckDB
files of the same person table, written and read through `warehouse.store.open_database`
(the path a sync and a query take).

    .venv/bin/python tests/benchmarks/bench_encryption.py [--rows 1000000] [--repeat 3]

Prints, for each: seconds to open (encrypted: loading httpfs and attaching), to write
and checkpoint the table, to copy the file (a sync's working copy), to scan it with an
aggregate and to look one person up, and the file size."""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from warehouse.store import open_database  # noqa: E402

PERSONS = """
CREATE TABLE person AS
SELECT 'P' || lpad(CAST(i AS VARCHAR), 10, '0') AS person_id,
       '220402' || strftime(DATE '1940-01-01' + CAST(i % 29000 AS INTEGER), '%Y%m%d')
         || lpad(CAST(i % 1000 AS VARCHAR), 3, '0') || CAST(i % 10 AS VARCHAR) AS citizen_id,
       '张' || chr(CAST(19968 + i % 20000 AS INTEGER)) || chr(CAST(19968 + (i * 7) % 20000 AS INTEGER)) AS name,
       CASE WHEN i % 2 = 0 THEN '1' ELSE '2' END AS gender,
       DATE '1940-01-01' + CAST(i % 29000 AS INTEGER) AS birth_date,
       '13' || lpad(CAST(i % 1000000000 AS VARCHAR), 9, '0') AS phone,
       '吉林省辽源市龙山区某街道某社区' || CAST(i % 5000 AS VARCHAR) || '号楼' || CAST(i % 30 AS VARCHAR) || '室' AS current_address
FROM range({rows}) t(i)
"""


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(rows: int, key: str | None, folder: Path) -> dict[str, float]:
    path = folder / ("enc.duckdb" if key else "plain.duckdb")
    path.unlink(missing_ok=True)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    con = open_database(path, read_only=False, key=key)
    out["open_new"] = time.perf_counter() - t0
    out["write"] = _timed(lambda: (con.execute(PERSONS.format(rows=rows)), con.execute("CHECKPOINT")))
    con.close()
    out["copy"] = _timed(lambda: shutil.copyfile(path, path.with_suffix(".copy")))
    path.with_suffix(".copy").unlink()
    t0 = time.perf_counter()
    con = open_database(path, read_only=True, key=key)
    out["open_read"] = time.perf_counter() - t0
    out["scan"] = _timed(lambda: con.execute(
        "SELECT gender, count(*), count(DISTINCT citizen_id), max(name) FROM person GROUP BY ALL").fetchall())
    out["lookup"] = _timed(lambda: con.execute(
        "SELECT * FROM person WHERE citizen_id = (SELECT max(citizen_id) FROM person)").fetchall())
    con.close()
    out["size_mb"] = path.stat().st_size / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results: dict[str, list[dict[str, float]]] = {"plain": [], "encrypted": []}
        for _ in range(args.repeat):
            results["plain"].append(run(args.rows, None, folder))
            results["encrypted"].append(run(args.rows, "bench-key-0123456789", folder))
    keys = list(results["plain"][0])
    print(f"{args.rows:,} persons, median of {args.repeat} runs")
    print(f"{'':12}{'plain':>12}{'encrypted':>12}{'ratio':>8}")
    for k in keys:
        p = statistics.median(r[k] for r in results["plain"])
        e = statistics.median(r[k] for r in results["encrypted"])
        unit = "MB" if k == "size_mb" else "s"
        print(f"{k:12}{p:>11.3f}{unit[0]}{e:>11.3f}{unit[0]}{(e / p if p else float('nan')):>8.2f}")


if __name__ == "__main__":
    main()
