"""segdl against a real nginx on loopback: 0 B to 64 MiB, 1/4/16 connections, CLI, access log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import segdl
from tests.nginx import (
    AccessEntry,
    Nginx,
    NginxNotFound,
    nginx_binary,
    sha256_file,
    write_random_file,
)

pytestmark = pytest.mark.nginx

MiB = 1 << 20
SIZES = {"empty.bin": 0, "one.bin": 1, "mib-plus-one.bin": MiB + 1, "big.bin": 64 * MiB}
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Served:
    """The running nginx and the sha256 of every file it serves."""

    nginx: Nginx
    sha256: dict[str, str]


def _require_nginx() -> Path:
    """The nginx binary; a missing nginx fails the test with the setup hint, never skips it."""
    try:
        return nginx_binary()
    except NginxNotFound as exc:
        reason = str(exc)
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """nginx over deterministic random files of every size in SIZES."""
    binary = _require_nginx()
    root = tmp_path_factory.mktemp("www")
    digests = {
        name: write_random_file(root / name, size, seed=i)
        for i, (name, size) in enumerate(SIZES.items())
    }
    with Nginx(root, binary) as nginx:
        yield Served(nginx, digests)


def _child_env() -> dict[str, str]:
    """Environment for `python -m segdl`: src/ importable even without `pip install -e`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    return env


def _entries_for(nginx: Nginx, skip: int, path: str, size_bytes: int) -> list[AccessEntry]:
    """Log entries for `path` after the first `skip`, once they account for every byte."""
    deadline = time.monotonic() + 5.0
    while True:
        entries = [e for e in nginx.access_log()[skip:] if e["path"] == path]
        # nginx logs a request when it finishes, which can trail the client by a moment.
        if sum(e["body_bytes_sent"] for e in entries) >= size_bytes or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


@pytest.mark.parametrize("connections", [1, 4, 16])
@pytest.mark.parametrize("name", list(SIZES))
def test_download_is_byte_identical(
    served: Served, tmp_path: Path, name: str, connections: int
) -> None:
    """segdl.download stores exactly the bytes nginx serves, for any size and connection count."""
    url, dest = served.nginx.url(name), tmp_path / name
    result = segdl.download(url, dest, connections=connections)
    assert result.url == url
    assert Path(result.path).resolve() == dest.resolve()
    assert result.size_bytes == SIZES[name]
    assert result.elapsed_s >= 0
    assert 0 <= result.connections_used <= max(1, connections)
    if SIZES[name] >= MiB and connections > 1:
        assert result.ranged, "nginx honours ranges, yet segdl did not use them"
    assert dest.stat().st_size == SIZES[name]
    assert sha256_file(dest) == served.sha256[name]


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m segdl ARGS` in a child process, as a user would."""
    argv = [sys.executable, "-m", "segdl", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_child_env())


def test_cli_downloads_then_refuses_to_overwrite(served: Served, tmp_path: Path) -> None:
    """The CLI exits 0 with the exact bytes; run again without --overwrite it exits 9, file kept."""
    name = "mib-plus-one.bin"
    out = tmp_path / name
    first = _run_cli("-q", "-x", "8", "-o", str(out), served.nginx.url(name))
    assert first.returncode == 0, first.stderr
    assert sha256_file(out) == served.sha256[name]
    before = out.stat()
    listing = sorted(p.name for p in tmp_path.iterdir())

    again = _run_cli("-q", "-x", "8", "-o", str(out), served.nginx.url(name))
    assert again.returncode == 9, (again.returncode, again.stderr)
    after = out.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert sha256_file(out) == served.sha256[name]
    assert sorted(p.name for p in tmp_path.iterdir()) == listing, "refusing left files behind"


def test_access_log_shows_ranged_requests(served: Served, tmp_path: Path) -> None:
    """64 MiB on 4 connections is served as 206 ranges over several connections, once over."""
    name, size = "big.bin", SIZES["big.bin"]
    skip = len(served.nginx.access_log())
    segdl.download(served.nginx.url(name), tmp_path / name, connections=4)
    entries = _entries_for(served.nginx, skip, "/" + name, size)
    ranged = [e for e in entries if e["status"] == 206]
    assert ranged, f"no 206 among {[(e['status'], e['range']) for e in entries]}"
    assert all(e["range"] for e in ranged)
    assert len({e["connection"] for e in ranged}) >= 2, "all ranges came over one connection"
    sent = sum(e["body_bytes_sent"] for e in entries)
    # nginx counts what it wrote into the socket, so an abandoned request adds up to a few
    # socket buffers; anything near 2x means the file was fetched twice.
    assert size <= sent <= 1.5 * size, f"nginx sent {sent} bytes for a {size}-byte file"
