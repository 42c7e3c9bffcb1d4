"""Files on disk: written atomically, and named in reports relative to a root folder.

This module is private, one of breastus's shared foundations (it imports nothing
else of breastus), so every layer writes files and relative paths the same way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any], durable: bool = True) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it to ``path``.

    A reader (or a run killed midway) sees the old file or the new one, never half
    of one; the temporary file is removed when ``write`` fails.

    Parameters
    ----------
    path : pathlib.Path
        The target; its folder is created.
    write : callable
        Writes the contents to the binary file object it is given.
    durable : bool, default=True
        ``fsync`` the file and its folder, so the new file survives a power cut
        (checkpoints, splits, exports); ``False`` skips that for files that can be
        recomputed (cache entries).

    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if not durable:
        return
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def relative_posix(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with POSIX separators (both resolved), or ``path`` itself when outside ``root``.

    Parameters
    ----------
    path, root : pathlib.Path

    Returns
    -------
    str

    Examples
    --------
    >>> relative_posix(Path("/data/busi/benign/benign (1).png"), Path("/data/busi"))
    'benign/benign (1).png'
    >>> relative_posix(Path("/elsewhere/x.png"), Path("/data/busi"))
    '/elsewhere/x.png'

    """
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def relative_paths(paths: Sequence[Path], root: Path | None = None) -> list[str]:
    """:func:`relative_posix` of every path, relative to ``root`` (default: the paths' common folder)."""
    if root is None:
        root = Path(os.path.commonpath([str(p.resolve()) for p in paths])) if paths else Path()
    return [relative_posix(path, root) for path in paths]
