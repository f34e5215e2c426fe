"""segdl behind pooch and fsspec beside their own HTTP downloads, through a throttled link.

One file (default 256 MiB) from a private nginx through the shaping proxy (bench/shaper.py),
each connection limited to ``--rate`` bytes/s with ``--delay-ms`` one way, so that a single
stream is what it is on a real link and more connections add throughput. Four runs, each a
fresh child process (its interpreter start-up and imports counted in the wall time):

- ``pooch+HTTPDownloader``: ``pooch.retrieve(url, known_hash, downloader=HTTPDownloader())``,
  pooch's default (one requests stream);
- ``pooch+SegdlDownloader``: the same call with ``SegdlDownloader(connections=N)``;
- ``fsspec HTTPFileSystem``: ``fsspec.filesystem("http").get(url, path)`` (one aiohttp GET);
- ``fsspec segdl``: ``fsspec.filesystem("segdl", connections=N).get(url, path)``.

pooch checks the SHA-256 in both of its runs; every output is checked here too. Ratios are
from this one run: ``vs own`` is the library's own downloader's time over this one's, ``vs
ideal`` the time over size / (N x rate). Run it alone on the machine::

    flock -x /tmp/segdl-cpu.lock python -m bench.integrations            # about a minute
    python -m bench.integrations --size 16M --rate 20M                   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Measurement, measure
from bench.run import child_env
from bench.shaper import Shaper, ShaperConfig, parse_size
from tests.nginx import Nginx, write_random_file

TOOLS = ("pooch+HTTPDownloader", "pooch+SegdlDownloader", "fsspec HTTPFileSystem", "fsspec segdl")
_OWN = {"pooch+SegdlDownloader": "pooch+HTTPDownloader", "fsspec segdl": "fsspec HTTPFileSystem"}


@dataclass(frozen=True, slots=True)
class Run:
    tool: str
    measurement: Measurement
    download_s: float | None
    """The download call alone, timed inside the child (no start-up, no imports)."""


def _child(tool: str, url: str, out: Path, sha256: str, connections: int, timing: Path) -> int:
    """One download in this process, as the library's user would write it."""
    started = time.monotonic()
    if tool.startswith("pooch"):
        import pooch

        if tool == "pooch+HTTPDownloader":
            downloader = pooch.HTTPDownloader()
        else:
            from segdl.integrations.pooch import SegdlDownloader

            downloader = SegdlDownloader(connections=connections)
        started = time.monotonic()
        pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=out.name, path=out.parent,
                       downloader=downloader)  # fmt: skip
    else:
        import fsspec

        if tool == "fsspec HTTPFileSystem":
            fs = fsspec.filesystem("http")
        else:
            fs = fsspec.filesystem("segdl", connections=connections)
        started = time.monotonic()
        fs.get(url, str(out))
    timing.write_text(json.dumps({"download_s": time.monotonic() - started}))
    return 0


def run(args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="segdl-bench-integrations-") as scratch:
        root = Path(scratch) / "www"
        root.mkdir()
        sha256 = write_random_file(root / "data.bin", args.size, seed=25)
        out = Path(scratch) / "out" / "data.bin"
        out.parent.mkdir()
        timing = Path(scratch) / "timing.json"
        config = ShaperConfig(rate_bytes_per_s=args.rate, delay_s=args.delay_ms / 1000)
        with Nginx(root) as nginx:
            for tool in TOOLS:
                with Shaper(("127.0.0.1", nginx.port), config) as shaper:
                    argv = [sys.executable, "-m", "bench.integrations", "--child", tool,
                            shaper.url("data.bin"), str(out), sha256, str(args.connections),
                            str(timing)]  # fmt: skip
                    timing.unlink(missing_ok=True)
                    m = measure(argv, out, sha256, args.size, child_env(), args.timeout)
                took = json.loads(timing.read_text())["download_s"] if timing.exists() else None
                runs.append(Run(tool, m, took))
                shown = f"{m.wall_s:.2f} s" if m.ok else f"FAIL {m.error}"
                print(f"  {tool:23} {shown}", file=sys.stderr, flush=True)
    return runs


def render(runs: Sequence[Run], args: argparse.Namespace) -> str:
    ideal_s = args.size / (args.connections * args.rate) + 2 * args.delay_ms / 1000
    by_tool = {r.tool: r for r in runs}
    lines = [
        f"{args.size >> 20} MiB, {args.connections} connections for segdl, each connection "
        f"{args.rate / 1e6:g} MB/s, {args.delay_ms:g} ms one way; ideal {ideal_s:.2f} s",
        "",
        "| tool | wall s | download s | CPU s | vs own | vs ideal | sha ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        m = r.measurement
        own = by_tool.get(_OWN.get(r.tool, ""))
        vs_own = f"{own.measurement.wall_s / m.wall_s:.2f}x" if own and m.ok else "-"
        took = f"{r.download_s:.2f}" if r.download_s is not None else "-"
        ok = "ok" if m.ok else f"FAIL {m.error}"
        lines.append(
            f"| {r.tool} | {m.wall_s:.2f} | {took} | {m.cpu_s:.2f} | {vs_own} | "
            f"{m.wall_s / ideal_s:.2f} | {ok} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.integrations", description=__doc__)
    p.add_argument("--size", type=parse_size, default=parse_size("256Mi"))
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--rate", type=parse_size, default=parse_size("10M"),
                   help="bytes/s per connection (10M = 10 MB/s)")  # fmt: skip
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    p.add_argument("--child", nargs=6, metavar=("TOOL", "URL", "OUT", "SHA", "N", "TIMING"),
                   help=argparse.SUPPRESS)  # fmt: skip
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        tool, url, out, sha, n, timing = args.child
        return _child(tool, url, Path(out), sha, int(n), Path(timing))
    runs = run(args)
    print(render(runs, args))
    return 0 if all(r.measurement.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
