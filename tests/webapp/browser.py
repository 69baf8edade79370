"""A headless Debian chromium for the web app tests, driven by Selenium from async tests.

The Tornado server under test runs on the test's event loop, so every blocking WebDriver
call goes through a worker thread (`Browser.call`) and waits poll with `asyncio.sleep`:
the server keeps answering while the browser waits on it. Chromium and chromedriver come
from Debian (deploy/local/browser.sh installs them when missing); Selenium is pointed at
both binaries so it never fetches a browser or driver of its own.
"""
from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Any, Callable

REPO = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps",
         "--no-default-browser-check", "--lang=en-US")
DESKTOP = (1280, 820)
PHONE = (360, 740)


AXE = REPO / "tests" / "webapp" / "fixtures" / "axe.min.js"  # fetched by browser.sh


def ensure_installed() -> None:
    """Run the project's own installer when chromium, chromedriver, selenium or axe-core
    is missing."""
    have_browser = os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
    if have_browser and importlib.util.find_spec("selenium") is not None and AXE.exists():
        return
    subprocess.run([str(REPO / "deploy" / "local" / "browser.sh")], check=True,
                   env={**os.environ, "PYTHON": sys.executable}, timeout=900)
    importlib.invalidate_caches()


def launch(profile_dir: pathlib.Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


class Browser:
    """Async wrappers over one WebDriver session."""

    def __init__(self, driver: Any, base_url: str, shots: pathlib.Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.shots = shots

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(fn, *args))

    async def open(self, path: str = "/") -> None:
        await self.call(self.driver.get, self.base_url + path)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, script, *args)

    async def js_async(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_async_script, script, *args)

    async def wait(self, script: str, *args: Any, timeout: float = 10.0,
                   what: str = "") -> Any:
        """Poll a JS expression (`return ...`) until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                logs = await self.console()
                raise AssertionError(f"timed out waiting for {what or script}; console: {logs}")
            await asyncio.sleep(0.1)

    async def text(self, selector: str) -> str:
        return await self.js("const e = document.querySelector(arguments[0]);"
                             "return e ? e.innerText : null;", selector) or ""

    async def type(self, selector: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        def send() -> None:
            element = self.driver.find_element(By.CSS_SELECTOR, selector)
            element.clear()
            element.send_keys(text)
        await self.call(send)

    async def keys(self, selector: str, *keys: str) -> None:
        from selenium.webdriver.common.by import By
        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, selector)
                        .send_keys(*keys))

    async def click(self, selector: str) -> None:
        from selenium.webdriver.common.by import By
        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, selector).click())

    async def console(self) -> list[dict[str, Any]]:
        """Browser console entries since the last call (CSP violations show up here)."""
        return await self.call(self.driver.get_log, "browser")

    async def size(self, width: int, height: int) -> None:
        await self.call(self.driver.set_window_size, width, height)

    async def screenshot(self, name: str) -> pathlib.Path:
        path = self.shots / f"{name}.png"
        await self.call(self.driver.save_screenshot, str(path))
        return path
