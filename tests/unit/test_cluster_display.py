"""The cluster driver's line and exit codes: pure functions of the run's figures (no Ray)."""

from __future__ import annotations

from segdl.cli.cluster import Recent, exit_code_for_kind, progress_line
from segdl.cli.exitcodes import ExitCode
from segdl.cluster.report import RunProgress


def _at(elapsed_s: float, done: int, size: int, files: int | None = 3000) -> RunProgress:
    return RunProgress(files, done, 0, 2, size, 5, 6, 3, elapsed_s)


def test_line_uses_recent_rates_for_rate_and_eta() -> None:
    """Rate and ETA come from the last seconds, not from the start (Ray's start-up)."""
    recent = Recent(window_s=5.0)
    progress_line(_at(10.0, 0, 0), recent)  # ten seconds of start-up, nothing yet
    line = progress_line(_at(12.0, 998, 2 * 1024 * 1024), recent)
    assert line == (
        "33% 1000/3000 files, 2 failed, 2.0 MiB, 1.0 MiB/s, ETA 0:04, 6 workers, 3 nodes"
    )


def test_line_without_a_known_total() -> None:
    """A list read from a pipe has no total: no percentage and no ETA."""
    line = progress_line(_at(1.0, 8, 0, files=None))
    assert line.startswith("10 files, 2 failed,") and "ETA --:--" in line


def test_exit_codes_by_kind_of_failure() -> None:
    """A kind of failure maps to the exit code that error would have had alone."""
    assert exit_code_for_kind("http 404") is ExitCode.SERVER_ERROR
    assert exit_code_for_kind("http 401") is ExitCode.AUTH
    assert exit_code_for_kind("ConnectError") is ExitCode.NETWORK
    assert exit_code_for_kind("TLSError") is ExitCode.TLS
    assert exit_code_for_kind("OutputLocked") is ExitCode.LOCKED
    assert exit_code_for_kind("lost") is ExitCode.NETWORK
    assert exit_code_for_kind("SomethingElse") is ExitCode.GENERIC
