"""Atomic output files: written under a temporary name in the same folder, then renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile

_UMASK: list[int] = []


def umask() -> int:
    """The process umask, read once (os.umask can only be read by setting it, which races with threads)."""
    if not _UMASK:
        mask = os.umask(0o022)
        os.umask(mask)
        _UMASK.append(mask)
    return _UMASK[0]


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed.

    A reader never sees a half-written file, and a killed writer leaves at most a `.tmp-*` file.
    """
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~umask())  # mkstemp's 0600 would hide results from the group
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_atomic(path: str, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
