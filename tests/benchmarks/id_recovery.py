"""Citizen-ID figures of a sync against the generator's truth.

    .venv/bin/python tests/benchmarks/id_recovery.py --households 10000 --noise realistic

usable: written in an allowed disguise (clean, lowercase x, full-width, spaces,
apostrophe, 15-digit) → must come out as the true 18-digit ID;
corrupted: Excel-corrupted or mistyped → must never be accepted and must be in the
quarantine with its location.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

USABLE = {"clean", "lowercase_x", "fullwidth", "spaces", "apostrophe", "old15"}
CORRUPTED = {"excel_scientific", "excel_truncated", "excel_numeric_cell", "typo"}
KEY = ["source_object", "source_locator", "role"]


def id_recovery(inbox: Path, warehouse: Path) -> dict[str, int]:
    truth = pd.read_csv(inbox / "_truth" / "mentions.csv", dtype=str, keep_default_na=False)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        m = con.execute("SELECT source_object, source_locator, role, citizen_id FROM stg.mention").df()
        q = con.execute("SELECT DISTINCT source_object, source_locator, raw_value FROM quality.rejected_record "
                        "WHERE error_code LIKE 'id_%'").df()
    finally:
        con.close()
    j = truth.merge(m, on=KEY)
    usable = j[j["id_quirk"].isin(USABLE)]
    corrupted = j[j["id_quirk"].isin(CORRUPTED)]
    flagged = corrupted.merge(q, left_on=["source_object", "source_locator", "id_written"],
                              right_on=["source_object", "source_locator", "raw_value"])
    return {
        "mentions_in_truth": len(truth), "mentions_matched": len(j),
        "usable": len(usable), "usable_recovered": int((usable["citizen_id"] == usable["id_true"]).sum()),
        "corrupted": len(corrupted), "corrupted_accepted": int(corrupted["citizen_id"].notna().sum()),
        "corrupted_flagged": int(flagged.drop_duplicates(KEY).shape[0]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise", default="realistic")
    args = ap.parse_args()
    import synth
    from flows import run_sync
    from settings import load_settings

    work = Path(tempfile.mkdtemp(prefix="idrec-"))
    synth.generate(work / "inbox", households=args.households, seed=args.seed, noise=args.noise)
    run_sync(load_settings(inbox=work / "inbox", warehouse=work / "w.duckdb", resolution_mode="deterministic"))
    fig = id_recovery(work / "inbox", work / "w.duckdb")
    for k, v in fig.items():
        print(f"{k:<22}{v:>10}")
    print(f"usable recovered: {fig['usable_recovered'] / max(fig['usable'], 1):.5%}; "
          f"corrupted accepted: {fig['corrupted_accepted']}; corrupted flagged: "
          f"{fig['corrupted_flagged']}/{fig['corrupted']}")


if __name__ == "__main__":
    main()
