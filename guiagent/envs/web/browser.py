"""One headless Chromium driven through chromedriver (Selenium), always reaped.

chromedriver and Chromium are Debian's (``apt-get install chromium chromium-driver``), found through
``MINIWOB_CHROME_BINARY`` / ``MINIWOB_CHROMEDRIVER`` or on the ``PATH``; Selenium's own driver download
(selenium-manager) is never used. Every process of the browser lives in one process group led by a reaper
(:mod:`guiagent.envs.web.reaper`) that kills the group when the owning process closes the browser or dies,
also by SIGKILL. (Chromium's crash handler, ``chrome_crashpad_handler``, daemonizes out of the group; it exits
by itself within a second or two once the browser it serves is gone, as measured here.)
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

from guiagent.errors import ConfigError, DeviceLost, DeviceNotReady

log = logging.getLogger(__name__)

# Headless, no GPU, no sandbox (root in containers), /tmp instead of a small /dev/shm (Docker's is 64 MB),
# nothing that phones home or runs in the background.
CHROMIUM_FLAGS = ("--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
                  "--no-first-run", "--disable-extensions", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--metrics-recording-only")


def find_binaries(chrome_binary: str | None = None, chromedriver: str | None = None) -> tuple[str, str]:
    """The Chromium and chromedriver executables: the arguments, else ``MINIWOB_CHROME_BINARY`` /
    ``MINIWOB_CHROMEDRIVER``, else ``chromium`` / ``chromedriver`` on the ``PATH``.

    Raises:
        ConfigError: one of them is not installed (names the Debian package).
    """
    chrome = chrome_binary or os.environ.get("MINIWOB_CHROME_BINARY") or shutil.which("chromium")
    driver = chromedriver or os.environ.get("MINIWOB_CHROMEDRIVER") or shutil.which("chromedriver")
    for path, package in ((chrome, "chromium"), (driver, "chromium-driver")):
        if not path or not os.access(path, os.X_OK):
            raise ConfigError(f"no {package} executable ({path or 'not on the PATH'}): the web env needs Debian's "
                              f"'{package}' (apt-get install chromium chromium-driver)")
    return chrome, driver


class Browser:
    """A headless Chromium under chromedriver, in a process group its reaper kills.

    Args:
        chrome_binary: Chromium executable (default: see :func:`find_binaries`).
        chromedriver: chromedriver executable (default: see :func:`find_binaries`).
        timeout: Seconds every WebDriver command may take (page loads and scripts included).

    Raises:
        ConfigError: Chromium or chromedriver is not installed.
        DeviceNotReady: the browser did not start (the reaper has removed what did start).
    """

    def __init__(self, chrome_binary: str | None = None, chromedriver: str | None = None, timeout: float = 30.0):
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service

        chrome, driver = find_binaries(chrome_binary, chromedriver)
        # The reaper first, as a group leader; chromedriver then joins its group (and Chromium inherits it),
        # so a browser is never, even for an instant, outside a group that somebody will kill.
        self._reaper = subprocess.Popen([sys.executable, "-m", "guiagent.envs.web.reaper"], stdin=subprocess.PIPE,
                                        process_group=0)
        self.pgid = self._reaper.pid
        options = webdriver.ChromeOptions()
        options.binary_location = chrome
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        service = Service(executable_path=driver, popen_kw={"process_group": self.pgid})
        try:
            self.driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as exc:
            self.close()
            raise DeviceNotReady(f"Chromium did not start under {driver}: {exc.msg or exc}") from None
        self.driver.set_page_load_timeout(timeout)
        self.driver.set_script_timeout(timeout)
        # The http client's own read timeout: a hung browser must not block a command forever.
        self.driver.command_executor.client_config.timeout = timeout
        self.chromedriver_pid = service.process.pid

    def pids(self) -> list[int]:
        """PIDs of the browser's running processes (chromedriver, Chromium and its helpers), reaper excluded."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.pgid:
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == self.pgid:  # state, then ppid, then pgrp
                found.append(int(entry))
        return sorted(found)

    def browser_pid(self) -> int | None:
        """PID of Chromium's browser process (the one chromedriver started), or None when it is gone."""
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == self.chromedriver_pid:
                        return pid
            except OSError:
                continue
        return None

    def close(self, grace: float = 5.0) -> None:
        """Quit the browser, then let the reaper kill whatever is left of its group. Safe to call twice."""
        driver = getattr(self, "driver", None)
        if driver is not None:
            self.driver = None
            try:
                driver.command_executor.client_config.timeout = grace
                driver.quit()
            except Exception:  # a dead or hung browser cannot quit: the reaper kills it below
                log.debug("quitting the browser failed", exc_info=True)
        if self._reaper.stdin is not None and not self._reaper.stdin.closed:
            self._reaper.stdin.close()  # end-of-file: the reaper kills the group
        try:
            self._reaper.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.pgid, 9)
            self._reaper.wait()


def lost(exc: BaseException, what: str) -> DeviceLost:
    """A WebDriver failure as the device error the farm recovers from (the browser or its driver is gone)."""
    message = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    return DeviceLost(f"browser lost during {what}: {type(exc).__name__}: {message.splitlines()[0]}")
