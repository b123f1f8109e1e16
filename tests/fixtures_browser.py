"""A real headless Chromium for the owner console's browser tests (owned by [console]).

Debian's ``chromium`` and ``chromium-driver`` packages (``./run test`` installs them with apt, like mosquitto),
driven by Selenium pointed at ``/usr/bin/chromedriver`` and ``/usr/bin/chromium`` explicitly, so selenium-manager
never downloads a browser or driver. Each test gets a fresh ``--user-data-dir`` and the flags that keep Chromium
off the network (no component updates, sync, QUIC or background fetches).

Fixtures:

- ``browser`` — a :class:`Browser` (started by tools/browser.py; ``.driver`` is the Selenium WebDriver);
  ``browser.shot(name)`` writes a screenshot artifact to ``out/console/<name>.png`` (or
  ``$DOORKEEP_ARTIFACTS/console``) and prints its path; ``browser_module`` is one Chromium for a whole module.

Missing Chromium skips the test with the install line, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(os.environ.get("DOORKEEP_ARTIFACTS") or Path(__file__).resolve().parent.parent / "out") / "console"

__all__ = ["ARTIFACTS", "Browser", "browser", "browser_module"]


class Browser:
    """One headless Chromium session."""

    def __init__(self, profile: Path) -> None:
        from doorkeep.tools.browser import start_chromium

        self.driver: Any = start_chromium(profile)
        self.driver.set_page_load_timeout(60)
        self.shots: list[Path] = []

    def get(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait_for(self, what: str, check: Callable[[], Any], *, timeout: float = 30.0, every: float = 0.1) -> Any:
        """Poll ``check()`` until it returns something truthy; fails the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last_exc: Exception | None = None
        while time.monotonic() < deadline:
            try:
                got = check()
            except Exception as exc:  # noqa: BLE001 — any WebDriver error means "not yet": the page may be mid-load
                last_exc, got = exc, None
            if got:
                return got
            time.sleep(every)
        self.shot(f"timeout-{what.replace(' ', '-')[:40]}")
        pytest.fail(f"browser: {what} not within {timeout} s (last error: {last_exc}); "
                    f"console log: {self.console_log()[-5:]}")

    def console_log(self) -> list[str]:
        try:
            return [e["message"] for e in self.driver.get_log("browser")]
        except Exception:  # noqa: BLE001 — diagnostics only, for a failure message already on its way
            return []

    def shot(self, name: str) -> Path:
        """Save a screenshot artifact of the whole page and print where it is."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        height = self.js("return Math.max(document.body.scrollHeight, 900)") or 900
        self.driver.set_window_size(1280, min(int(height) + 120, 4000))
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1280, 900)
        self.shots.append(path)
        print(f"screenshot: {path}")
        return path

    def close(self) -> None:
        try:
            self.driver.quit()
        except Exception:  # noqa: BLE001 — a browser that already died has nothing left to quit
            pass


def _chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    from doorkeep.tools import browser as chromium

    absent = chromium.missing()
    if absent:
        msg = f"{', '.join(absent)} not found; install with: {chromium.INSTALL}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    profile = tmp_path_factory.mktemp("chromium-profile")
    b = Browser(profile)
    try:
        yield b
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """A fresh headless Debian Chromium (own profile directory), quit after the test."""
    yield from _chromium(tmp_path_factory)


@pytest.fixture(scope="module")
def browser_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium for a whole test module (a story told in steps, sharing its session)."""
    yield from _chromium(tmp_path_factory)
