"""One options object: download(), batches and the CLI build a DownloadOptions, and a bad
option fails at the call, before any request, never half-way through a batch."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

import segdl
from segdl.cli.main import main
from segdl.cli.parser import build_parser, download_options
from segdl.core.errors import UsageError
from segdl.core.options import DEFAULTS, DownloadOptions
from segdl.run.batch import Downloader, Job, download_many
from tests.server import FaultServer

MakeData = Callable[..., bytes]


def test_download_takes_an_options_object_and_keywords_win(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """``options=`` says how; a keyword given beside it overrides that one field."""
    data = make_data(300_000)
    fault_server.add_file("/f.bin", data)
    options = DownloadOptions(connections=4, user_agent="from-options/1")
    result = segdl.download(
        fault_server.url("/f.bin"), tmp_path / "f.bin", options=options, user_agent="kw/2"
    )
    assert (tmp_path / "f.bin").read_bytes() == data
    assert result.size_bytes == len(data)
    assert {r.header("User-Agent") for r in fault_server.requests} == {"kw/2"}


def test_an_unknown_keyword_fails_before_any_request(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """A misspelt option is a UsageError at the call: nothing is sent, nothing written."""
    fault_server.add_file("/f.bin", b"x" * 1000)
    with pytest.raises(UsageError, match="did you mean 'connections'"):
        segdl.download(fault_server.url("/f.bin"), tmp_path / "f.bin", conections=4)
    assert fault_server.requests == []
    assert list(tmp_path.iterdir()) == []


def test_a_bad_job_fails_the_batch_before_its_first_file(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """download_many checks every job's options before starting any: a bad option in the
    last job raises at the call, and not one file has been requested."""
    for name in ("a", "b", "c"):
        fault_server.add_file(f"/{name}.bin", b"x" * 1000)
    jobs: list[Job | str] = [
        fault_server.url("/a.bin"),
        Job((fault_server.url("/b.bin"),), {"connections": 2}),
        Job((fault_server.url("/c.bin"),), {"checksum": "sha256=" + "0" * 64, "split": 3}),
    ]
    with pytest.raises(UsageError, match="unknown option 'split'"):
        download_many(jobs, directory=tmp_path)
    assert fault_server.requests == []
    assert list(tmp_path.iterdir()) == []


def test_a_file_cannot_set_what_the_batch_shares(tmp_path: Path) -> None:
    """The transport's settings (timeout, per-host cap, TLS, proxy) are the batch's: a job
    setting one is refused at submit, with the option named."""
    with Downloader(directory=tmp_path) as downloader, pytest.raises(UsageError) as caught:
        downloader.submit(Job(("http://127.0.0.1:9/x",), {"insecure": True}))
    assert "insecure" in str(caught.value)


def test_batch_options_are_checked_when_the_downloader_is_built(tmp_path: Path) -> None:
    """A Downloader with a bad option is refused before it starts anything."""
    with pytest.raises(UsageError, match="option connections cannot be"):
        Downloader(directory=tmp_path, connections="many")


def test_the_cli_defaults_are_the_options_defaults() -> None:
    """With no flags, the command line builds exactly DownloadOptions' defaults, and its
    help shows them: there is one place where a default is declared."""
    args = build_parser().parse_args(["http://example.org/f"])
    assert download_options(args) == DEFAULTS
    help_text = " ".join(build_parser().format_help().split())
    assert f"the User-Agent header (default: {DEFAULTS.user_agent})" in help_text
    assert f"connections to use at most (default: {DEFAULTS.connections})" in help_text
    assert "(default: 1M)" in help_text  # min_split_bytes, as the command line spells sizes


def test_the_cli_flags_become_options() -> None:
    """Each flag lands in its option, sizes parsed."""
    args = build_parser().parse_args(
        [
            "http://example.org/f",
            "-x3",
            "--min-split-size=2M",
            "--limit-rate=500K",
            "--no-resume",
            "--no-proxy-env",
            "--if-exists=skip",
            "-H",
            "X-A: 1",
            "--user-agent=ua/1",
        ]
    )
    options = download_options(args)
    assert (options.connections, options.min_split_bytes) == (3, 2 << 20)
    assert options.limit_rate_bytes_per_s == 500 << 10
    assert not options.resume and not options.use_proxy_env
    assert options.if_exists.value == "skip"
    assert (dict(options.headers), options.user_agent) == ({"X-A": "1"}, "ua/1")


def test_a_bad_flag_value_is_one_line_and_exit_2(fault_server: FaultServer) -> None:
    """A value the options refuse is the CLI's usage error (exit 2), one line, no request."""
    stderr = io.StringIO()
    code = main([fault_server.url("/f.bin"), "-x", "0"], stdout=io.StringIO(), stderr=stderr)
    assert code == 2
    assert stderr.getvalue() == "segdl: error: connections must be at least 1, not 0\n"
    assert [r for r in fault_server.requests if r.path == "/f.bin"] == []
