"""Running the same batch again finishes only what is missing, and clobbers nothing."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import segdl
from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from segdl.disk.journal import JOURNAL_NAME
from segdl.run.batch import Outcome
from tests.server import FaultServer

MakeData = Callable[..., bytes]
_FILES = 50


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def _batch(server: FaultServer, make_data: MakeData, tmp_path: Path) -> list[str]:
    for n in range(_FILES):
        server.add_file(f"/f{n:02d}.bin", make_data(4096 + n, seed=n))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(server.url(f"/f{n:02d}.bin") + "\n" for n in range(_FILES)))
    return ["-j", "8", "-i", str(listing), "-d", str(tmp_path / "out")]


def test_the_same_batch_again_asks_nothing_and_exits_0(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A rerun of a finished 50-file batch sends 0 requests, says so, and exits 0."""
    argv = _batch(fault_server, make_data, tmp_path)
    code, _, err = run_cli(*argv)
    assert code == ExitCode.OK, err
    assert (tmp_path / "out" / JOURNAL_NAME).exists()
    fault_server.clear_log()
    code, _, err = run_cli(*argv)
    assert code == ExitCode.OK, err
    assert fault_server.requests == []
    assert f"0 done, {_FILES} already complete, 0 skipped, 0 failed; nothing fetched" in err
    assert err.count("\n") == 1, err  # only the summary


def test_a_rerun_fetches_only_what_is_missing(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Files deleted since the first run are fetched again, and only they."""
    argv = _batch(fault_server, make_data, tmp_path)
    assert run_cli(*argv)[0] == ExitCode.OK
    for n in (3, 17):
        (tmp_path / "out" / f"f{n:02d}.bin").unlink()
    fault_server.clear_log()
    code, _, err = run_cli(*argv)
    assert code == ExitCode.OK, err
    assert sorted({r.path for r in fault_server.requests}) == ["/f03.bin", "/f17.bin"]
    assert f"2 done, {_FILES - 2} already complete" in err
    assert (tmp_path / "out/f17.bin").read_bytes() == make_data(4096 + 17, seed=17)


def test_a_replaced_output_is_left_alone_and_reported(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """An output replaced by another file of the same name is not overwritten: exit 9, named."""
    argv = _batch(fault_server, make_data, tmp_path)
    assert run_cli(*argv)[0] == ExitCode.OK
    mine = tmp_path / "out/f05.bin"
    mine.write_bytes(b"my own notes, not a download")
    os.utime(mine, ns=(1, 1))
    fault_server.clear_log()
    code, out, err = run_cli("--progress", "json", *argv)
    assert code == ExitCode.OUTPUT_EXISTS
    assert mine.read_bytes() == b"my own notes, not a download"
    assert fault_server.requests == []
    summary = json.loads(out.splitlines()[-1])
    assert (summary["already_complete"], summary["failed"]) == (_FILES - 1, 1)
    assert "f05.bin exists but is not the file segdl finished" in summary["failures"][0]["error"]
    code, _, err = run_cli("--if-exists", "overwrite", "-q", *argv)
    assert code == ExitCode.OK, err
    assert mine.read_bytes() == make_data(4096 + 5, seed=5)


def test_a_file_that_was_there_before_is_not_taken_for_complete(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A file segdl never wrote is not called complete: the batch refuses it (exit 9)."""
    fault_server.add_file("/x.bin", make_data(100))
    (tmp_path / "x.bin").write_bytes(b"someone else's x.bin")
    report = segdl.download_many([fault_server.url("/x.bin")], directory=tmp_path)
    assert report.count(Outcome.FAILED) == 1 and report.already_complete == 0
    assert (tmp_path / "x.bin").read_bytes() == b"someone else's x.bin"


def test_single_downloads_keep_if_exists(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """One URL is not a batch: an existing output is exit 9 unless --if-exists says otherwise."""
    fault_server.add_file("/one.bin", make_data(100))
    url = fault_server.url("/one.bin")
    assert run_cli("-q", "-d", str(tmp_path), url)[0] == ExitCode.OK
    assert run_cli("-q", "-d", str(tmp_path), url)[0] == ExitCode.OUTPUT_EXISTS
    assert run_cli("-q", "--if-exists", "skip", "-d", str(tmp_path), url)[0] == ExitCode.OK
