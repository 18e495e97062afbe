"""Small fixes to the book's HTML pages: .md download, no script twice, a valid colour mode, output tables, solution titles, glued text."""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx

PAIR_SUFFIX = ".md"
STYLE_FILE = "page_extras.css"
# Tables that cells print through _repr_html_ (ml.plots.Table) arrive without the theme's table class:
# give them the spacing and rules of the book's own tables so columns do not run into each other.
STYLE = """\
.cell_output table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
.cell_output table th, .cell_output table td {
  padding: 0.3em 0.8em; text-align: left; vertical-align: top;
  border-bottom: 1px solid var(--pst-color-border);
}
.cell_output table thead th { border-bottom: 2px solid var(--pst-color-primary); }
/* A folded solution's title links back to its exercise (sphinx-exercise); a click on that link
   would jump instead of unfolding, and sphinx-togglebutton would throw "button is not defined".
   Let the click reach the title, which unfolds, and show the text as part of the title. */
div.solution > p.admonition-title a { pointer-events: none; color: inherit; text-decoration: none; }
/* Glued numbers and words are part of their sentence: myst-nb sets them in bold, which made glued
   comparison phrases and whole glued sentences read as emphasis. */
span.pasted-text { font-weight: inherit; }
/* Code cells at a size where the chapters' 79-character lines fit the text column (at the theme's
   size, lines of 75 characters and more scrolled sideways in a 1280 px window). */
div.cell_input pre, div.cell_output pre { font-size: 13px; }
"""


def add_markdown_download(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    # The book reads the .ipynb (stored outputs) and excludes book/*.md, so Sphinx never copies the pair.
    if doctree is None or context.get("page_source_suffix") != ".ipynb":
        return
    if not (Path(app.srcdir) / f"{pagename}{PAIR_SUFFIX}").is_file():
        return
    for group in context.get("header_buttons", []):
        if group.get("label") != "download-buttons":
            continue
        # After the .ipynb link, before "print to PDF".
        group["buttons"].insert(
            len(group["buttons"]) - 1,
            {
                "type": "link",
                "url": f"{context['pathto']('_sources', 1)}/{pagename}{PAIR_SUFFIX}",
                "text": PAIR_SUFFIX,
                "tooltip": "Download the MyST Markdown (Jupytext) version",
                "icon": "fas fa-file-lines",
                "label": "download-markdown-button",
            },
        )


def copy_markdown_pairs(app: Sphinx, exception) -> None:
    # Every pair, not only the pages rewritten by this build: Sphinx does not track the excluded .md,
    # so an edited .md next to an unchanged .ipynb would otherwise be served stale.
    if exception is not None or app.builder.format != "html":
        return
    for docname in sorted(app.env.found_docs):
        notebook = Path(app.srcdir) / f"{docname}.ipynb"
        pair = notebook.with_suffix(PAIR_SUFFIX)
        if notebook.is_file() and pair.is_file():
            target = Path(app.outdir) / "_sources" / f"{docname}{PAIR_SUFFIX}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pair, target)


def drop_repeated_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    # Inline scripts added after the builder started (sphinx-thebe, sphinx-togglebutton) reach the
    # page twice; the second `const THEBE_JS_URL` is a SyntaxError in every reader's console.
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (
            getattr(script, "filename", script) or "",
            tuple(sorted((getattr(script, "attributes", None) or {}).items())),
        )
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def set_default_colour_mode(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    # pydata-sphinx-theme reads `default_mode` from html_context; left empty, a first visit logs
    # "Got invalid theme mode" and falls back to auto anyway.
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def write_style(app: Sphinx) -> None:
    # Written before pages are, so that Sphinx can add its ?v=checksum to the link.
    if app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / STYLE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_text() != STYLE:
        target.write_text(STYLE)


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", write_style)
    app.connect("build-finished", copy_markdown_pairs)
    app.add_css_file(STYLE_FILE)
    # sphinx-book-theme fills header_buttons at priority 501; ours run afterwards.
    app.connect("html-page-context", add_markdown_download, priority=600)
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    app.connect("html-page-context", set_default_colour_mode, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
