"""Serve MathJax 3 from the book's own _static folder, so equations typeset without network access."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

# The PyPI package `sphinx-mathjax-offline` (Apache-2.0, in requirements.txt) ships the MathJax 3.2.2
# es5 build as plain files; we only borrow those files (its own extension would copy all 24 MB).
MATHJAX_PACKAGE = "sphinx-mathjax-offline"
# The same entry point Sphinx loads from the CDN by default: TeX and MathML in, HTML-CSS out.
ENTRY = "tex-mml-chtml.js"
# Under _static, but never in html_static_path: Jupyter Book would add every .js there to every page.
TARGET = "mathjax"


def mathjax_source() -> Path:
    spec = importlib.util.find_spec(MATHJAX_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(
            f"offline_math: the PyPI package {MATHJAX_PACKAGE!r} is not installed "
            "(pip install -r requirements.txt)"
        )
    source = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"
    if not (source / ENTRY).is_file():
        raise ExtensionError(f"offline_math: {source / ENTRY} is missing from {MATHJAX_PACKAGE!r}")
    return source


def is_needed(relative: Path) -> bool:
    """The entry bundle plus what it loads on demand (TeX extensions, CHTML fonts, menu, a11y)."""
    if len(relative.parts) == 1:
        # The other top-level files are alternative bundles the entry never loads.
        return relative.name == ENTRY
    return relative.parts[:2] != ("output", "svg")


def copy_mathjax(app: Sphinx) -> None:
    # Copied before pages are written so that Sphinx can add its ?v=checksum to the script URL.
    if app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / TARGET
    copied = 0
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or not is_needed(relative):
            continue
        destination = target / relative
        if destination.is_file() and destination.stat().st_size == path.stat().st_size:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        copied += 1
    logger.info(f"offline_math: MathJax served from _static/{TARGET} ({copied} files copied)")


def use_local_mathjax(app: Sphinx, config) -> None:
    # Any CDN URL (Sphinx's default) is replaced; a local mathjax_path set in _config.yml is kept.
    if "://" in config.mathjax_path:
        config.mathjax_path = f"{TARGET}/{ENTRY}"


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", use_local_mathjax)
    app.connect("builder-inited", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
