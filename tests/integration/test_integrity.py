"""Checksums, server digests and the rate limit, end to end against the fault server."""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import segdl
from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from tests.server import FaultServer
from tests.server.faults import Faults

MIB = 1024 * 1024
MakeData = Callable[..., bytes]


def run_cli(*argv: str) -> tuple[int, str]:
    stderr = io.StringIO()
    code = main(list(argv), stdout=io.StringIO(), stderr=stderr)
    return code, stderr.getvalue()


@pytest.mark.parametrize("good", [True, False])
def test_checksum_option(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, good: bool
) -> None:
    """--checksum: a match finalizes the file; a mismatch exits 10 and leaves nothing."""
    data = make_data(3 * MIB)
    fault_server.add_file("/f.bin", data)
    digest = hashlib.sha256(data if good else b"other").hexdigest()
    code, err = run_cli("-x", "4", "--checksum", f"sha256={digest}", "-o", str(tmp_path / "o"),
                        fault_server.url("/f.bin"))  # fmt: skip
    if good:
        assert code == ExitCode.OK, err
        assert (tmp_path / "o").read_bytes() == data
    else:
        assert code == ExitCode.INTEGRITY and "mismatch" in err
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("header", "good"),
    [("Repr-Digest", True), ("Repr-Digest", False), ("Content-MD5", True), ("Content-MD5", False)],
)
def test_server_digests_are_verified(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, header: str, good: bool
) -> None:
    """Repr-Digest (on ranges) and Content-MD5 (on a whole 200 body) are checked."""
    data = make_data(2 * MIB)
    body = data if good else b"tampered"
    if header == "Repr-Digest":
        value = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
        faults = Faults(extra_headers=((header, value),))
    else:  # Content-MD5 describes a whole body: make the server ignore ranges
        value = base64.b64encode(hashlib.md5(body).digest()).decode()
        faults = Faults(ignore_range=True, extra_headers=((header, value),))
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", faults)
    if good:
        segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4)
        assert (tmp_path / "o").read_bytes() == data
    else:
        with pytest.raises(segdl.IntegrityError):
            segdl.download(fault_server.url("/f.bin"), tmp_path / "o", connections=4)
        assert list(tmp_path.iterdir()) == []


def test_rate_limit_holds_within_5_percent_over_10_s(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """--limit-rate 2M over 4 connections: 20 MiB take 10 s, within 5%."""
    size = 20 * MIB
    data = make_data(size)
    fault_server.add_file("/f.bin", data)
    started = time.monotonic()
    code, err = run_cli("-q", "-x", "4", "--limit-rate", "2M", "-o", str(tmp_path / "o"),
                        fault_server.url("/f.bin"))  # fmt: skip
    elapsed_s = time.monotonic() - started
    assert code == ExitCode.OK, err
    rate = size / elapsed_s
    assert abs(rate - 2 * MIB) <= 0.05 * 2 * MIB, (rate, elapsed_s)
    assert (tmp_path / "o").read_bytes() == data
