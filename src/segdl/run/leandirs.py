"""Where the lean path writes: its directories (usable or not, what other runs left partial
there) and whether a name may be taken (see :mod:`segdl.run.lean`)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from segdl.core.errors import LocalFileError, SegdlError
from segdl.core.names import choose_filename
from segdl.core.options import IfExists
from segdl.core.ranges import single_header
from segdl.disk.commit import unnamed_files_work
from segdl.disk.paths import LOCK_SUFFIX, PART_SUFFIX, STATE_SUFFIX
from segdl.disk.storage import make_directory
from segdl.run.claims import Claims

_LEFTOVER_SUFFIXES = (PART_SUFFIX, LOCK_SUFFIX, STATE_SUFFIX)


@dataclass(slots=True)
class Place:
    """A directory the lean path writes into: its real path, the stems of files another
    run left partial there (their ``.part``, state or lock), and the names there when the
    batch first wrote into it (hashed: 8 bytes a name). A name not among them is taken
    without a ``stat``: a file that appears there later is never linked over (the link
    fails), and its file goes to the full path."""

    real: Path
    usable: bool
    real_text: str = field(init=False)
    leftovers: set[str] = field(default_factory=set)
    existing: Claims = field(default_factory=Claims)

    def __post_init__(self) -> None:
        self.real_text = str(self.real)


class NameVerdict(Enum):
    FREE = "free"
    """Taken now by this file: write it."""
    LEFTOVER = "a partial download is there"
    TWIN = "another entry of this batch names it"
    SKIP = "a file is there and the batch skips existing files"
    EXISTS = "the output exists"


class Destinations:
    """A batch's output directories, opened once each, and the names its files took."""

    def __init__(self) -> None:
        self._places: dict[Path, Place] = {}
        self._claimed = Claims()

    def place(self, directory: Path) -> Place | None:
        """The directory, created if missing; None if it cannot be (the full path reports)."""
        place = self._places.get(directory)
        if place is None:
            try:
                make_directory(directory)
            except SegdlError:
                return None
            real = Path(os.path.realpath(directory))
            place = Place(real, unnamed_files_work(real))
            if place.usable:
                with os.scandir(real) as entries:
                    for entry in entries:
                        place.existing.add(entry.name)
                        for suffix in _LEFTOVER_SUFFIXES:
                            if entry.name.endswith(suffix):
                                place.leftovers.add(entry.name[: -len(suffix)])
            self._places[directory] = place
        return place

    def unusable(self, directory: Path) -> str | None:
        """Why the lean path cannot write into ``directory`` (None: it can)."""
        place = self.place(directory)
        if place is None or not place.usable:
            return "an output directory without unnamed files"
        return None

    def real(self, directory: Path) -> Path:
        return self._places[directory].real

    def name(
        self, directory: Path, url: str, url_path: str, headers: Callable[[str], list[str]]
    ) -> Path:
        """The file's name from the server's ``Content-Disposition`` (in an answer's
        ``headers``) or the URL (whose path is ``url_path``), sanitised, in the directory
        (never outside it); a SegdlError if there is none usable."""
        try:
            disposition = single_header("Content-Disposition", headers("Content-Disposition"))
        except SegdlError:
            disposition = None
        name = choose_filename(url, disposition, url_path=url_path)
        # choose_filename sanitises once: a plain name, never empty, "." or ".." and without
        # a separator; what makes it stay inside the directory is checked here all the same.
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise LocalFileError(errno.EINVAL, f"refusing file name {name!r}: not a plain name")
        return self.real(directory) / name

    def take(self, directory: Path, path: Path, policy: IfExists) -> NameVerdict:
        """Whether ``path`` (in ``directory``, already placed) may be written: no partial
        download of another run, no other entry of the batch, and nothing there unless the
        batch overwrites. FREE takes it."""
        place, name = self._places[directory], path.name
        if name in place.leftovers:
            return NameVerdict.LEFTOVER
        claim = f"{place.real_text}/{name}"  # the same file however its path was spelt
        if claim in self._claimed:
            return NameVerdict.TWIN
        there = name in place.existing and os.path.lexists(path)  # a hash: confirmed
        if policy is IfExists.OVERWRITE or not there:
            self._claimed.add(claim)
            return NameVerdict.FREE
        return NameVerdict.SKIP if policy is IfExists.SKIP else NameVerdict.EXISTS
