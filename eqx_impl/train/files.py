"""Atomic file writes: a temporary file in the target folder, flushed, then `os.replace`.

A reader (or a resumed run after a crash) sees either the old file or the complete new
one, never a partial write. The file gets the mode `open()` would give it (`0o666` less the
umask: 0644 under the usual umask 022), not the 0600 of `tempfile.mkstemp`, so every file of
a run directory has one mode.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "new_file_mode"]


def new_file_mode() -> int:
    """The permission bits of a new file: `0o666 & ~umask`. (Reading the umask means setting
    it; it is set straight back.)

    **Returns:** the mode, e.g. `0o644` under umask 022.
    """
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, *, before_replace: Callable[[Path], None] | None = None
) -> Path:
    """Write `data` to `path` atomically (same-folder temporary file, `fsync`, `os.replace`).
    `before_replace(temporary path)` runs between the write and the rename (a test hook).

    **Returns:** the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            os.fchmod(stream.fileno(), new_file_mode())
            stream.flush()
            os.fsync(stream.fileno())
        if before_replace is not None:
            before_replace(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write_bytes` for UTF-8 text. **Returns:** the path written."""
    return atomic_write_bytes(path, text.encode("utf-8"))
