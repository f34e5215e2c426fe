"""The asyncio API: the loop keeps running, and cancelling leaves a resumable download."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

import segdl
from segdl.core.progress import Event
from segdl.disk.paths import OutputPaths
from segdl.disk.state import load_state
from tests.server import FaultServer
from tests.server.faults import Faults

MIB = 1024 * 1024
MakeData = Callable[..., bytes]


def test_adownload_does_not_block_the_loop(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """While a download runs, other tasks tick; progress events arrive on the loop."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=2 * MIB))
    events: list[Event] = []

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        result = await segdl.adownload(
            fault_server.url("/f.bin"), tmp_path / "o", connections=4, progress=events.append
        )
        task.cancel()
        assert result.size_bytes == len(data)
        return ticks

    ticks = asyncio.run(scenario())
    assert ticks > 20
    assert (tmp_path / "o").read_bytes() == data
    assert any(type(e).__name__ == "DownloadFinished" for e in events)


def test_cancelling_the_task_stops_cleanly_and_resumably(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Task.cancel() stops the download within a second; the state is saved to resume."""
    data = make_data(8 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=MIB))
    out = tmp_path / "o"

    async def scenario() -> None:
        task = asyncio.create_task(segdl.adownload(fault_server.url("/f.bin"), out, connections=4))
        await asyncio.sleep(0.8)
        task.cancel()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.time() - started < 1.5

    asyncio.run(scenario())
    state = load_state(OutputPaths.of(out).state)
    assert state is not None and state.done_bytes > 0
    fault_server.set_faults("/f.bin")
    asyncio.run(segdl.adownload(fault_server.url("/f.bin"), out, connections=4))
    assert out.read_bytes() == data


def test_adownload_many(fault_server: FaultServer, make_data: MakeData, tmp_path: Path) -> None:
    """Several files through the asyncio batch API, with a report."""
    for n in range(3):
        fault_server.add_file(f"/f{n}.bin", make_data(1000, seed=n))
    urls = [fault_server.url(f"/f{n}.bin") for n in range(3)]
    report = asyncio.run(segdl.adownload_many(urls, directory=tmp_path, parallel=2))
    assert report.ok and len(report.items) == 3
