"""What one resume-state save costs: the data sync, then the state written, synced, renamed.

    python -m bench.savecost [--dir DIR] [--size-mib 16] [--saves 20]

A download of ``--size-mib`` is mimicked in ``DIR`` (default: a fresh directory under the
current one, so the file system is the one downloads go to): the ``.part`` is created and
sized as segdl does, then each round writes what 8 connections at 600 KB/s write in 0.1 s
(the most often a state is saved) and times :meth:`segdl.disk.resume.Checkpointer.save`.
The first save stands apart: it also makes the state file and its directory entry durable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from segdl.core.models import ByteRange
from segdl.disk.lock import OwnerLock
from segdl.disk.paths import OutputPaths
from segdl.disk.resume import Checkpointer
from segdl.disk.state import DownloadState, url_digest
from segdl.disk.storage import PartFile

_CONNECTIONS = 8
_BYTES_PER_ROUND = 60_000  # each connection, in 0.1 s at 600 KB/s


def measure(directory: Path, size_bytes: int, saves: int) -> dict[str, float]:
    final = directory / "f.bin"
    lock = OwnerLock(OutputPaths.of(final))
    lock.acquire()
    part = PartFile(OutputPaths.of(final), overwrite=True)
    try:
        part.allocate(size_bytes)
        template = DownloadState(
            url_digest=url_digest("http://127.0.0.1/f.bin"),
            url_display="http://127.0.0.1/f.bin",
            final_url_display="http://127.0.0.1/f.bin",
            size_bytes=size_bytes,
            etag='"x"',
            last_modified=None,
            done=(),
            owner=lock.token,
        )
        written: list[ByteRange] = []
        checkpointer = Checkpointer(
            OutputPaths.of(final), part, template, lambda: list(written), lock
        )
        piece = os.urandom(_BYTES_PER_ROUND)
        stride = size_bytes // _CONNECTIONS
        times_s = []
        for round_ in range(saves):
            for connection in range(_CONNECTIONS):
                offset = connection * stride + round_ * _BYTES_PER_ROUND
                part.write_at(offset, memoryview(piece))
                written.append(ByteRange(offset, offset + _BYTES_PER_ROUND))
            began = time.perf_counter()
            checkpointer.save()
            times_s.append(time.perf_counter() - began)
    finally:
        part.close()
        lock.release()
    later = times_s[1:]
    return {
        "first_save_ms": round(times_s[0] * 1000, 2),
        "later_median_ms": round(statistics.median(later) * 1000, 2),
        "later_max_ms": round(max(later) * 1000, 2),
        "saves": saves,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--saves", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".savecost-") as where:
        print(json.dumps(measure(Path(where), args.size_mib << 20, args.saves)))


if __name__ == "__main__":
    main()
