"""Point in time: every published warehouse kept for a while, so that a question can be
asked "as the warehouse stood after the last sync on or before 1 October".

Each publish (`store.transaction`) leaves the new file in `<warehouse>.history/` under
its publish time (`20261001T231005.123456+0800.duckdb`). The entry is a hard link, not a
copy: publishing costs no time, and while a snapshot is the current warehouse it costs no
disk either. A snapshot only holds its own disk blocks once a later sync has replaced the
published file (publishing never writes into a published file, it renames a new one over
it), so each snapshot kept costs about one warehouse file. Where the file system has no
hard links the snapshot is copied instead.

What is kept (`Retention`): every publish of the last `every_publish_days`; before that
only the last publish of each day (in the district's time zone: the day `--as-of DATE`
asks for); nothing older than `days` (the newest always). So the disk follows the days
kept, not the number of publishes: an officer's ten link decisions a day no longer keep
ten warehouse files a day for a month. The snapshot that follows publishes removed from
its day carries in its name when the earliest of them was
(`20261001T231005.123456+0800~20261001T020011.000000+0800.duckdb`): a moment asked for
between the two has lost its snapshot, and is refused rather than answered with an
earlier state.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from warehouse import standby
from warehouse.exceptions import SnapshotNotFoundError

_STAMP = "%Y%m%dT%H%M%S.%f%z"
_SUFFIX = ".duckdb"
_DROPPED_SINCE = "~"    # <stamp>~<earliest publish dropped from its day><_SUFFIX>


@dataclass(frozen=True)
class Retention:
    """Which snapshots are kept (settings `history_days`, `history_every_publish_days`,
    `schedule_timezone`): every publish for `every_publish_days`, then the last publish of
    each day (days counted in `timezone`) up to `days`. `days == 0`: no history."""

    days: int
    every_publish_days: float = 2
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class Snapshot:
    path: Path
    published_at: datetime          # aware
    #: the earliest publish removed from this snapshot's day (its day was thinned to it)
    dropped_since: datetime | None = None


def history_dir(warehouse: str | os.PathLike[str]) -> Path:
    warehouse = Path(warehouse)
    return warehouse.with_name(warehouse.name + ".history")


def _parse(name: str) -> tuple[datetime, datetime | None] | None:
    if not name.endswith(_SUFFIX):
        return None
    stamp, _, dropped = name[: -len(_SUFFIX)].partition(_DROPPED_SINCE)
    try:
        return datetime.strptime(stamp, _STAMP), datetime.strptime(dropped, _STAMP) if dropped else None
    except ValueError:
        return None


def _name(published_at: datetime, dropped_since: datetime | None = None) -> str:
    mark = f"{_DROPPED_SINCE}{dropped_since.strftime(_STAMP)}" if dropped_since else ""
    return f"{published_at.strftime(_STAMP)}{mark}{_SUFFIX}"


def snapshots(warehouse: str | os.PathLike[str]) -> list[Snapshot]:
    """The kept snapshots, oldest first (files whose name is not a stamp are ignored)."""
    folder = history_dir(warehouse)
    out = []
    for entry in folder.glob(f"*{_SUFFIX}") if folder.is_dir() else []:
        parsed = _parse(entry.name)
        if parsed is not None:
            out.append(Snapshot(entry, *parsed))
    return sorted(out, key=lambda s: s.published_at)


def record(warehouse: str | os.PathLike[str], retention: Retention | None, *,
           now: datetime | None = None) -> Path | None:
    """Keep the just-published warehouse as a snapshot and thin or drop the older ones
    (`prune`). No retention or `days == 0`: keep no history.
    Called under the writer lock, right after the publish."""
    warehouse = Path(warehouse)
    folder = history_dir(warehouse)
    if retention is None or retention.days <= 0:
        return None
    now = (now or datetime.now(timezone.utc)).astimezone()
    folder.mkdir(mode=0o700, exist_ok=True)
    target = folder / _name(now)
    try:
        os.link(warehouse, target)
    except FileExistsError:
        return target
    except OSError:                     # no hard links here (some network shares): copy
        shutil.copy2(warehouse, target)
    prune(warehouse, retention, now=now)
    standby.sweep_later(folder)  # what this prune retired, or a crash left, removed after the command
    return target


def prune(warehouse: str | os.PathLike[str], retention: Retention, *, now: datetime | None = None) -> list[Path]:
    """Apply `retention`: remove snapshots published more than `days` ago, and those
    older than `every_publish_days` that a later publish of the same day follows (the
    snapshot that follows them is renamed to say since when the publishes before it are
    gone: renamed before any is removed, so a crash between leaves a refusal too many,
    never a wrong answer). Never the newest snapshot. The removed paths."""
    now = now or datetime.now(timezone.utc)
    zone = ZoneInfo(retention.timezone)
    kept = snapshots(warehouse)
    removed: list[Path] = []

    def remove(snap: Snapshot) -> None:
        standby.retire(snap.path)  # its blocks freed after the command, not under the lock
        removed.append(snap.path)

    for snap in kept[:-1]:
        if now - snap.published_at > timedelta(days=retention.days):
            remove(snap)
    kept = [s for s in kept if s.path not in removed]
    thin_before = now - timedelta(days=retention.every_publish_days)
    by_day: dict[date, list[Snapshot]] = {}
    for snap in kept:
        by_day.setdefault(snap.published_at.astimezone(zone).date(), []).append(snap)
    for day_snaps in by_day.values():
        # the day's snapshots older than the window, but not its last: a prefix of the day
        earlier = [s for s in day_snaps[:-1] if s.published_at < thin_before]
        if not earlier:
            continue
        # the snapshot that now follows the removed ones answers for none of them: it says
        # since when (a mark of a removed one carries over)
        follower = day_snaps[len(earlier)]
        since = min([s.published_at for s in earlier] + [s.dropped_since for s in day_snaps if s.dropped_since])
        if follower.dropped_since != since:
            follower.path.rename(follower.path.with_name(_name(follower.published_at, since)))
        for snap in earlier:
            remove(snap)
    return removed


def parse_as_of(text: str, tz: str) -> datetime:
    """`2026-10-01` → the end of that day in `tz` (the district's time zone, as officers
    count days); `2026-10-01T08:00` (or with a space) → that moment in `tz`. Aware."""
    text = text.strip()
    zone = ZoneInfo(tz)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time.max, tzinfo=zone)
        moment = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        raise SnapshotNotFoundError(as_of=text, detail="日期格式应为 2026-10-01 或 2026-10-01T08:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def snapshot_as_of(warehouse: str | os.PathLike[str], as_of: datetime) -> Snapshot:
    """The warehouse as it stood after the last publish at or before `as_of`; refused
    when the retention removed the snapshot that answered (a moment of a thinned day
    before its last publish, on or after the first publish removed from that day)."""
    kept = snapshots(warehouse)
    candidates = [s for s in kept if s.published_at <= as_of]
    after = kept[len(candidates)] if len(candidates) < len(kept) else None
    if after is not None and after.dropped_since is not None and after.dropped_since <= as_of:
        tz = as_of.tzinfo
        raise SnapshotNotFoundError(
            as_of=f"{as_of:%Y-%m-%d %H:%M}",
            detail=f"按保留规则（history_every_publish_days），较早的日子每天只保留最后一次发布："
                   f"{after.dropped_since.astimezone(tz):%Y-%m-%d %H:%M} 至 {after.published_at.astimezone(tz):%Y-%m-%d %H:%M} "
                   f"之间的快照已删除；可查询当天结束时的状态（--as-of {after.published_at.astimezone(tz):%Y-%m-%d}）"
                   f"或 {after.dropped_since.astimezone(tz):%H:%M} 之前的时刻")
    if not candidates:
        detail = (f"最早保留的快照是 {kept[0].published_at.astimezone(as_of.tzinfo):%Y-%m-%d %H:%M}"
                  if kept else "没有保留任何快照（history_days = 0 或尚未同步过）")
        raise SnapshotNotFoundError(as_of=f"{as_of:%Y-%m-%d %H:%M}", detail=detail)
    return candidates[-1]
