"""The Prefect flows themselves: one ephemeral-mode run with its artifact, and the
nightly deployment served on a real Prefect server (its cron registered, a scheduled run executed)."""

from __future__ import annotations

import json

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

    pending = pending_runs(wh)
    assert [(r["status"], bool(r.get("amends"))) for r in pending] == [("succeeded", True), ("unchanged", False)]
    assert json.loads(pending[0]["summary"])["stage_seconds"]["publish"] > 0  # timed after its row was written
    _, rows = recent_runs(wh)
    assert [r[2] for r in rows] == ["unchanged", "succeeded"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    import urllib.error
    import urllib.request

    try:   # as a browser asks for a page (the UI answers HTML navigations only)
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "text/html"}), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _served_deployment(api: str, serve: subprocess.Popen, log: Path, timeout_s: float = 240) -> object:
    """The deployment `residents serve` registered on the server at `api`, once it exists."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            pytest.fail(f"serve exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
                found = client.read_deployments()
            if found:
                return found[0]
        except Exception:  # noqa: BLE001 — the server is still starting
            pass
        time.sleep(2)
    pytest.fail(f"no deployment was served within {timeout_s} s:\n{log.read_text(errors='replace')[-3000:]}")


def test_served_deployment_carries_the_cron_and_runs_what_the_server_schedules(small_inbox, tmp_path):
    """`residents serve` starts its own Prefect server on the configured port with its
    state under the configured Prefect home (not ~/.prefect), registers the nightly
    deployment with the configured cron and time zone, prints links that answer, and a
    run the server schedules for the deployment (what the cron produces each night, here
    asked for now as an officer's "run" button does) loads the inbox and is logged on the
    console.  (Waiting for a real cron minute cost two minutes of every CI run; the cron
    → scheduled run step is Prefect's scheduler, not ours.)"""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home, port, wh = tmp_path / "user-home", _free_port(), tmp_path / "served.duckdb"
    config = tmp_path / "residents.toml"
    config.write_text(f'prefect_home = "{tmp_path / "ph"}"\nserve_port = {port}\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RESIDENTS_"))}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    log = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "-c", str(config), "--inbox", str(small_inbox), "--warehouse", str(wh),
         "--cron", "30 3 * * *", "--timezone", "Asia/Shanghai"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deployment = _served_deployment(api, serve, log)
        assert deployment.name == "nightly"
        [schedule] = deployment.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 3 * * *", "Asia/Shanghai")
        assert schedule.active
        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            client.create_flow_run_from_deployment(deployment.id)
        deadline, fired = time.monotonic() + 300, False
        while time.monotonic() < deadline and not fired:
            if serve.poll() is not None:
                pytest.fail(f"serve exited early:\n{log.read_text(errors='replace')[-3000:]}")
            fired = "每晚同步结束" in log.read_text(errors="replace")
            time.sleep(2)
        out = log.read_text(errors="replace")
        assert fired, f"the served deployment did not run a logged nightly_sync within 5 minutes:\n{out[-3000:]}"
        assert f"http://127.0.0.1:{port}" in out and "已发布" in out and "30 3 * * *" in out
        with duckdb.connect(str(wh), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM quality.run WHERE status = 'succeeded'").fetchall()[0][0] > 0
        for link in (f"http://127.0.0.1:{port}/runs", f"http://127.0.0.1:{port}/deployments",
                     f"http://127.0.0.1:{port}/api/health"):
            assert link in out or link.endswith("/health")
            assert _get(link) == 200, link
        assert (tmp_path / "ph" / "prefect.db").exists()         # the project's own Prefect state
        assert not (home / ".prefect").exists()                   # nothing in the user-wide one
    finally:
        serve.terminate()
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
    assert "已停止每晚同步计划" in log.read_text(errors="replace")


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
