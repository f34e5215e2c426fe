"""The rows of issue 7 that are not a scenario of the main table, and the targets table.

- start-up: ``segdl --version`` (the console script, else ``python -m segdl``), median of 15;
- big: one file of ``--big-size`` (5 GiB) over 64 connections straight from nginx, checked
  with sha256, its seconds per GiB compared with segdl's in ``raw`` (1 GiB, 16 connections),
  beside the disk alone: writing each size and ``fdatasync`` without any network (a disk
  whose cache absorbs 1 GiB but not 5 is slower per byte for every tool that syncs);
- many small files: :mod:`bench.many`.

:func:`render_targets` then puts every target of the issue beside what this run measured.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.many import ManyResult
from bench.measure import Measurement, measure
from bench.report import Row
from bench.scenarios import format_size

GIB = 1 << 30
BIG_CONNECTIONS = 64
_STARTUP_RUNS = 15


def startup_argv() -> list[str]:
    """How a user starts segdl: the console script if installed, else ``python -m``."""
    script = shutil.which("segdl")
    return [script, "--version"] if script else [sys.executable, "-m", "segdl", "--version"]


def interpreter_argv() -> list[str]:
    """The interpreter segdl runs on, doing nothing: the start-up no Python program avoids."""
    return [sys.executable, "-c", "pass"]


def measure_startup_s(
    env: Mapping[str, str], runs: int = _STARTUP_RUNS, argv: Sequence[str] | None = None
) -> float:
    """Median wall time of ``argv`` (default ``segdl --version``), after one warm-up run."""
    argv = list(argv) if argv is not None else startup_argv()
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(argv, env=dict(env), capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def big_argv(url: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "segdl", "-q", "-x", str(BIG_CONNECTIONS),
            "--max-connections-per-host", str(BIG_CONNECTIONS), "-o", str(out), url]  # fmt: skip


def measure_big(
    url: str, out: Path, sha256: str, size: int, env: Mapping[str, str], timeout_s: float
) -> Measurement:
    """One download of the big file over 64 connections, its sha256 checked."""
    m = measure(big_argv(url, out), out, sha256, size, env, timeout_s)
    status = f"{m.wall_s:.2f} s" if m.ok else f"FAIL {m.error}"
    print(f"  big       segdl   {status}", file=sys.stderr, flush=True)
    return m


def measure_disk_s_per_gib(size: int, directory: Path) -> float:
    """Seconds per GiB to write ``size`` bytes to a new file in ``directory`` and
    ``fdatasync`` it: the floor a downloader that syncs its data cannot go under."""
    block = os.urandom(8 << 20)
    path = directory / "disk-floor.bin"
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for offset in range(0, size, len(block)):
            os.pwrite(fd, block[: size - offset], offset)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - started
    path.unlink()
    os.sync()
    return elapsed / (size / GIB)


@dataclass(frozen=True, slots=True)
class Extras:
    """What this run measured beyond the scenario table (None: not run)."""

    startup_s: float | None = None
    big: list[Measurement] | None = None
    """The timed runs of the big file (after one untimed run)."""
    big_size: int = 0
    many: ManyResult | None = None
    disk_s_per_gib: tuple[float, float] | None = None
    """The disk alone (write + fdatasync): (raw's size, the big size)."""
    interpreter_s: float | None = None
    """``python -c pass`` on segdl's interpreter and environment: the shaped rows' floor."""


def _row(rows: Sequence[Row], scenario: str, tool: str) -> Row | None:
    return next((r for r in rows if r.scenario.name == scenario and r.tool == tool), None)


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def _vs_ideal(
    rows: Sequence[Row], scenario: str, limit: float, interpreter_s: float | None
) -> tuple[str, str, bool | None]:
    """The ratio to the ideal and, when the interpreter's start-up was measured, the floor
    no Python program can go under (:meth:`Scenario.floor_s`), flagged when above the goal."""
    row = _row(rows, scenario, "segdl")
    wall = row.median_wall_s() if row else None
    ideal = row.scenario.ideal_s() if row else None
    if row is None or wall is None or ideal is None:
        return f"<= {limit:.2f}x ideal", "FAIL" if row is not None else "not run", None
    ratio = wall / ideal
    measured = f"{ratio:.2f}x ({wall:.2f} s / {ideal:.2f} s)"
    floor = row.scenario.floor_s(interpreter_s) if interpreter_s is not None else None
    if floor is not None:
        below = " (the goal is below it)" if floor / ideal > limit else ""
        measured += f"; Python floor {floor / ideal:.2f}x ({floor:.2f} s){below}"
    return f"<= {limit:.2f}x ideal", measured, ratio <= limit


def render_targets(rows: Sequence[Row], extras: Extras) -> str:
    """Issue 7's targets, each with this run's figure and whether it is met."""
    lines = ["| target | goal | measured | met |", "|---|---|---|---|"]

    def add(name: str, goal: str, measured: str, ok: bool | None) -> None:
        lines.append(f"| {name} | {goal} | {measured} | {_verdict(ok)} |")

    seg, aria = _row(rows, "raw", "segdl"), _row(rows, "raw", "aria2c")
    raw_name = f"raw: {format_size(seg.scenario.size_bytes)}, 16 conns" if seg else "raw"
    seg_wall = seg.median_wall_s() if seg else None
    aria_wall = aria.median_wall_s() if aria else None
    if seg is not None and seg_wall is not None and aria is not None and aria_wall is not None:
        ratio = seg_wall / aria_wall
        add(f"{raw_name}: wall", "<= 0.50x aria2c",
            f"{ratio:.2f}x ({seg_wall:.2f} s / {aria_wall:.2f} s)", ratio <= 0.5)  # fmt: skip
        seg_cpu = statistics.median(m.cpu_s for m in seg.runs)
        aria_cpu = statistics.median(m.cpu_s for m in aria.runs)
        add(f"{raw_name}: CPU", "<= aria2c",
            f"{seg_cpu:.2f} s / {aria_cpu:.2f} s", seg_cpu <= aria_cpu)  # fmt: skip
    else:
        add(raw_name, "<= 0.50x aria2c, CPU <= aria2c", "not run", None)
    for scenario, limit in (("per-conn", 1.05), ("slow4", 1.10), ("shared", 1.03)):
        row = _row(rows, scenario, "segdl")
        name = f"{scenario}: {row.scenario.summary}" if row else scenario
        add(name, *_vs_ideal(rows, scenario, limit, extras.interpreter_s))
    many = extras.many
    if many is not None:
        seg_many, aria_many = many.median_wall_s("segdl"), many.median_wall_s("aria2c")
        name = f"{many.files} x {many.size_bytes // 1024} KiB, 16 at once"
        if seg_many is not None and aria_many is not None:
            ratio = seg_many / aria_many
            add(name, "<= 0.70x aria2c -i -j16",
                f"{ratio:.2f}x ({seg_many:.2f} s / {aria_many:.2f} s)", ratio <= 0.7)  # fmt: skip
        else:
            add(name, "<= 0.70x aria2c -i -j16", "FAIL or not run", None)
    peaks = [m.max_rss_bytes for m in (seg.runs if seg else ()) if m.max_rss_bytes]
    if peaks:
        peak_mb = max(peaks) / 1e6
        add(f"peak RSS, {raw_name}", "<= 48 MB", f"{peak_mb:.0f} MB", peak_mb <= 48)
    if extras.startup_s is not None:
        ms = extras.startup_s * 1000
        add("`segdl --version`", "<= 120 ms", f"{ms:.0f} ms", ms <= 120)
    big = extras.big
    if big:
        name = f"{format_size(extras.big_size)}, {BIG_CONNECTIONS} conns"
        bad = [m for m in big if not m.ok]
        if bad:
            add(name, "correct, s/GiB <= raw's", f"FAIL: {bad[0].error}", False)
        elif seg_wall is not None and seg is not None:
            wall = statistics.median(m.wall_s for m in big)
            cpu = statistics.median(m.cpu_s for m in big)
            per_gib = wall / (extras.big_size / GIB)
            raw_per_gib = seg_wall / (seg.scenario.size_bytes / GIB)
            spread = f"{min(m.wall_s for m in big):.2f}-{max(m.wall_s for m in big):.2f}"
            disk = ""
            if extras.disk_s_per_gib is not None:
                small, large = extras.disk_s_per_gib
                disk = (f"; the disk alone: {large:.2f} s/GiB for "
                        f"{format_size(extras.big_size)}, {small:.2f} for raw's size")  # fmt: skip
            measured = (f"ok; {per_gib:.2f} s/GiB vs {raw_per_gib:.2f} s/GiB "
                        f"({wall:.2f} s, {spread}; CPU {cpu:.2f} s){disk}")  # fmt: skip
            add(name, "sha256 ok, s/GiB <= raw's", measured, per_gib <= raw_per_gib)
        else:
            add(name, "sha256 ok, s/GiB <= raw's", "ok", None)
    return "\n".join(lines)
