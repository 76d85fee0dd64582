"""Incremental vs full resolution (pipelines.resolve.resolve_mentions): when a nightly
run may link only the new mentions with the stored model, and when it must re-cluster."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import pipelines.linkage
import synth
from pipelines.linkage import LinkageModel, linkage_frame, probabilistic_clusters
from pipelines.resolve import assign_person_ids, incremental_obstacle, resolve_mentions
from flows import run_sync
from settings import load_settings
from tests.test_linkage_model import ROWS, make_mentions

EMPTY_X = pd.DataFrame(columns=["mention_id", "person_id", "match_method", "match_probability"])
EMPTY_P = pd.DataFrame(columns=["person_id", "citizen_id"])
NEW = ["j3", "h3", "tB2"]


@pytest.fixture(scope="module")
def mentions() -> pd.DataFrame:
    return make_mentions(ROWS)


@pytest.fixture(scope="module")
def stored(mentions) -> dict:
    """The stored settings of a model trained on all mentions (as the warehouse keeps them)."""
    return json.loads(json.dumps(LinkageModel().fit(linkage_frame(mentions)).stored_settings()))


def _published(old: pd.DataFrame, model: LinkageModel) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    res = assign_person_ids(old, probabilistic_clusters(old, model=model), EMPTY_X[["mention_id", "person_id"]],
                            EMPTY_P)
    persons = res.xref.merge(old[["mention_id", "citizen_id"]]).groupby("person_id")["citizen_id"].min()
    return res.xref, persons.reset_index(), res.next_sequence


def _no_full_run(*_a, **_k):
    raise AssertionError("the incremental run re-clustered everything")


def test_obstacles_to_an_incremental_run(mentions) -> None:
    xref = pd.DataFrame({"mention_id": mentions["mention_id"], "person_id": "P1"})
    n = len(mentions)
    assert incremental_obstacle(mentions, xref.iloc[:0], {"mentions": n}) == "first_load"
    assert incremental_obstacle(mentions, xref, None) == "no_stored_model"
    assert incremental_obstacle(mentions, xref, {"mentions": n}) == "small_warehouse"
    assert incremental_obstacle(mentions, xref, {"mentions": n}, min_mentions=0) is None
    assert incremental_obstacle(mentions, xref, {"mentions": int(n / 1.2)}, min_mentions=0) == "model_stale"
    assert incremental_obstacle(mentions, xref, {}, min_mentions=0) == "model_stale"  # stored before training facts


def test_model_staleness_follows_the_population_not_restated_records() -> None:
    trained = {"mentions": 1_000_000, "citizen_ids": 500_000}
    kw = dict(min_mentions=0, max_drift=0.05, max_mention_growth=0.25)
    # two more monthly rosters restating 40,000 known people each: same population, still fresh
    assert incremental_obstacle(1_080_000, 1, trained, citizen_ids=501_000, **kw) is None
    # 6 % more people: stale
    assert incremental_obstacle(1_080_000, 1, trained, citizen_ids=530_001, **kw) == "model_stale"
    # restatements pile up past the mention bound: retrained all the same
    assert incremental_obstacle(1_250_001, 1, trained, citizen_ids=500_000, **kw) == "model_stale"
    # a model stored before the population was recorded: judged by its mentions
    assert incremental_obstacle(1_080_000, 1, {"mentions": 1_000_000}, citizen_ids=500_000, **kw) == "model_stale"


def test_incremental_run_on_an_unchanged_model_links_only_the_new_mentions(mentions, stored, monkeypatch) -> None:
    old = mentions[~mentions["mention_id"].isin(NEW)]
    xref, persons, seq = _published(old, LinkageModel.from_settings(stored))
    monkeypatch.setattr(pipelines.linkage, "resolve_probabilistic", _no_full_run)
    linked = resolve_mentions(mentions, None, None, xref, persons, seq, mode="incremental", model_settings=stored,
                              min_incremental_mentions=0)
    assert linked.mode == "incremental" and linked.why == ""
    assert linked.model_settings == stored  # the model is reused as it was stored
    pid = linked.resolution.xref.set_index("mention_id")["person_id"]
    before = xref.set_index("mention_id")["person_id"]
    assert (pid[before.index] == before).all()  # no existing mention changed person
    assert pid["j3"] == pid["j1"] and pid["h3"] == pid["h1"] and pid["tB2"] == pid["tB1"]
    assert linked.resolution.merge_log.empty
    got = linked.resolution.xref.set_index("mention_id")
    assert got.loc["j3", "match_method"] == "probabilistic" and got.loc["j3", "match_probability"] >= 0.999


def test_a_new_mention_bridging_two_persons_forces_a_full_run(mentions, stored) -> None:
    old = mentions[~mentions["mention_id"].isin(NEW)]
    xref, persons, seq = _published(old, LinkageModel.from_settings(stored))
    # pretend an earlier run kept j2 apart from j1 (they share a valid ID: one person)
    xref = xref.copy()
    xref.loc[xref["mention_id"] == "j2", "person_id"] = "P0000009999"
    persons = pd.concat([persons, pd.DataFrame({"person_id": ["P0000009999"], "citizen_id": [None]})])
    linked = resolve_mentions(mentions, None, None, xref, persons, 10000, mode="incremental", model_settings=stored,
                              min_incremental_mentions=0)
    assert (linked.mode, linked.why) == ("full", "bridge")
    pid = linked.resolution.xref.set_index("mention_id")["person_id"]
    assert pid["j1"] == pid["j2"] == pid["j3"]
    log = linked.resolution.merge_log
    assert ((log["event"] == "merge") & (log["from_person_id"] == "P0000009999")).any()


def test_a_small_warehouse_or_a_stale_model_resolves_fully(mentions, stored) -> None:
    old = mentions[~mentions["mention_id"].isin(NEW)]
    xref, persons, seq = _published(old, LinkageModel.from_settings(stored))
    linked = resolve_mentions(mentions, None, None, xref, persons, seq, mode="incremental", model_settings=stored)
    assert (linked.mode, linked.why) == ("full", "small_warehouse")
    stale = json.loads(json.dumps(stored))
    stale["residents_training"]["mentions"] = len(old) // 2
    linked = resolve_mentions(mentions, None, None, xref, persons, seq, mode="incremental", model_settings=stale,
                              min_incremental_mentions=0)
    assert (linked.mode, linked.why) == ("full", "model_stale")
    assert linked.model_settings["residents_training"]["mentions"] == len(mentions)  # retrained


# ------------------------------------------------------------------ through the sync
@pytest.mark.slow
def test_nightly_sync_on_an_unchanged_model_is_incremental(tmp_path, monkeypatch) -> None:
    inbox = tmp_path / "inbox"
    synth.generate(inbox, households=60, seed=21, noise="realistic", days=3)
    # the nightly case: the month's low-income roster arrives after everything else (most
    # of its people are on last month's roster already)
    roster = max((inbox / "low_income").glob("*.xlsx"))
    daily, wh = tmp_path / "daily", tmp_path / "w.duckdb"
    shutil.copytree(inbox, daily, ignore=shutil.ignore_patterns(roster.name, "_truth"))
    # a warehouse this small resolves fully; configure it as a large one with a fresh model
    settings = load_settings(inbox=daily, warehouse=wh, incremental_min_mentions=0, incremental_max_growth=10.0)
    assert run_sync(settings).status == "succeeded"
    before = _read(wh)
    assert before["model"]["mode"].tolist() == ["full"]

    monkeypatch.setattr(pipelines.linkage.LinkageModel, "fit", _no_full_run)  # no retraining
    shutil.copy2(roster, daily / "low_income" / roster.name)
    summary = run_sync(settings)
    assert summary.status == "succeeded" and summary.resolution_mode == "incremental"
    after = _read(wh)
    assert after["model"]["mode"].tolist() == ["full", "incremental"]
    s0, s1 = (json.loads(s) for s in after["model"]["settings"])
    assert s0 == s1  # the stored model was reused, not retrained
    new = set(after["xref"]["mention_id"]) - set(before["xref"]["mention_id"])
    assert new, "the last day should bring new mentions"
    # existing mentions keep their persons
    kept = before["xref"].merge(after["xref"], on="mention_id", suffixes=("_0", "_1"))
    assert (kept["person_id_0"] == kept["person_id_1"]).all()
    # and some new mentions joined existing persons
    joined = after["xref"][after["xref"]["mention_id"].isin(new)
                           & after["xref"]["person_id"].isin(set(before["xref"]["person_id"]))]
    assert len(joined) > 0


def _read(wh: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return {"model": con.execute("SELECT mode, settings FROM quality.linkage_model ORDER BY trained_at").df(),
                "xref": con.execute("SELECT mention_id, person_id FROM core.person_xref").df()}
    finally:
        con.close()


def test_the_linkage_index_computed_in_parts_equals_it_computed_whole(tmp_path) -> None:
    """A first load computes the features of every mention a part at a time (each part
    with its relationship partners, `resolution.refresh_linkage_index`); parts of 37
    mentions give exactly the index one part gives."""
    import resolution
    from warehouse.linkage_index import STG_LINKAGE_FEATURE

    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    synth.generate(inbox, households=40, seed=5, noise="realistic", days=2)
    assert run_sync(load_settings(inbox=inbox, warehouse=wh)).status == "succeeded"
    con = duckdb.connect(str(wh))
    try:
        n_rel = con.execute("SELECT count(*) FROM stg.relationship").fetchall()[0][0]
        assert n_rel > 0, "the inbox should hold relationships (partners in other parts)"
        cols = ", ".join(f'"{c}"' for c in STG_LINKAGE_FEATURE.column_names)

        def index() -> pd.DataFrame:
            return con.execute(f"SELECT {cols} FROM {STG_LINKAGE_FEATURE.qualified} ORDER BY unique_id").df()

        whole = index()
        n, _ = resolution.refresh_linkage_index(con, None, everything=True, part=37)
        parts = index()
        assert n == len(whole) > 37 * 3
        # a roster household split across parts still sees all its members' birth dates
        assert parts["sole_in_household"].notna().any()
        resolution.refresh_linkage_index(con, None, everything=True, part=10**9)
        pd.testing.assert_frame_equal(index(), parts)
        # the sync's own index (district completed) differs only where the district matters
        assert set(parts["unique_id"]) == set(whole["unique_id"])
    finally:
        con.close()


@pytest.mark.parametrize("copy_share", [0.0, 1.0], ids=["through-the-index", "rows-copied-out"])
def test_name_frequencies_of_the_index_are_those_of_the_whole_frame(tmp_path, monkeypatch, copy_share):
    """A local resolution judges a name rare or common (`plain_evidence`) by its
    frequency among all current mentions, read from the index in SQL: the same numbers
    `pipelines.linkage.name_frequencies` gives on the whole linkage frame — counted
    through the whole index (many mentions asked) or from the rows sharing their names
    copied out first (a few)."""
    from pipelines.linkage import name_frequencies
    from warehouse import linkage_index as index

    monkeypatch.setattr(index, "_NF_COPY_SHARE", copy_share)

    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    synth.generate(inbox, households=60, seed=9, noise="hard", days=2)
    assert run_sync(load_settings(inbox=inbox, warehouse=wh)).status == "succeeded"
    con = duckdb.connect(str(wh))
    try:
        # a record twice in one table (its copy under another id): a namesake key
        con.execute("""INSERT INTO stg.linkage_feature SELECT * REPLACE (unique_id || '#copy' AS unique_id)
                       FROM stg.linkage_feature WHERE name_s IS NOT NULL AND birth IS NOT NULL AND sex IS NOT NULL
                       ORDER BY unique_id LIMIT 1""")
        lf = index.features(con)
        whole = name_frequencies(lf)
        some = lf["unique_id"].iloc[::7].tolist() + [lf["unique_id"][lf["unique_id"].str.endswith("#copy")].iloc[0]]
        full, given, span, ambiguous, sound, ambiguous_sound = index.name_frequencies(con, some)
    finally:
        con.close()
    assert span == whole.span_days
    assert len(whole.ambiguous) >= 1 and len(whole.ambiguous_sound) >= 1
    assert ambiguous == {k for k in whole.ambiguous if k.split("|")[0] in set(lf.set_index("unique_id").loc[some, "name_s"])}
    sounds = set(lf.set_index("unique_id").loc[some, "name_py"].dropna())
    assert ambiguous_sound == {k for k in whole.ambiguous_sound if k.split("|")[0] in sounds}
    assert set(sound.index) == sounds and all(whole.sound[p] == k for p, k in sound.items())
    names = set(lf.set_index("unique_id").loc[some, "name_s"].dropna())
    assert set(full.index) == names and len(names) > 5
    pd.testing.assert_series_equal(full.sort_index(), whole.full[sorted(names)].sort_index(), check_names=False,
                                   check_dtype=False, check_index_type=False)
    assert len(given) > 0 and all(whole.given[g] == k for g, k in given.items())


def test_scoring_beside_the_lookups_runs_on_a_thread_or_in_place_and_raises_at_result():
    """`resolution._beside`: the local resolution's scoring runs on a thread of its own
    (in place on the Spark engine); either way its error surfaces at `result()`."""
    import threading

    from resolution import _beside

    for threaded in (True, False):
        with _beside(threaded) as run:
            where = run(lambda: threading.current_thread().name)
            failed = run(lambda: 1 / 0)
        assert where.result().startswith("score") is threaded
        with pytest.raises(ZeroDivisionError):
            failed.result()


def _surveys_compared(monkeypatch) -> list[dict]:
    """Spy on `linkage_index.changes`: each call a sync makes with its exports is compared with
    the survey of every mention on the same state; returns the comparisons."""
    from warehouse import linkage_index

    seen: list[dict] = []
    original = linkage_index.changes

    def spy(con, *, everything=False, exports=None):
        whole, whole_targets = original(con, everything=everything)
        got, targets = original(con, everything=everything, exports=exports)
        seen.append({"exact": got.exact, "same": (
            got.new == whole.new and got.changed == whole.changed and targets == whole_targets
            and got.removed.reset_index(drop=True).equals(whole.removed.reset_index(drop=True))),
            "new": len(got.new), "changed": len(got.changed), "removed": len(got.removed)})
        return got, targets

    monkeypatch.setattr(linkage_index, "changes", spy)
    return seen


def _nightly_inbox(tmp_path: Path, seed: int) -> tuple[Path, Path]:
    """A first load (`daily`) without the last roster month, and that month's file."""
    inbox = tmp_path / "inbox"
    synth.generate(inbox, households=60, seed=seed, noise="realistic", days=3)
    roster = max((inbox / "low_income").glob("*.xlsx"))
    daily = tmp_path / "daily"
    shutil.copytree(inbox, daily, ignore=shutil.ignore_patterns(roster.name, "_truth"))
    return daily, roster


def test_a_nightly_survey_of_what_the_run_staged_equals_the_survey_of_every_mention(tmp_path, monkeypatch) -> None:
    """`linkage_index.changes` with the run surveys only the exports it staged (a roster
    month, a correction replacing records of an earlier file, a file delivered again with
    a row fewer, family-planning rows changed at the source, one naming a person fewer:
    new, changed and removed mentions), proven complete by digests: the same changes and
    targets as the survey of every mention."""
    from tests.benchmarks.bench_scale import FP_DATABASE, apply_fp_changes

    daily, roster = _nightly_inbox(tmp_path, seed=23)
    wh = tmp_path / "w.duckdb"
    settings = load_settings(inbox=daily, warehouse=wh, incremental_min_mentions=0, incremental_max_growth=10.0)
    assert run_sync(settings).status == "succeeded"
    shutil.copy2(roster, daily / "low_income" / roster.name)
    # a correction of the first cremation file restating two of its records: their
    # mentions in that file are replaced by the correction's
    first = min((daily / "civil_affairs").glob("火化信息_*.csv"))
    lines = first.read_bytes().split(b"\r\n")
    (first.parent / f"{first.stem}_补报.csv").write_bytes(b"\r\n".join(lines[:3]) + b"\r\n")
    # the first floating-population file delivered again under its name without its last
    # row: the export it replaces is superseded, that row's mention removed
    floating = max((p for p in (daily / "floating_population").glob("*.csv") if "补报" not in p.name),
                   key=lambda p: p.stat().st_size)
    rows = floating.read_bytes().rstrip(b"\r\n").split(b"\r\n")
    floating.write_bytes(b"\r\n".join(rows[:-1]) + b"\r\n")
    assert apply_fp_changes(daily / FP_DATABASE, 12, seed=3) == 12
    # a woman's spouse dropped at the source: her record staged again names one person fewer
    src = sqlite3.connect(daily / FP_DATABASE)
    try:
        (ylfn_id,) = src.execute("SELECT YLFN_ID FROM T_YLFN WHERE SCBZ = 0 AND coalesce(POXM, '') <> '' "
                                 "ORDER BY YLFN_ID LIMIT 1").fetchone()
        src.execute("UPDATE T_YLFN SET POXM = NULL, POSFZH = NULL, POCSRQ = NULL, "
                    "GXSJ = datetime((SELECT max(GXSJ) FROM T_YLFN), '+1 day') WHERE YLFN_ID = ?", [ylfn_id])
        src.commit()
    finally:
        src.close()
    seen = _surveys_compared(monkeypatch)
    summary = run_sync(settings)
    assert summary.status == "succeeded" and summary.resolution_mode == "incremental"
    assert seen == [{"exact": True, "same": True, "new": seen[0]["new"], "changed": seen[0]["changed"],
                     "removed": seen[0]["removed"]}]
    # a spouse, two corrected records, a row no longer delivered
    assert seen[0]["new"] > 0 and seen[0]["changed"] > 0 and seen[0]["removed"] >= 4
    from warehouse.linkage_index import is_complete

    con = duckdb.connect(str(wh), read_only=True)
    try:
        assert is_complete(con)
    finally:
        con.close()


def test_a_change_outside_the_run_falls_back_to_the_survey_of_every_mention(tmp_path, monkeypatch) -> None:
    """Anything the run did not stage that is not as a resolution left it — a mention of
    an earlier export without its index row, another no longer resolved — fails the
    digests: the survey reads every mention, and the sync repairs both."""
    daily, roster = _nightly_inbox(tmp_path, seed=29)
    wh = tmp_path / "w.duckdb"
    settings = load_settings(inbox=daily, warehouse=wh, incremental_min_mentions=0, incremental_max_growth=10.0)
    assert run_sync(settings).status == "succeeded"
    con = duckdb.connect(str(wh))
    try:
        unindexed, unresolved = (r[0] for r in con.execute(
            "SELECT mention_id FROM core.person_xref ORDER BY mention_id LIMIT 2").fetchall())
        con.execute("DELETE FROM stg.linkage_feature WHERE unique_id = ?", [unindexed])
        con.execute("DELETE FROM core.person_xref WHERE mention_id = ?", [unresolved])
    finally:
        con.close()
    shutil.copy2(roster, daily / "low_income" / roster.name)
    seen = _surveys_compared(monkeypatch)
    assert run_sync(settings).status == "succeeded"
    assert [(s["exact"], s["same"]) for s in seen] == [(False, True)]
    con = duckdb.connect(str(wh), read_only=True)
    try:
        from warehouse.linkage_index import is_complete

        assert is_complete(con)
        assert con.execute("SELECT count(*) FROM core.person_xref WHERE mention_id = ?", [unresolved]
                           ).fetchall()[0][0] == 1
    finally:
        con.close()
