"""Benchmark the synthetic district generator.

    .venv/bin/python tests/benchmarks/bench_generate.py --households 100000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from synth import generate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--noise", default="realistic", choices=["clean", "realistic", "hard"])
    ap.add_argument("--out", type=Path, help="keep the inbox here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "inbox"
        t0 = time.perf_counter()
        s = generate(out, args.households, args.seed, days=args.days, noise=args.noise)
        secs = time.perf_counter() - t0
    print(s)
    print(f"seconds: {secs:.1f}")
    print(f"persons/s: {s.persons / secs:,.0f}")
    print(f"mentions/s: {s.mentions / secs:,.0f}")


if __name__ == "__main__":
    main()
