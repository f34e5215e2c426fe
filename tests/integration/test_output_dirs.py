"""Output directories are created (-d, dir= lines, directory=); one line when they cannot be."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import segdl
from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from segdl.run.batch import Outcome
from tests.server import FaultServer

MakeData = Callable[..., bytes]


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def test_dir_is_created_with_parents_and_umask_permissions(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """-d a/b/c creates every missing level, with mode 0777 & ~umask."""
    fault_server.add_file("/f.bin", make_data(1000))
    old = os.umask(0o027)
    try:
        code, _, err = run_cli("-q", "-d", str(tmp_path / "a/b/c"), fault_server.url("/f.bin"))
    finally:
        os.umask(old)
    assert code == ExitCode.OK, err
    assert (tmp_path / "a/b/c/f.bin").read_bytes() == make_data(1000)
    for level in ("a", "a/b", "a/b/c"):
        assert (tmp_path / level).stat().st_mode & 0o777 == 0o750


def test_input_file_dir_and_out_lines_create_their_directories(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """dir= and out= with folders, in an -i list, are created like aria2c does."""
    fault_server.add_file("/one", make_data(10, seed=1))
    fault_server.add_file("/two", make_data(20, seed=2))
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"{fault_server.url('/one')}\n  dir={tmp_path / 'x/y'}\n"
        f"{fault_server.url('/two')}\n  out=deep/er/two.bin\n"
    )
    code, _, err = run_cli("-q", "-d", str(tmp_path / "top"), "-i", str(listing))
    assert code == ExitCode.OK, err
    assert (tmp_path / "x/y/one").read_bytes() == make_data(10, seed=1)
    assert (tmp_path / "top/deep/er/two.bin").read_bytes() == make_data(20, seed=2)


def test_api_directory_is_created(
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """download_many(directory="downloads") and download(directory=) work where it is missing."""
    monkeypatch.chdir(tmp_path)
    fault_server.add_file("/x.bin", make_data(100))
    report = segdl.download_many([fault_server.url("/x.bin")], directory="downloads")
    assert report.count(Outcome.DONE) == 1, report.failures
    assert Path("downloads/x.bin").read_bytes() == make_data(100)
    result = segdl.download(fault_server.url("/x.bin"), directory="d2/sub")
    assert result.path == tmp_path / "d2/sub/x.bin"
    assert result.path.read_bytes() == make_data(100)


def test_an_uncreatable_directory_is_one_line_naming_it_and_the_cause(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A file in the way of -d: exit 3, one line with the directory and why, for any batch."""
    (tmp_path / "blocker").write_text("a file")
    wanted = tmp_path / "blocker" / "sub"
    for path in ("/a", "/b", "/c"):
        fault_server.add_file(path, make_data(10))
    urls = [fault_server.url(p) for p in ("/a", "/b", "/c")]
    for argv in (["-d", str(wanted), urls[0]], ["-d", str(wanted), *urls]):
        code, _, err = run_cli(*argv)
        assert code == ExitCode.FILE_IO
        assert err.count("\n") == 1, err
        assert str(tmp_path / "blocker") in err and "directory" in err
        assert ("Not a directory" in err) or ("in the way" in err)
        if len(argv) > 3:  # a batch checks its directories before any request
            assert all(r.path == "/a" for r in fault_server.requests)


def test_output_in_a_missing_directory_says_which(tmp_path: Path) -> None:
    """-o missing/x names the missing directory instead of a lock-file error."""
    code, _, err = run_cli("-o", str(tmp_path / "nope/x"), "http://127.0.0.1:9/x")
    assert code == ExitCode.FILE_IO
    assert err.count("\n") == 1 and str(tmp_path / "nope") in err and "lock" not in err
