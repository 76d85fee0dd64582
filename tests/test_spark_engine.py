"""Person resolution on Spark (`--engine spark`): the same comparisons and blocking rules
as the embedded DuckDB engine, scored by Splink's Spark backend on a local Spark
(`local[2]`), give the same pairs, the same persons and the same accuracy.

Needs Java 17+ and pyspark: missing, the Spark tests skip locally and fail under CI=true
(`.ci/run` installs openjdk-17-jre-headless)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

import synth
from cli import app
from tests.benchmarks.accuracy import pairwise, score_warehouse

runner = CliRunner()
HOUSEHOLDS = 200


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """One local[2] session for the module (the engine reuses an active session)."""
    import engines

    why = engines.spark_available()
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Spark cannot start but CI=true: {why} (.ci/run installs openjdk-17-jre-headless)")
        pytest.skip(f"Spark cannot start here: {why}")
    with engines.spark_session("local[2]", tmp_path_factory.mktemp("spark"), partitions=4) as session:
        yield session


#: below this many mentions every sync re-clusters fully: 0 makes the small test inbox's
#: second night incremental, as a large district's is
SMALL = {"RESIDENTS_INCREMENTAL_MIN_MENTIONS": "0"}


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spark_inbox") / "inbox"
    synth.generate(out, households=HOUSEHOLDS, seed=11, noise="realistic")
    return out


def nightly(inbox: Path, tmp_path: Path, load) -> Path:
    """Two nights: the inbox without its last floating-population export, then with it.
    `load(inbox_copy, night)` runs one sync. Returns the copied inbox."""
    local = tmp_path / "inbox"
    shutil.copytree(inbox, local)
    late = max((local / "floating_population").glob("*.csv"), key=lambda f: re.sub(r"\D", "", f.name))
    held = tmp_path / late.name
    late.rename(held)
    load(local, 1)
    held.rename(late)
    load(local, 2)
    return local


@pytest.fixture(scope="module")
def duckdb_warehouse(inbox, tmp_path_factory) -> Path:
    """The default engine, two nights, the second incremental."""
    from flows import run_sync
    from settings import load_settings

    base = tmp_path_factory.mktemp("duck")
    wh = base / "w.duckdb"

    def load(local: Path, night: int) -> None:
        summary = run_sync(load_settings(env=SMALL, inbox=local, warehouse=wh, lock_timeout_s=30))
        assert summary.status == "succeeded" and summary.engine == "duckdb"
        assert summary.resolution_mode == ("full" if night == 1 else "incremental")

    nightly(inbox, base, load)
    return wh


def _xref(warehouse: Path) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("SELECT mention_id, person_id FROM core.person_xref ORDER BY mention_id").df()
    finally:
        con.close()


def test_the_session_keeps_its_files_in_the_work_directory(spark, tmp_path_factory):
    """Spark's own scratch and SQL warehouse folders are under the engine's work directory,
    never in the directory the command was run from (Spark's default `./spark-warehouse`)."""
    base = tmp_path_factory.getbasetemp().resolve()
    conf = spark.sparkContext.getConf()
    assert Path(conf.get("spark.local.dir")).resolve().is_relative_to(base)
    warehouse_dir = conf.get("spark.sql.warehouse.dir")
    assert warehouse_dir.startswith("file:") and Path(warehouse_dir.removeprefix("file:")).resolve().is_relative_to(base)


def test_conditions_translate_to_spark_sql():
    """Every declared level and blocking rule has a Spark form without DuckDB-only functions."""
    from pipelines.linkage.comparisons import BLOCKING_RULES, COMPARISONS
    from pipelines.linkage.spark import spark_sql

    sqls = [spark_sql(lv.sql) for c in COMPARISONS for lv in c.levels] + [spark_sql(b.sql) for b in BLOCKING_RULES]
    text = " ".join(sqls).lower()
    for duck_only in ("list_intersect", "len(", "date_diff", "length(addr", "length(ctx"):
        assert duck_only not in text
    assert "size(array_intersect(addr_flats_l, addr_flats_r)) > 0" in text
    assert "abs(datediff(birth_r, birth_l)) <= 3" in text


def test_spark_scores_the_same_pairs_as_duckdb(spark, duckdb_warehouse, tmp_path):
    """Same trained model, same linkage frame: Spark finds and scores exactly the pairs
    DuckDB does, each comparison at the same level, the same probability."""
    from pipelines.linkage import LinkageModel
    from pipelines.linkage.spark import SparkScorer
    from warehouse import linkage_index as index

    con = duckdb.connect(str(duckdb_warehouse), read_only=True)
    try:
        lf = index.features(con)
    finally:
        con.close()
    model = LinkageModel().fit(lf)
    on_duckdb = model.predict(threshold=1e-9)
    model.scorer = SparkScorer(spark, tmp_path / "exchange")
    on_spark = model.predict(threshold=1e-9)
    assert model.scorer.last_run["pairs"] == len(on_spark) > 100
    assert not any((tmp_path / "exchange").iterdir())  # the Parquet exchange is cleaned up
    key = ["unique_id_l", "unique_id_r"]
    both = on_duckdb.merge(on_spark, on=key, how="outer", suffixes=("_d", "_s"), indicator=True)
    assert (both["_merge"] == "both").all(), both["_merge"].value_counts()
    for g in [c for c in on_duckdb.columns if c.startswith("gamma_")]:
        assert (both[f"{g}_d"] == both[f"{g}_s"]).all(), g
    assert (both["match_probability_d"] - both["match_probability_s"]).abs().max() < 1e-9

    # the incremental step: new × (new + existing) only
    new, old = lf.iloc[-40:].reset_index(drop=True), lf.iloc[:-40].reset_index(drop=True)
    on_spark = model.predict_new(new, old, threshold=1e-9)
    model.scorer = None
    on_duckdb = model.predict_new(new, old, threshold=1e-9)
    assert len(on_duckdb) > 10
    both = on_duckdb.merge(on_spark, on=key, how="outer", suffixes=("_d", "_s"), indicator=True)
    assert (both["_merge"] == "both").all(), both["_merge"].value_counts()
    assert (both["match_probability_d"] - both["match_probability_s"]).abs().max() < 1e-9


def test_sync_on_spark_gives_the_same_persons(spark, inbox, duckdb_warehouse, tmp_path, monkeypatch):
    """`residents sync --engine spark` end to end into a warehouse, two nights (the second
    incremental: new mentions attached to published persons, scored on Spark): the same
    persons as the default engine (pairwise F1 between the two ≥ 0.999; here, without
    ties, identical ids) and the same accuracy against the generator's truth."""
    for k, v in SMALL.items():
        monkeypatch.setenv(k, v)
    wh = tmp_path / "spark.duckdb"

    def load(local: Path, night: int) -> None:
        r = runner.invoke(app, ["sync", "--inbox", str(local), "--warehouse", str(wh),
                                "--engine", "spark", "--spark-master", "local[2]"])
        assert r.exit_code == 0, r.output
        # night 1 builds in full: its set work on Spark; night 2's scoped build stays in DuckDB
        mode, build_on = ("full", "spark") if night == 1 else ("incremental", "duckdb")
        assert f"解析引擎：spark（人员解析：{mode}；构建汇总：{build_on}）" in r.output, r.output

    nightly(inbox, tmp_path, load)
    duck, on_spark = _xref(duckdb_warehouse), _xref(wh)
    both = duck.merge(on_spark, on="mention_id", suffixes=("_d", "_s"))
    assert len(both) == len(duck) == len(on_spark)
    agreement = pairwise(both["person_id_s"], both["person_id_d"])
    assert agreement["f1"] >= 0.999, agreement
    assert (both["person_id_d"] == both["person_id_s"]).all()
    acc_d, acc_s = score_warehouse(duckdb_warehouse, inbox), score_warehouse(wh, inbox)
    for k in ("precision", "recall", "f1", "pred_persons"):
        assert acc_s[k] == acc_d[k], (k, acc_d, acc_s)
    assert acc_s["f1"] > 0.98
    con = duckdb.connect(str(wh), read_only=True)
    try:
        mode = con.execute("SELECT count(*) FROM core.person").fetchall()[0][0]
    finally:
        con.close()
    assert mode == acc_s["pred_persons"]
    for table in ("core.person", "core.address", "core.person_address", "core.alert"):
        assert _rows(wh, table) == _rows(duckdb_warehouse, table), table


def _rows(warehouse: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return sorted(map(repr, con.execute(f"SELECT * FROM {table}").fetchall()))
    finally:
        con.close()


def test_a_full_build_on_spark_equals_the_build_in_duckdb(spark, duckdb_warehouse, tmp_path):
    """The full build's set work (golden records, best address parses: `warehouse.sets`)
    run on Spark over Parquet gives every core table exactly as the build in DuckDB."""
    import engines
    from warehouse import build
    from warehouse.ddl import core_tables

    wh = tmp_path / "w.duckdb"
    shutil.copyfile(duckdb_warehouse, wh)
    con = duckdb.connect(str(wh))
    try:
        before = {t.qualified: sorted(map(repr, con.execute(f"SELECT * FROM {t.qualified}").fetchall()))
                  for t in core_tables()}
        assert len(before["core.person"]) > 100 and len(before["core.address"]) > 50
        build.build_core(con, sets=engines.SparkSql(spark), sets_dir=tmp_path / "sets")
        for t in core_tables():
            after = sorted(map(repr, con.execute(f"SELECT * FROM {t.qualified}").fetchall()))
            assert after == before[t.qualified], t.qualified
    finally:
        con.close()
    assert not any((tmp_path / "sets").iterdir())  # the exchange files are removed


@pytest.mark.parametrize("args,key", [(["--engine", "sparc"], "engine"),
                                      (["--engine", "spark", "--spark-master", "localhost:7077"], "spark_master")])
def test_bad_engine_settings_are_config_errors(tmp_path, args, key):
    r = runner.invoke(app, ["sync", "--inbox", str(tmp_path), "--warehouse", str(tmp_path / "w.duckdb"), *args])
    assert r.exit_code == 2, r.output
    assert "配置值无效" in r.output and key in r.output


def test_engine_settings_from_file_and_environment(tmp_path):
    from settings import ConfigError, load_settings

    cfg = tmp_path / "residents.toml"
    cfg.write_text('engine = "spark"\nspark_master = "spark://10.0.0.5:7077"\n', encoding="utf-8")
    s = load_settings(cfg, env={})
    assert (s.engine, s.spark_master) == ("spark", "spark://10.0.0.5:7077")
    assert load_settings(env={}).engine == "duckdb" and load_settings(env={}).spark_master == "local[2]"
    assert load_settings(env={"RESIDENTS_SPARK_MASTER": "local[*]"}).spark_master == "local[*]"
    with pytest.raises(ConfigError) as e:
        load_settings(env={"RESIDENTS_ENGINE": "hadoop"})
    assert e.value.key == "engine" and "环境变量" in str(e.value)


def test_spark_without_java_is_a_config_error_before_anything_is_read(tmp_path, monkeypatch):
    """No Java (or no pyspark) with engine = spark: exit 2 naming the engine and why, and
    no warehouse written."""
    import engines

    monkeypatch.setattr(engines, "java_version", lambda: None)
    wh = tmp_path / "w.duckdb"
    r = runner.invoke(app, ["sync", "--inbox", str(tmp_path), "--warehouse", str(wh), "--engine", "spark"])
    assert r.exit_code == 2, r.output
    assert "配置项 engine" in r.output and "Java" in r.output
    assert not wh.exists()
