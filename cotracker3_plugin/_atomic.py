"""Atomic outputs: write to a temporary sibling, then rename.

A failed or interrupted run (exception, Ctrl-C, disk full) leaves nothing
half-written at the final path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cotracker3_plugin.errors import OutputExistsError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600, and writers that replace the file (safetensors) keep that: give the
        # usual file mode once the file is complete.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if e.filename is None:  # a failed write() (a full disk) names no file: name the one being written
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; move it to ``path`` on success.

    Raises :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is False.
    On any exception (including KeyboardInterrupt) the temporary folder is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"The output folder {path} already exists. Choose another --output folder, "
            "or pass --overwrite to replace it."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
