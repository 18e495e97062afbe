"""Project tasks for a fresh machine with only Python: `python3 tasks.py book|test|study|execute|student|setup|pdf`."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".requirements.sha256"
TASKS = ("book", "test", "study", "execute", "student", "setup", "pdf")
USAGE = f"usage: python3 tasks.py {'|'.join(TASKS)}"
CHROMIUM = Path("/usr/bin/chromium")


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


def ensure_chromium() -> bool:
    """Debian's chromium prints the PDF and runs the browser tests; installed with apt-get where we are root (CI)."""
    if CHROMIUM.exists():
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run("apt-get", "update", "-q", env=environment)
    run("apt-get", "install", "-y", "-q", "chromium", env=environment)
    return CHROMIUM.exists()


def build_pdf() -> None:
    if not ensure_chromium():
        sys.exit(f"tasks.py: the PDF is printed by Debian's chromium and {CHROMIUM} is missing: "
                 "`apt-get install chromium` first")
    run(PYTHON, ROOT / "tools" / "book_pdf.py")


def test() -> None:
    """Workflow lint, unit tests, nbval on every chapter, the book build with warnings as errors, the PDF,
    browser tests, then the launch environments (fresh Binder and Colab-like virtual environments)."""
    timings = {}

    def step(name, *command):
        start = time.perf_counter()
        if callable(command[0]):
            command[0]()
        else:
            run(*command)
        timings[name] = time.perf_counter() - start

    step("workflow lint", tool("actionlint"), "-no-color", *sorted((ROOT / ".github" / "workflows").glob("*.yml")))
    # `-m 'not slow'` (pyproject.toml): the virtual-environment tests run as their own step below.
    step("unit tests", tool("pytest"), "tests", "-q", "-p", "no:cacheprovider", "--ignore=tests/browser")
    step("nbval", tool("pytest"), "--nbval", "book", "-q", "-p", "no:cacheprovider")
    step("book build", build_book)
    step("PDF", build_pdf)
    browser_tests = ROOT / "tests" / "browser"
    if browser_tests.is_dir():
        step("browser tests", tool("pytest"), browser_tests, "-q", "-p", "no:cacheprovider", "--confcutdir",
             browser_tests)
    step("launch environments", tool("pytest"), ROOT / "tests" / "test_environments.py", "-m", "slow", "-q",
         "-p", "no:cacheprovider")
    print("timings: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in TASKS:
        print(USAGE, file=sys.stderr)
        return 2
    os.chdir(ROOT)
    setup()
    task = argv[0]
    if task == "book":
        build_book()
        if ensure_chromium():
            build_pdf()
        else:
            print(f"tasks.py: no PDF ({CHROMIUM} is missing), so the book's PDF link leads nowhere")
        print(f"the book is at {ROOT / '_build' / 'html' / 'index.html'}")
    elif task == "pdf":
        build_pdf()
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
