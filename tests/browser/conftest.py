"""Browser fixtures: the built book served on 127.0.0.1 and read by Debian's chromium, with the network cut off."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
import warnings
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from book_browser import (
    BOOK_ROOT,
    CHROMIUM,
    CHROMIUM_FLAGS,
    HTML_DIR,
    SCREENSHOT_DIR,
    OfflineContext,
    QuietHandler,
    slug,
    toc_docnames,
    visit,
    write_review,
)


def pytest_generate_tests(metafunc):
    if "docname" in metafunc.fixturenames:
        names = toc_docnames() if (BOOK_ROOT / "_toc.yml").is_file() else []
        metafunc.parametrize("docname", names, ids=[slug(name) for name in names])


@pytest.fixture(scope="session")
def html_dir() -> Path:
    if not (HTML_DIR / "index.html").is_file():
        pytest.fail(f"no built book at {HTML_DIR}: run `jupyter-book build . -W -n --keep-going` first")
    return HTML_DIR


@pytest.fixture(scope="session")
def docnames() -> list[str]:
    return toc_docnames()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium; installed with apt-get when we are root (as in CI), else the browser tests skip."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and we are not root with apt-get: `apt-get install chromium` first")
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=1200)
        if completed.returncode:
            pytest.fail(f"{' '.join(command)} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def base_url(html_dir) -> str:
    """The built book on 127.0.0.1, on a port the system picks."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html_dir)))
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def offline(browser, base_url):
    context = OfflineContext(browser, base_url)
    yield context
    context.close()


@pytest.fixture(scope="session")
def visits(browser, base_url, docnames) -> dict[str, Visit]:
    """Every TOC page visited once offline, with a full-page screenshot in _build/screenshots/."""
    context = OfflineContext(browser, base_url)
    try:
        pages = {docname: visit(context, docname, SCREENSHOT_DIR / f"{slug(docname)}.png") for docname in docnames}
    finally:
        context.close()
    review = SCREENSHOT_DIR / "review.md"
    notes = write_review(pages, review)
    if notes:
        # Not failures: wide code or equations still work, they just scroll. People read the list.
        warnings.warn(f"{notes} layout notes for reviewers in {review}", UserWarning, stacklevel=1)
    return pages
