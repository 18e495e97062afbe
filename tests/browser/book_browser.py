"""Helpers for the browser tests: where the book is, an offline browser context, one visit of a page."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
# One reading of _toc.yml for the whole project: the execute tool's.
sys.path.insert(0, str(REPO_ROOT / "tools"))
import execute_book  # noqa: E402

# Another built copy of the book can be checked with MNISTLAB_BOOK_ROOT=<folder holding _toc.yml and _build>.
BOOK_ROOT = Path(os.environ.get("MNISTLAB_BOOK_ROOT", REPO_ROOT)).resolve()
HTML_DIR = BOOK_ROOT / "_build" / "html"
SCREENSHOT_DIR = BOOK_ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
# Flags that keep chromium quiet and local here (no sync, updates or QUIC probes); playwright adds
# --headless and a fresh temporary --user-data-dir on every launch.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
MATH_CHAPTERS = ("likelihood", "map_l2")
SECONDS = 1000  # playwright timeouts are in milliseconds

WAIT_FOR_MATH = """
async () => {
  if (!document.querySelector('script[src*="mathjax"]')) return "no math on this page";
  const start = Date.now();
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() - start > 10000) return "MathJax never started";
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await MathJax.startup.promise;
  return "typeset";
}
"""

# Everything the tests need from one visit of a chapter, read in one go.
COLLECT = """
() => {
  const article = document.querySelector("article.bd-article") || document.body;
  const describe = (element) => {
    const where = element.closest("[id]");
    const text = element.tagName === "MJX-CONTAINER" ? `equation ${where ? where.id : "?"}`
      : (element.innerText || element.getAttribute("src") || "").trim().slice(0, 70).replace(/\\s+/g, " ");
    return `${element.tagName.toLowerCase()}.${[...element.classList].join(".")} "${text}"`;
  };
  const wide = (element) => element.scrollWidth > element.clientWidth + 1;
  const sideways = [...article.querySelectorAll(
      'pre, table, mjx-container[display="true"], .cell_output .output, .pasted-text')]
    .filter((element) => element.checkVisibility())  // folded cells ("show code") are not read
    .filter((element) => wide(element) || (element.parentElement && wide(element.parentElement) &&
                                            element.parentElement.classList.contains("table-wrapper")))
    .map((element) => `${describe(element)} needs ${element.scrollWidth} px, shows ${element.clientWidth} px`);
  const links = (selector) => [...document.querySelectorAll(selector)].map((a) => ({
    href: a.href, text: (a.innerText || a.textContent).trim(),
  }));
  const texLeft = [...article.querySelectorAll("p, li, td, div.math, span.math")]
    .filter((element) => !element.closest("pre, code, .cell_input") && !element.querySelector("mjx-container"))
    .map((element) => element.innerText)
    .filter((text) => /\\\\\\(|\\\\\\[|\\$\\$|\\\\begin\\{/.test(text));
  return {
    title: (article.querySelector("h1") || {innerText: ""}).innerText.replace(/#$/, "").trim(),
    text: article.innerText,
    paragraphs: [...article.querySelectorAll("p, li")]
      .filter((element) => !element.closest("pre, code, .cell_input, .cell_output"))
      .map((element) => element.innerText).join("\\n"),
    images: [...document.images].map((image) => ({
      src: image.currentSrc || image.src, complete: image.complete, width: image.naturalWidth,
      shown: image.clientWidth, inArticle: article.contains(image),
      section: ((image.closest("section") || article).querySelector("h1, h2, h3") || {innerText: ""})
        .innerText.replace(/[#¶]$/, "").trim(),
    })),
    mathElements: article.querySelectorAll("span.math, div.math").length,
    untypeset: [...article.querySelectorAll("span.math, div.math")]
      .filter((element) => !element.querySelector("mjx-container")).map(describe),
    mjxContainers: article.querySelectorAll("mjx-container").length,
    mathErrors: [...article.querySelectorAll("mjx-merror")].map((element) => element.getAttribute("data-mjx-error") || ""),
    texLeft: texLeft,
    mathjaxScripts: [...document.querySelectorAll('script[src*="mathjax"]')].map((script) => script.getAttribute("src")),
    sidebar: links("nav.bd-docs-nav a.reference.internal"),
    launch: links(".dropdown-launch-buttons a"),
    download: links(".dropdown-download-buttons a"),
    stderr: [...article.querySelectorAll(".output.stderr, .output.traceback")]
      .map((element) => element.innerText.trim().slice(0, 160)),
    notANumber: ([...article.querySelectorAll("p, li, td, .cell_output")]
      .filter((element) => !element.closest(".cell_input")).map((element) => element.innerText).join("\\n")
      .match(/[^\\n]{0,60}\\b(nan|NaN|inf)\\b[^\\n]{0,40}/g) || [])
      .filter((line) => !/np\\.(nan|inf)|isnan|isfinite/.test(line)),
    rawMarkdownTables: [...article.querySelectorAll("p")]
      .filter((element) => !element.closest("pre, code") && /\\|\\s*:?[-\u2013\u2014]+:?\\s*\\|/.test(element.innerText))
      .map((element) => element.innerText.slice(0, 100)),
    boldGlue: [...article.querySelectorAll("span.pasted-text")]
      .filter((element) => getComputedStyle(element).fontWeight !== getComputedStyle(element.parentElement).fontWeight)
      .map((element) => element.innerText.slice(0, 60)),
    pageOverflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    sideways: sideways,
  };
}
"""


@dataclasses.dataclass
class Visit:
    """One chapter as the browser saw it."""

    docname: str
    url: str
    console_errors: list[str]
    failed_local: list[str]
    blocked_external: list[str]
    math_state: str
    seconds: float
    data: dict


def toc_docnames(book_root: Path = BOOK_ROOT) -> list[str]:
    """Every page of _toc.yml, root first, in reading order, without file suffixes."""
    return execute_book.toc_docnames(book_root / "_toc.yml")


def slug(docname: str) -> str:
    return Path(docname).name


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def is_local(url: str, base_url: str) -> bool:
    parts, base = urlsplit(url), urlsplit(base_url)
    return parts.scheme in ("data", "blob", "about") or parts.netloc == base.netloc


class OfflineContext:
    """A fresh browser profile in which every request off 127.0.0.1 is aborted and written down."""

    def __init__(self, browser, base_url: str, color_scheme: str = "light"):
        self.base_url = base_url
        self.blocked: list[str] = []
        self.context = browser.new_context(viewport=VIEWPORT, color_scheme=color_scheme, service_workers="block")
        self.context.set_default_timeout(30 * SECONDS)
        self.context.route("**/*", self._route)

    def _route(self, route):
        if is_local(route.request.url, self.base_url):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort("blockedbyclient")

    def url(self, docname: str) -> str:
        return f"{self.base_url}{docname}.html"

    def close(self):
        self.context.close()


def visit(context: OfflineContext, docname: str, screenshot: Path | None = None) -> Visit:
    """Load one page, wait for math and network quiet, read everything the tests check, screenshot it."""
    start = time.perf_counter()
    page = context.context.new_page()
    console_errors: list[str] = []
    failed_local: list[str] = []
    blocked_before = len(context.blocked)

    def on_console(message):
        if message.type != "error":
            return
        source = (message.location or {}).get("url", "")
        # A blocked off-site request also logs a console error; those are recorded as blocked instead.
        if source and not is_local(source, context.base_url):
            return
        if "net::ERR_BLOCKED_BY_CLIENT" in message.text:
            return
        console_errors.append(f"{message.text} ({source})")

    def on_response(response):
        if is_local(response.url, context.base_url) and response.status >= 400:
            failed_local.append(f"{response.status} {response.url}")

    def on_request_failed(request):
        if is_local(request.url, context.base_url):
            failed_local.append(f"{request.failure} {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: console_errors.append(f"uncaught: {error}"))
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    url = context.url(docname)
    page.goto(url, wait_until="load")
    math_state = page.evaluate(WAIT_FOR_MATH)
    page.wait_for_load_state("networkidle")
    data = page.evaluate(COLLECT)
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return Visit(
        docname=docname,
        url=url,
        console_errors=console_errors,
        failed_local=failed_local,
        blocked_external=context.blocked[blocked_before:],
        math_state=math_state,
        seconds=time.perf_counter() - start,
        data=data,
    )


def review_notes(page: Visit) -> list[str]:
    """What a reader would find awkward on a page, though nothing is broken: for people to read."""
    notes = [f"scrolls sideways: {item}" for item in page.data["sideways"]]
    for image in page.data["images"]:
        if image["inArticle"] and image["width"] and image["shown"] < 0.8 * image["width"]:
            notes.append(
                f"figure shrunk to {image['shown'] / image['width']:.0%} ({image['width']} -> {image['shown']} px),"
                f" its text with it: figure under \"{image['section']}\" ({image['src'].rsplit('/', 1)[-1][:12]}...png)"
            )
    return notes


def write_review(visits: dict[str, Visit], path: Path) -> int:
    """A Markdown review of every page next to the screenshots; returns the number of notes."""
    lines = [
        "# Browser review of the built book",
        "",
        f"Written by tests/browser: chromium, {VIEWPORT['width']}x{VIEWPORT['height']} window, network blocked."
        " Screenshots: <chapter>.png (light), dark-<chapter>.png (dark).",
    ]
    count = 0
    for page in visits.values():
        notes = review_notes(page)
        count += len(notes)
        lines += ["", f"## {slug(page.docname)} ({page.seconds:.1f} s, {page.data['mjxContainers']} equations)"]
        lines += [f"- {note}" for note in notes] or ["- nothing to note"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return count
