"""The Prefect flows themselves: one ephemeral-mode run with its artifact, and the
nightly deployment firing on a real Prefect server with a short cron."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

import synth

pytestmark = [pytest.mark.flow, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_inbox(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("flow") / "inbox"
    synth.generate(out, households=40, seed=5, noise="realistic", days=3)
    return out


def test_nightly_sync_flow_runs_and_publishes_a_markdown_artifact(small_inbox, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.testing.utilities import prefect_test_harness

    from flows import nightly_sync

    wh = tmp_path / "w.duckdb"
    with prefect_test_harness(server_startup_timeout=180):
        result = nightly_sync(inbox=str(small_inbox), warehouse=str(wh))
        assert result["status"] == "succeeded"
        assert result["persons_after"] > 0
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sync-nightly-sync"])))
        assert artifacts, "the flow should publish a markdown artifact"
        md = artifacts[0].data
        assert "low_income" in md and "读取行" in md
        # the second run of the same inbox loads nothing and leaves the file as it was
        before = wh.read_bytes()
        again = nightly_sync(inbox=str(small_inbox), warehouse=str(wh))
        assert again["status"] == "unchanged" and again["exports"] == []
        assert wh.read_bytes() == before
    con = duckdb.connect(str(wh), read_only=True)
    runs = con.execute("SELECT count(*) FROM quality.run WHERE status = 'succeeded'").fetchall()[0][0]
    con.close()
    assert runs == 1
    # the unchanged run is recorded next to the warehouse, shown by `status`, and moved
    # into quality.run by the next run that publishes
    from warehouse.queries import recent_runs
    from warehouse.runs import pending_runs

    assert [r["status"] for r in pending_runs(wh)] == ["unchanged"]
    _, rows = recent_runs(wh)
    assert [r[2] for r in rows] == ["unchanged", "succeeded"]


def test_served_deployment_fires_on_a_short_cron(small_inbox, tmp_path):
    """`residents serve` against a real Prefect server: a per-minute cron must start a
    run that loads the inbox into the warehouse."""
    from flows import start_prefect_server

    env = dict(os.environ, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(tmp_path / "prefect-home"))
    server, api_url = start_prefect_server(timeout_s=180, env=env)
    wh = tmp_path / "served.duckdb"
    serve = None
    try:
        serve = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--inbox", str(small_inbox), "--warehouse", str(wh),
             "--cron", "* * * * *", "--timezone", "Asia/Shanghai", "--no-start-server"],
            cwd=ROOT, env=dict(env, PREFECT_API_URL=api_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        fired = False
        while time.monotonic() < deadline:
            if serve.poll() is not None:
                pytest.fail(f"serve exited early:\n{serve.stdout.read().decode(errors='replace')[-3000:]}")
            if wh.exists():
                try:
                    con = duckdb.connect(str(wh), read_only=True)
                    fired = con.execute("SELECT count(*) FROM quality.run WHERE status = 'succeeded'").fetchall()[0][0] > 0
                    con.close()
                except duckdb.Error:
                    fired = False
                if fired:
                    break
            time.sleep(2)
        assert fired, "the cron schedule did not fire a nightly_sync run within 4 minutes"
    finally:
        if serve is not None:
            serve.terminate()
            try:
                serve.wait(30)
            except subprocess.TimeoutExpired:
                serve.kill()
        server.terminate()
        server.wait(30)


def test_no_database_password_reaches_the_prefect_database_logs_or_run_records(small_inbox, tmp_path, monkeypatch):
    """Issue 11: the family-planning URL (password included) is resolved inside the run
    from the environment; the Prefect database (flow_run.parameters, task runs, logs,
    artifacts: every table), the warehouse's run records and ledger and the analyst file
    never hold the password."""
    import sqlite3

    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    from flows import nightly_sync

    password = "S3cret-Pw-for-Prefect-test"
    monkeypatch.setenv("RESIDENTS_FAMILY_PLANNING_URL", f"postgresql+psycopg://fp_user:{password}@127.0.0.1:1/fp")
    monkeypatch.setenv("RESIDENTS_SOURCE_RETRY_DELAYS_S", "0")
    monkeypatch.setenv("RESIDENTS_SOURCE_TIMEOUT_S", "2")
    monkeypatch.setenv("RESIDENTS_PSEUDONYM_KEY", "flow-test-pseudonym")
    wh = tmp_path / "w.duckdb"
    with prefect_test_harness(server_startup_timeout=180):
        result = nightly_sync(inbox=str(small_inbox), warehouse=str(wh))
        assert result["status"] == "succeeded"
        failed = [e for e in result["exports"] if e["source_system"] == "family_planning" and e["status"] == "failed"]
        assert failed, "the unreachable family-planning database should fail alone"
        url = get_current_settings().server.database.connection_url.get_secret_value()
        db_path = url.split(":///", 1)[1]
        db = sqlite3.connect(db_path)
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            params = [r[0] for r in db.execute("SELECT parameters FROM flow_run")]
            hits = []
            for t in tables:
                for row in db.execute(f'SELECT * FROM "{t}"'):
                    if any(password in str(v) for v in row):
                        hits.append(t)
        finally:
            db.close()
    assert params and all("family_planning_url" not in p and password not in p for p in params)
    assert not hits, f"the password is stored in Prefect tables {sorted(set(hits))}"
    con = duckdb.connect(str(wh), read_only=True)
    stored = [str(r) for t in ("quality.run", "quality.load_ledger", "quality.finding")
              for r in con.execute(f"SELECT * FROM {t}").fetchall()]
    con.close()
    assert not [s for s in stored if password in s]
    assert password.encode() not in wh.read_bytes()
    assert password.encode() not in wh.with_name("w.analyst.duckdb").read_bytes()
