"""Many small files: ``python -m bench.many`` (issue 6's batch scenario).

400 files of 256 KiB served by nginx through the shaping proxy (5 MB/s per connection, 40 ms
round trip), 16 at once: segdl (``-i list -j 16``), ``aria2c -i list -j16`` and parfive
(``max_conn=16``), side by side in one run. Prints a markdown table: wall and CPU time
(median of ``--repeat``), every file's sha256 checked, ratio to aria2c and to the ideal
(all bytes at 16 x 5 MB/s plus one round trip).
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

from bench.measure import clear_dir, run_child
from bench.run import _compile_segdl
from bench.shaper import Shaper, ShaperConfig
from tests.nginx import Nginx

_RATE = 5_000_000.0
_DELAY_S = 0.020
_PARALLEL = 16

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


def _argv(tool: str, urls: list[str], listing: Path, out: Path) -> list[str]:
    if tool == "segdl":
        return [sys.executable, "-m", "segdl", "-q", "-j", str(_PARALLEL), "-x", "1",
                "--if-exists", "overwrite", "-d", str(out), "-i", str(listing)]  # fmt: skip
    if tool == "aria2c":
        return ["aria2c", "-q", f"-j{_PARALLEL}", "-x1", "--file-allocation=none",
                "--allow-overwrite=true", "--auto-file-renaming=false", "-d", str(out),
                "-i", str(listing)]  # fmt: skip
    return [sys.executable, "-c", _PARFIVE, " ".join(urls), str(out)]


def _check(out: Path, expected: dict[str, str]) -> str | None:
    for name, digest in expected.items():
        path = out / name
        if not path.exists():
            return f"{name} missing"
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return f"{name} differs"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.many", description=__doc__)
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--size-kib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tools", default="segdl,aria2c,parfive")
    args = parser.parse_args(argv)
    _compile_segdl()
    tools = args.tools.split(",")
    env = dict(os.environ)
    size = args.size_kib * 1024
    ideal_s = args.files * size / (_PARALLEL * _RATE) + 2 * _DELAY_S
    with tempfile.TemporaryDirectory(prefix="segdl-many-") as tmp:
        root, out = Path(tmp) / "www", Path(tmp) / "out"
        root.mkdir()
        out.mkdir()
        expected = {}
        for n in range(args.files):
            data = os.urandom(size)
            (root / f"f{n:04d}.bin").write_bytes(data)
            expected[f"f{n:04d}.bin"] = hashlib.sha256(data).hexdigest()
        with Nginx(root) as nginx:
            results: dict[str, list[tuple[float, float]]] = {tool: [] for tool in tools}
            errors: dict[str, str] = {}
            for _ in range(args.repeat):
                for tool in tools:
                    config = ShaperConfig(rate_bytes_per_s=_RATE, delay_s=_DELAY_S)
                    with Shaper(("127.0.0.1", nginx.port), config) as shaper:
                        urls = [shaper.url(name) for name in expected]
                        listing = Path(tmp) / "list.txt"
                        listing.write_text("\n".join(urls) + "\n")
                        clear_dir(out)
                        usage = run_child(_argv(tool, urls, listing, out), env, 300.0)
                    error = _check(out, expected) if usage.exit_code == 0 else usage.stderr_tail
                    if error:
                        errors[tool] = error or f"exit {usage.exit_code}"
                    results[tool].append((usage.wall_s, usage.cpu_s))
    aria = statistics.median(w for w, _ in results["aria2c"]) if "aria2c" in results else None
    print(f"{args.files} files x {args.size_kib} KiB, 16 at once, 5 MB/s per connection, "
          f"40 ms RTT; ideal {ideal_s:.2f} s; median of {args.repeat}\n")  # fmt: skip
    print("| tool | wall s | CPU s | ok | vs aria2c | vs ideal |")
    print("|---|---|---|---|---|---|")
    for tool, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        ratio = f"{wall / aria:.2f}x" if aria else "-"
        ok = "ok" if tool not in errors else f"FAIL: {errors[tool]}"
        print(f"| {tool} | {wall:.2f} | {cpu:.2f} | {ok} | {ratio} | {wall / ideal_s:.2f}x |")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
