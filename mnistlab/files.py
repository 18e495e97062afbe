"""Output files: regular files replaced atomically (through symlinks), devices and FIFOs written directly."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile

_UMASK: list[int] = []
# /dev/stdout and friends name an open descriptor of this process: replacing what it points at
# (say the file a shell redirected stdout to) would orphan the descriptor, so they are streams.
_DESCRIPTOR = re.compile(r"/dev/(stdin|stdout|stderr)|/dev/fd/\d+|/proc/[^/]+/fd/\d+")


def umask() -> int:
    """The process umask, read once (os.umask can only be read by setting it, which races with threads)."""
    if not _UMASK:
        mask = os.umask(0o022)
        os.umask(mask)
        _UMASK.append(mask)
    return _UMASK[0]


def _names_a_descriptor(path: str) -> bool:
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on a chain of links
        if _DESCRIPTOR.fullmatch(current):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return False


def output_kind(path: str) -> str:
    """How `path` gets written: "file" (a regular file, new or replaced atomically, through any
    symlink) or "stream" (a character device, a FIFO or a descriptor like /dev/stdout, written
    directly). ValueError with a one-line reason when it cannot be written: a directory, a block
    device, a socket, a missing or read-only folder, a read-only file.
    """
    if not path:
        raise ValueError("output path is empty")
    try:
        status = os.stat(path)  # follows symlinks: what a write would reach
    except FileNotFoundError:
        status = None  # new file, or a symlink to a file not created yet
    except OSError as error:  # a loop of links, a file used as a folder, ...
        raise ValueError(f"cannot write {path!r}: {error.strerror}") from None
    if status is not None and not stat.S_ISREG(status.st_mode):
        if stat.S_ISDIR(status.st_mode):
            raise ValueError(f"cannot write {path!r}: it is a directory")
        if stat.S_ISCHR(status.st_mode) or stat.S_ISFIFO(status.st_mode):
            if not os.access(path, os.W_OK):
                raise ValueError(f"cannot write {path!r}: permission denied")
            return "stream"
        kind = "block device" if stat.S_ISBLK(status.st_mode) else "socket" if stat.S_ISSOCK(status.st_mode) \
            else "special file"
        raise ValueError(f"cannot write {path!r}: it is a {kind}, not a file; refusing to write to it")
    if status is not None and _names_a_descriptor(path):
        return "stream"
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path!r}: directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {path!r}: directory {folder!r} is not writable")
    if status is not None and not os.access(target, os.W_OK):
        raise ValueError(f"cannot write {path!r}: the file is read-only")
    return "file"


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path to write; on success its content goes to `path`, on failure it is removed.

    A regular file is replaced by a rename (a reader never sees it half-written, a killed writer
    leaves at most a `.tmp-*` file); through a symlink, the file it points to is replaced and the
    link stays. A character device or FIFO (e.g. /dev/null, /dev/stdout) gets the bytes written into
    it and is never replaced. Anything else (see `output_kind`) raises OSError, as open() would: a
    writer's `except OSError` catches every reason its output could not be written.
    """
    try:
        kind = output_kind(path)
    except ValueError as error:
        raise OSError(str(error)) from None
    if kind == "stream":
        with tempfile.TemporaryDirectory(prefix="mnistlab-out-") as scratch:
            temporary = os.path.join(scratch, "output" + suffix)
            yield temporary
            # Append, not truncate: /dev/stdout may be a file the shell is still writing to.
            with open(temporary, "rb") as source, open(path, "ab") as sink:
                shutil.copyfileobj(source, sink)
        return
    target = os.path.realpath(path)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        yield temporary
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)  # a replaced file keeps its permissions
        except FileNotFoundError:
            mode = 0o666 & ~umask()  # mkstemp's 0600 would hide results from the group
        os.chmod(temporary, mode)
        # Checked again just before the rename: something else may have appeared there meanwhile.
        if os.path.lexists(target) and not stat.S_ISREG(os.lstat(target).st_mode):
            raise OSError(f"cannot write {path!r}: it is no longer a regular file; refusing to replace it")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_atomic(path: str, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
