"""Hostile servers: text a server chose never reaches a terminal raw."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from tests.server import FaultServer
from tests.server.faults import Faults

ATTACK = "\x1b]0;pwned\x07\x1b[2J\x1b[5;35mGone\x1b[0m"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[5;35mGone\\x1b[0m"


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def assert_no_raw_controls(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, repr(text)


@pytest.mark.parametrize("mode", ["plain", "bar", "json"])
def test_reason_phrase_escapes_never_reach_the_terminal(
    fault_server: FaultServer, tmp_path: Path, mode: str
) -> None:
    """A reason phrase carrying terminal escapes is shown escaped, in every progress mode."""
    fault_server.add_file("/f", b"x" * 100)
    fault_server.set_faults("/f", Faults(status=404, reason=ATTACK))
    code, out, err = run_cli("--progress", mode, "-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert code == ExitCode.SERVER_ERROR
    assert_no_raw_controls(err)
    assert_no_raw_controls(out)
    assert SHOWN in err
    if mode == "json":
        summary = json.loads(out.splitlines()[-1])
        assert ATTACK in summary["error"] or SHOWN in summary["error"]


@pytest.mark.parametrize("mode", ["plain", "bar", "json"])
def test_refused_location_escapes_never_reach_the_terminal(
    fault_server: FaultServer, tmp_path: Path, mode: str
) -> None:
    """A refused redirect's Location carrying terminal escapes is shown escaped."""
    fault_server.add_redirect("/r", f"ftp://127.0.0.1/{ATTACK}")
    code, out, err = run_cli("--progress", mode, "-o", str(tmp_path / "f"), fault_server.url("/r"))
    assert code == ExitCode.PROTOCOL, err
    assert_no_raw_controls(err)
    assert_no_raw_controls(out)
    assert "\\x1b" in err


def test_retry_notice_escapes_never_reach_the_terminal(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """A retried 503's reason phrase reaches the notice line escaped, and the file completes."""
    fault_server.add_file("/f", b"y" * 1000)
    fault_server.set_faults("/f", Faults(status=503, reason=ATTACK, retry_after="0", times=1))
    code, _, err = run_cli(
        "--retry-wait", "0.01", "-o", str(tmp_path / "f"), fault_server.url("/f")
    )
    assert code == ExitCode.OK, err
    assert_no_raw_controls(err)
    assert SHOWN in err
    assert (tmp_path / "f").read_bytes() == b"y" * 1000


def test_batch_failure_lines_escape_server_text(fault_server: FaultServer, tmp_path: Path) -> None:
    """A batch's per-file failure line and its summary show a reason phrase escaped."""
    fault_server.add_file("/ok", b"z" * 10)
    fault_server.add_file("/bad", b"z" * 10)
    fault_server.set_faults("/bad", Faults(status=404, reason=ATTACK))
    code, _, err = run_cli("-d", str(tmp_path), fault_server.url("/ok"), fault_server.url("/bad"))
    assert code == ExitCode.SERVER_ERROR
    assert_no_raw_controls(err)
    assert SHOWN in err
