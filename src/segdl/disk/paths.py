"""Where a download's files go on disk: one :class:`OutputPaths` value per output.

Beside the final name live the ``.part`` (the bytes until they are verified), the state (what
of them is durable) and the owner lock. Their names are derived here, once, from the final
path; everything else (the part file, the state, the lock, resuming, the engine) is handed
the value instead of deriving them again. The files segdl keeps on disk (the state beside an
output, a directory's journal) name the URL by :func:`url_digest`, also defined here.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from segdl.core.errors import LocalFileError
from segdl.core.names import MAX_NAME_BYTES, sanitise_filename

PART_SUFFIX = ".part"
STATE_SUFFIX = ".segdl-state"
LOCK_SUFFIX = ".segdl-lock"
# What segdl adds to an output's name for the files beside it; their temporary names have a
# fixed length (disk.storage.temp_sibling), so the longest suffix is all a name must leave room for.
SIBLING_SUFFIXES = (PART_SUFFIX, STATE_SUFFIX, LOCK_SUFFIX)
_LONGEST_SUFFIX = max(SIBLING_SUFFIXES, key=len)
_DEFAULT_NAME_MAX = 255  # ext4, XFS, btrfs, APFS; where pathconf cannot tell


def url_digest(url: str) -> str:
    """SHA-256 of the URL as given: the same URL matches, and its secrets stay unstored."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class OutputPaths:
    """One output's files: the final name and, beside it, ``.part``, state and lock."""

    final: Path
    part: Path
    state: Path
    lock: Path

    @classmethod
    def of(cls, final: Path) -> OutputPaths:
        """The paths of the output whose final name is ``final``."""
        return cls(
            final,
            final.with_name(final.name + PART_SUFFIX),
            final.with_name(final.name + STATE_SUFFIX),
            final.with_name(final.name + LOCK_SUFFIX),
        )


def path_inside(directory: Path, name: str) -> Path:
    """``name`` in the real ``directory``; LocalFileError (EINVAL) unless ``name`` is a sanitised
    basename whose path has exactly that directory as parent."""
    return name_inside(Path(os.path.realpath(directory)), name)


def name_inside(real: Path, name: str) -> Path:
    """As :func:`path_inside`, for a directory already resolved (``os.path.realpath``): a
    batch resolves its directory once, not once per file."""
    path = real / name
    if not name or name != sanitise_filename(name, fallback="") or path.parent != real:
        raise LocalFileError(
            errno.EINVAL, f"refusing file name {name!r}: not a plain name in {real}"
        )
    return path


def name_max(directory: Path) -> int:
    """The longest file name, in bytes, the file system of ``directory`` takes (NAME_MAX)."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):  # no such directory yet, or a system without pathconf
        return _DEFAULT_NAME_MAX


def name_limit_bytes(directory: Path) -> int:
    """The longest output name segdl gives a file in ``directory``: its longest sibling
    (``<name>.segdl-state``) must fit NAME_MAX too, and never more than MAX_NAME_BYTES."""
    return max(1, min(MAX_NAME_BYTES, name_max(directory) - len(_LONGEST_SUFFIX)))


def check_name_fits(final_path: Path) -> None:
    """An output name (``-o``) too long for its siblings: exit 3 naming the limit, before any
    request, instead of a "File name too long" from the lock or the state halfway through."""
    length = len(os.fsencode(final_path.name))
    limit = name_max(final_path.parent)
    if length + len(_LONGEST_SUFFIX) <= limit:
        return
    why = (
        f"output name is {length} bytes; with {_LONGEST_SUFFIX} beside it that is over the "
        f"{limit}-byte name limit of {final_path.parent}: at most {limit - len(_LONGEST_SUFFIX)}"
    )
    raise LocalFileError(errno.ENAMETOOLONG, why, str(final_path))
