"""Keep every chapter's first code cell the Colab install cell for the repository and branch _config.yml names.

Usage: python tools/colab_cell.py [--check]   (rewrites book/<chapter>.md for every chapter of _toc.yml;
--check only lists the chapters whose cell is missing or stale and exits 1). After rewriting, sync the
notebooks: `python tools/execute_book.py <chapter> ...` (the cell prints nothing where it does nothing).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
sys.path.insert(0, str(ROOT / "tools"))
import execute_book  # noqa: E402  (one reading of _toc.yml)

# How the cell recognises Colab: Colab's kernel imports google.colab at start-up; no other kernel does.
COLAB_TEST = 'if "google.colab" in sys.modules:'
CELL_START = re.compile(r"^```\{code-cell\}[^\n]*\n", re.MULTILINE)


def repository(config_path: Path = ROOT / "_config.yml") -> tuple[str, str]:
    """(url, branch) of the book's repository, as _config.yml names them for every launch button."""
    settings = yaml.safe_load(config_path.read_text()).get("repository") or {}
    url, branch = str(settings.get("url", "")).rstrip("/"), str(settings.get("branch") or "main")
    if not re.fullmatch(r"https://[^\s@]+", url):
        raise ValueError(f"_config.yml: repository.url must be an https URL, got {url!r}")
    return url.removesuffix(".git"), branch


def requirement(url: str, branch: str) -> str:
    """What the cell asks pip for: mnistlab from the repository at that branch."""
    return f"mnistlab @ git+{url}@{branch}"


def cell_source(url: str, branch: str) -> str:
    """The Python of the cell (what Jupyter shows)."""
    return (
        "# On Colab only: install mnistlab from the book's repository (elsewhere it is installed already).\n"
        "# Colab's own TensorFlow, Keras and NumPy stay as they are.\n"
        "import sys\n"
        "\n"
        f"{COLAB_TEST}\n"
        f'    %pip install --quiet "{requirement(url, branch)}"'
    )


def cell_markdown(url: str, branch: str) -> str:
    """The cell as it stands in a chapter's .md: removed from the HTML book, kept in the notebook."""
    return f"```{{code-cell}} ipython3\n:tags: [remove-cell]\n\n{cell_source(url, branch)}\n```\n"


def first_code_cell(text: str) -> tuple[int, int] | None:
    """Start and end offsets of the first code cell of a MyST chapter (end after its closing fence)."""
    start = CELL_START.search(text)
    if start is None:
        return None
    end = text.index("\n```", start.end() - 1) + len("\n```")
    return start.start(), end + 1 if text[end:end + 1] == "\n" else end


def updated(text: str, url: str, branch: str) -> str:
    """The chapter with its Colab cell first: an existing one replaced, else one inserted before the first cell."""
    wanted = cell_markdown(url, branch)
    span = first_code_cell(text)
    if span is None:
        raise ValueError("no code cell")
    start, end = span
    if COLAB_TEST in text[start:end]:
        return text[:start] + wanted + text[end:]
    return text[:start] + wanted + "\n" + text[start:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report chapters whose cell is missing or stale")
    arguments = parser.parse_args(argv)
    url, branch = repository()
    stale = []
    for slug in execute_book.toc_chapters():
        path = BOOK / f"{slug}.md"
        text = path.read_text()
        new = updated(text, url, branch)
        if new != text:
            stale.append(slug)
            if not arguments.check:
                path.write_text(new)
    if arguments.check and stale:
        print(f"colab_cell: the Colab cell is missing or stale in {', '.join(stale)}: "
              "run `python tools/colab_cell.py`", file=sys.stderr)
        return 1
    if not arguments.check:
        print(f"colab_cell: {len(stale)} chapters rewritten for {requirement(url, branch)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
