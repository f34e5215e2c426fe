"""Many small files: ``python -m bench.many`` (issue 6's batch scenario; also run by
``python -m bench.run``).

400 files of 256 KiB served by nginx through the shaping proxy (5 MB/s per connection, 40 ms
round trip), 16 at once: segdl (``-i list -j 16``), ``aria2c -i list -j16`` and parfive
(``max_conn=16``), side by side in one run. Prints a markdown table: wall and CPU time
(median of ``--repeat``), every file's sha256 checked, ratio to aria2c and to the ideal
(all bytes at 16 x 5 MB/s plus one round trip).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import check_files, random_files, rotated, run_child
from bench.shaper import Shaper, ShaperConfig
from tests.nginx import Nginx

RATE = 5_000_000.0
DELAY_S = 0.020
PARALLEL = 16
TOOLS = ("segdl", "aria2c", "parfive")

_PARFIVE = """
import sys
from parfive import Downloader
urls, out = sys.argv[1].split(), sys.argv[2]
d = Downloader(max_conn=16, max_splits=1, progress=False, overwrite=True)
for url in urls:
    d.enqueue_file(url, path=out)
result = d.download()
sys.exit(1 if result.errors else 0)
"""


@dataclass(slots=True)
class ManyResult:
    """Every tool's (wall s, CPU s) per run, and why a tool failed or could not run."""

    files: int
    size_bytes: int
    repeat: int
    runs: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ideal_s(self) -> float:
        return self.files * self.size_bytes / (PARALLEL * RATE) + 2 * DELAY_S

    def median_wall_s(self, tool: str) -> float | None:
        runs = self.runs.get(tool)
        if not runs or tool in self.errors:
            return None
        return statistics.median(w for w, _ in runs)

    def render(self) -> str:
        aria = self.median_wall_s("aria2c")
        lines = [
            f"{self.files} files x {self.size_bytes // 1024} KiB, {PARALLEL} at once, 5 MB/s per "
            f"connection, 40 ms RTT; ideal {self.ideal_s:.2f} s; median of {self.repeat}",
            "",
            "| tool | wall s | CPU s | ok | vs aria2c | vs ideal |",
            "|---|---|---|---|---|---|",
        ]
        for tool, runs in self.runs.items():
            if tool in self.errors or not runs:
                lines.append(f"| {tool} | - | - | FAIL: {self.errors.get(tool, 'no run')} "
                             "| - | - |")  # fmt: skip
                continue
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            ratio = f"{wall / aria:.2f}x" if aria else "-"
            lines.append(f"| {tool} | {wall:.2f} | {cpu:.2f} | ok | {ratio} | "
                         f"{wall / self.ideal_s:.2f}x |")  # fmt: skip
        return "\n".join(lines)


def _argv(tool: str, urls: list[str], listing: Path, out: Path) -> list[str]:
    if tool == "segdl":
        return [sys.executable, "-m", "segdl", "-q", "-j", str(PARALLEL), "-x", "1",
                "--if-exists", "overwrite", "-d", str(out), "-i", str(listing)]  # fmt: skip
    if tool == "aria2c":
        return ["aria2c", "-q", f"-j{PARALLEL}", "-x1", "--file-allocation=none",
                "--allow-overwrite=true", "--auto-file-renaming=false", "-d", str(out),
                "-i", str(listing)]  # fmt: skip
    if tool == "wget2":
        return ["wget2", "-q", f"--max-threads={PARALLEL}", "--no-robots", "-P", str(out),
                "-i", str(listing)]  # fmt: skip
    return [sys.executable, "-c", _PARFIVE, " ".join(urls), str(out)]


def _missing(tool: str) -> str | None:
    if tool == "wget2" and shutil.which("wget2") is None:
        return "wget2 is not installed"
    if tool == "parfive" and importlib.util.find_spec("parfive") is None:
        return "parfive is not installed (pip install parfive)"
    return None


def measure_many(
    files: int,
    size_bytes: int,
    repeat: int,
    tools: Sequence[str],
    env: Mapping[str, str],
    workdir: Path | None = None,
) -> ManyResult:
    """Generate the files, serve them, and run every tool ``repeat`` times, interleaved."""
    result = ManyResult(files, size_bytes, repeat, {tool: [] for tool in tools})
    with tempfile.TemporaryDirectory(prefix="segdl-many-", dir=workdir) as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        expected = random_files(root, files, size_bytes)
        with Nginx(root) as nginx:
            for round_ in range(repeat):
                for tool in rotated(tools, round_):
                    why = _missing(tool)
                    if why is not None:
                        result.errors[tool] = why
                        continue
                    config = ShaperConfig(rate_bytes_per_s=RATE, delay_s=DELAY_S)
                    with Shaper(("127.0.0.1", nginx.port), config) as shaper:
                        urls = [shaper.url(name) for name in expected]
                        listing = Path(tmp) / "list.txt"
                        listing.write_text("\n".join(urls) + "\n")
                        # A fresh directory per run, not the last one emptied: freed inodes
                        # tax the next tool's file creations here (bench/README.md).
                        out = Path(tmp) / f"out-{round_}-{tool}"
                        out.mkdir()
                        os.sync()
                        usage = run_child(_argv(tool, urls, listing, out), env, 300.0)
                    if usage.exit_code != 0:
                        error: str | None = f"exit {usage.exit_code}: {usage.stderr_tail}"
                    else:
                        error = check_files(out, expected)
                    if error:
                        result.errors[tool] = error
                    result.runs[tool].append((usage.wall_s, usage.cpu_s))
                    print(f"  many      {tool:7} {usage.wall_s:.2f} s", file=sys.stderr,
                          flush=True)  # fmt: skip
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from bench.run import _compile_segdl, child_env

    parser = argparse.ArgumentParser(prog="python -m bench.many", description=__doc__)
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--size-kib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args(argv)
    _compile_segdl()
    result = measure_many(
        args.files, args.size_kib * 1024, args.repeat, args.tools.split(","), child_env()
    )
    print(result.render())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
