"""Scale benchmark ("cost follows the change"): generate a district, then time the real
`residents` command line on it and print one table of wall time and peak memory per step
against the targets. A script that prints figures, not a timed test: it exits 0 whenever
it ran, whether or not the targets were met.

    .venv/bin/python tests/benchmarks/bench_scale.py                      # 372,000 households ≈ 1M residents
    .venv/bin/python tests/benchmarks/bench_scale.py --households 2000 --workdir /tmp/bs --keep
    .venv/bin/python tests/benchmarks/bench_scale.py --workdir /tmp/bs --skip-generate --save-full
    .venv/bin/python tests/benchmarks/bench_scale.py --workdir /tmp/bs --skip-generate --from-full   # later steps only
    make bench-scale BENCH_ARGS="--also-3m"

Steps, each a separate child process whose wall time and peak RSS (`os.wait4`, Linux
kilobytes) are its own. After a step that published, the bench waits (untimed; the total is
printed) until the spare working copies its publish started are made (`warehouse.standby`),
as the next officer's decision or night's sync would find them:

  baseline read   the floor: only *reading* every export with the fastest readers
                  (python-calamine for every sheet of every xlsx, pyarrow.csv for the CSVs,
                  sqlite3 `SELECT *` of every table), run as a child of this script
  full sync       `residents sync` into an empty warehouse, with the nightly delta held back
  nightly delta   the held-back files are put back and a few hundred family-planning rows
                  change (newer GXSJ), then `residents sync` again
  no-op sync      `residents sync` once more with nothing new
  query           `residents query "select count(*) from core.person"`
  link / unlink   `residents link P_A P_B`, then `residents unlink` of the two records the
                  link decision names (after the link the two person ids are one person,
                  so the officer's undo names the records: mention ids)
  encrypt         `residents encrypt` of a copy of the warehouse as the full sync left it
                  (the configuration production is told to run: a warehouse key set)
  nightly delta, encrypted
                  the same nightly delta again, on that encrypted copy, with its key
                  (DuckDB writes encrypted files in its 1.4 storage format, whose
                  PRIMARY KEY deletes cost ~4× those of the plain file's format)
  link / unlink, encrypted
                  the same link and unlink on the encrypted copy, with its key
  full sync, 3×   with --also-3m: a fresh district of 3 × --households (1,116,000 households
                  ≈ 3M residents by default), full sync only

The nightly delta held back from the full sync: the newest 流动人口登记 day file and the
newest 低保花名册 month file (moved to WORKDIR/held_out/), and the family-planning changes
(applied to inbox/family_planning/family_planning.sqlite after the full sync; the
generated database is kept in WORKDIR/pristine/ so --skip-generate starts from it again).

Work directory layout: inbox/ (generated), held_out/, pristine/, warehouse/ (recreated for
every run), encrypted/ (the encrypted copy, recreated for every run), logs/ (each step's
stdout and stderr), 3x/ (--also-3m).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DEFAULT_HOUSEHOLDS = 372_000  # ≈ 1M residents
HELD_OUT_SYSTEMS = ("floating_population", "low_income")  # newest file of each is the nightly delta
FP_DATABASE = Path("family_planning") / "family_planning.sqlite"
CSV_ENCODINGS = {"floating_population": "gb18030"}  # others: UTF-8 (火化信息 has a BOM, pyarrow skips it)
CHILD_NAME_ENDINGS = "伟芳娜敏静丽强磊军洋"
STDERR_TAIL_LINES = 25


@dataclass(frozen=True)
class Target:
    """A step's budget: at most `seconds` of wall time and, when given, `rss_mb` of memory."""

    seconds: float
    rss_mb: float | None = None

    def __str__(self) -> str:
        return f"≤ {self.seconds:g} s" + (f" & ≤ {self.rss_mb:g} MB" if self.rss_mb is not None else "")

    def met(self, seconds: float, rss_mb: float) -> bool:
        return seconds <= self.seconds and (self.rss_mb is None or rss_mb <= self.rss_mb)


TARGETS = {
    "full sync": Target(180, 4096),
    "nightly delta": Target(15, 2048),
    "nightly delta, encrypted": Target(15, 2048),
    "no-op sync": Target(3),
    "query": Target(1),
    "link": Target(5),
    "unlink": Target(5),
    "link, encrypted": Target(5),
    "unlink, encrypted": Target(5),
}


@dataclass
class Step:
    """One measured child process (or a step that could not run: `skipped` says why)."""

    name: str
    seconds: float = 0.0
    rss_mb: float = 0.0
    returncode: int | None = None
    stdout: str = ""
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def verdict(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        if not self.ok:
            return f"FAILED (exit {self.returncode})"
        target = TARGETS.get(self.name)
        if target is None:
            return "—"
        return "yes" if target.met(self.seconds, self.rss_mb) else "no"


# -- running and measuring child processes ----------------------------------------
def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without RESIDENTS_* settings, so every step sees only its options
    (and `extra`)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("RESIDENTS_")}, **(extra or {})}


#: the warehouse key of the encrypted steps (a benchmark's own, not a secret)
BENCH_KEY = "bench-scale-warehouse-key"
#: the steps on the encrypted copy, in order (`encrypted_steps`)
ENCRYPTED_STEPS = ("encrypt", "nightly delta, encrypted", "link, encrypted", "unlink, encrypted")


def measure(name: str, argv: list[str], logs: Path, cwd: Path, env: dict[str, str] | None = None) -> Step:
    """Run `argv` as one child (with `env` added to its environment); its wall time and
    peak RSS (wait4 on that child alone)."""
    logs.mkdir(parents=True, exist_ok=True)
    slug = name.replace(" ", "_").replace(",", "")
    out_path, err_path = logs / f"{slug}.out", logs / f"{slug}.err"
    print(f"→ {name}: {shlex.join(argv)}", flush=True)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd, env=child_env(env))
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    settle_spares(argv)
    step = Step(name, seconds, usage.ru_maxrss / 1024, proc.returncode,
                out_path.read_text(encoding="utf-8", errors="replace"))
    if not step.ok:
        tail = err_path.read_text(encoding="utf-8", errors="replace").splitlines()[-STDERR_TAIL_LINES:]
        print(f"  {name} failed (exit {step.returncode}); last lines of {err_path}:", flush=True)
        print("\n".join(f"  | {line}" for line in tail), flush=True)
    return step


#: seconds the bench waited, untimed, for the spare working copies publishes started
SPARE_WAIT = [0.0]


def settle_spares(argv: list[str], timeout_s: float = 300.0) -> None:
    """After a step on a warehouse (`--warehouse` / `-w` in `argv`): wait, untimed, until the
    spare working copies its publish started in a detached process are made
    (`warehouse.standby`: the warehouse and its analyst file). Officers' decisions and the
    nightly sync come minutes or hours apart, not back to back like these steps: the next
    step should find what it would find in use, and not share the cores with the copier
    (nor the disk with its removal of the files the publish retired). A
    step that published nothing finds its spares there already; with no copier writing
    (spares off, or a failed copy) the wait ends after 2 s. The total is printed."""
    from warehouse import standby

    flags = [i for i, a in enumerate(argv[:-1]) if a in ("--warehouse", "-w")]
    if not flags:
        return
    wh = Path(argv[flags[-1] + 1])
    t0 = time.perf_counter()
    for path in (wh, wh.with_name(wh.stem + ".analyst.duckdb")):
        while time.perf_counter() - t0 < timeout_s:
            try:
                if standby.spare_path(path, standby.identity(path)).exists():
                    break
            except FileNotFoundError:
                break
            if time.perf_counter() - t0 > 2 and not any(path.parent.glob(path.name + ".spare-tmp-*")):
                break
            time.sleep(0.05)
    # then the files the publish retired, removed by the same process after the spares
    while time.perf_counter() - t0 < timeout_s and any(wh.parent.glob("*.retired-*")):
        time.sleep(0.05)
    SPARE_WAIT[0] += time.perf_counter() - t0


def residents_cli() -> str:
    """The `residents` entry point of the interpreter's environment (the project venv)."""
    exe = Path(sys.executable).with_name("residents")
    if not exe.exists():
        sys.exit(f"{exe} not found: run with the project's venv python (make install)")
    return str(exe)


# -- the inbox and the nightly delta ----------------------------------------------
def generate(cli: str, inbox: Path, households: int, seed: int, logs: Path, label: str) -> Step:
    shutil.rmtree(inbox, ignore_errors=True)
    step = measure(label, [cli, "generate", "-n", str(households), "--out", str(inbox), "--seed", str(seed)],
                   logs, inbox.parent)
    if not step.ok:
        sys.exit(f"{label} failed: nothing to benchmark")
    return step


def generated(step: Step) -> str:
    """A generation step's time, memory and the generator's own one-line summary."""
    return f"{step.name}: {step.seconds:.1f} s, peak RSS {step.rss_mb:,.0f} MB — {' '.join(step.stdout.split())}"


def hold_out_delta(inbox: Path, held_out: Path) -> list[Path]:
    """Move the newest export of each HELD_OUT_SYSTEMS folder to `held_out`; their new paths."""
    from connectors.discovery import discover_exports

    files = discover_exports(inbox).files  # sorted oldest → newest, as the sync orders them
    moved = []
    for system in HELD_OUT_SYSTEMS:
        newest = [f for f in files if f.source_system == system][-1]
        target = held_out / newest.path.relative_to(inbox)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(newest.path, target)
        moved.append(target)
    return moved


def put_back(inbox: Path, held_out: Path) -> list[Path]:
    """Move everything under `held_out` back into the inbox; the restored paths."""
    restored = []
    for path in sorted(p for p in held_out.rglob("*") if p.is_file()):
        target = inbox / path.relative_to(held_out)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        restored.append(target)
    return restored


def reset_fp_database(inbox: Path, pristine: Path) -> None:
    """The family-planning database as generated: saved on first use, restored afterwards."""
    saved = pristine / FP_DATABASE.name
    if saved.exists():
        shutil.copy2(saved, inbox / FP_DATABASE)
    else:
        pristine.mkdir(parents=True, exist_ok=True)
        shutil.copy2(inbox / FP_DATABASE, saved)


def apply_fp_changes(db: Path, changes: int, seed: int) -> int:
    """Change `changes` live rows (2/3 T_YLFN: phone or contraception, 1/3 T_ZN: a child's
    name), each with a GXSJ after every existing one, as the source system would; the
    number of rows changed."""
    from synth.exports.family_planning import JYCS_CODES

    rng = random.Random(seed)
    con = sqlite3.connect(db)
    try:
        (latest,) = con.execute("SELECT max(GXSJ) FROM (SELECT GXSJ FROM T_YLFN UNION ALL SELECT GXSJ FROM T_ZN)"
                                ).fetchone()
        stamps = (dt.datetime.fromisoformat(latest) + dt.timedelta(hours=1, seconds=i) for i in range(changes))
        women = con.execute("SELECT YLFN_ID, JYCS FROM T_YLFN WHERE SCBZ = 0 ORDER BY YLFN_ID").fetchall()
        children = con.execute("SELECT ZN_ID, XM FROM T_ZN WHERE SCBZ = 0 AND length(XM) >= 2 ORDER BY ZN_ID"
                               ).fetchall()
        women = rng.sample(women, min(len(women), changes * 2 // 3))
        children = rng.sample(children, min(len(children), changes - len(women)))
        phones, contraception = [], []
        for i, (ylfn_id, jycs) in enumerate(women):
            gxsj = f"{next(stamps):%Y-%m-%d %H:%M:%S}"
            if i % 2:
                code = JYCS_CODES[(JYCS_CODES.index(jycs) + 1) % len(JYCS_CODES)]  # the next method
                contraception.append((code, gxsj, ylfn_id))
            else:
                phones.append((f"1{rng.choice('3578')}{rng.randrange(10**9):09d}", gxsj, ylfn_id))
        renamed = [(name[:-1] + rng.choice(CHILD_NAME_ENDINGS.replace(name[-1], "")),
                    f"{next(stamps):%Y-%m-%d %H:%M:%S}", zn_id) for zn_id, name in children]
        con.executemany("UPDATE T_YLFN SET LXDH = ?, GXSJ = ? WHERE YLFN_ID = ?", phones)
        con.executemany("UPDATE T_YLFN SET JYCS = ?, GXSJ = ? WHERE YLFN_ID = ?", contraception)
        con.executemany("UPDATE T_ZN SET XM = ?, GXSJ = ? WHERE ZN_ID = ?", renamed)
        con.commit()
    finally:
        con.close()
    return len(phones) + len(contraception) + len(renamed)


# -- the warehouse, read in this process (closed before any step runs) -------------
def warehouse_counts(warehouse: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {
            "exports": con.execute("SELECT count(*) FROM quality.load_ledger").fetchone()[0],
            "rows read": con.execute("SELECT coalesce(sum(rows_read), 0) FROM quality.load_ledger").fetchone()[0],
            "mentions": con.execute("SELECT count(*) FROM core.person_xref").fetchone()[0],
            "persons": con.execute("SELECT count(*) FROM core.person").fetchone()[0],
        }
    finally:
        con.close()


def two_persons(warehouse: Path) -> list[tuple[str, str]]:
    """(person_id, mention_id) of the first two persons, the mention the one `residents
    link` records the decision on (`warehouse.decisions.decision_mention`)."""
    import duckdb

    from warehouse.decisions import decision_mention, mentions_of

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        persons = [r[0] for r in con.execute("SELECT DISTINCT person_id FROM core.person_xref ORDER BY 1 LIMIT 2"
                                             ).fetchall()]
        return [(p, decision_mention(con, p, mentions_of(con, p))) for p in persons]
    finally:
        con.close()


# -- the baseline: read every export, nothing else ---------------------------------
def read_only_baseline(inbox: Path) -> dict[str, int]:
    """Read every export of `inbox` fully into memory, one file at a time; counts."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from python_calamine import CalamineWorkbook

    counts = {"xlsx": 0, "csv": 0, "sqlite": 0, "rows": 0}
    for path in sorted(p for p in inbox.rglob("*") if p.is_file() and "_truth" not in p.parts):
        suffix = path.suffix.lower()
        if suffix == ".xlsx":
            workbook = CalamineWorkbook.from_path(str(path))
            counts["rows"] += sum(len(workbook.get_sheet_by_name(name).to_python()) for name in workbook.sheet_names)
        elif suffix == ".csv":
            options = pacsv.ReadOptions(encoding=CSV_ENCODINGS.get(path.relative_to(inbox).parts[0], "utf8"))
            names = pacsv.open_csv(path, read_options=options).schema.names  # every column as text, as loaded
            table = pacsv.read_csv(path, read_options=options,
                                   convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}))
            counts["rows"] += table.num_rows
        elif suffix == ".sqlite":
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                counts["rows"] += sum(len(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
            finally:
                con.close()
        else:
            continue
        counts[suffix[1:]] += 1
    return counts


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a warehouse folder and write it to disk before the next step: the step timed
    after it would otherwise also pay for the writeback of a 0.7 GB copy it did not make
    (at 1M residents the nightly delta after `--from-full` measured 30.8–31.1 s without
    it, 27.9 s with it — in a slightly faster hour of the VM)."""
    # a spare names its own file; a retired file is garbage the standby process removes
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.spare-*", "*.retired-*"))
    os.sync()


# -- the benchmark ----------------------------------------------------------------
def run_steps(cli: str, work: Path, seed: int, fp_changes: int, *, save_full: bool = False,
              from_full: bool = False, encrypted: bool = True) -> tuple[list[Step], list[str]]:
    """Baseline, full sync, nightly delta, no-op, query, link, unlink on WORK/inbox, then
    (`encrypted`) the encryption of a copy of the warehouse as the full sync left it and
    the same nightly delta, link and unlink on it; the steps and notes (counts, what the
    delta held).
    `save_full`: keep a copy of the warehouse folder after the full sync in
    WORK/after_full; `from_full`: start from that copy instead of running the baseline
    and the full sync (to measure the later steps again after a change that does not
    touch the full sync)."""
    inbox, held_out, logs = work / "inbox", work / "held_out", work / "logs"
    warehouse_dir, saved, encrypted_dir = work / "warehouse", work / "after_full", work / "encrypted"
    shutil.rmtree(warehouse_dir, ignore_errors=True)
    shutil.rmtree(encrypted_dir, ignore_errors=True)
    wh = warehouse_dir / "warehouse.duckdb"
    sync = [cli, "sync", "--inbox", str(inbox), "--warehouse", str(wh)]
    notes: list[str] = []

    delta = hold_out_delta(inbox, held_out)
    if from_full:
        copy_tree(saved, warehouse_dir)
        # what the full sync's publish would have left: the spares of the files it published
        subprocess.run([sys.executable, "-m", "warehouse.standby", str(wh),
                        str(wh.with_name("warehouse.analyst.duckdb"))], check=False, cwd=ROOT)
        steps = [Step("baseline read", skipped="--from-full"),
                 Step("full sync", returncode=0, skipped=f"--from-full: the warehouse saved in {saved}")]
        full = steps[-1]
    else:
        warehouse_dir.mkdir()
        steps = [measure("baseline read", [sys.executable, __file__, "--read-only-baseline", str(inbox)], logs, work)]
        if steps[0].ok:
            notes.append(f"baseline read: {json.loads(steps[0].stdout.splitlines()[-1])} (xlsx rows include header rows)")
        full = measure("full sync", sync, logs, work)
        steps.append(full)
        if full.ok and save_full:
            shutil.rmtree(saved, ignore_errors=True)
            copy_tree(warehouse_dir, saved)
    if full.ok:
        notes.append(f"after full sync: {warehouse_counts(wh)}")
        if encrypted:  # encrypted after the plain steps; the same delta runs on it
            copy_tree(warehouse_dir, encrypted_dir)

    put_back(inbox, held_out)
    changed = apply_fp_changes(inbox / FP_DATABASE, fp_changes, seed)
    notes.append(f"nightly delta: {', '.join(p.name for p in delta)} and {changed} family-planning row changes")
    nightly = (measure("nightly delta", sync, logs, work) if full.ok
               else Step("nightly delta", skipped="full sync failed"))
    steps.append(nightly)
    if nightly.ok:
        notes.append(f"after nightly delta: {warehouse_counts(wh)}")
    steps.append(measure("no-op sync", sync, logs, work) if nightly.ok
                 else Step("no-op sync", skipped="nightly delta did not run"))
    if not full.ok:
        later = ("query", "link", "unlink") + (ENCRYPTED_STEPS if encrypted else ())
        return steps + [Step(name, skipped="full sync failed") for name in later], notes

    steps.append(measure("query", [cli, "query", "-w", str(wh), "select count(*) from core.person"], logs, work))
    pair = two_persons(wh)
    (person_a, mention_a), (person_b, mention_b) = pair
    notes.append(f"link {person_a} {person_b}; unlink their records {mention_a} and {mention_b}")
    steps += decisions(cli, wh, pair, logs, work)
    if encrypted:
        steps += encrypted_steps(cli, encrypted_dir / "warehouse.duckdb", inbox, pair, logs, work)
    return steps, notes


def decisions(cli: str, wh: Path, pair: list[tuple[str, str]], logs: Path, work: Path, suffix: str = "",
              env: dict[str, str] | None = None) -> list[Step]:
    """`residents link` of the two persons of `pair`, then `unlink --force` of the two
    records the link decision names (the officer's undo contradicts the link just stored:
    it must be forced, with a reason)."""
    (person_a, mention_a), (person_b, mention_b) = pair
    decision = ["--warehouse", str(wh), "--by", "bench", "--reason", "bench"]
    link = measure("link" + suffix, [cli, "link", person_a, person_b, *decision], logs, work, env=env)
    unlink = (measure("unlink" + suffix, [cli, "unlink", mention_a, mention_b, *decision, "--force"], logs, work,
                      env=env) if link.ok else Step("unlink" + suffix, skipped="link failed"))
    return [link, unlink]


def encrypted_steps(cli: str, wh: Path, inbox: Path, pair: list[tuple[str, str]], logs: Path,
                    work: Path) -> list[Step]:
    """`residents encrypt` of `wh` (the warehouse as the full sync left it), then the
    nightly delta (the inbox as the plain delta saw it) and the same decisions on it, with
    the key."""
    key = {"RESIDENTS_WAREHOUSE_KEY": BENCH_KEY}
    encrypt = measure("encrypt", [cli, "encrypt", "--warehouse", str(wh)], logs, work, env=key)
    if not encrypt.ok:
        return [encrypt] + [Step(name, skipped="encrypt failed") for name in ENCRYPTED_STEPS[1:]]
    delta = measure("nightly delta, encrypted", [cli, "sync", "--inbox", str(inbox), "--warehouse", str(wh)],
                    logs, work, env=key)
    if not delta.ok:
        return [encrypt, delta] + [Step(name, skipped="nightly delta, encrypted failed")
                                   for name in ENCRYPTED_STEPS[2:]]
    return [encrypt, delta, *decisions(cli, wh, pair, logs, work, ", encrypted", key)]


def run_triple(cli: str, work: Path, households: int, seed: int, reuse: bool) -> tuple[Step, list[str]]:
    """Full sync of a fresh district of `households` households in WORK/3x."""
    inbox, logs = work / "inbox", work / "logs"
    work.mkdir(parents=True, exist_ok=True)
    notes = []
    if not (reuse and inbox.is_dir()):
        gen = generate(cli, inbox, households, seed, logs, "generate, 3×")
        notes.append(generated(gen))
    shutil.rmtree(work / "warehouse", ignore_errors=True)
    (work / "warehouse").mkdir()
    wh = work / "warehouse" / "warehouse.duckdb"
    step = measure(f"full sync, 3× ({households:,} hh)", [cli, "sync", "--inbox", str(inbox), "--warehouse", str(wh)],
                   logs, work)
    if step.ok:
        notes.append(f"after full sync, 3×: {warehouse_counts(wh)}")
    return step, notes


def print_table(steps: list[Step]) -> None:
    header = f"{'step':<34}{'wall s':>9}{'peak RSS MB':>13}   {'target':<22}met?"
    print("\n" + header + "\n" + "-" * len(header))
    for s in steps:
        target = TARGETS.get(s.name)
        figures = f"{'':>9}{'':>13}" if s.skipped else f"{s.seconds:>9.2f}{s.rss_mb:>13,.0f}"
        print(f"{s.name:<34}{figures}   {str(target) if target else '—':<22}{s.verdict()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=DEFAULT_HOUSEHOLDS,
                    help="households (default %(default)s ≈ 1M residents)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fp-changes", type=int, default=300, help="family-planning rows changed in the nightly delta")
    ap.add_argument("--workdir", type=Path, help="work here and keep the files (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--skip-generate", action="store_true", help="reuse the inbox already in --workdir")
    ap.add_argument("--save-full", action="store_true",
                    help="keep a copy of the warehouse after the full sync in WORKDIR/after_full")
    ap.add_argument("--from-full", action="store_true",
                    help="start from WORKDIR/after_full (saved by --save-full) instead of a full sync; "
                         "with --skip-generate")
    ap.add_argument("--no-encrypted", action="store_true",
                    help="leave out the encrypted copy's steps (encrypt, and the delta, link and unlink on it)")
    ap.add_argument("--also-3m", action="store_true",
                    help="also a full sync of 3 × --households (1,116,000 households ≈ 3M residents by default)")
    ap.add_argument("--read-only-baseline", type=Path, metavar="INBOX", help=argparse.SUPPRESS)  # the baseline child
    args = ap.parse_args()

    if args.read_only_baseline:
        print(json.dumps(read_only_baseline(args.read_only_baseline)))
        return
    if args.skip_generate and not (args.workdir and (args.workdir / "inbox").is_dir()):
        ap.error("--skip-generate needs a --workdir holding an inbox/ from an earlier run")
    if args.from_full and not (args.skip_generate and (args.workdir / "after_full").is_dir()):
        ap.error("--from-full needs --skip-generate and a --workdir holding after_full/ (from --save-full)")

    cli = residents_cli()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.skip_generate:
            put_back(work / "inbox", work / "held_out")  # an interrupted run may have left them aside
            gen_note = "generate: skipped (reusing the inbox)"
        else:
            shutil.rmtree(work / "held_out", ignore_errors=True)
            shutil.rmtree(work / "pristine", ignore_errors=True)
            gen = generate(cli, work / "inbox", args.households, args.seed, work / "logs", "generate")
            gen_note = generated(gen)
        print(gen_note, flush=True)
        reset_fp_database(work / "inbox", work / "pristine")
        steps, notes = run_steps(cli, work, args.seed, args.fp_changes, save_full=args.save_full,
                                 from_full=args.from_full, encrypted=not args.no_encrypted)
        notes.insert(0, gen_note)
        if args.also_3m:
            step, more = run_triple(cli, work / "3x", 3 * args.households, args.seed, args.skip_generate)
            steps.append(step)
            notes += more
        print_table(steps)
        print()
        print("\n".join(notes))
        print(f"waited between steps (untimed) for the spare working copies publishes started: {SPARE_WAIT[0]:.1f} s")
        print(f"work directory: {work}" + ("" if args.workdir or args.keep else " (removed)"))
    finally:
        if not (args.workdir or args.keep):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
