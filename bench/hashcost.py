"""What verification costs: ``python -m bench.hashcost`` (issue 6).

Downloads 1 GiB from nginx on raw loopback with ``segdl -x 16``, with and without
``--checksum sha256=...``, ``--repeat`` times interleaved, and prints wall and CPU medians.
Raw loopback is the worst case: the link is faster than one core hashes SHA-256, so the
background hasher (which reads the finished prefix with pread) can end after the transfer.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.measure import run_child
from bench.run import _compile_segdl
from tests.nginx import Nginx


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hashcost", description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    _compile_segdl()
    runs: dict[str, list[tuple[float, float]]] = {"plain": [], "sha256": []}
    with tempfile.TemporaryDirectory(prefix="segdl-hash-") as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        data = os.urandom(args.size_mib << 20)
        (root / "big.bin").write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        del data
        with Nginx(root) as nginx:
            url = nginx.url("big.bin")
            out = Path(tmp) / "out.bin"
            for _ in range(args.repeat):
                for label, extra in (("plain", []), ("sha256", ["--checksum", f"sha256={digest}"])):
                    argv_ = [sys.executable, "-m", "segdl", "-q", "-x", "16", "--overwrite",
                             *extra, "-o", str(out), url]  # fmt: skip
                    usage = run_child(argv_, dict(os.environ), 300.0)
                    if usage.exit_code != 0:
                        print(f"{label}: exit {usage.exit_code}: {usage.stderr_tail}")
                        return 1
                    runs[label].append((usage.wall_s, usage.cpu_s))
                    out.unlink(missing_ok=True)
    print(f"| {args.size_mib} MiB raw loopback, 16 conns | wall s | CPU s |\n|---|---|---|")
    for label, values in runs.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"| {label} | {wall:.2f} | {cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
