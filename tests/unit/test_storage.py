"""The .part file: private, positional writes from many threads, no clobbering."""

from __future__ import annotations

import os
import random
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from segdl.errors import IntegrityError, LocalFileError, OutputExists
from segdl.storage import PartFile


def test_concurrent_pwrite_from_many_threads(tmp_path: Path) -> None:
    """Pieces written at their offsets by 16 threads in random order give the exact file."""
    data = random.Random(1).randbytes(4 * 1024 * 1024 + 17)
    part = PartFile(tmp_path / "out", overwrite=False)
    part.allocate(len(data))
    pieces = [(o, o + 65_537) for o in range(0, len(data), 65_537)]
    random.Random(2).shuffle(pieces)
    view = memoryview(data)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: part.write_at(p[0], view[p[0] : p[1]]), pieces))
    final = part.finalize(len(data))
    assert final.read_bytes() == data
    assert not (tmp_path / "out.part").exists()


def test_part_is_private_and_final_follows_umask(tmp_path: Path) -> None:
    """The .part is 0600 while incomplete; the final file gets 0666 minus the umask."""
    part = PartFile(tmp_path / "out", overwrite=False)
    assert stat.S_IMODE(os.stat(tmp_path / "out.part").st_mode) == 0o600
    part.write_at(0, memoryview(b"abc"))
    old = os.umask(0o027)
    try:
        final = part.finalize(3)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o640


def test_existing_output_is_refused_at_creation_and_at_finalize(tmp_path: Path) -> None:
    """No clobbering: refused up front, and also if the file appears during the download."""
    (tmp_path / "a").write_bytes(b"old")
    with pytest.raises(OutputExists):
        PartFile(tmp_path / "a", overwrite=False)
    part = PartFile(tmp_path / "b", overwrite=False)
    part.write_at(0, memoryview(b"new"))
    (tmp_path / "b").write_bytes(b"appeared meanwhile")
    with pytest.raises(OutputExists):
        part.finalize(3)
    assert (tmp_path / "b").read_bytes() == b"appeared meanwhile"
    assert (tmp_path / "b.part").read_bytes() == b"new"


def test_overwrite_replaces(tmp_path: Path) -> None:
    """With overwrite, the finished file replaces the old one atomically."""
    (tmp_path / "a").write_bytes(b"old")
    part = PartFile(tmp_path / "a", overwrite=True)
    part.write_at(0, memoryview(b"new!"))
    part.finalize(4)
    assert (tmp_path / "a").read_bytes() == b"new!"


def test_planted_symlink_at_part_is_refused(tmp_path: Path) -> None:
    """A symlink at <output>.part is not followed (O_NOFOLLOW)."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (tmp_path / "out.part").symlink_to(victim)
    with pytest.raises(LocalFileError, match="symlink"):
        PartFile(tmp_path / "out", overwrite=False)
    assert victim.read_bytes() == b"keep me"


def test_wrong_size_is_never_finalized(tmp_path: Path) -> None:
    """A file of the wrong size stays a .part."""
    part = PartFile(tmp_path / "out", overwrite=False)
    part.write_at(0, memoryview(b"abc"))
    with pytest.raises(IntegrityError):
        part.finalize(4)
    assert not (tmp_path / "out").exists()
