"""Pipes as a shell user makes them: a reader that goes away (| head) ends segdl quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from segdl.cli.exitcodes import ExitCode
from tests.client import wait_for
from tests.server import Faults, FaultServer

MakeData = Callable[..., bytes]
_SIZE = 12 << 20


def _segdl(*argv: str) -> str:
    return " ".join([sys.executable, "-m", "segdl", *argv])


def _piped(command: str, cwd: Path) -> tuple[int, str, str]:
    """Run ``command`` in bash; the exit code of its first stage, its stdout and stderr."""
    script = f'{command}; echo "rc=${{PIPESTATUS[0]}}"'
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60, env=env
    )
    *lines, last = done.stdout.rstrip("\n").split("\n")
    assert last.startswith("rc="), done.stdout
    return int(last[3:]), "\n".join(lines), done.stderr


@pytest.mark.parametrize(
    "pipe",
    [
        "--progress json -o out.bin {url} 2>err.txt | head -1",
        "--progress plain -o out.bin {url} 2>&1 | head -1",
    ],
)
def test_closed_pipe_exits_141_quietly_and_a_rerun_resumes(
    pipe: str, fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A reader leaving (| head -1) ends segdl with 141, no traceback; a rerun resumes."""
    data = make_data(_SIZE)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=1 << 20))
    url = fault_server.url("/f.bin")
    code, shown, err = _piped(_segdl("-x", "4", pipe.format(url=url)), tmp_path)
    assert code == ExitCode.PIPE_CLOSED, (shown, err)
    assert len(shown.splitlines()) == 1
    stderr_file = tmp_path / "err.txt"
    written = stderr_file.read_text() if stderr_file.exists() else ""
    assert "Traceback" not in err + written and "BrokenPipe" not in err + written
    assert not (tmp_path / "out.bin").exists()
    assert (tmp_path / "out.bin.part").exists() and (tmp_path / "out.bin.segdl-state").exists()
    fault_server.set_faults("/f.bin", Faults())
    assert wait_for(lambda: fault_server.open_connections == 0, timeout_s=10)
    fault_server.clear_log()
    code, _, err = _piped(_segdl("-x", "4", "--progress", "plain", "-o", "out.bin", url), tmp_path)
    assert code == ExitCode.OK, err
    assert "resuming with" in err
    assert (tmp_path / "out.bin").read_bytes() == data
    ranges = [r.header("range") or "" for r in fault_server.requests]
    assert ranges and not any(r.startswith("bytes=0-") for r in ranges), ranges


def test_plain_progress_reaches_a_pipe_line_by_line(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Through | tee, each plain progress line arrives as it is written, not at exit."""
    fault_server.add_file("/f.bin", make_data(6 << 20))
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=1 << 20))
    command = _segdl("-x", "2", "--progress", "plain", "-o", "o.bin", fault_server.url("/f.bin"))
    process = subprocess.Popen(
        ["bash", "-c", f"{command} 2>&1 | cat"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert "%" in first and "MiB" in first
    assert process.poll() is None, "the first line came only when segdl ended"
    process.stdout.read()
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("redirect", "path", "code"),
    [
        (">&-", "/f.bin", ExitCode.OK),  # stdout closed: the plain lines go nowhere
        ("--progress json >&-", "/f.bin", ExitCode.OK),
        ("2>&-", "/missing.bin", ExitCode.SERVER_ERROR),  # the error line goes nowhere
        ("2<readonly.txt", "/missing.bin", ExitCode.SERVER_ERROR),  # a descriptor it cannot write
        (">&- 2>&-", "/f.bin", ExitCode.OK),
    ],
)
def test_a_standard_stream_closed_from_the_start_changes_nothing_but_what_is_said(
    redirect: str,
    path: str,
    code: int,
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
) -> None:
    """Started with stdout or stderr closed (or stderr open only for reading), segdl
    downloads and exits as it would have, without a traceback, and writes nothing into a
    descriptor it did not get for writing: not into the file a closed number would go to next."""
    data = make_data(1 << 20)
    fault_server.add_file("/f.bin", data)
    (tmp_path / "readonly.txt").write_text("untouched\n")
    command = _segdl("-x", "2", "-o", "out.bin", redirect, fault_server.url(path))
    got, shown, err = _piped(f"{command} ", tmp_path)
    assert got == code, (shown, err)
    assert "Traceback" not in shown + err and shown == ""
    assert (tmp_path / "readonly.txt").read_text() == "untouched\n"
    if code == ExitCode.OK:
        assert (tmp_path / "out.bin").read_bytes() == data
    else:
        assert not (tmp_path / "out.bin").exists()


def test_o_dash_with_stdout_closed_is_a_usage_error_before_any_request(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """-o - with nowhere to write: one line naming the cause, exit 2, nothing asked."""
    fault_server.add_file("/f.bin", make_data(1 << 20))
    got, _, err = _piped(_segdl("-o", "-", fault_server.url("/f.bin"), ">&-"), tmp_path)
    assert got == ExitCode.USAGE
    assert err == "segdl: error: stdout is closed: -o - has nowhere to write the file\n"
    assert fault_server.requests == []
