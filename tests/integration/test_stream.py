"""``-o -``: the file to stdout in order over many connections, in bounded memory."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from tests.server import Faults, FaultServer

MakeData = Callable[..., bytes]
MIB = 1 << 20


def _peak_rss_bytes(pid: int, seen: int) -> int:
    """The process's resident high-water mark (VmHWM), which starts afresh at exec, unlike
    ru_maxrss, which would still count the test process it was forked from."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # already gone
        return seen
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return max(seen, int(line.split()[1]) * 1024)
    return seen


def _stream_with_rss(argv: list[str], cwd: Path) -> tuple[int, str, str, int]:
    """Run segdl with stdout hashed as it arrives; its exit code, the sha256, stderr, and
    its peak resident set in bytes, sampled as it writes."""
    process = subprocess.Popen(
        [sys.executable, "-m", "segdl", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    digest = hashlib.sha256()
    peak = 0
    while chunk := process.stdout.read1(1 << 16):
        digest.update(chunk)
        peak = _peak_rss_bytes(process.pid, peak)
    code = process.wait(timeout=30)
    reader.join()
    return code, digest.hexdigest(), errors[0].decode(), peak


def test_stdout_gets_the_file_in_order_within_the_buffer_bound(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """-o - over 8 connections, one of them slow: identical bytes, peak RSS within the
    bound, and the slow connection's pieces taken over rather than waited for."""
    big, small = make_data(96 * MIB), make_data(4 * MIB, seed=1)
    fault_server.add_file("/big.bin", big)
    fault_server.add_file("/small.bin", small)  # the same process with little to buffer
    fault_server.set_faults("/small.bin", Faults(throttle_bytes_per_s=MIB))
    slow = Faults(throttle_for_connection=lambda cid: MIB // 2 if cid == 3 else 48 * MIB)
    fault_server.set_faults("/big.bin", slow)
    bound = 8 * MIB
    common = ["-x", "8", "--stream-buffer", "8M", "--progress", "plain", "-o", "-"]
    code, sha, err, base_rss = _stream_with_rss([*common, fault_server.url("/small.bin")], tmp_path)
    assert code == 0 and sha == hashlib.sha256(small).hexdigest(), err
    code, sha, err, peak_rss = _stream_with_rss([*common, fault_server.url("/big.bin")], tmp_path)
    assert code == 0, err
    assert sha == hashlib.sha256(big).hexdigest()
    assert "streamed to stdout (96.0 MiB" in err
    print(f"peak RSS {peak_rss / MIB:.1f} MiB, baseline {base_rss / MIB:.1f} MiB")
    # Fixed overhead: 8 read buffers of 256 KiB, thread stacks, allocator slack.
    assert peak_rss - base_rss <= bound + 12 * MIB, (peak_rss / MIB, base_rss / MIB)
    big_requests = [r for r in fault_server.requests if r.path == "/big.bin"]
    assert len({r.connection_id for r in big_requests}) >= 8
    # The slow connection's pieces were taken over, not waited for: at its pace, its
    # eighth of the file alone would have taken 24 s.
    assert sum(r.body_bytes_sent for r in big_requests if r.connection_id == 3) < 4 * MIB
    assert list(tmp_path.iterdir()) == []  # no .part, no state


def test_a_tar_streams_into_tar_x(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """segdl -x 8 -o - URL | tar x unpacks the archive as it arrives."""
    members = {f"dir/file{n}.bin": make_data((n + 1) * MIB, seed=n) for n in range(3)}
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    fault_server.add_file("/a.tar", archive.getvalue())
    fault_server.set_faults("/a.tar", Faults(throttle_bytes_per_s=4 * MIB))
    out = tmp_path / "out"
    out.mkdir()
    command = (
        f"{sys.executable} -m segdl -q -x 8 --min-split-size 256K -o - "
        f"{fault_server.url('/a.tar')} | tar x -C {out}; echo ${{PIPESTATUS[@]}}"
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["0", "0"], done.stderr
    for name, data in members.items():
        assert (out / name).read_bytes() == data


def test_json_progress_cannot_share_stdout_with_the_file() -> None:
    """-o - with --progress json is a usage error (exit 2): stdout carries the file only."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["--progress", "json", "-o", "-", "http://127.0.0.1:9/x"]
    assert main(argv, stdout=stdout, stderr=stderr) == ExitCode.USAGE
    assert stdout.getvalue() == "" and "stdout" in stderr.getvalue()
