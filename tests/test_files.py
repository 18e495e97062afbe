"""Output files: atomic replacement, through symlinks, into devices and FIFOs, never clobbering."""

import os
import socket
import stat
import subprocess
import sys
import threading

import pytest
from read_only import read_only

from mnistlab.files import atomic_path, output_kind, write_atomic


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


# ---------------------------------------------------------------- through links, into devices and FIFOs


def test_a_symlink_stays_a_link_and_its_target_is_replaced(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to("real.json")  # relative, as `ln -s` makes them
    write_atomic(str(link), "new")
    assert link.is_symlink() and os.readlink(link) == "real.json"
    assert real.read_text() == "new" and stat.S_IMODE(real.stat().st_mode) == 0o640  # permissions kept
    assert sorted(os.listdir(tmp_path)) == ["link.json", "real.json"]


def test_a_dangling_symlink_creates_its_target_and_a_chain_of_links_is_followed(tmp_path):
    (tmp_path / "sub").mkdir()
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "sub" / "made.json")
    write_atomic(str(dangling), "made")
    assert dangling.is_symlink() and (tmp_path / "sub" / "made.json").read_text() == "made"
    second = tmp_path / "second.json"
    second.symlink_to(dangling)
    write_atomic(str(second), "again")
    assert second.is_symlink() and dangling.is_symlink() and (tmp_path / "sub" / "made.json").read_text() == "again"


def test_a_fifo_is_written_into_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()))
    reader.start()
    with atomic_path(str(fifo), ".keras") as temporary:  # a binary writer that wants its suffix
        assert temporary.endswith(".keras") and not temporary.startswith(str(tmp_path))
        with open(temporary, "wb") as stream:
            stream.write(b"\x00bytes\xff")
    reader.join(10)
    assert received == [b"\x00bytes\xff"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["pipe"]


def test_a_character_device_is_written_into_never_replaced(tmp_path):
    # Our own node with /dev/null's numbers: if this ever regressed, only tmp_path would suffer.
    null = os.stat("/dev/null")
    device = tmp_path / "null"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, null.st_rdev)
    except PermissionError:
        pytest.skip("creating a device node needs root")
    before = os.lstat(device)
    write_atomic(str(device), "discarded")
    after = os.lstat(device)
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert os.listdir(tmp_path) == ["null"]
    # /dev/null itself is only classified, never written by the suite
    assert output_kind("/dev/null") == "stream"


def test_a_failed_stream_write_writes_nothing(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(RuntimeError):
        with atomic_path(str(fifo)) as temporary:
            open(temporary, "w").write("half")
            raise RuntimeError("writer died")  # the FIFO is never opened, so no reader is needed
    assert os.listdir(tmp_path) == ["pipe"]


def test_stdout_is_a_stream_even_when_redirected_to_a_file(tmp_path):
    log = tmp_path / "log.txt"
    # files.py is loaded on its own: the package's __init__ would spend seconds importing TensorFlow
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('files', sys.argv[1]); "
            "files = importlib.util.module_from_spec(spec); spec.loader.exec_module(files); "
            "print('progress', flush=True); kind = files.output_kind('/dev/stdout'); "
            "files.write_atomic('/dev/stdout', kind + '\\n')")
    with open(log, "w") as stream:
        subprocess.run([sys.executable, "-c", code, output_kind.__globals__["__file__"]], stdout=stream, check=True)
    # the payload is appended after what the process printed, and the file is the same file
    assert log.read_text() == "progress\nstream\n"


@pytest.mark.parametrize("make, message", [
    (lambda path: path.mkdir(), "is a directory"),
    (lambda path: path.symlink_to(path), "symbolic links"),
    (lambda path: socket.socket(socket.AF_UNIX).bind(str(path)), "socket"),
])
def test_what_cannot_be_written_is_refused_before_writing(tmp_path, make, message):
    path = tmp_path / "target"
    make(path)
    with pytest.raises(ValueError, match=message):
        output_kind(str(path))
    before = os.lstat(path)
    with pytest.raises(OSError, match=message):  # a writer's `except OSError` covers it, as for open()
        write_atomic(str(path), "x")
    assert os.lstat(path).st_ino == before.st_ino and sorted(os.listdir(tmp_path)) == ["target"]


def test_a_block_device_is_refused(tmp_path):
    device = tmp_path / "disk"
    try:
        os.mknod(device, 0o600 | stat.S_IFBLK, os.makedev(7, 0))  # a loop device's numbers, never opened
    except PermissionError:
        pytest.skip("creating a device node needs root")
    with pytest.raises(OSError, match="block device"):
        write_atomic(str(device), "x")
    assert stat.S_ISBLK(os.lstat(device).st_mode)


def test_missing_folder_and_read_only_file_are_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        output_kind(str(tmp_path / "missing" / "x.json"))
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "no" / "x.json")
    with pytest.raises(ValueError, match="does not exist"):
        output_kind(str(dangling))
    protected = tmp_path / "protected.json"
    protected.write_text("keep")
    with read_only(protected):
        with pytest.raises(OSError, match="read-only"):
            write_atomic(str(protected), "clobbered")
    assert protected.read_text() == "keep"
