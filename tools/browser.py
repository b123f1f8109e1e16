"""Debian's headless Chromium for the owner console's browser tests and benchmarks (never a downloaded browser).

Selenium is pointed at ``/usr/bin/chromedriver`` and ``/usr/bin/chromium`` explicitly, so selenium-manager never
fetches anything; the flags keep Chromium off the network (no component updates, sync, QUIC or background
fetches) and every session gets its own fresh profile directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
         "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900")
INSTALL = "apt-get install -y chromium chromium-driver"


def missing() -> list[str]:
    """The Chromium binaries that are not installed (empty: ready)."""
    return [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]


def start_chromium(profile: Path) -> Any:
    """A headless Chromium WebDriver with ``profile`` as its user data directory (``driver.quit()`` when done)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
