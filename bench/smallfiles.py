"""Many small files from local nginx, segdl beside the C tools: ``python -m bench.smallfiles``.

Issue 22's table, from one run: ``--files`` (default 5000) files of ``--size-kib`` (16) KiB
served by a private nginx on loopback, ``--parallel`` (32) at once, each tool ``--repeat``
(3) times, interleaved (the tools take turns going first), every file's sha256 checked:

- segdl ``-q -j 32 -x 1 -d OUT -i LIST``
- curl ``-s --parallel --parallel-max 32 --remote-name-all --output-dir OUT -K LIST``
- wget2 ``-q --max-threads=32 -P OUT -i LIST``
- aria2c ``-q -j32 -x1 --file-allocation=none ... -d OUT -i LIST``
- py-floor ``python -m bench.pyfloor LIST OUT 32``: the least one Python process does for the
  same work (httptools, pipelined 8 deep, open/write/close, no check, no sync): the floor of a
  Python downloader on this machine (see bench/pyfloor.py); py-floor-durable the same, keeping
  segdl's promise as segdl keeps it (unnamed files, one ``syncfs`` and a directory sync per 64
  files, then the names); py-floor-durable-2 that in two processes at once, half the list and
  half the connections each (``--processes 2``): Python with both cores, where curl uses one

Columns: median wall s, median CPU s (user + system, os.wait4), CPU per file (ms) and peak
RSS (MiB). ``--https``: the same over TLS (a throwaway CA each tool is told to trust;
py-floor is http only). ``--redirect``: each file behind a 302 to it (a list of download
pages' URLs; curl gets ``-L``, the others follow by default; py-floor follows none).
``--one-file`` adds the end-to-end row: one 16 KiB file with ``segdl -q -o OUT URL``
against ``python -c 'import urllib3'`` on the same interpreter (medians of 15).
Each run writes into a fresh directory (see bench/README.md, "Many small files").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import check_files, random_files, rotated, run_child
from tests.nginx import Nginx

TOOLS = ("segdl", "curl", "wget2", "aria2c", "py-floor", "py-floor-durable", "py-floor-durable-2")


@dataclass(slots=True)
class Row:
    """One tool's runs: (wall s, CPU s, peak RSS bytes) each, or why it failed."""

    runs: list[tuple[float, float, int]] = field(default_factory=list)
    error: str | None = None

    def median(self, index: int) -> float:
        return statistics.median(run[index] for run in self.runs)


def _argv(tool: str, listing: Path, curl_config: Path, out: Path, parallel: int,
          ca: Path | None = None) -> list[str]:  # fmt: skip
    option = {"segdl": "--ca-bundle", "curl": "--cacert"}.get(tool, "--ca-certificate")
    trusted = [option, str(ca)] if ca is not None else []
    if tool == "segdl":
        return [sys.executable, "-m", "segdl", "-q", "-j", str(parallel), "-x", "1", *trusted,
                "-d", str(out), "-i", str(listing)]  # fmt: skip
    if tool == "curl":  # -L: follow redirects, as the other tools do by default
        return ["curl", "-s", "-L", "--parallel", "--parallel-max", str(parallel),
                "--remote-name-all", *trusted, "--output-dir", str(out), "-K",
                str(curl_config)]  # fmt: skip
    if tool.startswith("py-floor"):
        durable = ["--durable"] if tool.startswith("py-floor-durable") else []
        processes = ["--processes", "2"] if tool.endswith("-2") else []
        return [sys.executable, "-m", "bench.pyfloor", *durable, *processes, str(listing),
                str(out), str(parallel)]  # fmt: skip
    trusted = [f"--ca-certificate={ca}"] if ca is not None else []
    if tool == "wget2":
        return ["wget2", "-q", f"--max-threads={parallel}", "--no-robots", *trusted,
                "-P", str(out), "-i", str(listing)]  # fmt: skip
    return ["aria2c", "-q", f"-j{parallel}", "-x1", "--file-allocation=none", *trusted,
            "--allow-overwrite=true", "--auto-file-renaming=false", "-d", str(out),
            "-i", str(listing)]  # fmt: skip


def measure(
    files: int, size_bytes: int, parallel: int, repeat: int, tools: Sequence[str],
    env: Mapping[str, str], workdir: Path | None, keep_outputs: bool = False,
    https: bool = False, redirect: bool = False,
) -> dict[str, Row]:  # fmt: skip
    """Serve the files and run each tool ``repeat`` times, interleaved. ``keep_outputs``:
    a run's files are deleted only at the end, not before the next run (see main);
    ``https``: served over TLS; ``redirect``: each file's URL answers 302 to the file."""
    rows = {tool: Row() for tool in tools}
    with tempfile.TemporaryDirectory(prefix="segdl-small-", dir=workdir) as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        expected = random_files(root, files, size_bytes, digits=6)
        ca, tls = _tls(Path(tmp)) if https else (None, None)
        via = "r/" if redirect else ""
        with Nginx(root, tls=tls, redirects="/r/" if redirect else None) as nginx:
            scheme = "https" if https else "http"
            urls = [f"{scheme}://127.0.0.1:{nginx.port}/{via}{name}" for name in expected]
            listing = Path(tmp) / "list.txt"
            listing.write_text("".join(url + "\n" for url in urls))
            curl_config = Path(tmp) / "curl.cfg"
            curl_config.write_text("".join(f'url = "{url}"\n' for url in urls))
            for round_ in range(repeat):
                for tool in rotated(list(tools), round_):
                    if shutil.which(tool) is None and not tool.startswith(("segdl", "py-floor")):
                        rows[tool].error = f"{tool} is not installed"
                        continue
                    if (https or redirect) and tool.startswith("py-floor"):
                        rows[tool].error = "http only, no redirects"
                        continue
                    out = Path(tmp) / f"out-{round_}-{tool}"
                    out.mkdir()
                    os.sync()
                    argv = _argv(tool, listing, curl_config, out, parallel, ca)
                    usage = run_child(argv, env, 600)
                    error = (f"exit {usage.exit_code}: {usage.stderr_tail}"
                             if usage.exit_code != 0 else check_files(out, expected))  # fmt: skip
                    if error:
                        rows[tool].error = error
                    rows[tool].runs.append((usage.wall_s, usage.cpu_s, usage.max_rss_bytes or 0))
                    print(f"  {files} x {size_bytes >> 10} KiB {tool:7} {usage.wall_s:.2f} s "
                          f"{usage.cpu_s:.2f} s CPU", file=sys.stderr, flush=True)  # fmt: skip
                    if not keep_outputs:
                        shutil.rmtree(out, ignore_errors=True)
    return rows


def _tls(directory: Path) -> tuple[Path, tuple[Path, Path]]:
    """A throwaway CA (its PEM) and nginx's certificate chain and key for 127.0.0.1."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = [directory / name for name in ("ca.pem", "chain.pem", "key.pem")]
    paths[0].write_bytes(ca.cert_pem.bytes())
    paths[1].write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    paths[2].write_bytes(cert.private_key_pem.bytes())
    return paths[0], (paths[1], paths[2])


def render(files: int, size_bytes: int, parallel: int, rows: Mapping[str, Row]) -> str:
    curl = rows.get("curl")
    curl_wall = curl.median(0) if curl and curl.runs and not curl.error else None
    lines = [
        f"{files} files x {size_bytes >> 10} KiB, local nginx, {parallel} at once",
        "",
        "| tool | wall s | CPU s | CPU per file | peak RSS MiB | vs curl (wall) | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for tool, row in rows.items():
        if not row.runs:
            lines.append(f"| {tool} | - | - | - | - | - | {row.error} |")
            continue
        wall, cpu = row.median(0), row.median(1)
        rss = max(run[2] for run in row.runs) / 2**20
        ratio = f"{wall / curl_wall:.2f}x" if curl_wall else "-"
        spread = f"{min(r[0] for r in row.runs):.2f}-{max(r[0] for r in row.runs):.2f}"
        ok = "ok" if row.error is None else f"FAIL: {row.error}"
        lines.append(f"| {tool} | {wall:.2f} ({spread}) | {cpu:.2f} | "
                     f"{cpu / files * 1000:.2f} ms | {rss:.0f} | {ratio} | {ok} |")  # fmt: skip
    return "\n".join(lines)


def one_file(env: Mapping[str, str], workdir: Path | None, repeat: int = 15,
             https: bool = False) -> str:  # fmt: skip
    """One 16 KiB file end to end with segdl, beside ``python -c 'import urllib3'``."""
    with tempfile.TemporaryDirectory(prefix="segdl-one-", dir=workdir) as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        body = os.urandom(16 * 1024)
        (root / "one.bin").write_bytes(body)
        segdl_s, urllib3_s = [], []
        ca, tls = _tls(Path(tmp)) if https else (None, None)
        trusted = ["--ca-bundle", str(ca)] if ca is not None else []
        with Nginx(root, tls=tls) as nginx:
            url = f"{'https' if https else 'http'}://127.0.0.1:{nginx.port}/one.bin"
            for n in range(repeat + 1):
                out = Path(tmp) / f"one-{n}.bin"
                argv = [sys.executable, "-m", "segdl", "-q", *trusted, "-o", str(out), url]
                a = run_child(argv, env, 60)
                if a.exit_code != 0 or out.read_bytes() != body:  # a failed run times nothing
                    raise SystemExit(f"segdl failed the one file: {a.stderr_tail}")
                b = run_child([sys.executable, "-c", "import urllib3"], env, 60)
                if n:  # the first pair warms the page cache
                    segdl_s.append(a.wall_s)
                    urllib3_s.append(b.wall_s)
        s, u = statistics.median(segdl_s), statistics.median(urllib3_s)
        scheme = "https" if https else "http"
        return (
            f"| one 16 KiB file over {scheme}, end to end | segdl s | "
            "`python -c 'import urllib3'` s | ratio |\n"
            "|---|---|---|---|\n"
            f"| median of {repeat} | {s:.3f} | {u:.3f} | {s / u:.2f}x |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    from bench.run import _compile_segdl, child_env

    parser = argparse.ArgumentParser(prog="python -m bench.smallfiles", description=__doc__)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size-kib", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--one-file", action="store_true", help="add the end-to-end row")
    parser.add_argument("--https", action="store_true", help="serve over TLS")
    parser.add_argument("--redirect", action="store_true",
                        help="each file's URL answers 302 to the file (curl gets -L)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None)
    # On ext4 without a journal, creating a file scans past every inode deleted in the last
    # minute (several when the inode table is dirty): deleting a run's 5000 files made the
    # next run's file creation cost more than its downloads, for every tool.
    parser.add_argument(
        "--keep-outputs",
        action="store_true",
        help="delete the runs' files only at the end, not between runs",
    )
    args = parser.parse_args(argv)
    _compile_segdl()
    env = child_env()
    size = args.size_kib * 1024
    rows = measure(args.files, size, args.parallel, args.repeat, args.tools.split(","), env,
                   args.workdir, args.keep_outputs, args.https, args.redirect)  # fmt: skip
    said = ("over https, " if args.https else "") + ("behind a 302, " if args.redirect else "")
    print((said[:-2] + ": " if said else "") + render(args.files, size, args.parallel, rows))
    if args.one_file:
        print()
        print(one_file(env, args.workdir, https=args.https))
    return 1 if any(row.error for row in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
