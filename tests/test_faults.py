"""Fault injection (README "Faults and exit codes", issue 12): each fault of the
catalogue is injected into a small generated inbox, the command line is run as a
scheduler would run it, and the test asserts

* the exit code (0 all loaded, 4 published with failures, 2 usage/configuration, 3 busy);
* that the other sources loaded (every other export `loaded` in the ledger);
* that nothing was lost (rows read = accepted + rejected for every loaded export, and
  every export of the inbox has a ledger row, `failed` with its reason when it failed);
* that a rerun after the fault is removed equals a clean load of the same inbox.

Deterministic person resolution keeps each sync to seconds; the faults are about
sources, not linkage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import duckdb
import openpyxl
import pytest
from typer.testing import CliRunner

import synth
from cli import app
from connectors import discover_exports
from tests.bad_inputs_helpers import (
    FLOAT_HEADERS, MARRIAGE_HEADERS, assert_counts_add_up, csv_bytes, float_row, ledger, marriage_row, q, rejected,
    write_marriage,
)
from tests.e2e_helpers import assert_same, snapshot

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """resolution_mode = "deterministic"
lock_timeout_s = 5
source_timeout_s = 0.3
source_retry_delays_s = [0.05, 0.1]

[district]            # the hand-made files of these cases are a few rows of 龙山区: too few to infer it
county_code = "220402"
"""
runner = CliRunner()


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    inbox = tmp_path_factory.mktemp("faults") / "inbox"
    synth.generate(inbox, households=40, seed=5, noise="clean", days=2)
    shutil.rmtree(inbox / "_truth")
    return inbox


@pytest.fixture(scope="module")
def clean(generated, tmp_path_factory) -> dict:
    """Snapshot of a clean load of the generated inbox (the reference for every rerun)."""
    base = tmp_path_factory.mktemp("clean")
    config = base / "residents.toml"
    config.write_text(CONFIG, encoding="utf-8")
    code, out, _err = residents("sync", "--inbox", str(generated), "-w", str(base / "w.duckdb"), "-c", str(config))
    assert code == 0, out
    return snapshot(base / "w.duckdb", canonical_ids=True)


@pytest.fixture
def inbox(generated, tmp_path) -> Path:
    shutil.copytree(generated, tmp_path / "inbox")
    return tmp_path / "inbox"


@pytest.fixture
def wh(tmp_path) -> Path:
    return tmp_path / "w.duckdb"


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "residents.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ helpers
def residents(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the command line in-process: (exit code, stdout, stderr)."""
    r = runner.invoke(app, list(args), env=env)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def sync(inbox: Path, wh: Path, config: Path, *extra: str, env: dict[str, str] | None = None
         ) -> tuple[int, str, str]:
    return residents("sync", "--inbox", str(inbox), "-w", str(wh), "-c", str(config), *extra, env=env)


def file_exports(inbox: Path) -> set[str]:
    return {ef.source_object for ef in discover_exports(inbox).files}


def statuses(wh: Path) -> dict[str, set[str]]:
    """source_object → the statuses its ledger rows have."""
    out: dict[str, set[str]] = {}
    for name, status in ledger(wh)[["source_object", "status"]].itertuples(index=False):
        out.setdefault(name, set()).add(status)
    return out


def assert_others_loaded(wh: Path, expected: set[str], failed: set[str]) -> None:
    """Every export in `expected` loaded, every one in `failed` failed (nothing lost)."""
    st = statuses(wh)
    assert {n for n in expected if "loaded" in st.get(n, set())} == expected, st
    assert {n for n in failed if "failed" in st.get(n, set())} == failed, st
    assert_counts_add_up(wh)


def failure_message(wh: Path, name: str) -> str:
    led = ledger(wh)
    rows = led[(led["source_object"] == name) & (led["status"] == "failed")]
    assert len(rows) >= 1, led[["source_object", "status", "message"]]
    return rows["message"].iloc[-1]


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------ one source fails alone
def test_unreadable_export_fails_alone_and_loads_once_readable(inbox, wh, config, clean, monkeypatch):
    victim = inbox / "civil_affairs" / "婚姻登记_20260701.xlsx"
    if os.geteuid() != 0:
        victim.chmod(0)
    else:  # root reads any file: deny this one the way the kernel would for another user
        import io

        real_open = io.open

        def denying_open(file, *a, **kw):
            if Path(os.fsdecode(file)) == victim:
                raise PermissionError(13, "Permission denied", str(victim))
            return real_open(file, *a, **kw)

        monkeypatch.setattr(io, "open", denying_open)
    code, out, err = sync(inbox, wh, config)
    assert code == 4, out + err
    assert_others_loaded(wh, file_exports(inbox) - {victim.name}, {victim.name})
    msg = failure_message(wh, victim.name)
    assert "没有读取权限" in msg and victim.name in msg
    assert "loaded" in statuses(wh)["T_YLFN"]                # the SQL source loaded too
    victim.chmod(0o644)
    monkeypatch.undo()
    code, out, err = sync(inbox, wh, config)
    assert code == 0, out + err
    assert "loaded" in statuses(wh)[victim.name]
    assert_same(clean, snapshot(wh, canonical_ids=True))


def test_locked_family_planning_sqlite_is_retried_then_fails_alone(inbox, wh, config, clean):
    db = next((inbox / "family_planning").glob("*.sqlite"))
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        code, out, err = sync(inbox, wh, config)
        assert time.monotonic() - t0 < 120
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert code == 4, out + err
    assert_others_loaded(wh, file_exports(inbox), {"T_YLFN", "T_ZN"})
    msg = failure_message(wh, "T_YLFN")
    assert "锁定" in msg and "已尝试 3 次" in msg and "database is locked" in msg
    assert len(err) < 4000 and "Traceback" not in err
    code, out, err = sync(inbox, wh, config)
    assert code == 0, out + err
    assert_same(clean, snapshot(wh, canonical_ids=True))


def test_unreachable_postgresql_is_retried_then_fails_alone(inbox, wh, config, clean):
    import socket

    with socket.socket() as s:  # a loopback port where nothing listens: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://reader:secret@127.0.0.1:{port}/ylfn"
    code, out, err = sync(inbox, wh, config, "--family-planning-url", url)
    assert code == 4, out + err
    assert_others_loaded(wh, file_exports(inbox), {"T_YLFN", "T_ZN"})
    msg = failure_message(wh, "T_YLFN")
    assert "无法连接数据" in msg and "已尝试 3 次" in msg
    assert "secret" not in msg and "secret" not in out + err      # the password is never printed
    code, out, err = sync(inbox, wh, config)                     # the database is back (here: the SQLite)
    assert code == 0, out + err
    assert_same(clean, snapshot(wh, canonical_ids=True))


def test_an_export_whose_standardisation_breaks_fails_alone(inbox, wh, config, clean, monkeypatch):
    """A program fault while standardising one export (injected: the normaliser raises
    for that file only) fails that export, named with the error; the rest publishes."""
    import pipelines.standardize as std

    victim = "火化信息-20260702_补报.csv"
    real = std.standardize

    def breaking(raw, mapping, **kw):
        if kw.get("source_object") == victim:
            raise KeyError("死亡日期")
        return real(raw, mapping, **kw)

    monkeypatch.setattr(std, "standardize", breaking)
    code, out, err = sync(inbox, wh, config)
    assert code == 4, out + err
    msg = failure_message(wh, victim)
    assert "处理失败" in msg and "KeyError" in msg
    assert_others_loaded(wh, file_exports(inbox) - {victim}, {victim})
    monkeypatch.undo()
    code, out, err = sync(inbox, wh, config)                  # the fixed program loads it
    assert code == 0, out + err
    assert_same(clean, snapshot(wh, canonical_ids=True))


# ------------------------------------------------ a failure is remembered by path and content
def test_misnamed_copy_fails_alone_and_never_blocks_the_valid_file(inbox, wh, config, clean):
    valid = inbox / "floating_population" / "流动人口登记_20260701.csv"
    copy = valid.with_name("流动人口登记_20261301.csv")
    shutil.copy2(valid, copy)
    code, out, err = sync(inbox, wh, config)
    assert code == 4, out + err
    assert "日期无效" in failure_message(wh, copy.name)
    assert_others_loaded(wh, file_exports(inbox), {copy.name})   # the valid file with the same content loaded
    copy.unlink()
    code, out, err = sync(inbox, wh, config)
    assert code == 0, out + err
    assert_same(clean, snapshot(wh, canonical_ids=True))


def test_export_with_a_bad_name_loads_once_renamed(inbox, wh, config, clean):
    valid = inbox / "floating_population" / "流动人口登记-20260702.csv"
    misnamed = valid.with_name("流动人口登记-20261301.csv")
    valid.rename(misnamed)
    code, out, err = sync(inbox, wh, config)
    assert code == 4, out + err
    misnamed.rename(valid)                                        # the department corrects the name
    code, out, err = sync(inbox, wh, config)
    assert code == 0, out + err
    assert "loaded" in statuses(wh)[valid.name]
    assert_same(clean, snapshot(wh, canonical_ids=True))


def test_export_in_the_wrong_folder_loads_once_moved(inbox, wh, config, clean):
    right = inbox / "floating_population" / "流动人口登记-20260702.csv"
    wrong = inbox / "civil_affairs" / right.name
    right.rename(wrong)
    code, out, err = sync(inbox, wh, config)
    assert code == 4, out + err
    assert "放错了文件夹" in failure_message(wh, right.name)
    assert_others_loaded(wh, file_exports(inbox), {right.name})
    wrong.rename(right)                                           # moved to the right folder the next night
    code, out, err = sync(inbox, wh, config)
    assert code == 0, out + err
    assert "loaded" in statuses(wh)[right.name]
    assert_same(clean, snapshot(wh, canonical_ids=True))


# ------------------------------------------------------------------------ nothing silent
EXCEL_ERRORS = ["#REF!", "#DIV/0!", "#N/A", "#VALUE!", "#NAME?", "#NUM!", "#NULL!"]


def _formula_with_cached_error(path: Path, cell: str, error: str) -> None:
    """Give `cell` a formula whose cached value is `error` (what Excel saves)."""
    with zipfile.ZipFile(path) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    xml = files[sheet].decode()
    xml, n = re.subn(rf'<c r="{cell}"[^>]*?(/>|>.*?</c>)', f'<c r="{cell}" t="e"><f>1/0</f><v>{error}</v></c>', xml)
    assert n == 1
    files[sheet] = xml.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def test_excel_error_values_are_rejected_values_naming_their_cell(tmp_path, config):
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    rows = [marriage_row(i) for i in range(1, 10)]
    for i, error in enumerate(EXCEL_ERRORS[2:], start=3):  # rows 3..7: cached errors in 登记机关 (optional text)
        rows[i - 1]["登记机关"] = error                           # openpyxl writes these as error cells
    path = write_marriage(inbox, rows)
    _formula_with_cached_error(path, "A3", "#REF!")          # header on row 2: first record on row 3
    _formula_with_cached_error(path, "G4", "#DIV/0!")        # 男方出生日期 of the second record
    _formula_with_cached_error(path, "D10", "#REF!")         # 男方姓名 of the eighth record
    code, out, err = sync(inbox, wh, config)
    assert code == 0, out + err
    r = rejected(wh)
    hits = r[r["error_code"] == "excel_error_value"]
    found = {(loc, col, val) for loc, col, val in hits[["source_locator", "source_column", "raw_value"]]
             .itertuples(index=False)}
    assert ("婚姻登记!3", "登记证字号", "#REF!") in found
    assert ("婚姻登记!4", "男方出生日期", "#DIV/0!") in found
    assert ("婚姻登记!10", "男方姓名", "#REF!") in found
    for i, error in enumerate(EXCEL_ERRORS[2:], start=3):
        assert (f"婚姻登记!{i + 2}", "登记机关", error) in found
    assert hits["message"].str.contains("单元格 [A-Z]+[0-9]+", regex=True).all()
    # 登记证字号 is required: its row is rejected for the error value (not as merely empty)
    row3 = r[r["source_locator"] == "婚姻登记!3"]
    assert row3["is_row_rejected"].any() and "value_missing" not in set(row3["error_code"])
    assert_counts_add_up(wh)
    led = ledger(wh)
    assert (led["rows_read"] == 9).all() and (led["rows_rejected"] == 1).all()


def test_nul_bytes_are_reported_as_nul_bytes_without_raw_bytes(tmp_path, config):
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    path = inbox / "floating_population" / "流动人口登记_20261121.csv"
    path.parent.mkdir(parents=True)
    data = csv_bytes(FLOAT_HEADERS, [float_row(i) for i in range(1, 6)], "gb18030")
    data = data.replace("赵".encode("gb18030") + given_bytes(2), "赵".encode("gb18030") + b"\x00" + given_bytes(2))
    data = data.replace(b"LD202600004", b"LD2026\x0000004")
    path.write_bytes(data)
    code, out, err = sync(inbox, wh, config)
    assert code == 0, out + err
    assert set(ledger(wh)["status"]) == {"loaded"}
    r = rejected(wh)
    nul = r[r["error_code"] == "text_nul_byte"]
    assert set(zip(nul["source_locator"], nul["source_column"])) == {("3", "姓名"), ("5", "登记编号")}
    assert nul["raw_value"].str.contains("\\x00", regex=False).all()
    assert not any("\x00" in str(v) for v in r[["raw_value", "message", "raw_row"]].to_numpy().ravel())
    assert "NUL" in nul["message"].iloc[0]
    assert_counts_add_up(wh)
    names = q(wh, "SELECT name FROM stg.mention WHERE source_locator = '3'")["name"].tolist()
    assert names and "\x00" not in names[0]


def given_bytes(i: int) -> bytes:
    from tests.bad_inputs_helpers import given

    return given(i).encode("gb18030")


def test_utf16_file_is_still_an_encoding_error_with_no_raw_bytes(tmp_path, config):
    inbox, wh = tmp_path / "inbox", tmp_path / "w.duckdb"
    path = inbox / "floating_population" / "流动人口登记_20261121.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(csv_bytes(FLOAT_HEADERS, [float_row(1)], "utf-16"))
    code, out, err = sync(inbox, wh, config)
    assert code == 4, out + err
    msg = failure_message(wh, path.name)
    assert "编码" in msg and "UTF-16" in msg and "\\x" not in msg and "b'" not in msg
    published = wh.stat().st_mtime_ns
    code, out, err = sync(inbox, wh, config)             # nothing new: the warehouse is not rewritten …
    assert wh.stat().st_mtime_ns == published
    assert code == 4 and "此前装载失败" in err           # … but the uncorrected file is still reported


# ------------------------------------------------------------- usage and configuration: 2
CONFIG_FAULTS = {
    "missing inbox": (lambda t: ["--inbox", str(t / "nope")], {}, "收件箱目录不存在"),
    "warehouse in a read-only folder": (lambda t: ["-w", "/sys/residents-w.duckdb"], {}, "仓库位置不可写"),
    "malformed TOML": (lambda t: ["-c", str(_write(t / "bad.toml", "warehouse = \n"))], {}, "不是有效的 TOML"),
    "resolution_mode = fast": (lambda t: ["-c", str(_write(t / "m.toml", 'resolution_mode = "fast"\n'))], {},
                               "resolution_mode"),
    "RESIDENTS_LOCK_TIMEOUT_S=abc": (lambda t: [], {"RESIDENTS_LOCK_TIMEOUT_S": "abc"}, "lock_timeout_s"),
    "RESIDENTS_CONFIG names a missing file": (lambda t: [], {"RESIDENTS_CONFIG": "/nonexistent/residents.toml"},
                                              "配置文件不存在"),
    "--config names a missing file": (lambda t: ["-c", str(t / "missing.toml")], {}, "配置文件不存在"),
    "misspelt key": (lambda t: ["-c", str(_write(t / "k.toml", 'warehous = "x.duckdb"\n'))], {},
                     "是否应为 warehouse"),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("fault", list(CONFIG_FAULTS))
def test_configuration_errors_exit_2_with_one_chinese_line(fault, tmp_path):
    args, env, expected = CONFIG_FAULTS[fault]
    (tmp_path / "inbox").mkdir()
    base = ["sync", "--inbox", str(tmp_path / "inbox"), "-w", str(tmp_path / "w.duckdb")]
    code, out, err = residents(*base, *args(tmp_path), env={"RESIDENTS_CONFIG": None, **env})
    assert code == 2, out + err
    line = one_line(err)
    assert expected in line
    assert not (tmp_path / "w.duckdb").exists()


def test_debug_shows_the_traceback(tmp_path):
    r = runner.invoke(app, ["--debug", "sync", "--inbox", str(tmp_path / "nope"), "-w", str(tmp_path / "w.duckdb")])
    assert r.exit_code != 0 and r.exception is not None and "收件箱目录不存在" in str(r.exception)


def test_backfill_dates_are_checked_and_a_month_is_accepted(inbox, wh, config):
    code, out, err = residents("backfill", "low_income", "--since", "2026-06-30", "--until", "2026-05-01",
                               "--inbox", str(inbox), "-w", str(wh), "-c", str(config))
    assert code == 2 and "晚于" in one_line(err)
    code, out, err = residents("backfill", "low_income", "--since", "2026-5-1x", "--until", "2026-05",
                               "--inbox", str(inbox), "-w", str(wh), "-c", str(config))
    assert code == 2 and "YYYY-MM" in one_line(err)
    code, out, err = residents("backfill", "low_income", "--since", "2026-05", "--until", "2026-05",
                               "--inbox", str(inbox), "-w", str(wh), "-c", str(config), "--no-prefect")
    assert code == 0, out + err
    led = ledger(wh)
    assert set(led.loc[led["status"] == "loaded", "source_object"]) == {"低保花名册_202605.xlsx"}
    code, out, err = residents("backfill", "low_income", "--since", "2027-01", "--until", "2027-02",
                               "--inbox", str(inbox), "-w", str(wh), "-c", str(config), "--no-prefect")
    assert code == 0 and "没有导出" in out


# ------------------------------------------------------------------- crashes and the lock
def _session_members(sid: int) -> list[int]:
    """Processes (other than zombies) whose session id is `sid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.mark.parametrize("delay", [0.0, 1.0, 2.5])
def test_kill_9_mid_sync_leaves_no_process_records_the_run_and_rerun_equals_clean_load(
        delay, inbox, wh, config, clean, tmp_path):
    half = tmp_path / "half"
    for ef in discover_exports(inbox).files:
        if ef.export_date.isoformat() < "2026-07-01":
            target = half / ef.path.relative_to(inbox)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ef.path, target)
    shutil.copytree(inbox / "family_planning", half / "family_planning")
    assert sync(half, wh, config)[0] == 0
    before = wh.read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "residents"), "sync", "--inbox", str(inbox), "-w", str(wh),
                             "-c", str(config)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    building = wh.with_name(wh.name + ".building")
    deadline = time.monotonic() + 120
    while not building.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(delay)
    assert proc.poll() is None, "the sync finished before it could be killed"
    proc.send_signal(signal.SIGKILL)                         # the process alone, as the OOM killer would
    proc.wait()
    time.sleep(0.5)
    assert _session_members(proc.pid) == []                 # no orphan (no Prefect server, no helper)
    assert wh.read_bytes() == before                        # the published warehouse is intact
    lock_text = wh.with_name(wh.name + ".lock").read_text()
    assert f"pid={proc.pid}" in lock_text                   # the dead process's text is left behind …
    code, out, err = sync(inbox, wh, config)                # … recognised as stale: not busy
    assert code == 0, out + err
    runs = q(wh, "SELECT status, summary FROM quality.run WHERE status = 'interrupted'")
    assert len(runs) == 1 and json.loads(runs["summary"][0])["pid"] == str(proc.pid)
    assert wh.with_name(wh.name + ".lock").read_text() == ""  # a clean exit leaves no holder text
    assert_same(clean, snapshot(wh, canonical_ids=True))


def test_busy_message_names_the_live_holder_not_stale_text(tmp_path, inbox, config):
    wh = tmp_path / "w.duckdb"
    lock = wh.with_name(wh.name + ".lock")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('ok', flush=True); time.sleep(60)", str(lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        lock.write_text("pid=999999999 run=20261201T000000-dead00 flow=nightly_sync since=2026-12-01T02:00:00\n")
        cfg = _write(tmp_path / "busy.toml", CONFIG.replace("lock_timeout_s = 5", "lock_timeout_s = 0.5"))
        code, out, err = sync(inbox, wh, cfg)
    finally:
        holder.kill()
        holder.wait()
    assert code == 3
    line = one_line(err)
    assert "999999999 已不存在" in line and f"pid={holder.pid}" in line


# ------------------------------------------------------- readers of the published warehouse
def test_a_reader_sees_the_new_version_once_every_connection_of_its_process_is_closed(inbox, wh, config):
    """What the README says about readers: a process that keeps any connection to the
    file open keeps seeing the version it opened (DuckDB shares one database instance
    per file within a process); closing them all and connecting again shows the new one."""
    half = inbox.parent / "half"
    (half / "low_income").mkdir(parents=True)
    shutil.copy2(inbox / "low_income" / "低保花名册_202604.xlsx", half / "low_income")
    assert sync(half, wh, config)[0] == 0
    count = "SELECT count(*) FROM quality.load_ledger WHERE status = 'loaded'"
    first = duckdb.connect(str(wh), read_only=True)
    old = first.execute(count).fetchall()[0][0]
    assert sync(inbox, wh, config)[0] == 0
    second = duckdb.connect(str(wh), read_only=True)          # opened while `first` is still open
    assert second.execute(count).fetchall()[0][0] == old      # the same (old) instance
    second.close()
    first.close()
    third = duckdb.connect(str(wh), read_only=True)
    try:
        assert third.execute(count).fetchall()[0][0] > old
    finally:
        third.close()


@pytest.mark.slow
def test_kill_9_of_serve_leaves_no_prefect_server_behind(inbox, wh, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "residents"), "serve", "--inbox", str(inbox), "-w", str(wh),
                             "--cron", "0 2 * * *"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        line = ""
        while time.monotonic() < deadline and "Prefect 服务器" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "serve exited before its server was up"
        assert "Prefect 服务器" in line
        assert len(_session_members(proc.pid)) >= 2              # serve and the server it started
    finally:
        proc.send_signal(signal.SIGKILL)                        # serve alone, not its process group
        proc.wait()
    deadline = time.monotonic() + 60
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _session_members(proc.pid)
    for pid in left:  # do not leave an orphan behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == []


@pytest.mark.postgres
def test_locked_postgresql_table_is_retried_then_fails_alone(inbox, wh, config, pg_url):
    """The family-planning database on PostgreSQL, its table locked by another session
    (`LOCK TABLE … ACCESS EXCLUSIVE`): the read waits `source_timeout_s`, is retried,
    then that source fails alone; once the lock is gone it loads."""
    import pandas as pd
    import sqlalchemy as sa

    db = f"fp_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {db}")
    url = sa.engine.make_url(pg_url).set(database=db).render_as_string(hide_password=False)
    source = sqlite3.connect(next((inbox / "family_planning").glob("*.sqlite")))
    engine = sa.create_engine(url)
    try:
        for table in ("T_YLFN", "T_ZN"):
            pd.read_sql(f"SELECT * FROM {table}", source).to_sql(table, engine, index=False)
        shutil.rmtree(inbox / "family_planning")
        locker = engine.connect()
        locker.exec_driver_sql('BEGIN; LOCK TABLE "T_YLFN" IN ACCESS EXCLUSIVE MODE')
        try:
            code, out, err = sync(inbox, wh, config, "--family-planning-url", url)
        finally:
            locker.rollback()
            locker.close()
        assert code == 4, out + err
        assert_others_loaded(wh, file_exports(inbox), {"T_YLFN", "T_ZN"})
        assert "锁定" in failure_message(wh, "T_YLFN") and "已尝试 3 次" in failure_message(wh, "T_YLFN")
        code, out, err = sync(inbox, wh, config, "--family-planning-url", url)
        assert code == 0, out + err
        assert {"T_YLFN", "T_ZN"} <= {n for n, st in statuses(wh).items() if "loaded" in st}
        assert_counts_add_up(wh)
    finally:
        source.close()
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.dispose()


def test_a_first_sync_whose_only_export_fails_publishes_an_empty_warehouse_and_exits_4(tmp_path, config):
    """Nothing staged at all (the one export of a new district is unreadable): the sync
    still records the failure, publishes and says so, instead of crashing in resolution."""
    inbox = tmp_path / "only"
    (inbox / "floating_population").mkdir(parents=True)
    (inbox / "floating_population" / "流动人口登记_20260702.csv").write_bytes(b"garbage,,\nzz,,\n")
    wh = tmp_path / "only.duckdb"
    code, out, err = sync(inbox, wh, config)
    assert code == 4, out + err
    assert "部分文件未装载" in out and "流动人口" in out
    assert statuses(wh) == {"流动人口登记_20260702.csv": {"failed"}}
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM core.person").fetchone()[0] == 0
