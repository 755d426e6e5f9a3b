"""Open a report in headless Chromium and check it as a reader would see it: every image
decodes and is laid out, nothing is written to the console, no request leaves the page.

Needs Playwright (``pip install biodl[browser]``) and a Chromium binary (Debian's ``chromium``
package, or ``BIODL_CHROMIUM=/path/to/chrome``); Playwright downloads nothing here.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BiodlError

__all__ = ["FLAGS", "PageCheck", "chromium_path", "check_page"]


#: a closed network and no GPU: without these, Chromium retries Google's hosts at every start
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
         "--metrics-recording-only", "--mute-audio"]


@dataclass
class PageCheck:
    """What the browser saw: each image's alt text, natural and rendered size, and the console
    messages, page errors and network requests of the page."""

    title: str
    images: list[dict] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    scripts: int = 0
    text: str = ""

    @property
    def broken(self) -> list[str]:
        """Alt texts of images that did not decode or take no space on the page."""
        return [i["alt"] for i in self.images if not (i["ok"] and i["width"] > 0 and i["shown"] > 0)]


def chromium_path() -> str:
    """``BIODL_CHROMIUM``, else the first Chromium on the PATH."""
    env = os.environ.get("BIODL_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise BiodlError("chromium", "not found; install Debian's chromium package or set BIODL_CHROMIUM")


def check_page(html: str | Path, screenshot: str | Path | None = None, width: int = 1280) -> PageCheck:
    """Load ``html`` (a file) in headless Chromium; with ``screenshot``, save the whole page as PNG."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BiodlError("playwright", "not installed; pip install 'biodl[browser]'") from None
    path = Path(html).resolve()
    if not path.is_file():
        raise BiodlError(path, "no such file")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            console: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("data:", "file:")) else None)
            page.goto(path.as_uri(), wait_until="load")
            images = page.evaluate(
                "() => Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,"
                " width: i.naturalWidth, height: i.naturalHeight, shown: i.getBoundingClientRect().width}))")
            check = PageCheck(page.title(), images, console, requests, page.evaluate("document.scripts.length"),
                              page.evaluate("document.body.innerText"))
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return check
