"""Progress events carry a segment map a display can draw."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import segdl
from segdl.core.progress import DownloadProgress
from tests.events import Recorder
from tests.server import Faults, FaultServer


def test_ranged_download_reports_done_ranges_and_connection_positions(
    fault_server: FaultServer, make_data: Callable[..., bytes], tmp_path: Path
) -> None:
    """Every progress event of a ranged download maps its done bytes and live connections."""
    data = make_data(4 << 20)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=2 << 20))
    recorder = Recorder()
    segdl.download(fault_server.url("/f.bin"), tmp_path / "f.bin", connections=4, progress=recorder)
    events = [e for e in recorder.events if isinstance(e, DownloadProgress)]
    assert events
    for event in events:
        assert event.segments is not None
        assert event.segments.size_bytes == len(data)
        assert sum(r.length for r in event.segments.done) == event.done_bytes
        for stream in event.segments.connections:
            assert 0 <= stream.start <= stream.end <= len(data)
    assert max(len(e.segments.connections) for e in events if e.segments) >= 2
