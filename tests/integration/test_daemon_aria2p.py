"""aria2p, a real aria2 client no one here wrote, drives segdl daemon unchanged: its Python
API and its command line."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aria2p
import pytest

from tests.daemon import SECRET, Daemon
from tests.server import Faults, FaultServer


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with Daemon(tmp_path / "root", tmp_path / "state", "-j", "2") as running:
        yield running


def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_aria2p_api_adds_lists_pauses_resumes_removes_and_purges(
    daemon: Daemon, fault_server: FaultServer, make_data: Callable[..., bytes]
) -> None:
    """add_uris, get_downloads, pause, resume, remove, purge, get_stats and
    set_global_options through aria2p.API, with the files landing intact."""
    small, big = make_data(300_000, seed=1), make_data(3 << 20, seed=2)
    fault_server.add_file("/small.bin", small)
    fault_server.add_file("/big.bin", big)
    fault_server.set_faults("/big.bin", Faults(throttle_bytes_per_s=512 * 1024))
    api = aria2p.API(aria2p.Client(host="http://127.0.0.1", port=daemon.port, secret=SECRET))
    done = api.add_uris([fault_server.url("/small.bin")], {"out": "s.bin"})
    slow = api.add_uris([fault_server.url("/big.bin")], {"split": "2"})
    _until(lambda: api.get_download(done.gid).is_complete)
    assert (daemon.root / "s.bin").read_bytes() == small
    downloads = {d.gid: d for d in api.get_downloads()}
    assert set(downloads) == {done.gid, slow.gid}
    assert downloads[done.gid].name == "s.bin" and downloads[done.gid].total_length == 300_000
    _until(lambda: api.get_download(slow.gid).completed_length > 0)
    assert api.pause([api.get_download(slow.gid)]) == [True]
    paused = api.get_download(slow.gid)
    assert paused.status == "paused" and paused.completed_length > 0
    stats = api.get_stats()
    assert (stats.num_active, stats.num_waiting, stats.num_stopped) == (0, 1, 1)
    assert api.resume([paused]) == [True]
    _until(lambda: api.get_download(slow.gid).is_complete)
    assert hashlib.sha256((daemon.root / "big.bin").read_bytes()).digest() == (
        hashlib.sha256(big).digest()
    )
    again = api.add_uris([fault_server.url("/big.bin")], {"pause": "true"})
    assert api.remove([again]) == [True]
    assert api.set_global_options({"max-concurrent-downloads": "3"})
    assert api.get_global_options().max_concurrent_downloads == 3
    assert api.purge()
    assert api.get_downloads() == []


def _aria2p(daemon: Daemon, *args: str) -> str:
    command = [sys.executable, "-m", "aria2p", "-H", "http://127.0.0.1", "-p", str(daemon.port)]
    done = subprocess.run(
        [*command, "-s", SECRET, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_aria2p_command_line_drives_the_daemon(
    daemon: Daemon, fault_server: FaultServer, make_data: Callable[..., bytes]
) -> None:
    """aria2p add, show, pause, resume, remove and purge, as a user would type them."""
    data = make_data(200_000)
    fault_server.add_file("/cli.bin", data)
    out = _aria2p(daemon, "add", fault_server.url("/cli.bin"), "-o", "pause=true;out=c.bin")
    gid = out.split()[-1]
    assert len(gid) == 16, out
    shown = _aria2p(daemon, "show")
    assert gid in shown and "paused" in shown and "c.bin" in shown
    _aria2p(daemon, "resume", gid)
    _until(lambda: daemon.call("aria2.tellStatus", gid, ["status"])["status"] == "complete")
    assert (daemon.root / "c.bin").read_bytes() == data
    assert "complete" in _aria2p(daemon, "show")
    fault_server.add_file("/slow.bin", make_data(2 << 20))
    fault_server.set_faults("/slow.bin", Faults(throttle_bytes_per_s=256 * 1024))
    second = _aria2p(daemon, "add", fault_server.url("/slow.bin")).split()[-1]
    _aria2p(daemon, "pause", second)
    assert daemon.call("aria2.tellStatus", second, ["status"])["status"] == "paused"
    _aria2p(daemon, "remove", second)
    _aria2p(daemon, "purge")
    assert daemon.call("aria2.getGlobalStat")["numStopped"] == "0"
    assert daemon.call("aria2.tellWaiting", 0, 10) == []
