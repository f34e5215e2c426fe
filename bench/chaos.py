"""Chaos: downloads from the fault server with a fault drawn at random for each, checked.

    python -m bench.chaos --minutes 20 [--seed N] [--json PATH]

Each run serves a fresh file (64 KiB to 6 MiB of random bytes) with one fault drawn from
KINDS, and runs ``python -m segdl`` on it (a process per run, as a user would), killing it
with SIGKILL when the fault is ``kill9``. After each run:

- the output is either absent or byte for byte a version the server served (SHA-256);
- if absent, the run is repeated once against an honest server and must finish correctly:
  whatever the fault left on disk (.part, state, lock of a killed process) is resumable or
  cleanly discarded, never a wrong file or a refusal;
- nothing but the output is left in the directory afterwards.

Every fifth run goes through ``segdl.download`` in this process instead, with the same checks,
so this process's RSS and open fds, sampled after each of those, show whether a long-lived
downloader leaks. The segdl processes' own peak RSS and fds are sampled from /proc while they
run. The report (one JSON object) gives runs, faults by kind, exit codes, wrong files (must
be 0), leftovers, and the RSS and fd series' first and last values.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.server import FaultServer
from tests.server.faults import Faults
from tests.server.records import RequestRecord

KIB = 1024
MIB = 1024 * KIB
_ARGS = ["-q", "--timeout", "2", "--retry-wait", "0.05", "--retries", "3"]
_RUN_LIMIT_S = 90.0


def _past_zero(request: RequestRecord) -> bool:
    return request.range is not None and not request.range.startswith("bytes=0-")


def _faults(kind: str, size: int, rng: random.Random) -> Faults | None:
    """The fault of one run (None: honest, or a fault acted out by the harness)."""
    cut = rng.randrange(1, max(2, size))
    if kind == "reset":
        return Faults(reset_after=cut, times=rng.randint(1, 6))
    if kind == "truncate":
        return Faults(truncate_after=cut, times=rng.randint(1, 6))
    if kind == "stall":
        return Faults(stall_after=cut, stall_s=3.0, times=rng.randint(1, 3))
    if kind == "trickle":
        return Faults(throttle_bytes_per_s=200, times=rng.randint(1, 2))
    if kind == "trickled_head":
        return Faults(endless_head=True, head_bytes_per_s=20, times=1)
    if kind == "lie_range":
        return rng.choice(
            [
                Faults(ignore_range=True, when=_past_zero),
                Faults(content_range_start_delta=1, when=_past_zero),
                Faults(content_range_total=size + 1, when=_past_zero),
            ]
        )
    if kind == "lie_length":
        return Faults(extra_headers=(("Content-Length", str(size + 7)),), times=1)
    if kind == "range_close":
        return Faults(truncate_after=0, when=_past_zero)
    if kind == "overload":
        return Faults(status=rng.choice([429, 503]), retry_after="0", times=rng.randint(1, 3))
    if kind == "throttled":
        return Faults(throttle_bytes_per_s=rng.choice([200_000, 1_000_000]))
    return None


KINDS = (
    "honest",
    "reset",
    "truncate",
    "stall",
    "trickle",
    "trickled_head",
    "lie_range",
    "lie_length",
    "range_close",
    "overload",
    "changed",
    "kill9",
    "throttled",
)


@dataclass
class Report:
    runs: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    exit_codes: collections.Counter[str] = field(default_factory=collections.Counter)
    absent_then_resumed: int = 0
    wrong_files: list[str] = field(default_factory=list)
    not_resumable: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    child_peak_rss_kib: list[int] = field(default_factory=list)
    child_peak_fds: list[int] = field(default_factory=list)
    own_rss_kib: list[int] = field(default_factory=list)
    own_fds: list[int] = field(default_factory=list)

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        def ends(series: list[int]) -> dict[str, int]:
            if not series:
                return {}
            return {"first": series[0], "last": series[-1], "max": max(series)}

        return {
            "elapsed_s": round(elapsed_s, 1),
            "runs": self.runs,
            "faults": dict(sorted(self.faults.items())),
            "exit_codes": dict(sorted(self.exit_codes.items())),
            "absent_then_resumed": self.absent_then_resumed,
            "wrong_files": len(self.wrong_files),
            "wrong_file_cases": self.wrong_files[:10],
            "not_resumable": self.not_resumable[:10],
            "leftovers": self.leftovers[:10],
            "segdl_process_peak_rss_kib": ends(self.child_peak_rss_kib),
            "segdl_process_peak_fds": ends(self.child_peak_fds),
            "in_process_rss_kib": ends(self.own_rss_kib),
            "in_process_fds": ends(self.own_fds),
        }


def _rss_kib(pid: int | str) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _fds(pid: int | str) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _run_cli(
    url: str, out: Path, connections: int, kill_after_s: float | None
) -> tuple[int, int, int]:
    """Exit code (or -9), peak RSS (KiB) and peak open fds of one segdl process."""
    argv = [sys.executable, "-m", "segdl", *_ARGS, "-x", str(connections), "-o", str(out), url]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_rss = peak_fds = 0
    began = time.monotonic()
    while proc.poll() is None:
        peak_rss = max(peak_rss, _rss_kib(proc.pid))
        peak_fds = max(peak_fds, _fds(proc.pid))
        elapsed = time.monotonic() - began
        if kill_after_s is not None and elapsed >= kill_after_s:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return -9, peak_rss, peak_fds
        if elapsed > _RUN_LIMIT_S:
            proc.kill()
            proc.wait()
            return -1, peak_rss, peak_fds  # hung: reported as its own exit code
        time.sleep(0.02)
    proc.communicate()
    return proc.returncode, peak_rss, peak_fds


def _run_in_process(url: str, out: Path, connections: int) -> int:
    import segdl
    from segdl.cli.exitcodes import exit_code_for

    try:
        segdl.download(
            url, out, connections=connections, timeout_s=2.0, retry_wait_s=0.05, retries=3
        )
    except (segdl.SegdlError, OSError) as exc:
        return int(exit_code_for(exc))
    return 0


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(out: Path, versions: set[str], report: Report, case: str) -> bool:
    """True if the output is there (and it had better be right)."""
    if not out.exists():
        return False
    if _digest(out.read_bytes()) not in versions:
        report.wrong_files.append(case)
    return True


def _one_run(
    server: FaultServer, rng: random.Random, where: Path, number: int, report: Report
) -> None:
    kind = rng.choice(KINDS)
    size = rng.choice([64 * KIB, 700 * KIB, 2 * MIB, 6 * MIB])
    data = rng.randbytes(size)
    path = f"/r{number}.bin"
    server.add_file(path, data)
    versions = {_digest(data)}
    faults = _faults(kind, size, rng)
    if faults is not None:
        server.set_faults(path, faults)
    url = server.url(path)
    out = where / f"r{number}.bin"
    connections = rng.choice([1, 4, 8])
    in_process = number % 5 == 4 and kind != "kill9"
    case = f"run {number}: {kind}, {size} bytes, -x {connections}"
    if kind == "changed":  # the file changes while the first run fetches it
        changed = rng.randbytes(size)
        versions.add(_digest(changed))
        server.set_faults(path, Faults(throttle_bytes_per_s=2 * MIB))
        timer = threading.Timer(rng.uniform(0.05, 0.6), server.replace_file, (path, changed))
        timer.start()
    kill_after = rng.uniform(0.15, 1.2) if kind == "kill9" else None
    if kind == "kill9":
        server.set_faults(path, Faults(throttle_bytes_per_s=rng.choice([300_000, 1_000_000])))
    if in_process:
        code = _run_in_process(url, out, connections)
        report.own_rss_kib.append(_rss_kib("self"))
        report.own_fds.append(_fds("self"))
    else:
        code, rss, fds = _run_cli(url, out, connections, kill_after)
        report.child_peak_rss_kib.append(rss)
        report.child_peak_fds.append(fds)
    if kind == "changed":
        timer.join()
    report.runs += 1
    report.faults[kind] += 1
    report.exit_codes[str(code)] += 1
    if not _check(out, versions, report, case):
        server.set_faults(path, None)  # honest now: what the fault left must resume or be dropped
        code, _, _ = _run_cli(url, out, connections, None)
        if code != 0 or not _check(out, versions, report, case + " (rerun)"):
            report.not_resumable.append(f"{case}: rerun exit {code}")
        else:
            report.absent_then_resumed += 1
    left = sorted(p.name for p in where.iterdir() if p != out)
    if left:
        report.leftovers.append(f"{case}: {left}")
    for leftover in where.iterdir():
        with contextlib.suppress(OSError):
            leftover.unlink()
    server.remove(path)
    server.clear_log()


def run(minutes: float, seed: int, progress: Callable[[str], None]) -> dict[str, Any]:
    rng = random.Random(seed)
    report = Report()
    began = time.monotonic()
    with FaultServer() as server, tempfile.TemporaryDirectory(prefix="segdl-chaos-") as tmp:
        where = Path(tmp)
        number = 0
        while time.monotonic() - began < minutes * 60:
            _one_run(server, rng, where, number, report)
            number += 1
            if number % 25 == 0:
                progress(json.dumps(report.summary(time.monotonic() - began)))
    return report.summary(time.monotonic() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    summary = run(args.minutes, args.seed, lambda line: print(line, file=sys.stderr, flush=True))
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    sys.exit(1 if summary["wrong_files"] or summary["not_resumable"] else 0)


if __name__ == "__main__":
    main()
