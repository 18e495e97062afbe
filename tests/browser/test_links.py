"""Crawl the built site: every local href/src resolves (anchors included) and no cross-reference is left unresolved."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from book_browser import slug, toc_docnames

LINK_ATTRIBUTES = {"a": "href", "link": "href", "img": "src", "script": "src", "iframe": "src", "source": "src"}


class PageScan(HTMLParser):
    """Links, ids and signs of unresolved references in one HTML file."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.unresolved: list[str] = []
        self.open_anchors = 0
        self._pending_xref: list[str] | None = None
        self._citation_text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attributes.get(key):
                self.ids.add(attributes[key])
        attribute = LINK_ATTRIBUTES.get(tag)
        if attribute and attributes.get(attribute):
            self.links.append(attributes[attribute])
        classes = (attributes.get("class") or "").split()
        if tag == "a":
            self.open_anchors += 1
        # Sphinx writes a reference it could not resolve as a bare <span class="xref ..."> outside any link.
        if tag == "span" and "xref" in classes and self.open_anchors == 0:
            self._pending_xref = []
        if tag == "span" and "bibtex-citation" in classes:
            self._citation_text = []

    def handle_endtag(self, tag):
        if tag == "a":
            self.open_anchors = max(0, self.open_anchors - 1)
        if tag == "span" and self._pending_xref is not None:
            self.unresolved.append("cross-reference " + "".join(self._pending_xref).strip())
            self._pending_xref = None
        if tag == "span" and self._citation_text is not None:
            text = "".join(self._citation_text).strip()
            if text in ("", "[]", "[?]") or "?" in text:
                self.unresolved.append(f"citation {text!r}")
            self._citation_text = None

    def handle_data(self, data):
        if self._pending_xref is not None:
            self._pending_xref.append(data)
        if self._citation_text is not None:
            self._citation_text.append(data)


def scan_site(html_dir: Path) -> dict[PurePosixPath, PageScan]:
    pages = {}
    for path in sorted(html_dir.rglob("*.html")):
        if path.relative_to(html_dir).parts[0] == "_static":
            continue  # theme template fragments (Jinja source), never served as pages
        scan = PageScan()
        scan.feed(path.read_text(encoding="utf-8"))
        pages[PurePosixPath(path.relative_to(html_dir).as_posix())] = scan
    return pages


def resolve(page: PurePosixPath, link: str) -> tuple[PurePosixPath, str] | None:
    """The site-relative file and anchor a local link points at; None for off-site links."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or link.startswith(("javascript:", "mailto:", "data:")):
        return None
    target = page if not parts.path else page.parent / unquote(parts.path)
    normalised: list[str] = []
    for piece in target.parts:
        if piece == "..":
            if not normalised:
                return PurePosixPath("../outside-the-site"), parts.fragment
            normalised.pop()
        elif piece != ".":
            normalised.append(piece)
    return PurePosixPath(*normalised), unquote(parts.fragment)


def test_every_local_link_and_anchor_resolves(html_dir):
    pages = scan_site(html_dir)
    assert len(pages) > len(toc_docnames()), "the crawler found fewer HTML files than toc pages"
    broken = []
    checked = 0
    for page, scan in pages.items():
        for link in scan.links:
            resolved = resolve(page, link)
            if resolved is None:
                continue
            target, anchor = resolved
            checked += 1
            file = html_dir / target
            if file.is_dir():
                file, target = file / "index.html", target / "index.html"
            if not file.is_file():
                broken.append(f"{page}: {link} -> missing {target}")
            elif anchor and target.suffix == ".html" and anchor not in pages[target].ids:
                broken.append(f"{page}: {link} -> no id {anchor!r} in {target}")
    assert checked > 100, f"only {checked} local links found: is the crawler reading the site?"
    assert broken == [], f"{len(broken)} broken local links:\n" + "\n".join(broken)


def test_no_unresolved_cross_reference_or_citation(html_dir):
    problems = [
        f"{page}: {problem}" for page, scan in scan_site(html_dir).items() for problem in scan.unresolved
    ]
    assert problems == [], "unresolved references in the built book:\n" + "\n".join(problems)


def test_every_toc_page_was_built(html_dir):
    missing = [name for name in toc_docnames() if not (html_dir / f"{name}.html").is_file()]
    assert missing == [], f"toc pages without HTML: {[slug(name) for name in missing]}"
