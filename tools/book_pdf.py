"""The whole book as one PDF: Sphinx's single-page HTML, typeset offline and printed by Debian's chromium.

Usage: python tools/book_pdf.py   (after the chapters' outputs exist; builds _build/singlehtml itself).
Writes _build/pdf/<name>.pdf (name from `book_pdf` in _config.yml) with a contents page, page numbers,
bookmarks and every figure, and copies it into _build/html when the HTML book is there, where its
download button links to it. Needs no network: MathJax and fonts come from the book's own _static.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
SINGLE = BUILD / "singlehtml"
CHROMIUM = Path("/usr/bin/chromium")
# As in the browser tests: quiet, local, no background requests (playwright adds --headless).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MARGIN = {"top": "16mm", "bottom": "18mm", "left": "16mm", "right": "16mm"}
PAGE_WIDTH_PX = round((210 - 16 - 16) / 25.4 * 96)  # A4's width less the side margins
SECONDS = 1000  # playwright timeouts are in milliseconds
# pypdf notes that chromium's cross-reference table is a few entries short; it reads the file regardless.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# Layout for paper: only the article (no navigation, buttons or sidebars), each chapter on a new page,
# folded solutions opened (paper cannot be clicked), cells folded for Jupyter readers left out.
PRINT_CSS = """
@page { size: A4; }
.bd-header, .bd-header-article, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-footer,
.bd-footer-content, .bd-footer-article, .prev-next-area, .header-article, .headerbtn, .toggle-button,
button.copybtn, .cell.tag_hide-cell, .cell.tag_hide-input > .cell_input, #jb-print-docs-body,
.skip-link, .search-button__wrapper, .theme-switch-button, label.sidebar-toggle { display: none !important; }
html, body { background: white !important; }
.bd-container, .bd-container__inner, .bd-main, .bd-content, .bd-article-container, .bd-article {
  max-width: 100% !important; min-width: 0 !important; width: auto !important; margin: 0 !important;
  padding: 0 !important;
}
/* Paper does not scroll: long code lines wrap (a flex item as wide as its longest line would widen the page). */
pre { white-space: pre-wrap !important; overflow-wrap: anywhere; }
.bd-main .bd-content .bd-article h1:first-of-type { display: block !important; }
body { font-size: 10.5pt; }
.pdf-chapter { break-before: page; }
.cell_output img, figure img { max-width: 100% !important; height: auto !important; break-inside: avoid; }
div.cell, pre, table, .admonition { break-inside: avoid; }
.toggle-hidden { display: block !important; visibility: visible !important; opacity: 1 !important; height: auto !important; }
.pdf-cover { height: 230mm; display: flex; flex-direction: column; justify-content: center; text-align: center; }
.pdf-cover .pdf-title { font-size: 30pt; font-weight: 700; margin: 0 0 8mm 0; }
.pdf-cover p { font-size: 13pt; margin: 2mm 0; }
.pdf-contents { break-before: page; break-after: page; }
.pdf-contents .pdf-contents-title { font-size: 20pt; font-weight: 700; margin: 0 0 6mm 0; }
.pdf-contents ol { list-style: none; padding-left: 0; margin: 0; }
.pdf-contents li { margin: 1.2mm 0; }
.pdf-contents li.pdf-chapter-entry { font-weight: 600; margin-top: 3mm; }
.pdf-contents li.pdf-section-entry { padding-left: 7mm; font-size: 95%; }
.pdf-contents a { display: flex; color: inherit !important; text-decoration: none !important; }
.pdf-contents a .pdf-entry { flex: 0 1 auto; }
.pdf-contents a .pdf-dots { flex: 1 1 auto; border-bottom: 1px dotted #999; margin: 0 2mm 1.2mm 2mm; }
.pdf-contents a .pdf-page { flex: 0 0 auto; min-width: 8mm; text-align: right; font-variant-numeric: tabular-nums; }
"""

# Everything read from or done to the page, in one place. Returns the contents: chapters and their sections.
PREPARE = """
async ({css, title, subtitle}) => {
  // Folded solutions (sphinx-togglebutton, <details>) are opened: paper cannot be clicked.
  document.querySelectorAll('.toggle-hidden').forEach((element) => element.classList.remove('toggle-hidden'));
  document.querySelectorAll('details').forEach((element) => { element.open = true; });
  const style = document.createElement('style');
  style.textContent = css;
  document.head.appendChild(style);
  const article = document.querySelector('article.bd-article');
  const headingOf = (section) => section.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');
  const text = (heading) => heading.innerText.replace(/[#¶]\\s*$/, '').replace(/\\s+/g, ' ').trim();
  // Sphinx nests the chapters inside the first page and marks each with <span id="document-...">: their
  // headings are one level down (h2 titles), so they are promoted for the printed book.
  const promote = (section) => section.querySelectorAll('h2, h3, h4, h5, h6').forEach((heading) => {
    const promoted = document.createElement('h' + (Number(heading.tagName[1]) - 1));
    [...heading.attributes].forEach((attribute) => promoted.setAttribute(attribute.name, attribute.value));
    promoted.append(...heading.childNodes);
    heading.replaceWith(promoted);
  });
  const first = article.querySelector('section');
  const chapterSections = [first, ...[...article.querySelectorAll('span[id^="document-"]')]
    .map((span) => span.nextElementSibling).filter((element) => element && element.tagName === 'SECTION')];
  chapterSections.slice(1).forEach(promote);
  // Each contents entry links to an anchor of its own: section ids repeat across chapters in one page
  // ("exercises"), and a repeated id sends every link to its first use.
  const contents = [];
  const entry = (section, level) => {
    const anchor = document.createElement('span');
    anchor.id = `pdf-entry-${contents.length}`;
    section.prepend(anchor);
    contents.push({title: text(headingOf(section)), id: anchor.id, level: level});
  };
  chapterSections.forEach((section, index) => {
    if (index > 0) section.classList.add('pdf-chapter');
    entry(section, 0);
    section.querySelectorAll(':scope > section').forEach((sub) => { if (headingOf(sub)) entry(sub, 1); });
  });
  const cover = document.createElement('div');
  cover.className = 'pdf-cover';
  cover.innerHTML = '<div class="pdf-title"></div><p></p>';
  cover.querySelector('.pdf-title').textContent = title;
  cover.querySelector('p').textContent = subtitle;
  const nav = document.createElement('nav');
  nav.className = 'pdf-contents';
  nav.innerHTML = '<div class="pdf-contents-title">Contents</div><ol></ol>';
  const list = nav.querySelector('ol');
  contents.forEach((entry) => {
    const li = document.createElement('li');
    li.className = entry.level ? 'pdf-section-entry' : 'pdf-chapter-entry';
    li.innerHTML = '<a><span class="pdf-entry"></span><span class="pdf-dots"></span><span class="pdf-page">000</span></a>';
    li.querySelector('a').href = '#' + entry.id;
    li.querySelector('.pdf-entry').textContent = entry.title;
    list.appendChild(li);
  });
  article.prepend(cover, nav);
  await Promise.all([...document.images].map((image) => image.complete ? null :
    new Promise((resolve) => { image.onload = image.onerror = resolve; })));
  return contents;
}
"""

WAIT_FOR_MATH = """
async () => {
  if (!document.querySelector('script[src*="mathjax"]')) return "no math";
  const start = Date.now();
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() - start > 20000) return "MathJax never started";
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await MathJax.startup.promise;
  return "typeset";
}
"""

FOOTER = ('<div style="font-size: 8pt; width: 100%; text-align: center; color: #555;">'
          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')
HEADER = '<div style="font-size: 7pt; width: 100%; text-align: center; color: #777;">{title}</div>'


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def book_settings(config_path: Path = ROOT / "_config.yml") -> dict:
    config = yaml.safe_load(config_path.read_text())
    name = ((config.get("sphinx") or {}).get("config") or {}).get("book_pdf") or "book.pdf"
    if "/" in name or not name.endswith(".pdf"):
        raise ValueError(f"_config.yml: sphinx.config.book_pdf must be a file name ending in .pdf, got {name!r}")
    repository = (config.get("repository") or {}).get("url", "")
    return {"title": config.get("title", "Book"), "author": config.get("author", ""), "name": name,
            "repository": repository}


def build_single_page(jupyter_book: Path) -> Path:
    command = [str(jupyter_book), "build", str(ROOT), "--builder", "singlehtml", "-W", "-n", "--keep-going"]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if completed.returncode:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"the single-page build failed:\n{tail}")
    pages = [path for path in SINGLE.rglob("*.html") if path.name not in ("index.html", "print.html")
             and "_static" not in path.parts and path.stat().st_size > 10_000]
    if len(pages) != 1:
        raise RuntimeError(f"expected one page of the whole book in {SINGLE}, found {len(pages)}")
    # Sphinx writes the page where the root document lives (book/intro.html) but links its _static and
    # _images as if it stood at the top: it is printed from there.
    page = SINGLE / "print.html"
    shutil.copyfile(pages[0], page)
    return page


def destination_pages(pdf: Path, ids: list[str]) -> list[int]:
    """The 1-based page each id lands on: chromium names a destination after every id that a link points to."""
    from pypdf import PdfReader

    reader = PdfReader(str(pdf))
    named = {name.lstrip("/"): destination for name, destination in reader.named_destinations.items()}
    missing = [identifier for identifier in ids if identifier not in named]
    if missing:
        raise RuntimeError(f"no destination in the PDF for the contents entries {missing[:5]}")
    return [reader.get_destination_page_number(named[identifier]) + 1 for identifier in ids]


def write_outline(pdf: Path, contents: list[dict], pages: list[int]) -> None:
    """Bookmarks: one per chapter, with its sections below it (written by us: chromium's repeat some titles)."""
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=str(pdf))
    chapter = None
    for entry, page in zip(contents, pages):
        parent = chapter if entry["level"] else None
        item = writer.add_outline_item(entry["title"], page - 1, parent=parent)
        if not entry["level"]:
            chapter = item
    writer.page_mode = "/UseOutlines"
    with open(pdf, "wb") as file:
        writer.write(file)


def print_book(page_file: Path, target: Path, settings: dict) -> tuple[int, float]:
    """Print the single page into `target` in two passes (the second fills in the contents' page numbers)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(SINGLE)))
    thread = threading.Thread(target=server.serve_forever, name="pdf-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    blocked: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            # As wide as the printed text (A4 less the margins, at 96 px per inch): the layout checked is the printed one.
            context = browser.new_context(viewport={"width": PAGE_WIDTH_PX, "height": 1000}, service_workers="block")
            context.set_default_timeout(60 * SECONDS)

            def route(request_route):
                if urlsplit(request_route.request.url).netloc == urlsplit(base).netloc:
                    request_route.continue_()
                else:  # offline: nothing from elsewhere, and we say so if the page asked
                    blocked.append(request_route.request.url)
                    request_route.abort("blockedbyclient")

            context.route("**/*", route)
            page = context.new_page()
            page.goto(base + page_file.relative_to(SINGLE).as_posix(), wait_until="networkidle")
            state = page.evaluate(WAIT_FOR_MATH)
            if state != "typeset":
                raise RuntimeError(f"math was not typeset: {state}")
            page.emulate_media(media="print")
            subtitle = settings["author"] + (f" · {settings['repository']}" if settings["repository"] else "")
            contents = page.evaluate(PREPARE, {"css": PRINT_CSS, "title": settings["title"], "subtitle": subtitle})
            if len(contents) < 2:
                raise RuntimeError("no chapters found in the single-page book")
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            if overflow > 1:
                raise RuntimeError(f"the book is {overflow} px wider than the paper: chromium would clip or shrink it")
            ids = [entry["id"] for entry in contents]
            options = dict(format="A4", margin=MARGIN, print_background=True, tagged=True,
                           display_header_footer=True, footer_template=FOOTER,
                           header_template=HEADER.format(title=settings["title"]))
            # Pass one finds where every chapter and section lands; pass two prints the contents with those
            # pages (the placeholders are as wide as the numbers, so nothing moves).
            page.pdf(path=str(target), **options)
            numbers = destination_pages(target, ids)
            page.evaluate("""(numbers) => document.querySelectorAll('.pdf-contents .pdf-page')
                .forEach((span, index) => { span.textContent = numbers[index]; })""", numbers)
            page.pdf(path=str(target), **options)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    if blocked:
        raise RuntimeError(f"the book asked for off-site resources: {blocked[:3]}")
    if destination_pages(target, ids) != numbers:
        raise RuntimeError("the contents' page numbers moved between the two passes")
    write_outline(target, contents, numbers)
    return sum(1 for entry in contents if not entry["level"]), target.stat().st_size / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    start = time.perf_counter()
    try:
        settings = book_settings()
        page_file = build_single_page(Path(sys.executable).parent / "jupyter-book")
        target = BUILD / "pdf" / settings["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        # Printed under another name and renamed when complete: a failed run leaves the last good PDF.
        partial = target.with_suffix(".partial.pdf")
        chapters, megabytes = print_book(page_file, partial, settings)
        os.replace(partial, target)
    except Exception as error:  # one line (plus a build log tail) per failure, not a traceback
        print(f"book_pdf: {error}", file=sys.stderr)
        return 1
    html = BUILD / "html"
    if (html / "index.html").is_file():
        shutil.copyfile(target, html / settings["name"])
    from pypdf import PdfReader

    pages = len(PdfReader(str(target)).pages)
    print(f"book_pdf: {target.relative_to(ROOT)}: {chapters} chapters, {pages} pages, {megabytes:.1f} MB, "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
