"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Write to a temp file in the same folder, flush + fsync, os.replace over the target, then fsync
the folder so the rename survives a power cut. A crash (even kill -9) leaves at most a hidden
`.<name>.*.tmp` next to the intact previous file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(file)` on a temp file and move it over `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode()))


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:
        # Some file systems cannot fsync a directory; the rename is still atomic there, only
        # its durability across a power cut is weaker.
        pass
    finally:
        os.close(fd)
