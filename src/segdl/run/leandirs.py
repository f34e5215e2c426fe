"""Where the lean path writes: its directories (usable or not, what other runs left partial
there) and whether a name may be taken (see :mod:`segdl.run.lean`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from segdl.core.errors import SegdlError
from segdl.core.names import choose_filename
from segdl.core.options import IfExists
from segdl.core.ranges import single_header
from segdl.disk.commit import unnamed_files_work
from segdl.disk.paths import LOCK_SUFFIX, PART_SUFFIX, STATE_SUFFIX, name_inside
from segdl.disk.storage import make_directory
from segdl.net.leanconn import Answer
from segdl.run.claims import Claims

_LEFTOVER_SUFFIXES = (PART_SUFFIX, LOCK_SUFFIX, STATE_SUFFIX)


@dataclass(slots=True)
class Place:
    """A directory the lean path writes into: its real path and the stems of files another
    run left partial there (their ``.part``, state or lock)."""

    real: Path
    usable: bool
    leftovers: set[str] = field(default_factory=set)


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
                        for suffix in _LEFTOVER_SUFFIXES:
                            if entry.name.endswith(suffix):
                                place.leftovers.add(entry.name[: -len(suffix)])
            self._places[directory] = place
        return place

    def real(self, directory: Path) -> Path:
        return self._places[directory].real

    def name(self, directory: Path, url: str, answer: Answer) -> Path:
        """The file's name from the server's ``Content-Disposition`` or the URL, sanitised,
        in the directory (never outside it); a SegdlError if there is none usable."""
        try:
            disposition = single_header("Content-Disposition",
                                        answer.header_values("Content-Disposition"))  # fmt: skip
        except SegdlError:
            disposition = None
        return name_inside(self.real(directory), choose_filename(url, disposition))

    def take(self, directory: Path, path: Path, policy: IfExists) -> NameVerdict:
        """Whether ``path`` (in ``directory``, already placed) may be written: no partial
        download of another run, no other entry of the batch, and nothing there unless the
        batch overwrites. FREE takes it."""
        if path.name in self._places[directory].leftovers:
            return NameVerdict.LEFTOVER
        if path in self._claimed:
            return NameVerdict.TWIN
        if policy is IfExists.OVERWRITE or not os.path.lexists(path):
            self._claimed.add(path)
            return NameVerdict.FREE
        return NameVerdict.SKIP if policy is IfExists.SKIP else NameVerdict.EXISTS
