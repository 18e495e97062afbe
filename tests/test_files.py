import os

import pytest

from mnistlab.files import atomic_path, write_atomic


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_atomic(str(target), "new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_current_umask()


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target), ".keras") as temporary:
            assert temporary.endswith(".keras") and os.path.dirname(temporary) == str(tmp_path)
            open(temporary, "w").write("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.keras"]


def _current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
