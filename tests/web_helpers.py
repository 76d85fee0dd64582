"""A real `residents web` server (a subprocess on a free loopback port) and a headless
Chromium driven through selenium with Debian's chromium-driver (nothing downloaded)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

RESIDENTS = str(Path(sys.executable).with_name("residents"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def web_server(warehouse: Path, *, env: dict[str, str] | None = None) -> Iterator[str]:
    """`residents web` on a free port until the block ends; yields its base URL."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="residents-web-", suffix=".log", delete=False)
    proc = subprocess.Popen([RESIDENTS, "web", "-w", str(warehouse), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            cwd=warehouse.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/login", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError("residents web did not start: " + Path(log.name).read_text()[-2000:])
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver); under CI=true a missing one fails the test, else skips it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = "chromium" if chromium is None else "chromium-driver"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing} is not installed but CI=true: the browser test must run in CI (.ci/run installs it)")
        pytest.skip(f"{missing} not installed (apt-get install chromium chromium-driver fonts-noto-cjk)")
    return chromium, driver


@contextlib.contextmanager
def chromium_driver(width: int = 1400, height: int = 1000) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_paths()
    profile = tempfile.mkdtemp(prefix="chromium-web-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--lang=zh-CN", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(180)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_id(browser: object, element_id: str, timeout_s: float = 180.0) -> object:
    """The element with this id once the page that carries it has loaded.

    A click that submits a form returns before the server has answered (a decision
    re-publishes the warehouse), so reading the page right after the click races the
    navigation.  An error page (``#message``) ends the wait at once, and its text is
    the failure message, so a refused or failed step says why instead of timing out."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(driver: object) -> object:
        for el in driver.find_elements(By.ID, element_id):
            return el
        for el in driver.find_elements(By.ID, "message"):
            return el
        return False

    el = WebDriverWait(browser, timeout_s, poll_frequency=0.2).until(
        found, f"#{element_id} never appeared on {browser.current_url}")
    if el.get_attribute("id") != element_id:
        body = browser.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"expected #{element_id} on {browser.current_url}, got an error page:\n{body}")
    return el


def png_pixels(png: bytes) -> bytes:
    """The decompressed scanlines of a PNG (stdlib only)."""
    import struct
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            idat += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)
