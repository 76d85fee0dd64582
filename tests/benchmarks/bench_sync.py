"""Benchmark: generate N households, run the sync, print each stage's time, rows/s and
peak memory. A script that prints figures, not a timed test.

    .venv/bin/python tests/benchmarks/bench_sync.py --households 10000
    make bench BENCH_ARGS="--households 100000"
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise", default="realistic")
    ap.add_argument("--workdir", type=Path, default=None, help="keep inbox and warehouse here")
    args = ap.parse_args()

    import synth
    from flows import run_sync
    from settings import load_settings

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-"))
    inbox, wh = work / "inbox", work / "warehouse.duckdb"
    t0 = time.perf_counter()
    gen = synth.generate(inbox, households=args.households, seed=args.seed, noise=args.noise)
    t_gen = time.perf_counter() - t0
    print(f"generate: {args.households} households → {gen}  ({t_gen:.1f} s)")

    summary = run_sync(load_settings(inbox=inbox, warehouse=wh))
    rows = sum(e.rows_read for e in summary.loaded)
    mentions = sum(e.mentions for e in summary.loaded)
    print(f"\nsync: {len(summary.loaded)} exports, {rows} rows read, {mentions} person mentions, "
          f"{summary.persons_after} persons, alerts {summary.alerts}")
    print(f"{'stage':<14}{'seconds':>10}{'rows/s':>14}")
    for stage, secs in summary.stage_seconds.items():
        rate = f"{rows / secs:,.0f}" if secs > 0 and stage in ("read", "standardize", "stage", "total") else ""
        print(f"{stage:<14}{secs:>10.2f}{rate:>14}")
    print(f"\npeak memory (RSS): {peak_rss_mb():,.0f} MB")
    print(f"warehouse size: {wh.stat().st_size / 1e6:,.1f} MB  ({wh})")


if __name__ == "__main__":
    main()
