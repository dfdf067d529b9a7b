"""A page (``page.html``) in headless Chromium: ``python -m ddpm_lit.reporting.screenshot PAGE OUT.png``;
PAGE may also be an exported model's card (``README.md``), rendered as markdown first.

Opens the page from disk with the network cut off (every host resolves nowhere), waits until its
charts are drawn, and writes a PNG of the whole page (or of its first ``--height`` pixels). Needs
Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and ``selenium``
(the ``dev`` extra). The browser tests drive the pages through ``open_browser`` and ``load``.
A developer's tool for page screenshots, so it keeps argparse flags rather than being a Hydra command like the others.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ddpm_lit.errors import UserError, exit_on_user_error
from ddpm_lit.reporting.model_card import card_html

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver",)


def find_browser() -> tuple[str, str] | None:
    """(browser, driver) executables on PATH, or None."""
    browser = next((p for name in CHROMIUM if (p := shutil.which(name))), None)
    driver = next((p for name in DRIVER if (p := shutil.which(name))), None)
    return (browser, driver) if browser and driver else None


def open_browser(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium (selenium WebDriver) that logs console messages and network requests,
    and resolves every host to nowhere, so a request a page makes fails instead of leaving the machine."""
    found = find_browser()
    if found is None:
        raise UserError("no Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise UserError("selenium is not installed (pip install -e '.[dev]')") from err
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--host-resolver-rules=MAP * ~NOTFOUND",
                     "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(found[1]), options=options)


def load(driver: Any, page: str | Path, timeout: float = 30.0) -> None:
    """Open ``page`` and wait until its charts are drawn (``body[data-drawn]``); TimeoutError otherwise."""
    driver.get(Path(page).resolve().as_uri())
    wait_until(driver, "return document.body.dataset.drawn", timeout)


def wait_until(driver: Any, script: str, timeout: float = 30.0) -> Any:
    """The first truthy value of ``script`` within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"not true within {timeout} s: {script}")


def requests(driver: Any) -> list[str]:
    """The URLs the page asked for since the last call (Chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def screenshot(page: Path, out: Path, width: int = 1400, height: int | None = None) -> Path:
    """A PNG of ``page`` as Chromium draws it: the whole page, or its first ``height`` pixels."""
    driver = open_browser(width)
    try:
        load(driver, page)
        full = int(driver.execute_script("return document.documentElement.scrollHeight"))
        # the viewport itself (a window's size includes the browser's own bars): the page's height
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": min(full, height or full), "deviceScaleFactor": 1, "mobile": False})
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=None, help="the page's first HEIGHT pixels (default: all)")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"error: {args.page} is not a file", file=sys.stderr)
        raise SystemExit(2)
    page = args.page
    with tempfile.TemporaryDirectory() as tmp:
        if page.suffix == ".md":  # a model card: as markdown renders it, images read from its folder
            page = Path(tmp) / "card.html"
            page.write_text(card_html(args.page.read_text(), args.page.parent))
        print(f"written: {exit_on_user_error(screenshot, page, args.out, args.width, args.height)}")


if __name__ == "__main__":
    main()
