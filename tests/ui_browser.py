"""What the ui tests share: headless Debian Chromium through Selenium, a ui server started as a subprocess
(the real entry point), and the page screenshots kept as test artifacts.

Screenshots go to ``tests/artifacts/ui/`` (or ``$GUIAGENT_TEST_ARTIFACTS``), made at run time; each test
prints the path it wrote.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("GUIAGENT_TEST_ARTIFACTS", Path(__file__).parent / "artifacts")) / "ui"

needs_chromium = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator:
    """A headless Chromium WebDriver, quit on exit (also when the test fails)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # for console_errors
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--allow-file-access-from-files"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def server(argv: list[str], port: int, log: Path, timeout: float = 60.0) -> Iterator[str]:
    """Run ``python -m guiagent ARGV`` until the block ends; yields its base URL once the port answers.

    The process gets its own session and is stopped by its PID (SIGTERM, then SIGKILL) on exit.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "guiagent", *argv], stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{argv} exited with {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv} did not listen on {port} within {timeout}s:\n{log.read_text()}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


def console_errors(driver) -> list[str]:
    """The page's console errors since the last call (script errors, refused scripts, failed loads); the
    browser's own request for /favicon.ico is not one of ours."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]]


def save_screenshot(driver, name: str) -> Path:
    """Save the page as ``ARTIFACTS/<name>.png`` (the whole page height) and print where."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(height, 600), 6000))
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def wait_for(driver, predicate, timeout: float, what: str):
    """Selenium's wait: ``predicate(driver)`` until it returns a true value (returned); fails naming ``what``."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate, message=f"not within {timeout}s: {what}")


def has_redis() -> bool:
    return shutil.which("redis-server") is not None
