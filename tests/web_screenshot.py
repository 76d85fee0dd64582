"""Regenerate the README's screenshots of `residents web` (docs/web-*.png) on a demo
warehouse: `python -m tests.web_screenshot demo_output/warehouse.duckdb`.

Copies the warehouse to a temporary folder (the original is not touched), opens a
throw-away officer account, logs in with headless Chromium and photographs the search,
the resident page and the review queue."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import duckdb

from tests.web_helpers import chromium_driver, web_server
from webapp import accounts

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main(warehouse: Path) -> None:
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp:
        wh = Path(tmp) / "w.duckdb"
        shutil.copy(warehouse, wh)
        accounts.add_user(wh.with_name(wh.name + ".web_users.json"), "王科员", "screenshot-pass", "officer")
        con = duckdb.connect(str(wh), read_only=True)
        name = con.execute("SELECT name FROM core.person WHERE mention_count >= 3 AND NOT is_deceased "
                           "ORDER BY person_id LIMIT 1").fetchall()[0][0]
        con.close()
        with web_server(wh) as base, chromium_driver(1400, 1100) as browser:
            browser.get(base + "/login")
            browser.find_element(By.ID, "user").send_keys("王科员")
            browser.find_element(By.ID, "password").send_keys("screenshot-pass")
            browser.find_element(By.ID, "login").click()
            browser.find_element(By.ID, "q").send_keys(name)
            browser.find_element(By.ID, "reason").send_keys("窗口办理")
            browser.find_element(By.ID, "search").click()
            browser.save_screenshot(str(DOCS / "web-search.png"))
            browser.find_element(By.CSS_SELECTOR, "td a").click()
            browser.set_window_size(1400, 2200)
            browser.save_screenshot(str(DOCS / "web-resident.png"))
            browser.set_window_size(1400, 1100)
            browser.get(base + "/review")
            browser.save_screenshot(str(DOCS / "web-review.png"))
    for p in sorted(DOCS.glob("web-*.png")):
        print(p, p.stat().st_size)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
