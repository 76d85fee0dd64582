"""Sizing of the two resolution engines: time and peak memory of a full person resolution
on the embedded DuckDB engine and on Spark, on generated inboxes of given sizes. A script
that prints figures (and writes a CSV and an SVG plot), not a timed test.

    .venv/bin/python tests/benchmarks/bench_engines.py --households 2000 10000 30000
    .venv/bin/python tests/benchmarks/bench_engines.py --households 372000 1116000 --master 'local[2]'   # ≈ 1M, 3M residents
    .venv/bin/python tests/benchmarks/bench_engines.py --plot-only docs/engines-sizing.csv                 # redraw the SVG

For each size: generate an inbox (`synth.generate`, kept in --work and reused), load it
with `residents sync` (persons resolved by citizen ID alone: only the staged mentions and
the linkage index are used here), then run the full resolution a sync runs (`pipelines.resolve.resolve_component`: train on every
mention, generate and score the blocked pairs, cluster under the constraints, assign
ids) once per engine, each in a child process of its own:

* time: the child's wall time of the resolution, from reading the linkage index to
  the person ids (Spark: including starting the session, reported apart as
  ``session_s``);
* peak memory: the largest *sum* of the resident set sizes of the child and all its
  descendants (the Spark JVM and its Python workers), sampled from /proc every 0.1 s;
  ``driver_peak_mb`` is the child alone (the Python process holding the linkage frame,
  training and clustering), ``jvm_peak_mb`` the rest (the local driver JVM running the
  executors, and the Python UDF workers).

The two engines' persons are compared (pairwise F1 between them, `accuracy.pairwise`) and
both are scored against the generator's truth.

CSV columns: engine, households, residents (true persons), mentions, pairs, seconds,
session_s, peak_mb, driver_peak_mb, jvm_peak_mb, persons, f1_vs_duckdb, f1_vs_truth.
The SVG (default docs/engines-sizing.svg) plots seconds and peak memory against residents
for both engines (hand-written SVG, no plotting library).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# run as a script, this file's folder comes first on the path and its name would shadow
# the top-level `engines` module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIELDS = ["engine", "households", "residents", "mentions", "pairs", "seconds", "session_s", "peak_mb",
          "driver_peak_mb", "jvm_peak_mb", "persons", "f1_vs_duckdb", "f1_vs_truth"]


# ------------------------------------------------------------------ memory sampling
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_rss(root: int) -> tuple[float, float]:
    """(RSS of `root`, RSS of all its descendants) in MB."""
    kids = _children()
    stack, rest = list(kids.get(root, [])), 0.0
    while stack:
        pid = stack.pop()
        rest += _rss_mb(pid)
        stack.extend(kids.get(pid, []))
    return _rss_mb(root), rest


def run_child(args: list[str]) -> tuple[dict, float, float, float]:
    """Run this script as a child; (its JSON answer, peak total MB, peak own MB, peak
    descendants MB)."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    peak = own = rest = 0.0
    while proc.poll() is None:
        a, b = tree_rss(proc.pid)
        peak, own, rest = max(peak, a + b), max(own, a), max(rest, b)
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), peak, own, rest


# ------------------------------------------------------------------ the child
def child(engine: str, warehouse: Path, out: Path, master: str, partitions: int) -> None:
    import duckdb
    import pandas as pd

    from pipelines.linkage import LinkageModel
    from pipelines.resolve import resolve_component
    from warehouse import linkage_index as index

    # the memory limit a sync sets (`memory_limit`, default auto: 25 % of the machine) on
    # the linkage model's DuckDB databases, spilling next to the warehouse
    from pipelines.linkage.model import set_duckdb_options
    from settings import load_settings

    settings = load_settings(warehouse=warehouse)
    limit = settings.resolved_memory_limit()
    if limit:
        settings.resolved_spill_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    set_duckdb_options(memory_limit=limit, temp_directory=str(settings.resolved_spill_dir()) if limit else None)
    t0 = time.perf_counter()
    con = duckdb.connect(str(warehouse), read_only=True)
    lf, facts = index.features(con), index.mention_facts(con)
    con.close()
    empty_x = pd.DataFrame(columns=["mention_id", "person_id", "match_method", "match_probability"])
    empty_p = pd.DataFrame(columns=["person_id", "citizen_id"])
    session_s = 0.0
    if engine == "spark":
        import engines

        ts = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix="engines-bench-"))
        with engines.spark_scorer(master, work, partitions=partitions) as scorer:
            session_s = time.perf_counter() - ts
            model = LinkageModel(scorer=scorer)
            linked = resolve_component(lf, facts, None, empty_x, empty_p, 1, model)
        shutil.rmtree(work, ignore_errors=True)
    else:
        model = LinkageModel()
        linked = resolve_component(lf, facts, None, empty_x, empty_p, 1, model)
    seconds = time.perf_counter() - t0
    pairs = getattr(model, "last_pairs", None)
    xref = linked.resolution.xref[["mention_id", "person_id"]]
    xref.to_parquet(out)
    print(json.dumps({"seconds": seconds, "session_s": session_s, "mentions": len(lf), "pairs": pairs,
                      "persons": int(xref["person_id"].nunique())}))


# ------------------------------------------------------------------ the parent
def prepare(households: int, seed: int, work: Path) -> tuple[Path, Path]:
    import synth
    from settings import load_settings

    inbox, wh = work / f"inbox_{households}", work / f"warehouse_{households}.duckdb"
    if not (inbox / "_truth" / "persons.csv").exists():
        shutil.rmtree(inbox, ignore_errors=True)
        t = time.perf_counter()
        synth.generate(inbox, households=households, seed=seed, noise="realistic")
        print(f"  generated {households} households in {time.perf_counter() - t:.0f} s", flush=True)
    if not wh.exists():
        import flows

        t = time.perf_counter()
        # only the staged mentions and the linkage index are read by the children, and
        # neither depends on how the load resolved persons: the load resolves by citizen ID
        # alone (`deterministic`), so the measured resolution is not also run, unmeasured,
        # in the parent (at 3M residents that would double the time and the memory peak)
        summary = flows.run_sync(load_settings(inbox=inbox, warehouse=wh, lock_timeout_s=30,
                                               resolution_mode="deterministic"))
        if summary.status != "succeeded":
            raise RuntimeError(f"sync failed: {summary.status}")
        print(f"  loaded in {time.perf_counter() - t:.0f} s", flush=True)
    return inbox, wh


def measure(households: int, seed: int, work: Path, engines_: list[str], master: str, partitions: int) -> list[dict]:
    import pandas as pd

    from tests.benchmarks.accuracy import KEY, pairwise

    inbox, wh = prepare(households, seed, work)
    truth = pd.read_csv(inbox / "_truth" / "mentions.csv", dtype=str, keep_default_na=False,
                        usecols=[*KEY, "person_key"])
    residents = sum(1 for _ in open(inbox / "_truth" / "persons.csv", encoding="utf-8")) - 1
    import duckdb

    con = duckdb.connect(str(wh), read_only=True)
    keys = con.execute("SELECT mention_id, source_object, source_locator, role FROM stg.mention").df()
    con.close()
    truth = keys.merge(truth, on=KEY)[["mention_id", "person_key"]]
    rows, xrefs = [], {}
    for engine in engines_:
        out = work / f"xref_{engine}_{households}.parquet"
        answer, peak, own, rest = run_child(["--child", engine, str(wh), str(out), "--master", master,
                                             "--partitions", str(partitions)])
        xrefs[engine] = pd.read_parquet(out)
        both = xrefs[engine].merge(truth, on="mention_id")
        row = {"engine": engine, "households": households, "residents": residents, "mentions": answer["mentions"],
               "pairs": answer["pairs"], "seconds": round(answer["seconds"], 2),
               "session_s": round(answer["session_s"], 2), "peak_mb": round(peak), "driver_peak_mb": round(own),
               "jvm_peak_mb": round(rest), "persons": answer["persons"],
               "f1_vs_truth": round(pairwise(both["person_id"], both["person_key"])["f1"], 6)}
        if "duckdb" in xrefs:
            m = xrefs["duckdb"].merge(xrefs[engine], on="mention_id", suffixes=("_d", "_e"))
            row["f1_vs_duckdb"] = round(pairwise(m["person_id_e"], m["person_id_d"])["f1"], 6)
        rows.append(row)
        print("  " + "  ".join(f"{k}={row.get(k)}" for k in FIELDS), flush=True)
    return rows


# ------------------------------------------------------------------ the plot
def svg_plot(rows: list[dict], path: Path) -> None:
    """Two panels (seconds, peak MB) against residents, one line per engine."""
    colours = {"duckdb": "#1f77b4", "spark": "#d62728"}
    w, h, pad = 420, 300, 60
    panels = [("seconds", "resolution time (s)"), ("peak_mb", "peak memory (MB)")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 40}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="{w}" y="18" text-anchor="middle" font-size="14">Person resolution: DuckDB vs Spark '
             f'(local) — full run</text>']
    xs = [float(r["residents"]) for r in rows]
    xmax = max(xs) * 1.05 if xs else 1
    for i, (field, title) in enumerate(panels):
        ox = i * w
        ys = [float(r[field]) for r in rows]
        ymax = max(ys) * 1.1 if ys else 1

        def px(x: float) -> float:
            return ox + pad + (w - pad - 20) * x / xmax

        def py(y: float) -> float:
            return 30 + (h - pad) * (1 - y / ymax)

        parts.append(f'<rect x="{ox + pad}" y="30" width="{w - pad - 20}" height="{h - pad}" fill="none" '
                     f'stroke="#999"/>')
        parts.append(f'<text x="{ox + w / 2}" y="{h + 25}" text-anchor="middle">residents</text>')
        parts.append(f'<text x="{ox + 14}" y="{30 + (h - pad) / 2}" text-anchor="middle" '
                     f'transform="rotate(-90 {ox + 14} {30 + (h - pad) / 2})">{title}</text>')
        for k in range(5):
            yv, xv = ymax * k / 4, xmax * k / 4
            parts.append(f'<text x="{ox + pad - 4}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:,.0f}</text>')
            parts.append(f'<text x="{px(xv):.1f}" y="{h - pad + 46}" text-anchor="middle">{xv:,.0f}</text>')
        for j, engine in enumerate(sorted({r["engine"] for r in rows})):
            pts = sorted((float(r["residents"]), float(r[field])) for r in rows if r["engine"] == engine)
            c = colours.get(engine, "#333")
            parts.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
                c, " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)))
            parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>' for x, y in pts]
            parts.append(f'<text x="{ox + pad + 10}" y="{48 + 16 * j}" fill="{c}">{engine}</text>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--households", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--engines", nargs="+", default=["duckdb", "spark"], choices=["duckdb", "spark"])
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "residents-engines-bench")
    ap.add_argument("--csv", type=Path, default=ROOT / "docs" / "engines-sizing.csv")
    ap.add_argument("--svg", type=Path, default=ROOT / "docs" / "engines-sizing.svg")
    ap.add_argument("--plot-only", type=Path, default=None, metavar="CSV", help="only redraw the SVG from a CSV")
    ap.add_argument("--child", nargs=3, metavar=("ENGINE", "WAREHOUSE", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.child[0], Path(a.child[1]), Path(a.child[2]), a.master, a.partitions)
        return 0
    if a.plot_only:
        with a.plot_only.open(encoding="utf-8") as fh:
            svg_plot(list(csv.DictReader(fh)), a.svg)
        return 0
    a.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in a.households:
        print(f"== {n} households ==", flush=True)
        rows += measure(n, a.seed, a.work, a.engines, a.master, a.partitions)
        a.csv.parent.mkdir(parents=True, exist_ok=True)
        with a.csv.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        svg_plot(rows, a.svg)
    print(f"wrote {a.csv} and {a.svg}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
