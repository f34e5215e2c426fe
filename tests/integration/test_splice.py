"""Plain-HTTP bodies reach the file through a pipe (socket → pipe → file, Linux ``splice``)
byte-exact, including the bytes http.client read along with the head; where splicing is not
possible (TLS, a kernel or file system that refuses) the same bytes are copied instead."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import segdl
from segdl.disk.storage import Pipe
from tests.server import FaultServer

MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(not Pipe.supported(), reason="splice is Linux-only")


class SpliceCounter:
    """Wraps os.splice: counts socket → pipe and pipe → file calls; can refuse either."""

    def __init__(self, refuse_from_socket: bool = False, refuse_to_file: bool = False) -> None:
        self.real = os.splice
        self.from_socket = 0
        self.to_file = 0
        self.refuse_from_socket = refuse_from_socket
        self.refuse_to_file = refuse_to_file

    def __call__(self, src: int, dst: int, count: int, *args: object, **kwargs: object) -> int:
        to_file = "offset_dst" in kwargs
        if to_file:
            self.to_file += 1
        else:
            self.from_socket += 1
        if (self.refuse_to_file and to_file) or (self.refuse_from_socket and not to_file):
            raise OSError(errno.EINVAL, "not supported here")
        return self.real(src, dst, count, *args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 5000, 8192, 8193, 300_000, 3 * MIB + 17])
def test_plain_http_bodies_are_spliced_byte_exact(
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    """Sizes around http.client's 8 KiB read buffer: what it holds is copied, the rest spliced."""
    data = make_data(size, seed=size)
    fault_server.add_file("/f.bin", data)
    counter = SpliceCounter()
    monkeypatch.setattr(os, "splice", counter)
    segdl.download(
        fault_server.url("/f.bin"), tmp_path / "o", connections=4, min_split_bytes=256 * 1024
    )
    assert (tmp_path / "o").read_bytes() == data
    if size > 300_000:
        assert counter.from_socket > 0 and counter.to_file > 0


@pytest.mark.parametrize("refuse", ["from_socket", "to_file"])
def test_a_refused_splice_falls_back_to_copying(
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    refuse: str,
) -> None:
    """EINVAL from splice (an old kernel, a FUSE file system) costs speed, never bytes."""
    data = make_data(3 * MIB)
    fault_server.add_file("/f.bin", data)
    counter = SpliceCounter(
        refuse_from_socket=refuse == "from_socket", refuse_to_file=refuse == "to_file"
    )
    monkeypatch.setattr(os, "splice", counter)
    segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4)
    assert (tmp_path / "o").read_bytes() == data
    if refuse == "to_file":
        assert counter.to_file == 1  # the part file stops trying after the first refusal


def test_a_rate_limit_reads_through_the_buffer(
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under --limit-rate reads stay small (a pipe would move up to 1 MiB at once)."""
    data = make_data(MIB)
    fault_server.add_file("/f.bin", data)
    counter = SpliceCounter()
    monkeypatch.setattr(os, "splice", counter)
    segdl.download(fault_server.url("/f.bin"), tmp_path / "o", limit_rate="20M")
    assert (tmp_path / "o").read_bytes() == data
    assert counter.from_socket == 0
