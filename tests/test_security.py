"""Issue 11: the query door, encryption at rest, owner-only files, inbox symlinks, secrets
kept out of settings files and run records, and the masked IDs of `mart`.

Every attack asserts its refusal (Chinese message, exit code 1) and that nothing was
written or read: no file appears, the warehouse and other databases keep their bytes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import synth
from flows import run_sync
from settings import ConfigError, load_settings
from warehouse import store

runner = CliRunner()


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sec") / "inbox"
    synth.generate(out, households=30, seed=11, noise="realistic", days=2)
    return out


@pytest.fixture(scope="module")
def pseudonym_env(tmp_path_factory) -> dict[str, str]:
    return {"RESIDENTS_PSEUDONYM_KEY": "test-pseudonym-secret"}


@pytest.fixture(scope="module")
def loaded(inbox, tmp_path_factory, pseudonym_env) -> Path:
    wh = tmp_path_factory.mktemp("wh") / "data" / "warehouse.duckdb"
    settings = load_settings(inbox=inbox, warehouse=wh, lock_timeout_s=30, env=pseudonym_env)
    assert run_sync(settings).status == "succeeded"
    return wh


def _cli(*args: str, env: dict[str, str] | None = None):
    from cli import app

    return runner.invoke(app, list(args), env=env)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------
# the query door
# --------------------------------------------------------------------------------------
def _attacks(wh: Path, other: Path) -> list[tuple[str, str]]:
    """(SQL, what the refusal must say) for every attack of the issue, and a few more."""
    return [
        ("COPY core.person TO 'leak.csv'", "COPY"),
        ("COPY (SELECT citizen_id FROM core.person) TO 'leak2.csv' (FORMAT csv)", "COPY"),
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
        ("SELECT * FROM read_blob('/etc/passwd')", "disabled by configuration"),
        ("SELECT * FROM read_text('/etc/hostname')", "disabled by configuration"),
        ("SELECT * FROM read_parquet('/etc/passwd')", "disabled by configuration"),
        ("EXPORT DATABASE 'exported'", "EXPORT"),
        (f"ATTACH '{other}' AS o (READ_ONLY false)", "ATTACH"),
        (f"SELECT * FROM '{other}'", ""),
        ("DROP TABLE core.person CASCADE", "DROP"),
        (f"COPY (SELECT 'x') TO '{wh}'", "COPY"),
        ("INSTALL httpfs", "扩展"),
        ("LOAD httpfs", "扩展"),
        ("SET enable_external_access = true", "设置"),
        ("RESET enable_external_access", ""),
        ("SELECT 1; COPY core.person TO 'leak3.csv'", "2 条语句"),
        ("SELECT 1; SELECT 2", "2 条语句"),
        ("EXPLAIN ANALYZE COPY core.person TO 'leak4.csv'", "EXPLAIN"),
        ("CREATE TEMP TABLE t AS SELECT * FROM core.person", "CREATE"),
        ("PIVOT core.person ON gender", ""),
        ("CALL pragma_version()", "CALL"),
        ("CHECKPOINT", ""),
        ("SELECT * FROM glob('/etc/*')", "disabled by configuration"),
    ]


def test_every_attack_on_the_query_door_is_refused_and_nothing_is_written(loaded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE keep AS SELECT 42 AS v")
    con.close()
    before_wh = _tree(loaded.parent)
    before_here = _tree(tmp_path)
    for sql, says in _attacks(loaded, other):
        result = _cli("query", sql, "--warehouse", str(loaded))
        assert result.exit_code == 1, (sql, result.output)
        assert ("查询被拒绝" in result.output or "只读查询失败" in result.output), (sql, result.output)
        assert says in result.output, (sql, result.output)
        assert "root:" not in result.output  # nothing of /etc/passwd
    assert _tree(tmp_path) == before_here, "an attack wrote or changed a file in the working directory"
    # the only write: each refusal is recorded in the audit journal (issue 11 item 5)
    journal = loaded.with_name(loaded.name + ".audit.jsonl")
    after_wh = _tree(loaded.parent)
    entries = [json.loads(line) for line in after_wh.pop(journal.name, b"").decode().splitlines() if line.strip()]
    before_wh.pop(journal.name, None)
    assert after_wh == before_wh, "an attack changed the warehouse folder"
    refused = [e for e in entries if e.get("action") == "query" and e.get("outcome") in ("refused", "failed")]
    assert len(refused) >= len(_attacks(loaded, other)), entries[-3:]
    con = duckdb.connect(str(other), read_only=True)
    assert con.execute("SELECT v FROM keep").fetchall() == [(42,)]
    con.close()


def test_read_only_kinds_still_run(loaded):
    for sql in ("SELECT count(*) FROM core.person", "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
                "FROM mart.person SELECT count(*)", "DESCRIBE core.person", "SHOW TABLES",
                "EXPLAIN SELECT * FROM core.person", "SUMMARIZE SELECT gender FROM core.person",
                "EXPLAIN ANALYZE SELECT count(*) FROM core.person"):
        result = _cli("query", sql, "--warehouse", str(loaded), "--format", "csv")
        assert result.exit_code == 0, (sql, result.output)


def test_check_user_sql_uses_duckdbs_parser():
    from warehouse.exceptions import QueryRefusedError
    from warehouse.queries import check_user_sql

    assert check_user_sql("select 1 -- ; copy x to 'y'") == "select 1 -- ; copy x to 'y'"
    assert check_user_sql("SELECT ';' AS semicolon") == "SELECT ';' AS semicolon"
    for sql in ("/* comment */ COPY t TO 'x'", "  copy t to 'x'", "SELECT 1;\nCOPY t TO 'x'", ""):
        with pytest.raises(QueryRefusedError):
            check_user_sql(sql)


# --------------------------------------------------------------------------------------
# mart: masked IDs cannot be rebuilt from mart alone
# --------------------------------------------------------------------------------------
def test_mart_masks_show_only_the_region_so_mart_cannot_rebuild_an_id(loaded):
    con = duckdb.connect(str(loaded), read_only=True)
    rows = con.execute("""
        SELECT m.citizen_id_masked, m.birth_date, p.citizen_id FROM mart.person m JOIN core.person p USING (person_id)
        WHERE p.citizen_id IS NOT NULL AND length(p.citizen_id) = 18""").fetchall()
    alerts = [r[0] for r in con.execute(
        "SELECT citizen_id_masked FROM mart.alerts WHERE citizen_id_masked IS NOT NULL").fetchall()]
    con.close()
    assert rows
    rebuilt = 0
    for masked, birth, full in rows:
        assert masked == full[:6] + "*" * 12
        # the attack: fill the hidden digits with the birth date mart shows
        if birth is not None:
            guess = masked[:6] + birth.strftime("%Y%m%d") + masked[14:]
            rebuilt += guess == full
    assert rebuilt == 0
    assert all(m[6:] == "*" * 12 for m in alerts)


# --------------------------------------------------------------------------------------
# encryption at rest
# --------------------------------------------------------------------------------------
def test_a_warehouse_written_with_a_key_cannot_be_opened_without_it(inbox, tmp_path, pseudonym_env):
    wh = tmp_path / "enc" / "warehouse.duckdb"
    secret = "k3y-For-Tests-仓库"
    env = {**pseudonym_env, "RESIDENTS_WAREHOUSE_KEY": secret}
    settings = load_settings(inbox=inbox, warehouse=wh, lock_timeout_s=30, env=env)
    try:
        summary = run_sync(settings)
        assert summary.status == "succeeded"
        raw = wh.read_bytes()
        # plain DuckDB refuses it; no citizen ID or name is readable in the bytes
        with pytest.raises(duckdb.Error, match="encrypted"):
            duckdb.connect(str(wh), read_only=True)
        con = store.open_database(wh, read_only=True, key=secret)
        ids, names = zip(*con.execute("SELECT citizen_id, name FROM core.person WHERE citizen_id IS NOT NULL "
                                      "AND name IS NOT NULL LIMIT 20").fetchall())
        runs = con.execute("SELECT CAST(parameters AS VARCHAR) || CAST(summary AS VARCHAR) FROM quality.run"
                           ).fetchall()
        con.close()
        for value in (*ids, *names):
            assert value.encode() not in raw
        assert secret.encode() not in raw
        assert all(secret not in r[0] for r in runs), "the key must not be recorded with the run"
    finally:
        store.set_key(wh, None)
    # the CLI: without the key a clear Chinese message and exit 1; the wrong key likewise
    result = _cli("query", "SELECT count(*) FROM core.person", "--warehouse", str(wh))
    assert result.exit_code == 1
    assert "已加密" in result.output and "RESIDENTS_WAREHOUSE_KEY" in result.output
    result = _cli("query", "SELECT count(*) FROM core.person", "--warehouse", str(wh),
                  env={"RESIDENTS_WAREHOUSE_KEY": "wrong"})
    assert result.exit_code == 1 and "密钥" in result.output and "wrong" not in result.output
    # with the key (environment or key file) it reads
    result = _cli("query", "SELECT count(*) AS n FROM core.person", "--warehouse", str(wh), "--format", "csv",
                  env={"RESIDENTS_WAREHOUSE_KEY": secret})
    assert result.exit_code == 0 and f"n\r\n{summary.persons_after}" in result.output.replace("\n", "\r\n").replace(
        "\r\r", "\r")
    key_file = tmp_path / "wh.key"
    key_file.write_text(secret + "\n")
    (tmp_path / "residents.toml").write_text(f'warehouse_key_file = "{key_file}"\n')
    result = _cli("query", "SELECT count(*) FROM core.person", "--warehouse", str(wh),
                  "--config", str(tmp_path / "residents.toml"))
    assert result.exit_code == 0, result.output
    store.set_key(wh, None)
    # the query door works the same on an encrypted warehouse
    result = _cli("query", "COPY core.person TO 'x.csv'", "--warehouse", str(wh), env={"RESIDENTS_WAREHOUSE_KEY": secret})
    assert result.exit_code == 1 and "查询被拒绝" in result.output
    store.set_key(wh, None)


def test_the_key_is_never_accepted_in_a_settings_file(tmp_path):
    cfg = tmp_path / "residents.toml"
    cfg.write_text('warehouse_key = "s3cret-in-toml"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert "s3cret-in-toml" not in str(err.value) and "RESIDENTS_WAREHOUSE_KEY" in str(err.value)
    s = load_settings(env={"RESIDENTS_WAREHOUSE_KEY": "from-env"})
    assert s.resolved_warehouse_key() == "from-env"
    assert "from-env" not in repr(s) and "from-env" not in s.model_dump_json()


# --------------------------------------------------------------------------------------
# owner-only files
# --------------------------------------------------------------------------------------
def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_warehouse_lock_reports_and_folders_are_owner_only(loaded):
    from pipelines.errors import advice
    from warehouse.reports import write_reports

    old = os.umask(0o022)
    try:
        reports = loaded.parent / "reports"
        write_reports(loaded, reports, advice=advice)
    finally:
        os.umask(old)
    assert _mode(loaded) == 0o600
    assert _mode(loaded.with_name(loaded.name + ".lock")) == 0o600
    assert _mode(loaded.parent) == 0o700
    assert _mode(reports) == 0o700
    files = [p for p in reports.iterdir() if p.is_file()]
    assert any(p.suffix == ".xlsx" for p in files)
    assert all(_mode(p) == 0o600 for p in files), {p.name: oct(_mode(p)) for p in files}
    analyst = loaded.with_name("warehouse.analyst.duckdb")
    assert _mode(analyst) == 0o640  # for the analysts' group, never world-readable


def test_the_working_copy_is_owner_only_while_a_sync_runs(inbox, tmp_path, pseudonym_env):
    wh = tmp_path / "w.duckdb"
    settings = load_settings(inbox=inbox, warehouse=wh, lock_timeout_s=30, env=pseudonym_env)
    seen = {}

    def during(con):
        work = store.working_path(wh)
        seen["work"] = _mode(work)
        seen["lock"] = _mode(wh.with_name(wh.name + ".lock"))
        return None

    store.initialise(wh)
    with store.transaction(wh, before_publish=during) as con:
        con.execute("SELECT 1")
    assert seen == {"work": 0o600, "lock": 0o600}
    assert _mode(wh) == 0o600


def test_owner_only_can_be_relaxed(tmp_path):
    wh = tmp_path / "shared" / "w.duckdb"
    old = os.umask(0o022)
    store.set_owner_only(False)
    try:
        store.initialise(wh)
    finally:
        store.set_owner_only(True)
        os.umask(old)
    assert _mode(wh) == 0o644


# --------------------------------------------------------------------------------------
# inbox symlinks
# --------------------------------------------------------------------------------------
def test_a_symlink_leaving_the_inbox_is_refused_and_nothing_of_its_target_is_stored(tmp_path, pseudonym_env):
    inbox = tmp_path / "inbox"
    synth.generate(inbox, households=10, seed=3, noise="clean", days=1)
    outside = tmp_path / "secret.csv"
    marker = "TOP-SECRET-FIRST-LINE-4711"
    outside.write_text(f"{marker},x\n1,2\n", encoding="utf-8")
    os.symlink(outside, inbox / "civil_affairs" / "户籍人口_20260101.csv")
    os.symlink("/etc/passwd", inbox / "low_income" / "低保花名册_2026-01.xlsx")
    os.symlink(tmp_path, inbox / "floating_population" / "linked_dir")
    wh = tmp_path / "w.duckdb"
    settings = load_settings(inbox=inbox, warehouse=wh, lock_timeout_s=30, env=pseudonym_env)
    summary = run_sync(settings)
    problems = [e for e in summary.exports if e.status == "problem"]
    assert {e.source_object for e in problems} >= {"户籍人口_20260101.csv", "低保花名册_2026-01.xlsx", "linked_dir"}
    assert all("符号链接" in (e.message or "") for e in problems if e.source_object.startswith(("户籍", "低保", "linked")))
    con = duckdb.connect(str(wh), read_only=True)
    dump = "\n".join(str(r) for t in ("quality.load_ledger", "quality.rejected_record", "stg.mention")
                     for r in con.execute(f"SELECT * FROM {t}").fetchall())
    sha = [r[0] for r in con.execute("SELECT content_sha256 FROM quality.load_ledger").fetchall()]
    con.close()
    assert marker not in dump and "root:" not in dump
    import hashlib

    assert hashlib.sha256(outside.read_bytes()).hexdigest() not in sha  # not even hashed
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() not in sha


def test_a_symlink_inside_the_inbox_still_loads(tmp_path):
    from connectors import discover_exports

    inbox = tmp_path / "inbox"
    synth.generate(inbox, households=5, seed=3, noise="clean", days=1)
    real = next((inbox / "civil_affairs").glob("*.*"))
    stash = inbox / ".stash"
    stash.mkdir()
    moved = stash / real.name
    real.rename(moved)
    os.symlink(moved, real)
    found = discover_exports(inbox)
    assert real in [f.path for f in found.files]


# --------------------------------------------------------------------------------------
# secrets by reference
# --------------------------------------------------------------------------------------
def test_flows_take_no_url_or_key_parameter_and_the_deployment_stores_none():
    import inspect

    import flows

    for fn in (flows._nightly_sync, flows._backfill):
        params = set(inspect.signature(fn).parameters)
        assert not {p for p in params if "url" in p or "key" in p or "password" in p}, params
    settings = load_settings(env={"RESIDENTS_FAMILY_PLANNING_URL": "postgresql+psycopg://u:pw-xyz@h/db",
                                  "RESIDENTS_WAREHOUSE_KEY": "key-xyz"})
    stored = str(flows.nightly_deployment_parameters(settings, None))
    assert "pw-xyz" not in stored and "key-xyz" not in stored


def test_cli_passes_a_url_option_to_the_flow_through_the_environment(monkeypatch):
    import cli

    # setenv first, so that the test's end removes what _pass_by_reference sets (a bare
    # delenv of an unset variable records nothing: the URL leaked into later tests of the
    # same worker, whose syncs then failed to reach host "h")
    monkeypatch.setenv("RESIDENTS_FAMILY_PLANNING_URL", "placeholder")
    monkeypatch.delenv("RESIDENTS_FAMILY_PLANNING_URL")
    cli._pass_by_reference("postgresql+psycopg://u:pw@h/db")
    assert os.environ["RESIDENTS_FAMILY_PLANNING_URL"] == "postgresql+psycopg://u:pw@h/db"


def test_residents_encrypt_turns_a_plain_warehouse_into_an_encrypted_one(loaded, tmp_path):
    import shutil

    wh = tmp_path / "copy.duckdb"
    shutil.copyfile(loaded, wh)
    con = duckdb.connect(str(wh), read_only=True)
    expected = con.execute("SELECT count(*), count(DISTINCT citizen_id) FROM core.person").fetchall()
    masked = con.execute("SELECT count(*) FROM mart.person").fetchall()
    con.close()
    result = _cli("encrypt", "--warehouse", str(wh))
    assert result.exit_code == 2 and "RESIDENTS_WAREHOUSE_KEY" in result.output
    env = {"RESIDENTS_WAREHOUSE_KEY": "encrypt-later"}
    result = _cli("encrypt", "--warehouse", str(wh), env=env)
    assert result.exit_code == 0, result.output
    store.set_key(wh, None)
    with pytest.raises(duckdb.Error, match="encrypted"):
        duckdb.connect(str(wh), read_only=True)
    assert _mode(wh) == 0o600
    con = store.open_database(wh, read_only=True, key="encrypt-later")
    assert con.execute("SELECT count(*), count(DISTINCT citizen_id) FROM core.person").fetchall() == expected
    assert con.execute("SELECT count(*) FROM mart.person").fetchall() == masked
    undocumented = con.execute("SELECT count(*) FROM duckdb_columns() WHERE database_name = 'warehouse' "
                               "AND (comment IS NULL OR comment = '')").fetchall()[0][0]
    con.close()
    assert undocumented == 0
    result = _cli("encrypt", "--warehouse", str(wh), env=env)
    assert result.exit_code == 1 and "已经加密" in result.output
    store.set_key(wh, None)


def test_the_locked_query_session_does_not_reach_other_connections_of_the_process(loaded, tmp_path):
    """The door locks its own DuckDB instance only: a reader of the same file in the same
    process (opened before and after) keeps its settings."""
    from warehouse.queries import run_user_query

    csv = tmp_path / "ok.csv"
    csv.write_text("a\n1\n")
    before = duckdb.connect(str(loaded), read_only=True)
    assert run_user_query(loaded, "SELECT count(*) FROM core.person")[1][0][0] > 0
    after = duckdb.connect(str(loaded), read_only=True)
    for con in (before, after):
        assert con.execute(f"SELECT a FROM read_csv('{csv}')").fetchall() == [(1,)]
        con.execute("SET threads = 1")
        con.close()
