"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by selenium.

A missing browser or driver FAILS the test, naming the setup step: browser tests are
never skipped silently.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1800")


@contextmanager
def chromium(tmp_path: Path) -> Iterator[Any]:
    """A selenium driver of a fresh headless Chromium (its own profile under
    ``tmp_path``), quit after."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: the console's browser tests need "
                    "Debian's chromium and chromium-driver; run `bash scripts/setup.sh dev` "
                    "(as root, or with sudo) to install them", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition",
             every_s: float = 0.5, refresh: Any = None) -> Any:
    """Poll ``condition()`` until it returns something true (and return that); fail
    after ``timeout_s`` naming ``what``. ``refresh`` (a driver) reloads between tries."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - a page still loading; tried again
            last_error = exc
        time.sleep(every_s)
        if refresh is not None:
            refresh.refresh()
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


def screenshot(driver: Any, folder: Path, name: str) -> Path:
    """Save a PNG of the whole page under ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, min(int(height) + 40, 6000)))
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
    return path
