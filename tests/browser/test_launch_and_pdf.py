"""The launch buttons open this repository's notebooks; every page links to the whole book as one PDF."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

import pytest
import yaml

from book_browser import BOOK_ROOT, slug

CONFIG = yaml.safe_load((BOOK_ROOT / "_config.yml").read_text())
PDF_NAME = CONFIG["sphinx"]["config"]["book_pdf"]
PDF = BOOK_ROOT / "_build" / "pdf" / PDF_NAME
# Left in the text only if something did not render: TeX, MyST roles, glue that was never pasted.
RAW = re.compile(r"\{glue(?::\w+)?\}|\{(?:eq|doc|ref|cite|math)\}`|\\(?:frac|mathbf|begin|end|sum|left|right)\b|\$\$")


def repository_path() -> str:
    """owner/name of repository.url, which the launch buttons (and the Colab cell) must use."""
    return urlsplit(CONFIG["repository"]["url"]).path.strip("/").removesuffix(".git")


def test_launch_buttons_open_this_chapter_from_the_configured_repository(visits, docname):
    links = [link["href"] for link in visits[docname].data["launch"]]
    branch = CONFIG["repository"].get("branch", "main")
    notebook = f"{docname}.ipynb"
    binder = [href for href in links if href.startswith(CONFIG["launch_buttons"]["binderhub_url"])]
    colab = [href for href in links if href.startswith(CONFIG["launch_buttons"]["colab_url"])]
    assert len(binder) == 1 and f"/v2/gh/{repository_path()}/{branch}?" in binder[0] and notebook in binder[0], links
    assert colab == [f"{CONFIG['launch_buttons']['colab_url']}/github/{repository_path()}/blob/{branch}/{notebook}"]


def test_every_page_links_to_the_pdf_and_the_link_works(visits, docname, base_url):
    links = [link["href"] for link in visits[docname].data["download"] if link["href"].endswith(".pdf")]
    assert links == [f"{base_url}{PDF_NAME}"], f"{slug(docname)}: PDF links {links}"


@pytest.fixture(scope="module")
def pdf():
    from pypdf import PdfReader

    assert PDF.is_file(), f"no {PDF}: run `python3 tasks.py pdf`"
    return PdfReader(str(PDF))


def test_the_html_book_serves_the_same_pdf(html_dir):
    served = html_dir / PDF_NAME
    assert served.is_file(), f"{served} is missing: the download link would be broken"
    assert hashlib.sha256(served.read_bytes()).digest() == hashlib.sha256(PDF.read_bytes()).digest()


def flat(text: str) -> str:
    return " ".join(text.split())


def test_pdf_has_a_cover_contents_every_chapter_and_page_numbers(pdf, visits, docnames):
    pages = len(pdf.pages)
    # Cover, contents, then each chapter from a new page; a chapter of the book fills a few pages at least.
    assert len(docnames) + 2 <= pages <= 40 * len(docnames), f"{pages} pages for {len(docnames)} chapters"
    texts = [page.extract_text() for page in pdf.pages]
    titles = [flat(visits[name].data["title"]) for name in docnames]
    assert titles[0] in flat(texts[0]), "the cover carries the book's title"
    assert texts[1].lstrip().startswith("Contents"), texts[1][:200]
    bookmarks = {flat(item.title): pdf.get_destination_page_number(item) + 1
                 for item in pdf.outline if not isinstance(item, list)}
    assert list(bookmarks) == titles, "one bookmark per chapter, in the order of the book"
    # The contents fill the pages between the cover and the first chapter.
    contents = "\n".join(texts[1:bookmarks[titles[0]] - 1])
    for title in titles:
        listed = re.search(re.escape(title) + r"\s*(\d+)\s*$", flat_lines(contents), re.M)
        assert listed, f"chapter {title!r} is not in the contents:\n{contents}"
        page = int(listed.group(1))
        assert bookmarks.get(title) == page, f"contents say {title!r} is on page {page}, its bookmark {bookmarks.get(title)}"
        assert title in flat(texts[page - 1]), f"page {page} does not show {title!r}"
    # Entries end in their page number (the footer's "n / N" lines hold no title).
    listed_pages = [int(number) for number in re.findall(r"^(?=.*[A-Za-z]).*?(\d+)\s*$", flat_lines(contents), re.M)]
    assert listed_pages == sorted(listed_pages), f"the contents' page numbers go backwards: {listed_pages}"
    for number in (1, pages // 2, pages):
        assert re.search(rf"(^|\n)\s*{number}\s*/\s*{pages}\s*($|\n)", texts[number - 1]), f"no page number on page {number}"


def flat_lines(text: str) -> str:
    return "\n".join(" ".join(line.split()) for line in text.splitlines())


def test_pdf_embeds_every_figure(pdf, html_dir, docnames):
    figures = set()
    for name in docnames:
        figures.update(re.findall(r'<img[^>]+src="\.\./(_images/[^"]+\.png)"', (html_dir / f"{name}.html").read_text()))
    assert figures, "no figures found in the HTML book"
    embedded = set()
    for page in pdf.pages:
        resources = page.get("/Resources") or {}
        for xobject in (resources.get("/XObject") or {}).values():
            xobject = xobject.get_object()
            if xobject.get("/Subtype") == "/Image" and min(xobject["/Width"], xobject["/Height"]) >= 100:
                embedded.add(hashlib.sha256(xobject.get_data()).hexdigest())
    assert len(embedded) >= len(figures), f"{len(embedded)} images embedded for {len(figures)} figures"


def code_text() -> str:
    """Every code cell's source and printed output in the book: TeX there (plot labels) is code, not markup."""
    import nbformat

    pieces = []
    for path in sorted((BOOK_ROOT / "book").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                pieces.append(cell.source)
                pieces += [output.get("text", "") for output in cell.get("outputs", [])]
    return flat("\n".join(pieces))


def test_pdf_text_has_typeset_math_and_no_raw_markup(pdf):
    fonts = set()
    code = code_text()
    leftovers = []
    for number, page in enumerate(pdf.pages, start=1):
        for font in ((page.get("/Resources") or {}).get("/Font") or {}).values():
            font = font.get_object()
            descriptor = font.get("/FontDescriptor")
            fonts.add(str(descriptor.get_object().get("/FontName") if descriptor else font.get("/BaseFont", "")))
        for line in page.extract_text().splitlines():
            if RAW.search(line) and flat(line) not in code:
                leftovers.append(f"page {number}: {line.strip()[:120]}")
    assert leftovers == [], "raw markup in the PDF:\n" + "\n".join(leftovers[:10])
    # MathJax's CHTML output draws equations with its own web fonts: embedded means typeset.
    assert any("MathJax_Math-Italic" in font for font in fonts), f"no MathJax font in the PDF: {sorted(fonts)[:20]}"
