"""kill -9 of the daemon in the middle of 5 downloads with 100 more waiting: after a restart
all 105 are there in their order, and the 5 finish intact having fetched < 1.2x their size."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemon import Daemon
from tests.server import Faults, FaultServer

SIZE = 8 << 20
PER_CONNECTION_BYTES_PER_S = 256 * 1024


def test_kill_9_during_five_downloads_loses_nothing(
    tmp_path: Path, make_data: Callable[..., bytes]
) -> None:
    """All 105 items survive kill -9 with their status and order; the 5 interrupted files end
    sha256-identical, continued from their durable bytes (< 1.2x their size fetched)."""
    files = [make_data(SIZE, seed=n) for n in range(5)]
    root, state = tmp_path / "root", tmp_path / "state"
    with FaultServer() as active_server, FaultServer() as queue_server:
        for n, data in enumerate(files):
            active_server.add_file(f"/a{n}.bin", data)
            active_server.set_faults(
                f"/a{n}.bin", Faults(throttle_bytes_per_s=PER_CONNECTION_BYTES_PER_S)
            )
        queue_server.add_file("/w.bin", b"w" * 1000)
        # 5 x 4 connections: the shared per-host cap (16 by default) would hold some back.
        with Daemon(root, state, "-j", "5", "--max-connections-per-host", "20") as first:
            calls = [
                {"methodName": "aria2.addUri", "params": [token, [url], options]}
                for token in [f"token:{first.secret}"]
                for url, options in [
                    *((active_server.url(f"/a{n}.bin"), {"split": "4"}) for n in range(5)),
                    *((queue_server.url("/w.bin"), {"out": f"w{n}.bin"}) for n in range(100)),
                ]
            ]
            gids = [answer[0] for answer in first.call("system.multicall", calls)]
            active, waiting = gids[:5], gids[5:]
            deadline = time.monotonic() + 30
            while (
                min(
                    int(first.call("aria2.tellStatus", g, ["completedLength"])["completedLength"])
                    for g in active
                )
                < SIZE // 4
            ):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            before = [s["gid"] for s in first.call("aria2.tellActive", ["gid"])]
            before += [s["gid"] for s in first.call("aria2.tellWaiting", 0, 1000, ["gid"])]
            assert before == active + waiting
            first.kill()
        with Daemon(root, state, "-j", "5", "--max-connections-per-host", "20") as second:
            now_active = second.call("aria2.tellActive", ["gid", "status"])
            now_waiting = second.call("aria2.tellWaiting", 0, 1000, ["gid", "status"])
            assert [s["gid"] for s in now_active + now_waiting] == active + waiting
            assert {s["status"] for s in now_waiting} == {"waiting"}
            for gid in active:
                assert second.wait_status(gid, {"complete", "error"}, 60)["status"] == "complete"
        for n, data in enumerate(files):
            digest = hashlib.sha256((root / f"a{n}.bin").read_bytes()).digest()
            assert digest == hashlib.sha256(data).digest()
        ratio = active_server.bytes_sent / (5 * SIZE)
        print(f"the 5 files: {ratio:.3f}x their size fetched in total")
        assert ratio < 1.2, f"fetched {ratio:.3f}x the size of the 5 files"
