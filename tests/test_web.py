"""`residents web` (issue 14 item 1): a real server on a generated district, driven by
HTTP and by a real headless Chromium as an officer would (log in, search, open a
resident, decide a review pair, see the audit entry)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import httpx
import pytest

import synth
from tests.e2e_helpers import sync
from tests.web_helpers import RESIDENTS, chromium_driver, png_pixels, wait_for_id, web_server
from webapp import accounts

pytestmark = pytest.mark.slow

OFFICER, OFFICER_PW = "王科员", "officer-pass-1"
ANALYST, ANALYST_PW = "analyst1", "analyst-pass-1"


@pytest.fixture(scope="module")
def district(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("web")
    # the demo's district: small, and it leaves pairs for the review queue
    synth.generate(root / "inbox", households=80, seed=20261121, noise="realistic")
    wh = root / "w.duckdb"
    sync(root / "inbox", wh)
    # the review queue must not be empty whatever this district's matcher settles on its own:
    # two records of different persons are put up as an uncertain pair, as the resolver does
    from warehouse import store

    if not rows(wh, "SELECT count(*) FROM core.match_candidate WHERE reason = 'uncertain'")[0][0]:
        # one of them without a valid ID, so that 是 (link) does not join two valid IDs
        singles = ("SELECT x.mention_id, m.id_status FROM core.person_xref x JOIN stg.mention m USING (mention_id) "
                   "WHERE x.person_id IN (SELECT person_id FROM core.person_xref GROUP BY 1 HAVING count(*) = 1)")
        (a,), = rows(wh, f"SELECT min(mention_id) FROM ({singles}) WHERE id_status <> 'valid'")
        (b,), = rows(wh, f"SELECT min(mention_id) FROM ({singles}) WHERE mention_id <> ?", [a])
        with store.transaction(wh) as con:
            con.execute("INSERT INTO core.match_candidate VALUES (?, ?, NULL, NULL, 0.7, 1.2, 'uncertain', NULL)",
                        sorted([a, b]))
    return wh


def copy_of(district: Path, tmp_path: Path) -> Path:
    wh = tmp_path / "w.duckdb"
    shutil.copy(district, wh)
    users = wh.with_name(wh.name + ".web_users.json")
    accounts.add_user(users, OFFICER, OFFICER_PW, "officer")
    accounts.add_user(users, ANALYST, ANALYST_PW, "analyst")
    return wh


def rows(wh: Path, sql: str, params=()) -> list[tuple]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def login(base: str, user: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=True, timeout=180)
    r = client.post("/login", data={"user": user, "password": password, "next": "/"})
    assert r.status_code == 200, r.text[-500:]
    return client


def audit_rows(wh: Path) -> list[dict]:
    from warehouse.audit import journal_entries

    return journal_entries(wh)


def test_search_finds_a_resident_however_the_officer_writes_them(district, tmp_path):
    from opencc import OpenCC

    wh = copy_of(district, tmp_path)
    pid, cid, name, pinyin, phone = rows(wh, """
        SELECT person_id, citizen_id, name, name_pinyin, phone FROM core.person
        WHERE citizen_id LIKE '______19%' AND phone LIKE '1__________' AND length(name) >= 2
        ORDER BY person_id LIMIT 1""")[0]
    address = rows(wh, """SELECT a.standard_text FROM core.person_address pa JOIN core.address a USING (address_id)
                          WHERE pa.person_id = ? AND a.room IS NOT NULL LIMIT 1""", [pid])
    old15 = cid[:6] + cid[8:17]
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in cid[:9]) + " " + cid[9:].lower()
    searches = [cid, old15, fullwidth, f"{cid[:6]} {cid[6:14]} {cid[14:]}", name, OpenCC("s2t").convert(name),
                pinyin, f"{phone[:3]} {phone[3:7]} {phone[7:]}", *(a[0] for a in address)]
    with web_server(wh) as base:
        client = login(base, OFFICER, OFFICER_PW)
        for text in searches:
            page = client.get("/", params={"q": text, "reason": "窗口办理"}).text
            assert f"/person/{pid}" in page, f"searching {text!r} did not find {pid}"
        bad = client.get("/", params={"q": "220402198001010011", "kind": "citizen_id"}).text
        assert "无法按身份证号查找" in bad
    lookups = [e for e in audit_rows(wh) if e["action"] == "lookup"]
    assert len(lookups) == len(searches)  # the invalid ID revealed nothing and is not a lookup
    assert {e["actor"] for e in lookups} == {OFFICER} and {e["channel"] for e in lookups} == {"web"}
    assert all(e["reason"] == "窗口办理" and pid in e["detail"] for e in lookups)


def test_analysts_see_only_the_deidentified_overview(district, tmp_path):
    wh = copy_of(district, tmp_path)
    pid = rows(wh, "SELECT min(person_id) FROM core.person")[0][0]
    names = {r[0] for r in rows(wh, "SELECT name FROM core.person WHERE length(name) >= 3")}
    with web_server(wh) as base:
        client = login(base, ANALYST, ANALYST_PW)
        overview = client.get("/")
        assert overview.url.path == "/overview" and "辖区概况" in overview.text and "人员数" in overview.text
        assert not re.search(r"\d{17}[\dX]", overview.text), "a citizen ID on the analysts' page"
        assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", overview.text), "a mobile number on the analysts' page"
        assert not [n for n in names if n in overview.text], "a resident's name on the analysts' page"
        for path in ("/?q=" + pid, f"/person/{pid}", "/review", "/link", "/audit", f"/explain?a={pid}&b={pid}"):
            r = client.get(path)
            assert r.status_code == 403 and "仅限工作人员" in r.text, path
        assert pid not in client.get(f"/person/{pid}").text
    assert not [e for e in audit_rows(wh) if e["action"] == "view_person"]


def test_login_failures_are_audited_and_forms_need_their_token(district, tmp_path):
    wh = copy_of(district, tmp_path)
    a, b = rows(wh, "SELECT mention_id_a, mention_id_b FROM core.match_candidate LIMIT 1")[0]
    with web_server(wh) as base:
        anonymous = httpx.Client(base_url=base, timeout=60)
        assert anonymous.get("/person/P0000000001").status_code == 303  # to the login page
        r = anonymous.post("/login", data={"user": OFFICER, "password": "wrong-password"})
        assert r.status_code == 401 and "账号或密码错误" in r.text
        client = login(base, OFFICER, OFFICER_PW)
        assert "Content-Security-Policy" in client.get("/").headers
        r = client.post("/review/decide", data={"a": a, "b": b, "decision": "yes", "reason": "x"})
        assert r.status_code == 403  # no form token: refused before anything is written
        # an audit journal that cannot be written: nothing about a person is shown
        journal = wh.with_name(wh.name + ".audit.jsonl")
        journal.rename(journal.with_suffix(".kept"))
        journal.mkdir()
        pid, name = rows(wh, "SELECT person_id, name FROM core.person ORDER BY person_id LIMIT 1")[0]
        for path in (f"/?q={name}", f"/person/{pid}", "/review"):
            r = client.get(path)
            assert r.status_code == 503 and "无法写入审计日志" in r.text and pid not in r.text, path
        journal.rmdir()
        journal.with_suffix(".kept").rename(journal)
    assert rows(wh, "SELECT count(*) FROM core.link_decision")[0][0] == 0
    entries = audit_rows(wh)
    assert [(e["action"], e["actor"], e["outcome"]) for e in entries if e["action"].startswith("login")] == [
        ("login_failed", OFFICER, "refused"), ("login", OFFICER, "done")]
    users = wh.with_name(wh.name + ".web_users.json")
    assert OFFICER_PW not in users.read_text(encoding="utf-8") and (users.stat().st_mode & 0o777) == 0o600


def test_link_and_unlink_in_the_browser_keep_the_conflict_rules(district, tmp_path):
    wh = copy_of(district, tmp_path)
    a, b = (r[0] for r in rows(wh, "SELECT min(mention_id) FROM core.person_xref GROUP BY person_id "
                                    "HAVING count(*) = 1 ORDER BY 1 LIMIT 2"))
    with web_server(wh) as base:
        client = login(base, OFFICER, OFFICER_PW)
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/link").text).group(1)
        r = client.post("/link", data={"csrf": csrf, "a": a, "b": b, "what": "unlink", "reason": "不同的人"})
        assert r.status_code == 200 and "不是同一人" in r.text and "已记录" in r.text
        r = client.post("/link", data={"csrf": csrf, "a": a, "b": b, "what": "link", "reason": "其实相同"})
        assert r.status_code == 409 and "与此前的决定矛盾" in r.text
        r = client.post("/link", data={"csrf": csrf, "a": a, "b": b, "what": "link", "reason": "核对原件后确认",
                                       "force": "1"})
        assert r.status_code == 200 and "已记录" in r.text
    decisions = rows(wh, "SELECT decision, decided_by, channel, reason, is_active FROM core.link_decision "
                         "ORDER BY decided_at")
    assert decisions == [("cannot_link", OFFICER, "web", "不同的人", False),
                         ("must_link", OFFICER, "web", "核对原件后确认", True)]
    assert rows(wh, "SELECT count(DISTINCT person_id) FROM core.person_xref WHERE mention_id IN (?, ?)", [a, b])[0][0] == 1
    outcomes = [(e["action"], e["outcome"], e["reason"]) for e in audit_rows(wh) if e["action"] in ("link", "unlink")]
    assert outcomes == [("unlink", "done", "不同的人"), ("link", "refused", "其实相同"), ("link", "done", "核对原件后确认")]


def test_officer_walkthrough_in_headless_chromium(district, tmp_path):
    """Log in, search, open a resident, decide a review pair, find the audit entry —
    clicking and typing in a real Chromium; screenshots must show rendered Chinese."""
    from selenium.webdriver.common.by import By

    wh = copy_of(district, tmp_path)
    pid, name, cid = rows(wh, "SELECT person_id, name, citizen_id FROM core.person WHERE mention_count >= 2 "
                              "AND citizen_id IS NOT NULL ORDER BY person_id LIMIT 1")[0]
    pairs = rows(wh, "SELECT count(*) FROM core.match_candidate")[0][0]
    assert pairs > 0, "the generated district should leave pairs to review"
    with web_server(wh) as base, chromium_driver() as browser:
        browser.get(base + "/")
        assert "/login" in browser.current_url
        browser.find_element(By.ID, "user").send_keys(OFFICER)
        browser.find_element(By.ID, "password").send_keys(OFFICER_PW)
        browser.find_element(By.ID, "login").click()
        wait_for_id(browser, "q").send_keys(name)
        browser.find_element(By.ID, "reason").send_keys("窗口办理低保")
        browser.find_element(By.ID, "search").click()
        assert "查找：姓名" in wait_for_id(browser, "result-title").text
        search_png = browser.get_screenshot_as_png()
        browser.find_element(By.LINK_TEXT, pid).click()
        golden = wait_for_id(browser, "golden")
        text = browser.find_element(By.TAG_NAME, "body").text
        for heading in ("居民信息", "各部门记录（文件、工作表、行号）", "家庭与关系", "地址及有效期", "低保享受期间",
                        "跨部门预警", "数据问题", "关联依据"):
            assert heading in text, heading
        assert cid in golden.text
        person_png = browser.get_screenshot_as_png()
        (tmp_path / "person.png").write_bytes(person_png)

        browser.find_element(By.LINK_TEXT, "待复核匹配").click()
        box = wait_for_id(browser, "pair-1")
        a = box.find_element(By.NAME, "a").get_attribute("value")
        b = box.find_element(By.NAME, "b").get_attribute("value")
        box.find_element(By.CSS_SELECTOR, "input[name=decision][value=no]").click()
        box.find_element(By.NAME, "reason").send_keys("出生日期不同，不是同一人")
        box.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        assert "已记录" in wait_for_id(browser, "done").text

        browser.find_element(By.LINK_TEXT, "审计日志").click()
        wait_for_id(browser, "audit-title")
        audit_text = browser.find_element(By.TAG_NAME, "body").text
        assert "复核决定" in audit_text and "出生日期不同，不是同一人" in audit_text and OFFICER in audit_text
        assert "查看人员页" in audit_text and pid in audit_text and "窗口办理低保" in audit_text

        # Chinese rendered as glyphs, not as the empty boxes of a missing CJK font: two
        # different characters must not draw the same picture
        browser.get("data:text/html;charset=utf-8,<p><span id='x' style='font-size:64px'>审</span> "
                    "<span id='y' style='font-size:64px'>户</span></p>")
        assert browser.find_element(By.ID, "x").screenshot_as_png != browser.find_element(By.ID, "y").screenshot_as_png
    for png in (search_png, person_png):
        pixels = png_pixels(png)
        assert len(png) > 20_000 and sum(1 for p in pixels[::7] if p not in (0, 255)) > len(pixels) // 700
    assert rows(wh, "SELECT decision, decided_by, channel, reason FROM core.link_decision") == [
        ("cannot_link", OFFICER, "web", "出生日期不同，不是同一人")]
    assert rows(wh, "SELECT count(*) FROM core.link_decision WHERE mention_id_a IN (?, ?)", [a, b])[0][0] == 1
    cli = subprocess.run([RESIDENTS, "audit", "-w", str(wh), "--action", "review_decide", "--format", "csv"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert f"{OFFICER},工作人员,网页,复核决定" in cli.stdout and "出生日期不同，不是同一人" in cli.stdout
