"""The command line: exit codes, one-line errors, JSON progress, python -m segdl."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from tests.server import FaultServer
from tests.server.faults import Faults

MakeData = Callable[..., bytes]


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def test_download_with_output_and_summary(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A good download exits 0 and says where the file went."""
    data = make_data(3 * 1024 * 1024)
    fault_server.add_file("/d/f.bin", data)
    code, out, err = run_cli("-x", "4", "-o", str(tmp_path / "x"), fault_server.url("/d/f.bin"))
    assert code == ExitCode.OK, err
    assert (tmp_path / "x").read_bytes() == data
    assert "saved" in err and out == ""


def test_dir_takes_the_name_from_the_url(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """-d DIR names the file after the URL path's decoded basename, query dropped."""
    fault_server.add_file("/d/my%20file.bin", make_data(10))
    code, _, err = run_cli("-q", "-d", str(tmp_path), fault_server.url("/d/my%20file.bin?x=1"))
    assert code == ExitCode.OK, err
    assert (tmp_path / "my file.bin").read_bytes() == make_data(10)
    assert err == ""


def test_existing_output_exit_code(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """An existing output gives exit 9 and one line; --overwrite replaces it."""
    fault_server.add_file("/f", make_data(100))
    (tmp_path / "f").write_bytes(b"mine")
    code, _, err = run_cli("-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert code == ExitCode.OUTPUT_EXISTS
    assert err.count("\n") == 1 and "exists" in err
    assert (tmp_path / "f").read_bytes() == b"mine"
    code, _, _ = run_cli("-q", "--overwrite", "-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert code == ExitCode.OK and (tmp_path / "f").read_bytes() == make_data(100)


def test_404_exit_code(fault_server: FaultServer, tmp_path: Path) -> None:
    """A 404 gives exit 8 and a line naming the status and URL."""
    code, _, err = run_cli("-o", str(tmp_path / "f"), fault_server.url("/nope"))
    assert code == ExitCode.SERVER_ERROR
    assert "404" in err and "/nope" in err and err.count("\n") == 1


def test_connection_refused_exit_code(tmp_path: Path) -> None:
    """Nothing listening gives exit 4, 'connection refused'."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = run_cli("--timeout", "5", "-o", str(tmp_path / "f"), f"http://127.0.0.1:{port}/")
    assert code == ExitCode.NETWORK
    assert "connection refused" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["-x", "0", "http://127.0.0.1:9/"],
        ["--min-split-size", "1.5M", "http://127.0.0.1:9/"],
        ["-H", "no colon", "http://127.0.0.1:9/"],
        ["-H", "Range: bytes=0-", "http://127.0.0.1:9/"],
        ["ftp://127.0.0.1/x"],
        ["http://[::1/x"],  # unparsable: one line, no traceback
        ["127.0.0.1:9/x"],  # no scheme is guessed
        ["http://127.0.0.1:99999/x"],
        ["--no-such-option", "http://127.0.0.1:9/"],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path) -> None:
    """Bad arguments exit 2 before any connection is made."""
    code, _, err = run_cli(*argv, *(["-o", str(tmp_path / "o")] if argv else []))
    assert code == ExitCode.USAGE, err


def test_json_progress_events(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """--progress json writes one JSON event per line on stdout, ending with the result."""
    fault_server.add_file("/f", make_data(2 * 1024 * 1024))
    code, out, _ = run_cli("--progress", "json", "-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert code == ExitCode.OK
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "DownloadStarted"
    assert events[-3]["event"] == "DownloadReceived"
    assert events[-3]["size_bytes"] == 2 * 1024 * 1024
    assert events[-2]["event"] == "DownloadFinished"
    assert events[-1]["event"] == "Summary" and events[-1]["exit_code"] == 0
    assert events[-1]["size_bytes"] == 2 * 1024 * 1024


def test_json_summary_on_failure(fault_server: FaultServer, tmp_path: Path) -> None:
    """A failed run still ends --progress json with a summary carrying the exit code."""
    code, out, _ = run_cli("--progress", "json", "-o", str(tmp_path / "f"), fault_server.url("/x"))
    summary = json.loads(out.splitlines()[-1])
    assert code == ExitCode.SERVER_ERROR
    assert summary["event"] == "Summary" and summary["exit_code"] == code and not summary["ok"]


def test_python_dash_m_and_version() -> None:
    """python -m segdl --version works and imports neither urllib3 nor rich."""
    code = (
        "import sys, runpy; sys.argv=['segdl','--version'];\n"
        "try: runpy.run_module('segdl', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "assert 'urllib3' not in sys.modules and 'rich' not in sys.modules, sorted(sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("segdl ")


def test_ctrl_c_exits_130_promptly_and_leaves_no_final_file(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """SIGINT stops even stalled connections within a second; exit 130, only the .part left."""
    fault_server.add_file("/f", make_data(4 * 1024 * 1024))
    fault_server.set_faults("/f", Faults(stall_after=100_000, stall_s=60))
    out = tmp_path / "f"
    proc = subprocess.Popen(
        [sys.executable, "-m", "segdl", "-q", "-o", str(out), fault_server.url("/f")],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not (tmp_path / "f.part").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert time.monotonic() - sent < 1.5
    assert not out.exists() and (tmp_path / "f.part").exists()


@pytest.mark.parametrize("where", ["importing", "reading the command line"])
def test_ctrl_c_while_starting_exits_130_without_a_traceback(where: str, tmp_path: Path) -> None:
    """A Ctrl-C before the download's own handler is in place (the command line's modules
    still importing, or its options being read): exit 130 and nothing on stderr, as curl
    and wget end, not a Python traceback; nothing is written."""
    # The Ctrl-C lands at a chosen moment: raised from inside that step, as Python raises it.
    if where == "importing":
        hook = (
            "import builtins\n"
            "real = builtins.__import__\n"
            "def spy(name, *a, **k):\n"
            "    if name == 'segdl.cli.parser': raise KeyboardInterrupt\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = spy\n"
        )
    else:
        hook = (
            "import segdl.cli.parser as parser\n"
            "def interrupted(*a, **k): raise KeyboardInterrupt\n"
            "parser.build_parser = interrupted\n"
            "import segdl.cli.main\n"
            "segdl.cli.main.build_parser = interrupted\n"
        )
    out = tmp_path / "out"
    script = hook + f"sys.argv = ['segdl', '-q', '-d', {str(out)!r}, 'http://127.0.0.1:9/f']\n"
    script += "import runpy\nrunpy.run_module('segdl', run_name='__main__')\n"
    done = subprocess.run([sys.executable, "-c", "import sys\n" + script], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (ExitCode.INTERRUPTED, "")
    assert not out.exists()


def test_ctrl_c_in_a_batch_says_how_many_files_are_left_in_one_line(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A batch of small files stopped with SIGINT: exit 130, a summary counting the files
    left unfinished as interrupted (not a "failed" line for each), and the same command
    run again finishes every file."""
    for n in range(40):
        fault_server.add_file(f"/f{n}", make_data(20_000, seed=n))
        if n >= 4:  # the rest trickle: the stop finds them unfinished
            fault_server.set_faults(f"/f{n}", Faults(throttle_bytes_per_s=2_000))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(fault_server.url(f"/f{n}") + "\n" for n in range(40)))
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "segdl", "-q", "-j", "8", "-d", str(out), "-i", str(listing)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while len(list(out.glob("f*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert re.fullmatch(r"segdl: \d+ done, 0 skipped, 0 failed, \d+ interrupted; .*", lines[0])
    assert lines[1] == "segdl: interrupted: the same command run again fetches what is not finished"
    for n in range(4, 40):
        fault_server.set_faults(f"/f{n}")
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    for n in range(40):
        assert (out / f"f{n}").read_bytes() == make_data(20_000, seed=n)


@pytest.mark.parametrize("mode", ["bar", "plain", "none", "auto"])
def test_every_progress_mode_downloads(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, mode: str
) -> None:
    """Each display mode runs a download to the end; nothing but JSON ever goes to stdout."""
    # Over 1 MiB, so the engine downloads it (a smaller one is finished from the early
    # request's answer, segdl.run.quick), and its notice shows.
    fault_server.add_file("/f", make_data(2 * 1024 * 1024))
    fault_server.set_faults("/f", Faults(ignore_range=True))
    code, out, err = run_cli("--progress", mode, "-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert code == ExitCode.OK and out == ""
    assert "saved" in err
    if mode != "bar":
        assert "server ignored Range" in err
