"""Point in time (`residents query --as-of`): every publish is kept as a snapshot for
`history_days`; a question is answered as the warehouse stood after the last sync on or
before the date asked."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

import synth
from cli import app
from flows import run_sync
from settings import load_settings
from tests.e2e_helpers import copy_inbox_until, export_days
from warehouse import history
from warehouse.exceptions import SnapshotNotFoundError

runner = CliRunner()
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _publish(wh: Path, content: bytes, when: datetime, keep_days: int = 31) -> Path:
    """What store.transaction does: rename a new file over the published one, then record."""
    work = wh.with_name(wh.name + ".building")
    work.write_bytes(content)
    os.replace(work, wh)
    return history.record(wh, keep_days, now=when)


def test_a_snapshot_is_a_hard_link_of_the_published_file_and_outlives_its_replacement(tmp_path):
    wh = tmp_path / "w.duckdb"
    t1 = datetime(2026, 9, 30, 23, 0, tzinfo=SHANGHAI)
    first = _publish(wh, b"first", t1)
    assert first.stat().st_ino == wh.stat().st_ino          # no copy while it is the current file
    second = _publish(wh, b"second", t1 + timedelta(days=2))
    assert first.read_bytes() == b"first" and second.read_bytes() == b"second"
    assert [s.path for s in history.snapshots(wh)] == [first, second]


def test_as_of_picks_the_last_publish_on_or_before_the_end_of_that_day_in_the_district_time_zone(tmp_path):
    wh = tmp_path / "w.duckdb"
    # 2026-10-01 23:30 in Shanghai is 15:30 UTC the same day: it belongs to 1 October
    late_evening = datetime(2026, 10, 1, 15, 30, tzinfo=timezone.utc)
    _publish(wh, b"a", datetime(2026, 9, 30, 2, 0, tzinfo=SHANGHAI))
    _publish(wh, b"b", late_evening)
    _publish(wh, b"c", datetime(2026, 10, 2, 2, 0, tzinfo=SHANGHAI))
    pick = lambda text: history.snapshot_as_of(wh, history.parse_as_of(text, "Asia/Shanghai")).path.read_bytes()
    assert pick("2026-09-30") == b"a"
    assert pick("2026-10-01") == b"b"
    assert pick("2026-10-01T20:00") == b"a"                 # before that evening's sync
    assert pick("2026-12-31") == b"c"
    with pytest.raises(SnapshotNotFoundError, match="最早保留的快照是 2026-09-30 02:00"):
        history.snapshot_as_of(wh, history.parse_as_of("2026-09-29", "Asia/Shanghai"))
    with pytest.raises(SnapshotNotFoundError, match="日期格式"):
        history.parse_as_of("1 October", "Asia/Shanghai")


def test_retention_drops_old_snapshots_but_never_the_newest_and_zero_keeps_none(tmp_path):
    wh = tmp_path / "w.duckdb"
    start = datetime(2026, 1, 1, 2, 0, tzinfo=SHANGHAI)
    for day in range(10):
        _publish(wh, f"d{day}".encode(), start + timedelta(days=day), keep_days=3)
    kept = [s.path.read_bytes() for s in history.snapshots(wh)]
    assert kept == [b"d6", b"d7", b"d8", b"d9"]
    # a long pause: the last snapshot stays even when it is older than the retention
    assert history.prune(wh, 3, now=start + timedelta(days=100)) and \
        [s.path.read_bytes() for s in history.snapshots(wh)] == [b"d9"]
    other = tmp_path / "x.duckdb"
    assert _publish(other, b"x", start, keep_days=0) is None and history.snapshots(other) == []


@pytest.mark.slow
def test_query_as_of_answers_with_the_earlier_state_after_two_syncs(tmp_path):
    exports = tmp_path / "exports"
    synth.generate(exports, households=60, seed=41, noise="clean")
    days = export_days(exports)
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    copy_inbox_until(exports, inbox, days[0])
    settings = load_settings(inbox=inbox, warehouse=wh)
    assert run_sync(settings).status in ("succeeded", "partial")
    # the first sync happened "yesterday": move its snapshot's stamp back a day
    (first,) = history.snapshots(wh)
    yesterday = first.published_at - timedelta(days=1)
    first.path.rename(first.path.with_name(yesterday.strftime("%Y%m%dT%H%M%S.%f%z") + ".duckdb"))
    copy_inbox_until(exports, inbox, days[-1])
    assert run_sync(settings).status in ("succeeded", "partial")

    sql = "SELECT count(*) AS n FROM quality.load_ledger WHERE status = 'loaded'"
    now = runner.invoke(app, ["query", "-w", str(wh), "--format", "csv", sql])
    then = runner.invoke(app, ["query", "-w", str(wh), "--format", "csv", "--as-of",
                               yesterday.astimezone(SHANGHAI).date().isoformat(), sql])
    assert now.exit_code == 0 and then.exit_code == 0, now.output + then.output
    loaded_now, loaded_then = int(now.stdout.split()[-1]), int(then.stdout.split()[-1])
    assert 0 < loaded_then < loaded_now
    assert "发布的仓库快照" in then.stderr
    too_early = runner.invoke(app, ["query", "-w", str(wh), "--as-of", "2000-01-01", sql])
    assert too_early.exit_code == 1 and "没有 2000-01-01" in too_early.output
