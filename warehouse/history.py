"""Point in time: every published warehouse kept for a while, so that a question can be
asked "as the warehouse stood after the last sync on or before 1 October".

Each publish (`store.transaction`) leaves the new file in `<warehouse>.history/` under
its publish time (`20261001T231005.123456+0800.duckdb`). The entry is a hard link, not a
copy: publishing costs no time, and while a snapshot is the current warehouse it costs no
disk either. A snapshot only holds its own disk blocks once a later sync has replaced the
published file (publishing never writes into a published file, it renames a new one over
it), so the price of `history_days` is about one warehouse file per sync kept. Where the
file system has no hard links the snapshot is copied instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from warehouse.exceptions import SnapshotNotFoundError

_STAMP = "%Y%m%dT%H%M%S.%f%z"
_SUFFIX = ".duckdb"


@dataclass(frozen=True)
class Snapshot:
    path: Path
    published_at: datetime          # aware


def history_dir(warehouse: str | os.PathLike[str]) -> Path:
    warehouse = Path(warehouse)
    return warehouse.with_name(warehouse.name + ".history")


def snapshots(warehouse: str | os.PathLike[str]) -> list[Snapshot]:
    """The kept snapshots, oldest first (files whose name is not a stamp are ignored)."""
    folder = history_dir(warehouse)
    out = []
    for entry in folder.glob(f"*{_SUFFIX}") if folder.is_dir() else []:
        try:
            published = datetime.strptime(entry.name[: -len(_SUFFIX)], _STAMP)
        except ValueError:
            continue
        out.append(Snapshot(entry, published))
    return sorted(out, key=lambda s: s.published_at)


def record(warehouse: str | os.PathLike[str], keep_days: int, *, now: datetime | None = None) -> Path | None:
    """Keep the just-published warehouse as a snapshot and drop those older than
    `keep_days` (the newest is always kept). `keep_days == 0`: keep no history.
    Called under the writer lock, right after the publish."""
    warehouse = Path(warehouse)
    folder = history_dir(warehouse)
    if keep_days <= 0:
        return None
    now = (now or datetime.now(timezone.utc)).astimezone()
    folder.mkdir(mode=0o700, exist_ok=True)
    target = folder / f"{now.strftime(_STAMP)}{_SUFFIX}"
    try:
        os.link(warehouse, target)
    except FileExistsError:
        return target
    except OSError:                     # no hard links here (some network shares): copy
        shutil.copy2(warehouse, target)
    prune(warehouse, keep_days, now=now)
    return target


def prune(warehouse: str | os.PathLike[str], keep_days: int, *, now: datetime | None = None) -> list[Path]:
    """Remove snapshots published more than `keep_days` ago, never the newest one."""
    now = now or datetime.now(timezone.utc)
    kept = snapshots(warehouse)
    removed = []
    for snap in kept[:-1]:
        if now - snap.published_at > timedelta(days=keep_days):
            with contextlib.suppress(FileNotFoundError):
                snap.path.unlink()
            removed.append(snap.path)
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
    """The warehouse as it stood after the last publish at or before `as_of`."""
    candidates = [s for s in snapshots(warehouse) if s.published_at <= as_of]
    if not candidates:
        kept = snapshots(warehouse)
        detail = (f"最早保留的快照是 {kept[0].published_at.astimezone(as_of.tzinfo):%Y-%m-%d %H:%M}"
                  if kept else "没有保留任何快照（history_days = 0 或尚未同步过）")
        raise SnapshotNotFoundError(as_of=f"{as_of:%Y-%m-%d %H:%M}", detail=detail)
    return candidates[-1]
