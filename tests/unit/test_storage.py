"""The .part file: private, positional writes from many threads, no clobbering."""

from __future__ import annotations

import ctypes
import errno
import os
import random
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from segdl.core.errors import IntegrityError, LocalFileError, OutputExists
from segdl.disk import kernel
from segdl.disk.paths import OutputPaths
from segdl.disk.storage import PartFile, Pipe, room_needed


def test_concurrent_pwrite_from_many_threads(tmp_path: Path) -> None:
    """Pieces written at their offsets by 16 threads in random order give the exact file."""
    data = random.Random(1).randbytes(4 * 1024 * 1024 + 17)
    part = PartFile(OutputPaths.of(tmp_path / "out"), overwrite=False)
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
    part = PartFile(OutputPaths.of(tmp_path / "out"), overwrite=False)
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
        PartFile(OutputPaths.of(tmp_path / "a"), overwrite=False)
    part = PartFile(OutputPaths.of(tmp_path / "b"), overwrite=False)
    part.write_at(0, memoryview(b"new"))
    (tmp_path / "b").write_bytes(b"appeared meanwhile")
    with pytest.raises(OutputExists):
        part.finalize(3)
    assert (tmp_path / "b").read_bytes() == b"appeared meanwhile"
    assert (tmp_path / "b.part").read_bytes() == b"new"


def test_overwrite_replaces(tmp_path: Path) -> None:
    """With overwrite, the finished file replaces the old one atomically."""
    (tmp_path / "a").write_bytes(b"old")
    part = PartFile(OutputPaths.of(tmp_path / "a"), overwrite=True)
    part.write_at(0, memoryview(b"new!"))
    part.finalize(4)
    assert (tmp_path / "a").read_bytes() == b"new!"


def test_planted_symlink_at_part_is_refused(tmp_path: Path) -> None:
    """A symlink at <output>.part is not followed (O_NOFOLLOW)."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (tmp_path / "out.part").symlink_to(victim)
    with pytest.raises(LocalFileError, match="symlink"):
        PartFile(OutputPaths.of(tmp_path / "out"), overwrite=False)
    assert victim.read_bytes() == b"keep me"


def test_wrong_size_is_never_finalized(tmp_path: Path) -> None:
    """A file of the wrong size stays a .part."""
    part = PartFile(OutputPaths.of(tmp_path / "out"), overwrite=False)
    part.write_at(0, memoryview(b"abc"))
    with pytest.raises(IntegrityError):
        part.finalize(4)
    assert not (tmp_path / "out").exists()


needs_splice = pytest.mark.skipif(not Pipe.supported(), reason="splice is Linux-only")


def _filled(data: bytes) -> Pipe:
    pipe = Pipe()
    assert os.write(pipe.write_fd, data) == len(data)
    pipe.pending = len(data)
    return pipe


@needs_splice
@pytest.mark.parametrize("can_splice", [True, False])
def test_bytes_go_from_a_pipe_to_their_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, can_splice: bool
) -> None:
    """What waits in the pipe lands at the offset; the skipped and the surplus are dropped,
    and a file system that cannot splice gets the same bytes copied."""
    real_splice = os.splice

    def no_file_splice(src: int, dst: int, count: int, *args: object, **kwargs: object) -> int:
        if "offset_dst" in kwargs:
            raise OSError(errno.EINVAL, "splice to this file system is not supported")
        return real_splice(src, dst, count, *args, **kwargs)  # type: ignore[arg-type]

    if not can_splice:
        monkeypatch.setattr(os, "splice", no_file_splice)
    part = PartFile(OutputPaths.of(tmp_path / "out"), overwrite=False)
    part.allocate(10)
    pipe = _filled(b"skipDATAsurplus")
    try:
        pipe.discard(4)
        part.write_from_pipe(pipe, 3, 4)
        assert pipe.pending == 7
        pipe.discard(pipe.pending)
        assert pipe.pending == 0
        part.write_at(0, memoryview(b"abc"))
        part.write_at(7, memoryview(b"xyz"))
        assert (tmp_path / "out.part").read_bytes() == b"abcDATAxyz"
    finally:
        pipe.close()
        part.close()


@needs_splice
def test_connections_waiting_for_a_refused_splice_do_not_try_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first EINVAL from splicing into the file switches the part file to copying for
    every connection, also one that was already waiting for the write lock meanwhile (found
    under load: the second connection tried once more)."""
    refused: list[int] = []
    inside = threading.Event()

    def slow_refusal(src: int, dst: int, count: int, *args: object, **kwargs: object) -> int:
        refused.append(count)
        inside.set()
        time.sleep(0.2)  # the other connection queues on the write lock meanwhile
        raise OSError(errno.EINVAL, "splice to this file system is not supported")

    monkeypatch.setattr(os, "splice", slow_refusal)
    part = PartFile(OutputPaths.of(tmp_path / "out"), overwrite=False)
    part.allocate(8)
    pipes = [_filled(b"abcd"), _filled(b"efgh")]
    try:
        first = threading.Thread(target=part.write_from_pipe, args=(pipes[0], 0, 4))
        first.start()
        assert inside.wait(5)
        part.write_from_pipe(pipes[1], 4, 4)
        first.join()
        assert len(refused) == 1
        assert (tmp_path / "out.part").read_bytes() == b"abcdefgh"
    finally:
        for pipe in pipes:
            pipe.close()
        part.close()


@needs_splice
def test_a_pipe_is_as_big_as_linux_allows() -> None:
    """Fewer, larger splices: 1 MiB unless /proc/sys/fs/pipe-max-size says less."""
    pipe = Pipe()
    try:
        assert 64 * 1024 <= pipe.capacity <= 1 << 20
    finally:
        pipe.close()


@pytest.fixture
def part(tmp_path: Path) -> Iterator[PartFile]:
    """A fresh ``out.part`` in ``tmp_path``, closed afterwards."""
    part = PartFile(OutputPaths.of(tmp_path / "out"), overwrite=False)
    yield part
    part.close()


def test_allocate_reserves_the_blocks_and_keeps_what_is_written(
    part: PartFile, tmp_path: Path
) -> None:
    """Every block of the file is reserved up front (this machine's file system can), and a
    second allocate, as on resume, keeps the bytes already there."""
    size = 8 << 20
    part.write_at(size - 3, memoryview(b"end"))
    part.allocate(size)
    info = os.stat(tmp_path / "out.part")
    assert info.st_size == size
    assert info.st_blocks * 512 >= size
    part.allocate(size)
    with open(tmp_path / "out.part", "rb") as f:
        f.seek(size - 3)
        assert f.read() == b"end"


def _failing(code: int) -> Callable[..., int]:
    """A C library function that fails with ``code``, as ctypes reports it."""

    def call(*args: int) -> int:
        ctypes.set_errno(code)
        return -1

    return call


@pytest.mark.parametrize("why", ["fallocate refused", "tmpfs"])
def test_a_file_system_that_cannot_reserve_cheaply_gets_a_sparse_file(
    part: PartFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    """Where fallocate is refused, or would zero every page up front (tmpfs), nothing is
    reserved and the file stays sparse."""
    if why == "tmpfs":
        monkeypatch.setattr(kernel, "_file_system_type", lambda fd: 0x01021994)
    else:
        monkeypatch.setitem(kernel._libc_functions, "fallocate", _failing(errno.EOPNOTSUPP))
    part.allocate(8 << 20)
    info = os.stat(tmp_path / "out.part")
    assert (info.st_size, info.st_blocks) == (8 << 20, 0)


def test_no_room_to_reserve_fails_before_a_byte_is_fetched(
    part: PartFile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC from the reservation is a one-line local error naming the .part."""
    monkeypatch.setitem(kernel._libc_functions, "fallocate", _failing(errno.ENOSPC))
    with pytest.raises(LocalFileError) as caught:
        part.allocate(8 << 20)
    assert caught.value.errno == errno.ENOSPC
    assert f"{tmp_path / 'out.part'}: No space left" in str(caught.value)


def test_room_needed_counts_what_the_part_holds(part: PartFile, tmp_path: Path) -> None:
    """A resumed download needs room for what is neither done nor held by its .part: a
    reserved .part needs nothing more, even on a disk that is now full."""
    final = tmp_path / "out"
    no_part = OutputPaths.of(tmp_path / "other")
    assert room_needed(no_part, 10 << 20, 1 << 20) == 9 << 20
    part.write_at(0, memoryview(bytes(1 << 20)))
    # a sparse .part holds what is written
    assert room_needed(OutputPaths.of(final), 8 << 20, 0) == 7 << 20
    part.allocate(8 << 20)
    assert room_needed(OutputPaths.of(final), 8 << 20, 1 << 20) == 0
