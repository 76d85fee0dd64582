"""The audit log (issue 11 item 5): every officer action that reveals or changes a
person is recorded with who, when, what and why; entries go to the journal first and
survive every later publish of the warehouse; `residents audit` lists them in Chinese."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import synth
from cli import app
from tests.e2e_helpers import sync
from warehouse import audit, store

runner = CliRunner()


def table_rows(wh: Path) -> list[tuple]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute("SELECT audit_id, actor, action, target, reason, outcome FROM quality.audit "
                           "ORDER BY occurred_at").fetchall()
    finally:
        con.close()


def test_entries_reach_the_table_with_the_next_publish_and_are_never_lost(tmp_path):
    wh = tmp_path / "w.duckdb"
    store.initialise(wh)
    first = audit.record(wh, audit.cli_entry("lookup", target="身份证号 220402198001010019", reason="窗口办理"))
    assert table_rows(wh) == []  # readers cannot write the published file: the journal holds it
    columns, rows = audit.list_entries(wh)
    assert columns[:5] == ["时间", "操作人", "角色", "渠道", "操作"]
    assert [r[-1] for r in rows] == [first.audit_id] and rows[0][4] == "查找人员"

    with store.transaction(wh) as con:  # any publish (sync, backfill, decision) folds the journal
        # an entry written while that publish runs (after it folded) is not in its copy …
        late = audit.record(wh, audit.cli_entry("view_person", target="P0000000001"))
        con.execute("SELECT 1")
    assert [r[0] for r in table_rows(wh)] == [first.audit_id]
    assert {r["audit_id"] for r in audit.journal_entries(wh)} == {first.audit_id, late.audit_id}
    # … and is folded by the next one; nothing is folded twice
    store.initialise(wh)
    store.initialise(wh)
    rows = table_rows(wh)
    assert [r[0] for r in rows] == [first.audit_id, late.audit_id]
    assert rows[0][1:] == (audit.os_user(), "lookup", "身份证号 220402198001010019", "窗口办理", "done")
    assert len(audit.list_entries(wh)[1]) == 2  # table and journal are not listed twice
    assert (audit.journal_path(wh).stat().st_mode & 0o777) == 0o600


def test_a_torn_journal_line_is_skipped_and_the_rest_kept(tmp_path):
    wh = tmp_path / "w.duckdb"
    store.initialise(wh)
    kept = audit.record(wh, audit.cli_entry("query", target="SELECT 1"))
    with open(audit.journal_path(wh), "a", encoding="utf-8") as fh:
        fh.write('{"audit_id": "A1", "actor": "x"')  # a crash in the middle of an append
    assert [e["audit_id"] for e in audit.journal_entries(wh)] == [kept.audit_id]
    after = audit.record(wh, audit.cli_entry("query", target="SELECT 2"))  # not glued to the torn line
    store.initialise(wh)
    assert [r[0] for r in table_rows(wh)] == [kept.audit_id, after.audit_id]


def test_an_unwritable_journal_refuses_the_action(tmp_path):
    wh = tmp_path / "w.duckdb"
    store.initialise(wh)
    audit.journal_path(wh).mkdir()  # cannot be opened for appending (even by root)
    with pytest.raises(audit.AuditUnavailableError, match="审计日志"):
        audit.record(wh, audit.cli_entry("lookup", target="x"))
    result = runner.invoke(app, ["query", "-w", str(wh), "SELECT 42 AS answer"])
    assert result.exit_code == 1
    assert "42" not in result.stdout and "审计日志" in result.stderr


def test_unknown_actions_are_rejected():
    with pytest.raises(ValueError):
        audit.cli_entry("peek", target="x")


@pytest.fixture(scope="module")
def district(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("audit")
    synth.generate(root / "inbox", households=40, seed=7, noise="realistic", days=3)
    wh = root / "w.duckdb"
    sync(root / "inbox", wh)
    return root / "inbox", wh


@pytest.mark.slow
def test_cli_actions_on_persons_are_audited(district, tmp_path):
    inbox, base = district
    wh = tmp_path / "w.duckdb"
    shutil.copy(base, wh)
    con = duckdb.connect(str(wh), read_only=True)
    try:
        pid, cid, name = con.execute("SELECT person_id, citizen_id, name FROM core.person WHERE citizen_id IS NOT NULL "
                                     "ORDER BY citizen_id LIKE '%X' DESC, person_id LIMIT 1").fetchall()[0]
        a, b = con.execute("SELECT min(mention_id) FROM core.person_xref GROUP BY person_id HAVING count(*) = 1 "
                           "ORDER BY 1 LIMIT 2").fetchall()
    finally:
        con.close()
    a, b = a[0], b[0]
    disguised = " ".join([cid[:6], cid[6:14], cid[14:]]).replace("X", "x")
    r = runner.invoke(app, ["lookup", "-w", str(wh), disguised, "--reason", "窗口核对身份", "--format", "csv"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("人员编号,姓名,身份证号,性别")
    assert f"{pid},{name},{cid}," in r.stdout
    r = runner.invoke(app, ["explain", "-w", str(wh), pid])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["unlink", "-w", str(wh), a, b, "--by", "李四", "--reason", "不同的人"])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["link", "-w", str(wh), a, b, "--by", "张三", "--reason", "其实相同"])
    assert r.exit_code == 1  # contradicts the unlink: refused, and the refusal is audited
    r = runner.invoke(app, ["audit", "-w", str(wh), "--format", "csv", "--limit", "50"])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("时间,操作人,角色,渠道,操作,对象,理由,结果,说明")
    body = "\n".join(lines[1:])
    assert re.search(rf"查找人员,身份证号 {cid},窗口核对身份,完成,找到 1 人：{pid}", body)
    assert f"解释匹配,{pid}" in body
    assert re.search(rf"确认不是同一人,{re.escape(a)} ↔ {re.escape(b)},不同的人,完成,决定人 李四", body)
    assert re.search(rf"确认是同一人,{re.escape(a)} ↔ {re.escape(b)},其实相同,被拒绝,决定人 张三；与此前的决定矛盾", body)
    # a later sync publishes them into quality.audit, and they stay there
    sync(inbox, wh, selection=__import__("flows").Selection(full=True))
    actions = {r[2] for r in table_rows(wh)}
    assert {"lookup", "explain", "unlink", "link"} <= actions
    journal = [json.loads(x) for x in audit.journal_path(wh).read_text(encoding="utf-8").splitlines()]
    assert {e["audit_id"] for e in journal} == {r[0] for r in table_rows(wh)}
    r = runner.invoke(app, ["audit", "-w", str(wh), "--action", "unlink", "-f", "csv"])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 2 and "确认不是同一人" in r.stdout and "李四" in r.stdout
    r = runner.invoke(app, ["audit", "-w", str(wh), "--action", "unlink"])
    assert r.exit_code == 0 and "审计日志（最新 1 条）" in r.stdout and "操作人" in r.stdout
    r = runner.invoke(app, ["audit", "-w", str(wh), "--action", "peek"])
    assert r.exit_code == 2
