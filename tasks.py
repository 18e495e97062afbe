"""Project tasks for a fresh machine with only Python: `python3 tasks.py book|test|study|execute|student`."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".requirements.sha256"
USAGE = "usage: python3 tasks.py book|test|study|execute|student|setup"


def run(*command: str | Path, env: dict | None = None) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    completed = subprocess.run([str(part) for part in command], cwd=ROOT, env=env)
    if completed.returncode:
        sys.exit(f"tasks.py: step failed with exit code {completed.returncode}: {' '.join(map(str, command))}")


def setup() -> None:
    """Create .venv and install requirements.txt into it, again only when the file changed."""
    if sys.version_info < (3, 11):
        sys.exit(f"tasks.py: Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes())
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == digest.hexdigest():
        return
    if not PYTHON.exists():
        run(sys.executable, "-m", "venv", VENV)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-r", ROOT / "requirements.txt")
    STAMP.write_text(digest.hexdigest())


def tool(name: str) -> Path:
    return VENV / "bin" / name


def build_book() -> None:
    run(tool("jupyter-book"), "build", ".", "-W", "-n", "--keep-going")


def test() -> None:
    """Unit tests, nbval on every chapter, then the book build with warnings as errors."""
    timings = {}
    start = time.perf_counter()
    run(tool("pytest"), "tests", "-q", "-p", "no:cacheprovider", "--ignore=tests/browser")
    timings["unit tests"] = time.perf_counter() - start
    start = time.perf_counter()
    run(tool("pytest"), "--nbval", "book", "-q", "-p", "no:cacheprovider")
    timings["nbval"] = time.perf_counter() - start
    start = time.perf_counter()
    build_book()
    timings["book build"] = time.perf_counter() - start
    browser_tests = ROOT / "tests" / "browser"
    if browser_tests.is_dir():
        start = time.perf_counter()
        run(tool("pytest"), browser_tests, "-q", "-p", "no:cacheprovider", "--confcutdir", browser_tests)
        timings["browser tests"] = time.perf_counter() - start
    print("timings: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("book", "test", "study", "execute", "student", "setup"):
        print(USAGE, file=sys.stderr)
        return 2
    os.chdir(ROOT)
    setup()
    task = argv[0]
    if task == "book":
        build_book()
        print(f"the book is at {ROOT / '_build' / 'html' / 'index.html'}")
    elif task == "test":
        test()
    elif task == "study":
        os.makedirs(ROOT / "runs", exist_ok=True)
        run(PYTHON, "-m", "mnistlab", "study", "--json", ROOT / "runs" / "study.json")
    elif task == "execute":
        run(PYTHON, ROOT / "tools" / "execute_book.py")
    elif task == "student":
        # The chapters without solutions (notebooks, MyST text, HTML) in _build/student.
        run(PYTHON, ROOT / "tools" / "student_edition.py")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
