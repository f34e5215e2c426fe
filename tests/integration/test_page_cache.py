"""Files of DROP_CACHE_FROM_BYTES and more leave the page cache as their saves sync them, but
never the pages a digest running behind the writers still has to read, and not at all when
the caller asks to keep them (keep_cache, --keep-cache)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import segdl
import segdl.disk.resume
from segdl.cli.main import main
from segdl.disk.storage import PartFile
from tests.server import FaultServer
from tests.server.faults import Faults

MIB = 1024 * 1024
SIZE = 6 * MIB


@pytest.fixture
def fadvised(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    calls: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append((offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    monkeypatch.setattr(segdl.disk.resume, "DROP_CACHE_FROM_BYTES", 4 * MIB)
    return calls


def _download(server: FaultServer, data: bytes, dest: Path, **options: object) -> None:
    server.add_file("/f.bin", data)
    server.set_faults("/f.bin", Faults(throttle_bytes_per_s=4 * MIB))  # saves happen meanwhile
    segdl.download(server.url("/f.bin"), dest, connections=4, min_split_bytes=MIB, **options)
    assert dest.read_bytes() == data


def test_a_large_file_is_dropped_from_the_cache_as_it_is_synced(
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    fadvised: list[tuple[int, int, int]],
) -> None:
    _download(fault_server, make_data(SIZE), tmp_path / "f")
    assert fadvised and all(call == (0, 0, os.POSIX_FADV_DONTNEED) for call in fadvised)


def test_pages_the_digest_still_needs_are_kept(
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    fadvised: list[tuple[int, int, int]],
) -> None:
    data = make_data(SIZE)
    checksum = "sha256=" + hashlib.sha256(data).hexdigest()
    _download(fault_server, data, tmp_path / "f", checksum=checksum)
    assert fadvised, "no save came after the digest had read anything"
    assert all(0 < length <= SIZE for _, length, _ in fadvised)  # never "to the end"


def test_a_smaller_file_stays_cached(
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    fadvised: list[tuple[int, int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(segdl.disk.resume, "DROP_CACHE_FROM_BYTES", SIZE + 1)
    synced: list[int] = []
    real_sync = PartFile.sync_data

    def counting_sync(part: PartFile) -> None:
        synced.append(1)
        real_sync(part)

    monkeypatch.setattr(PartFile, "sync_data", counting_sync)
    _download(fault_server, make_data(SIZE), tmp_path / "f")
    assert synced  # saves did happen
    assert fadvised == []


def test_keep_cache_keeps_a_large_file_cached(
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    fadvised: list[tuple[int, int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    synced: list[int] = []
    real_sync = PartFile.sync_data

    def counting_sync(part: PartFile) -> None:
        synced.append(1)
        real_sync(part)

    monkeypatch.setattr(PartFile, "sync_data", counting_sync)
    _download(fault_server, make_data(SIZE), tmp_path / "f", keep_cache=True)
    assert synced  # saves did happen
    assert fadvised == []


def test_the_keep_cache_flag_reaches_the_download(
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    fadvised: list[tuple[int, int, int]],
) -> None:
    data = make_data(SIZE)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=4 * MIB))
    argv = ["-q", "-x", "4", "--keep-cache", "-o", str(tmp_path / "f"), fault_server.url("/f.bin")]
    assert main(argv) == 0
    assert (tmp_path / "f").read_bytes() == data
    assert fadvised == []
