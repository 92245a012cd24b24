"""Reading and writing ``.pcdc`` files safely: outputs appear atomically, inputs are never overwritten."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False,
                  protect: tuple[str | os.PathLike, ...] = ()) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it is synced and renamed to ``path``.

    A failure (any exception inside the block) never leaves a partial file.  An existing ``path`` is replaced
    only with ``force``, and never when it is one of the ``protect`` paths (the inputs of the job).
    """
    path = Path(path)
    for other in protect:
        if Path(other).exists() and path.exists() and os.path.samefile(path, other):
            raise FileExistsError(f"refusing to overwrite the input file {path}")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True (--force) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes, force: bool = False,
                 protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output` for the rules)."""
    with atomic_output(path, force, protect) as f:
        f.write(data)
    return Path(path)
