"""Point in time (`residents query --as-of`): every publish is kept as a snapshot for
`history_every_publish_days`, then the last of each day for `history_days`; a question is
answered as the warehouse stood after the last sync on or before the date asked, or
refused when the snapshot that would answer was thinned away."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


def _publish(wh: Path, content: bytes, when: datetime, keep_days: int = 31, every_publish_days: float = 2) -> Path:
    """What store.transaction does: rename a new file over the published one, then record."""
    work = wh.with_name(wh.name + ".building")
    work.write_bytes(content)
    os.replace(work, wh)
    return history.record(wh, history.Retention(keep_days, every_publish_days, "Asia/Shanghai"), now=when)


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
    assert history.prune(wh, history.Retention(3), now=start + timedelta(days=100)) and \
        [s.path.read_bytes() for s in history.snapshots(wh)] == [b"d9"]
    other = tmp_path / "x.duckdb"
    assert _publish(other, b"x", start, keep_days=0) is None and history.snapshots(other) == []


def _pick(wh: Path, text: str) -> bytes:
    return history.snapshot_as_of(wh, history.parse_as_of(text, "Asia/Shanghai")).path.read_bytes()


def test_older_days_keep_their_last_publish_and_a_moment_whose_snapshot_was_removed_is_refused(tmp_path):
    wh = tmp_path / "w.duckdb"
    at = lambda day, hour, minute=0: datetime(2026, 10, day, hour, minute, tzinfo=SHANGHAI)  # noqa: E731
    # 1 October: the nightly sync, two decisions; 2 October: the sync alone; 5 October: two publishes
    for content, when in [(b"1-sync", at(1, 2)), (b"1-link", at(1, 10)), (b"1-unlink", at(1, 15)),
                          (b"2-sync", at(2, 2)), (b"5-sync", at(5, 2)), (b"5-link", at(5, 9))]:
        _publish(wh, content, when, every_publish_days=2)
    kept = history.snapshots(wh)
    assert [s.path.read_bytes() for s in kept] == [b"1-unlink", b"2-sync", b"5-sync", b"5-link"]
    assert kept[0].dropped_since == at(1, 2) and kept[0].path.name.count("~") == 1
    assert all(s.dropped_since is None for s in kept[1:])
    assert _pick(wh, "2026-10-01") == b"1-unlink"               # the day's end state stays
    assert _pick(wh, "2026-10-01T16:00") == b"1-unlink"
    assert _pick(wh, "2026-10-02T01:00") == b"1-unlink"
    assert _pick(wh, "2026-10-05T08:00") == b"5-sync"          # the recent days: every publish
    for moment in ("2026-10-01T02:00", "2026-10-01T09:00", "2026-10-01T14:59"):
        with pytest.raises(SnapshotNotFoundError, match="2026-10-01 02:00 至 2026-10-01 15:00 之间的快照已删除"):
            _pick(wh, moment)
    with pytest.raises(SnapshotNotFoundError, match="最早保留的快照"):
        _pick(wh, "2026-10-01T01:00")                          # before anything was published
    # thinned again later (the 5th's sync now old too): the mark of the 1st stays as it was
    _publish(wh, b"9-sync", at(9, 2), every_publish_days=2)
    assert [(s.path.read_bytes(), s.dropped_since) for s in history.snapshots(wh)] == [
        (b"1-unlink", at(1, 2)), (b"2-sync", None), (b"5-link", at(5, 2)), (b"9-sync", None)]


def test_a_day_thinned_in_two_passes_remembers_its_first_removed_publish(tmp_path):
    wh = tmp_path / "w.duckdb"
    at = lambda hour: datetime(2026, 10, 1, hour, tzinfo=SHANGHAI)  # noqa: E731
    _publish(wh, b"a", at(1), every_publish_days=0.25)
    _publish(wh, b"b", at(8), every_publish_days=0.25)        # 7 h later: a is removed, b marked since 01:00
    _publish(wh, b"c", at(20), every_publish_days=0.25)       # b is removed: c marked since 01:00, not 08:00
    (only,) = history.snapshots(wh)
    assert only.path.read_bytes() == b"c" and only.dropped_since == at(1)
    with pytest.raises(SnapshotNotFoundError):
        _pick(wh, "2026-10-01T05:00")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=st.lists(st.integers(min_value=1, max_value=40 * 60), min_size=1, max_size=40),
       every=st.sampled_from([0, 0.5, 1, 2]), keep=st.integers(min_value=1, max_value=6),
       probes=st.lists(st.integers(min_value=0, max_value=400 * 60), min_size=1, max_size=15))
def test_an_answer_is_the_true_state_at_that_moment_or_a_refusal_and_every_kept_day_answers(
        tmp_path_factory, gaps, every, keep, probes):
    """Random publish times (minutes apart), any retention: a moment is answered with
    exactly what was published last at or before it, or refused — never an older state;
    the end of every day whose last publish is kept answers."""
    wh = tmp_path_factory.mktemp("h") / "w.duckdb"
    start = datetime(2026, 3, 1, 0, 0, tzinfo=SHANGHAI)
    published, t = [], start
    for i, gap in enumerate(gaps):
        t += timedelta(minutes=gap)
        published.append((t, f"p{i}".encode()))
        _publish(wh, f"p{i}".encode(), t, keep_days=keep, every_publish_days=every)
    kept = history.snapshots(wh)
    assert kept[-1].path.read_bytes() == published[-1][1]
    for probe in probes:
        moment = start + timedelta(minutes=probe)
        truth = [content for when, content in published if when <= moment]
        try:
            got = history.snapshot_as_of(wh, moment).path.read_bytes()
        except SnapshotNotFoundError:
            continue
        assert truth and got == truth[-1], (moment, got)
    for snap in kept:
        day_end = datetime.combine(snap.published_at.astimezone(SHANGHAI).date(), datetime.max.time(), tzinfo=SHANGHAI)
        truth = [content for when, content in published if when <= day_end][-1]
        assert history.snapshot_as_of(wh, day_end).path.read_bytes() == truth


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
