"""The benchmark's command line: help, and bad output paths refused before any work."""

import subprocess
import sys

import pytest

from mnistlab import bench


def test_bench_help_works(capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--help"])
    assert stopped.value.code == 0
    assert "--skip-original" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["--json", "/no/such/folder/report.json"], "does not exist"),
    (["--json", "."], "is a directory"),
    (["--repeats", "0"], "--repeats must be >= 1"),
])
def test_bad_arguments_fail_at_once_with_one_line(arguments, message):
    completed = subprocess.run([sys.executable, "-m", "mnistlab", "bench", *arguments], capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and completed.stdout == ""


def test_a_tiny_bench_agrees(tmp_path):
    path = tmp_path / "bench.json"
    code = bench.main(["--per-class", "3", "--epochs", "1", "--repeats", "1", "--skip-original", "--skip-cnn",
                       "--json", str(path)])
    assert code == 0 and path.exists()
