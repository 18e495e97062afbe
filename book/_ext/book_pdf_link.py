"""The whole book as one PDF: a link to it in every page's download menu, and the single page it is printed from."""

from __future__ import annotations

from sphinx.application import Sphinx

LABEL = "download-book-pdf-button"


def add_pdf_link(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    # tools/book_pdf.py writes the PDF beside index.html; pathto(..., 1) is the relative link from this page.
    name = app.config.book_pdf
    if not name or app.builder.name != "html":
        return  # the single-page build that the PDF is printed from does not link to itself
    for group in context.get("header_buttons", []):
        if group.get("label") != "download-buttons":
            continue
        group["buttons"].append(
            {
                "type": "link",
                "url": context["pathto"](name, 1),
                "text": "book (.pdf)",
                "tooltip": "Download the whole book as one PDF",
                "icon": "fas fa-book",
                "label": LABEL,
            }
        )


def share_html_node_handlers(app: Sphinx) -> None:
    # Sphinx renders a node for a builder with the handlers registered under the builder's name, falling
    # back to its format ("html") only when no extension registered any under the name. sphinx-exercise
    # registers some for "singlehtml", so myst_nb's (hidden cells: "html" only) would be missing there.
    if app.builder.name != "singlehtml":
        return
    handlers = app.registry.translation_handlers
    single = handlers.setdefault("singlehtml", {})
    for node, visitors in handlers.get("html", {}).items():
        single.setdefault(node, visitors)


def setup(app: Sphinx) -> dict:
    app.add_config_value("book_pdf", "", "html")
    app.connect("builder-inited", share_html_node_handlers)
    # After sphinx-book-theme (501) fills the header buttons and page_extras adds the .md (600).
    app.connect("html-page-context", add_pdf_link, priority=700)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
