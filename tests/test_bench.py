"""The benchmark's command line: help, bad input refused before any work as the CLI refuses it, outputs."""

import json
import os
import socket
import stat
import subprocess
import sys

import pytest
from read_only import read_only

import mnistlab as ml
from mnistlab import bench, cli

TINY = ["--per-class", "3", "--epochs", "1", "--repeats", "1", "--skip-original", "--skip-cnn"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real tiny benchmark through the command line: its exit code, JSON report and folder."""
    folder = tmp_path_factory.mktemp("bench")
    path = folder / "bench.json"
    code = bench.main([*TINY, "--json", str(path)])
    return code, json.loads(path.read_text()), folder


@pytest.fixture
def canned(tiny_run, monkeypatch):
    """`bench.run` answers with the tiny run's report, so that output tests train nothing."""
    report = tiny_run[1]
    monkeypatch.setattr(bench, "run", lambda *arguments, **keywords: report)
    return report


def test_bench_help_works(capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--help"])
    assert stopped.value.code == 0
    assert "--skip-original" in capsys.readouterr().out


def test_a_tiny_bench_agrees_and_writes_its_report(tiny_run):
    code, report, folder = tiny_run
    assert code == 0 and report["agrees"] and report["per_class"] == 3 and report["epochs"] == 1
    assert [row["configuration"] for row in report["rows"]] == [
        f"{h} hidden, lambda={lam:g}" for h, lam in ml.STUDY_GRID]
    assert os.listdir(folder) == ["bench.json"]  # no temporary file left beside it


def output_cases(tmp_path):
    """Output paths the CLI refuses, each with what must be true of it afterwards."""
    protected = tmp_path / "protected.json"
    protected.write_text("keep")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "socket"))
    return server, {
        "missing folder": str(tmp_path / "no" / "such" / "bench.json"),
        "directory": str(tmp_path),
        "socket": str(tmp_path / "socket"),
        "read-only file": str(protected),
    }


def test_bad_output_paths_get_the_cli_s_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run", lambda *arguments, **keywords: pytest.fail("bench ran despite a bad path"))
    server, cases = output_cases(tmp_path)
    protected = tmp_path / "protected.json"
    with server, read_only(protected):
        for name, path in cases.items():
            before = sorted(os.listdir(tmp_path))
            assert bench.main(["--json", path]) == 2, name
            captured = capsys.readouterr()
            assert cli.main(["train", "--json", path]) == 2, name
            from_cli = capsys.readouterr()
            assert captured.err == from_cli.err and captured.err.count("\n") == 1, name
            assert captured.err.startswith("error: cannot write") and captured.out == "", name
            assert sorted(os.listdir(tmp_path)) == before, name
    assert protected.read_text() == "keep"


@pytest.mark.parametrize("arguments, message", [
    (["--repeats", "0"], "--repeats must be >= 1, got 0"),
    (["--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
    (["--per-class", "5000"], "between 1 and 431"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_values_are_one_line_and_exit_2(arguments, message, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run", lambda *arguments, **keywords: pytest.fail("bench ran despite bad input"))
    assert bench.main(arguments) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("error: ") and message in captured.err


def test_module_entry_point_refuses_a_directory_in_one_line(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "mnistlab", "bench", "--json", str(tmp_path)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr == f"error: cannot write {str(tmp_path)!r}: it is a directory\n"


def test_json_dash_puts_the_report_alone_on_stdout(canned, capsys):
    assert bench.main([*TINY, "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == canned  # nothing else on stdout: it can be piped
    assert "| configuration |" in captured.err and "bench: load average" in captured.err


def test_an_existing_report_is_replaced_whole(canned, tmp_path, capsys):
    path = tmp_path / "bench.json"
    path.write_text("old report")
    path.chmod(0o640)
    assert bench.main([*TINY, "--json", str(path)]) == 0
    assert json.loads(path.read_text()) == canned and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["bench.json"]
    assert "| configuration |" in capsys.readouterr().out


def test_a_full_disk_prints_the_report_instead_and_exits_1(canned, tmp_path, capsys):
    full = tmp_path / "full"  # our own /dev/full: every write fails with ENOSPC, as on a full disk
    try:
        os.mknod(full, 0o666 | stat.S_IFCHR, os.stat("/dev/full").st_rdev)
    except (PermissionError, FileNotFoundError):
        pytest.skip("creating a device node needs root and /dev/full")
    assert bench.main([*TINY, "--json", str(full)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert f"could not write {full} (No space left on device); the results are printed below" in captured.err
    assert json.loads(captured.out[captured.out.rindex("\n{"):]) == canned
