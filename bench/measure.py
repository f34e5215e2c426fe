"""Run one download as a child process and measure it: wall, CPU, peak RSS, sha256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_STDERR_TAIL_CHARS = 400
_RSS_FAST_POLL_S = 0.01
_RSS_SLOW_POLL_S = 0.05
_RSS_FAST_POLL_FOR_S = 1.0
_PARENT_GROWTH_MARGIN_BYTES = 8 << 20
# After a large output is deleted, the next run waits this long. On the VMs this was measured
# on, memory freed by a deletion is handed back to the host (virtio-balloon free page
# reporting) about 2 s later; a run that starts at once writes its page cache into that memory
# while it is being handed back, and its copies ran 7-17 times slower (perf). Without the pause
# the first tool after a deletion paid it in about a third of its runs (and in a fixed order
# that is always the same tool); with 3 s, none of 32 runs did.
_SETTLE_S = 3.0
_SETTLE_FROM_BYTES = 256 << 20


@dataclass(frozen=True, slots=True)
class Measurement:
    """One run of one tool. `error` is None only if it exited 0 with the right bytes."""

    wall_s: float
    cpu_s: float
    max_rss_bytes: int | None
    exit_code: int | None
    error: str | None
    harness_cpu_s: float = 0.0  # CPU of this process meanwhile: the shaper's threads
    server_connections: int | None = None  # distinct connections in nginx's access log
    server_requests: int | None = None
    server_bytes: int | None = None  # body bytes nginx sent, all requests of the run

    @property
    def ok(self) -> bool:
        """True if the output file was complete and correct."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class ChildUsage:
    """What os.wait4 (and /proc while it ran) says about one finished child."""

    wall_s: float
    cpu_s: float
    max_rss_bytes: int | None
    exit_code: int
    timed_out: bool
    stderr_tail: str


def sha256_of(path: Path) -> str:
    """Return the sha256 hex digest of a file."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _vm_hwm_bytes(pid: int | str) -> int | None:
    """VmHWM (peak resident set of the current program image) of a live process, in bytes."""
    try:
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY)
    except OSError:
        return None  # not Linux, or the process is gone
    try:
        return _parse_vm_hwm(os.pread(fd, 8192, 0))
    except OSError:
        return None
    finally:
        os.close(fd)


def _parse_vm_hwm(status: bytes) -> int | None:
    """The VmHWM line of /proc/PID/status in bytes; None if absent (a zombie has no memory)."""
    at = status.find(b"\nVmHWM:")
    if at < 0:
        return None
    fields = status[at + 7 : status.find(b"\n", at + 1)].split()
    return int(fields[0]) * 1024 if fields and fields[0].isdigit() else None


def _reset_own_peak_rss() -> None:
    """Lower this process's VmHWM to its current RSS (Linux >= 4.0; ignored elsewhere)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class _PeakRss:
    """Peak RSS of one child: wait4's ru_maxrss where it can be trusted, else /proc samples.

    Linux carries the *parent's* peak RSS into a child across fork/vfork + exec, so the
    ru_maxrss that os.wait4 returns is max(this harness's peak, the tool's own peak).  We lower
    our own peak just before spawning and remember it: when ru_maxrss is above it, it is the
    tool's own figure.  Below it, we fall back to the largest VmHWM sampled from /proc while the
    child ran (exact up to the last sample, 10-50 ms before exit).
    """

    def __init__(self) -> None:
        _reset_own_peak_rss()
        self.parent_peak_bytes = _vm_hwm_bytes("self") or 0
        self.sampled_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, pid: int) -> None:
        """Sample VmHWM of `pid` until finish() is called: often at first, then every 50 ms."""

        def poll() -> None:
            # VmHWM only grows, so a sample loses nothing but growth after it; memory is
            # mostly allocated early, and a long run should not pay for 100 samples a second.
            started = time.monotonic()
            while True:
                hwm = _vm_hwm_bytes(pid)
                if hwm is not None:
                    self.sampled_bytes = max(hwm, self.sampled_bytes or 0)
                early = time.monotonic() - started < _RSS_FAST_POLL_FOR_S
                if self._stop.wait(_RSS_FAST_POLL_S if early else _RSS_SLOW_POLL_S):
                    return

        self._thread = threading.Thread(target=poll, name="rss-poll", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """Stop sampling (call while the child is still an unreaped zombie)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def peak_bytes(self, ru_maxrss_kib: int) -> int | None:
        """The child's peak RSS in bytes, given ru_maxrss from wait4."""
        reported = ru_maxrss_kib * 1024
        # The margin covers what this process allocates between measuring itself and the exec.
        if reported > self.parent_peak_bytes + _PARENT_GROWTH_MARGIN_BYTES:
            return reported
        return self.sampled_bytes


def run_child(argv: Sequence[str], env: Mapping[str, str], timeout_s: float) -> ChildUsage:
    """Run argv to completion in its own process group; wall, CPU and peak RSS via os.wait4."""
    with tempfile.TemporaryFile() as err:
        rss = _PeakRss()
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err, env=dict(env), start_new_session=True,
        )  # fmt: skip
        rss.watch(proc.pid)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            # Wait for the exit without reaping, so the poller never reads a recycled pid.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            wall_s = time.perf_counter() - started
            rss.finish()
            # wait4's rusage covers the child and every descendant it reaped.
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            rss.finish()
        # We reaped the child ourselves; tell Popen so it never waits for it again.
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace").strip()
    tail = " | ".join(text.splitlines())[-_STDERR_TAIL_CHARS:]
    return ChildUsage(
        wall_s=wall_s,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_bytes=rss.peak_bytes(usage.ru_maxrss),
        exit_code=proc.returncode,
        timed_out=killed.is_set(),
        stderr_tail=tail,
    )


def _check_output(out: Path, expected_sha256: str, expected_size: int) -> str | None:
    """Return why `out` is not the expected file, or None if it is."""
    if not out.is_file():
        return "no output file"
    size = out.stat().st_size
    if size != expected_size:
        return f"size {size} != {expected_size}"
    if sha256_of(out) != expected_sha256:
        return "sha256 mismatch"
    return None


def rotated(items: Sequence[T], round_: int) -> list[T]:
    """``items`` starting at ``round_`` (mod len): each tool goes first in some round, so none
    always runs right after the same neighbour (or first, after the data was written)."""
    if not items:
        return []
    start = round_ % len(items)
    return [*items[start:], *items[:start]]


def clear_dir(path: Path) -> None:
    """Empty `path` (creating it if needed) and let the kernel drop the dirty pages."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.sync()


def measure(
    argv: Sequence[str],
    out: Path,
    expected_sha256: str,
    expected_size: int,
    env: Mapping[str, str],
    timeout_s: float,
) -> Measurement:
    """Run one download into `out` (whose directory is emptied before and after)."""
    clear_dir(out.parent)
    harness_before = time.process_time()
    try:
        child = run_child(argv, env, timeout_s)
    except OSError as exc:
        return Measurement(0.0, 0.0, None, None, f"could not start: {exc}")
    harness_cpu_s = time.process_time() - harness_before
    if child.timed_out:
        error: str | None = f"timeout after {timeout_s:.0f} s"
    elif child.exit_code != 0:
        error = f"exit {child.exit_code}: {child.stderr_tail or 'no stderr'}"
    else:
        error = _check_output(out, expected_sha256, expected_size)
    clear_dir(out.parent)
    if expected_size >= _SETTLE_FROM_BYTES:
        time.sleep(_SETTLE_S)
    return Measurement(
        wall_s=child.wall_s,
        cpu_s=child.cpu_s,
        max_rss_bytes=child.max_rss_bytes,
        exit_code=child.exit_code,
        error=error,
        harness_cpu_s=harness_cpu_s,
    )


def random_files(root: Path, count: int, size_bytes: int, *, digits: int = 4) -> dict[str, str]:
    """``count`` files of ``size_bytes`` random bytes in ``root`` (``f0000.bin`` on, with
    ``digits`` digits): each name's sha256, as :func:`check_files` takes them."""
    expected = {}
    for n in range(count):
        data = os.urandom(size_bytes)
        name = f"f{n:0{digits}d}.bin"
        (root / name).write_bytes(data)
        expected[name] = hashlib.sha256(data).hexdigest()
    return expected


def check_files(out: Path, expected: Mapping[str, str]) -> str | None:
    """None if every file of ``expected`` (name -> sha256) is in ``out`` with its digest, else
    what is wrong with the first that is not."""
    for name, digest in expected.items():
        path = out / name
        if not path.is_file():
            return f"{name} missing"
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return f"{name} differs"
    return None
