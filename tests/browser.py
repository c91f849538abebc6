"""Headless Chromium (the OS package) driven by Selenium, for the report's browser test and screenshots.

Never downloads a browser: it uses ``$CHROMIUM`` / ``$CHROMEDRIVER`` or the Debian paths, and
``unavailable()`` says why it cannot run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Without the background-networking flags a closed network makes Chromium's own requests fail noisily.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def unavailable() -> str:
    """Empty when a headless browser can be driven here, else the reason."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
        if not Path(path).is_file():
            return f"{what} not found at {path} (Debian: apt-get install chromium chromium-driver)"
    return ""


def driver(width: int = 1500, height: int = 1000):
    """A headless Chromium WebDriver with a fresh profile that records console messages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='bench-chromium-')}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def screenshot(page: Path, png: Path, width: int = 1500, height: int = 1000) -> list[dict]:
    """Open ``page`` from file://, wait for the RD plot, save a screenshot; returns the console log."""
    from selenium.webdriver.support.ui import WebDriverWait

    d = driver(width, height)
    try:
        d.get(Path(page).resolve().as_uri())
        WebDriverWait(d, 60).until(lambda x: x.execute_script(
            "return document.querySelectorAll('#rd-plot .scatterlayer .trace').length > 0"))
        d.save_screenshot(str(png))
        return d.get_log("browser")
    finally:
        d.quit()


if __name__ == "__main__":
    import sys

    log = screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print("\n".join(f"{e['level']}: {e['message']}" for e in log) or "no console messages")
    print(f"screenshot: {sys.argv[2]}")
