"""Where a download's files go on disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from segdl.core.errors import LocalFileError
from segdl.core.names import sanitise_filename


def path_inside(directory: Path, name: str) -> Path:
    """``name`` in the real ``directory``; LocalFileError (EINVAL) unless ``name`` is a sanitised
    basename whose path has exactly that directory as parent."""
    real = Path(os.path.realpath(directory))
    path = real / name
    if not name or name != sanitise_filename(name, fallback="") or path.parent != real:
        raise LocalFileError(
            errno.EINVAL, f"refusing file name {name!r}: not a plain name in {real}"
        )
    return path
