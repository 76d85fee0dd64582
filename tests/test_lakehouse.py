"""The shared lakehouse (`[lakehouse]`, `warehouse.lake`): every publish of the warehouse
is written into a DuckLake whose catalog is the real PostgreSQL `.ci/run` starts, read by
analysts in other processes, with earlier snapshots; a lake failure fails the lake alone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import synth
from cli import app
from flows import run_sync
from settings import ConfigError, load_settings
from tests.e2e_helpers import copy_inbox_until, export_days
from warehouse import lake
from warehouse.lake import LakeTarget

pytestmark = pytest.mark.postgres
runner = CliRunner()
PASSWORD_ENV = "RESIDENTS_TEST_LAKE_PW_REF"


def _reader_sql(catalog: str, password: str) -> list[str]:
    """What an analyst on another machine runs (extensions by path, password as a secret)."""
    return [f"LOAD '{lake.extension_path('postgres')}'", f"LOAD '{lake.extension_path('ducklake')}'",
            f"CREATE TEMPORARY SECRET lakepg (TYPE postgres, PASSWORD '{password}')",
            f"ATTACH 'ducklake:{catalog}' AS lake (READ_ONLY, METADATA_PARAMETERS MAP {{'SECRET': 'lakepg'}})"]


def _analyst(catalog: str, password: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for stmt in _reader_sql(catalog, password):
        con.execute(stmt)
    return con


def _count(con: duckdb.DuckDBPyConnection, table: str, at: str = "") -> int:
    return con.execute(f"SELECT count(*) FROM {table} {at}").fetchone()[0]


def _config(tmp_path: Path, inbox: Path, wh: Path, catalog: str) -> Path:
    toml = tmp_path / "residents.toml"
    toml.write_text(textwrap.dedent(f"""\
        inbox = "{inbox}"
        warehouse = "{wh}"
        [lakehouse]
        catalog = "{catalog}"
        data_path = "{tmp_path / 'lake'}/"
        password_env = "{PASSWORD_ENV}"
        """), encoding="utf-8")
    return toml


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lake-exports")
    synth.generate(out, households=30, seed=77, noise="clean")
    return out


def test_two_publishes_rewrite_only_what_changed_and_an_earlier_snapshot_gives_the_earlier_state(
        tmp_path, exports, lake_catalog, lake_login, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, lake_login["password"])
    days = export_days(exports)
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    copy_inbox_until(exports, inbox, days[0])
    settings = load_settings(_config(tmp_path, inbox, wh, lake_catalog))

    first = run_sync(settings)
    assert first.status == "succeeded" and first.lake["status"] == "published", first.lake
    with duckdb.connect(str(wh), read_only=True) as con:
        persons_1 = _count(con, "core.person")
        mart_1 = _count(con, "mart.person")
        ledger_1 = _count(con, "quality.load_ledger")
        objects = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name IN ('core', 'quality')"
                              ).fetchone()[0] + con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'mart' AND NOT internal").fetchone()[0]
    assert len(first.lake["replaced"]) == objects          # the first publish writes everything
    snap_1 = first.lake["snapshot"]

    # a run with nothing new publishes no snapshot (cost follows the change)
    again = run_sync(settings)
    assert again.status == "unchanged" and again.lake["status"] == "unchanged"
    assert again.lake["snapshot"] == snap_1

    copy_inbox_until(exports, inbox, days[-1])
    second = run_sync(settings)
    assert second.status == "succeeded" and second.lake["status"] == "published", second.lake
    snap_2 = second.lake["snapshot"]
    assert snap_2 > snap_1
    replaced = set(second.lake["replaced"])
    assert "quality.load_ledger" in replaced and "core.person" in replaced
    assert "quality.schema_version" not in replaced and second.lake["kept"] > 0   # unchanged: not rewritten
    with duckdb.connect(str(wh), read_only=True) as con:
        persons_2, ledger_2 = _count(con, "core.person"), _count(con, "quality.load_ledger")
        person_ids = sorted(r[0] for r in con.execute("SELECT person_id FROM core.person").fetchall())
    assert ledger_2 > ledger_1

    con = _analyst(lake_catalog, lake_login["password"])
    assert _count(con, "lake.core.person") == persons_2
    assert sorted(r[0] for r in con.execute("SELECT person_id FROM lake.core.person").fetchall()) == person_ids
    assert _count(con, "lake.quality.load_ledger") == ledger_2
    # the earlier state, by version and by time
    assert _count(con, "lake.core.person", f"AT (VERSION => {snap_1})") == persons_1
    assert _count(con, "lake.mart.person", f"AT (VERSION => {snap_1})") == mart_1
    assert _count(con, "lake.quality.load_ledger", f"AT (VERSION => {snap_1})") == ledger_1
    t1 = con.execute("SELECT snapshot_time FROM ducklake_snapshots('lake') WHERE snapshot_id = ?",
                     [snap_1]).fetchone()[0]
    assert _count(con, "lake.quality.load_ledger", f"AT (TIMESTAMP => '{t1.isoformat()}'::TIMESTAMPTZ)") == ledger_1
    # Chinese column comments travel with the data (mart: the view's comments)
    comments = dict(con.execute("SELECT column_name, comment FROM duckdb_columns() WHERE database_name = 'lake' "
                                "AND schema_name = 'mart' AND table_name = 'person'").fetchall())
    assert comments["person_id"] and all(comments.values())
    assert "*" in con.execute("SELECT citizen_id_masked FROM lake.mart.person WHERE citizen_id_masked IS NOT NULL "
                              "LIMIT 1").fetchone()[0]
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("CREATE TABLE lake.core.x AS SELECT 1")
    con.close()

    listed = runner.invoke(app, ["lake-status", "-c", str(_config(tmp_path, inbox, wh, lake_catalog))],
                           env={PASSWORD_ENV: lake_login["password"]})
    assert listed.exit_code == 0, listed.output
    assert "数据湖快照" in listed.output and str(snap_2) in listed.output

    config = str(_config(tmp_path, inbox, wh, lake_catalog))
    env = {PASSWORD_ENV: lake_login["password"]}
    sql = "SELECT count(*) FROM core.person"
    then = runner.invoke(app, ["query", "-c", config, "--lake", "--lake-version", str(snap_1), "-f", "csv", sql], env=env)
    now = runner.invoke(app, ["query", "-c", config, "--lake", "-f", "csv", sql], env=env)
    assert then.exit_code == 0 and now.exit_code == 0, then.output + now.output
    assert int(then.stdout.split()[-1]) == persons_1 and int(now.stdout.split()[-1]) == persons_2
    assert f"数据湖快照 {snap_1}" in then.stderr and f"数据湖快照 {snap_2}" in now.stderr
    too_early = runner.invoke(app, ["query", "-c", config, "--lake", "--as-of", "2000-01-01", sql], env=env)
    assert too_early.exit_code == 1 and "没有所要求的快照" in too_early.output
    refused = runner.invoke(app, ["query", "-c", config, "--lake", "DELETE FROM core.person"], env=env)
    assert refused.exit_code == 1 and "read-only" in refused.output


_READER = textwrap.dedent("""\
    import json, sys, time
    import duckdb
    stmts, out, stop = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    import os
    # one attached session, as an analyst keeps open: each read is one short transaction,
    # so many reads fall inside the publish window (connecting and attaching took ~0.45 s,
    # longer than some publishes, and left no read inside it)
    con = duckdb.connect()
    for s in stmts:
        con.execute(s)
    with open(out, "a") as fh:
        while not os.path.exists(stop):
            t0 = time.time()
            con.execute("BEGIN TRANSACTION")  # both queries at one snapshot
            n, total = con.execute("SELECT count(*), sum(v) FROM lake.core.facts").fetchone()
            ledger = con.execute("SELECT max(version) FROM lake.quality.ledger").fetchone()[0]
            con.execute("COMMIT")
            fh.write(json.dumps([t0, time.time(), n, int(total), ledger]) + "\\n")
            fh.flush()
    con.close()
    """)


def _warehouse(path: Path, version: int, rows: int) -> None:
    """A warehouse file of the shape the lake publishes (core / quality / mart)."""
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as con:
        for schema in ("core", "quality", "mart"):
            con.execute(f"CREATE SCHEMA {schema}")
        con.execute(f"CREATE TABLE core.facts AS SELECT range AS id, {version} AS v, md5(range::VARCHAR) AS pad "
                    f"FROM range({rows})")
        con.execute(f"CREATE TABLE quality.ledger AS SELECT {version} AS version")
        con.execute("CREATE VIEW mart.facts_summary AS SELECT v, count(*) AS n FROM core.facts GROUP BY v")


def test_a_reader_in_another_process_reads_consistently_while_a_publish_runs(tmp_path, lake_catalog, lake_login):
    target = LakeTarget(lake_catalog, str(tmp_path / "lake"), lake_login["password"])
    wh = tmp_path / "w.duckdb"
    _warehouse(wh, 1, 200_000)
    assert lake.publish(wh, target).status == "published"
    _warehouse(wh, 2, 600_000)

    out, stop = tmp_path / "reads.jsonl", tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", _READER, json.dumps(_reader_sql(lake_catalog, lake_login["password"])),
                               str(out), str(stop)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while (not out.exists() or not out.read_text().strip()) and time.time() < deadline:
            assert reader.poll() is None, reader.stderr.read()
            time.sleep(0.2)
        started = time.time()
        outcome = lake.publish(wh, target)
        finished = time.time()
        assert outcome.status == "published", outcome.message
        deadline = time.time() + 120   # at least one read that began after the publish ended
        while time.time() < deadline and not any(json.loads(x)[0] > finished for x in out.read_text().splitlines()):
            assert reader.poll() is None, reader.stderr.read()
            time.sleep(0.2)
    finally:
        stop.touch()
        reader.wait(timeout=120)
    assert reader.returncode == 0, reader.stderr.read()
    reads = [json.loads(x) for x in out.read_text().splitlines()]
    old, new = [200_000, 200_000, 1], [600_000, 1_200_000, 2]
    # every read (two queries in one transaction) saw one whole snapshot: old or new, never
    # a mix. Without the transaction each query may see a different snapshot (seen here).
    assert all(r[2:] in (old, new) for r in reads), reads
    # readers kept reading while the publish ran, and the snapshot they saw changed once,
    # old to new, never back: the publish commits at one point inside [started, finished]
    # (a read that began after the commit but before `publish` returned already sees the
    # new snapshot; CI once caught one 3 ms before the return, so "all old" was a race)
    during = [r for r in reads if r[0] >= started and r[1] <= finished]
    assert during, (started, finished, reads)
    seen = [r[2:] for r in sorted(reads)]
    first_new = seen.index(new)
    assert all(x == old for x in seen[:first_new]) and all(x == new for x in seen[first_new:]), reads
    assert all(r[2:] == old for r in reads if r[1] <= started), reads   # before the publish: old
    assert all(r[2:] == new for r in reads if r[0] >= finished), reads  # after it: new
    assert reads[-1][2:] == new


def test_a_wrong_catalog_password_fails_the_lake_alone_and_the_next_run_catches_up(
        tmp_path, exports, lake_catalog, lake_login, monkeypatch):
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    copy_inbox_until(exports, inbox, export_days(exports)[0])
    config = _config(tmp_path, inbox, wh, lake_catalog)
    wrong = "not-" + lake_login["password"]

    result = runner.invoke(app, ["sync", "-c", str(config)], env={PASSWORD_ENV: wrong})
    assert result.exit_code == 4, result.output               # published, but partly failed
    assert "数据湖发布失败" in result.stderr and "密码错误" in result.stderr
    assert "仓库已正常发布" in result.stderr and wrong not in result.output
    with duckdb.connect(str(wh), read_only=True) as con:   # the warehouse was published all the same
        persons = _count(con, "core.person")
        assert persons > 0 and _count(con, "quality.run") == 1

    missing = runner.invoke(app, ["sync", "-c", str(config)], env={PASSWORD_ENV: None})
    assert missing.exit_code == 4 and f"环境变量 {PASSWORD_ENV} 未设置" in missing.stderr

    # nothing new in the inbox: the next run still brings the lake up to date
    monkeypatch.setenv(PASSWORD_ENV, lake_login["password"])
    retry = run_sync(load_settings(config, env={}))
    assert retry.status == "unchanged" and retry.lake["status"] == "published", retry.lake
    con = _analyst(lake_catalog, lake_login["password"])
    assert _count(con, "lake.core.person") == persons
    con.close()


def test_the_catalog_setting_refuses_a_password_and_never_echoes_it(tmp_path):
    toml = tmp_path / "r.toml"
    toml.write_text('[lakehouse]\ncatalog = "postgres:dbname=l host=h user=u password=s3cret"\n'
                    'data_path = "/shared/lake/"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(toml, env={})
    assert "password_env" in str(err.value) and "s3cret" not in str(err.value)
