"""Hostile servers: escapes in server text, trickled heads and bodies, ranges that close after
their head, answers of the wrong class, twin outputs in a batch (issue 19)."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from segdl.cli.exitcodes import ExitCode
from segdl.cli.main import main
from segdl.net.head import HeadReader, HeadTimeout
from tests.server import FaultServer
from tests.server.faults import Faults
from tests.server.records import RequestRecord

MakeData = Callable[..., bytes]

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


def test_trickled_head_times_out(fault_server: FaultServer, tmp_path: Path) -> None:
    """An endless head trickled at 20 bytes/s ends the download within 10 s with --timeout 2."""
    fault_server.add_file("/f", b"x" * 1000)
    fault_server.set_faults("/f", Faults(endless_head=True, head_bytes_per_s=20))
    began = time.monotonic()
    code, _, err = run_cli("--timeout", "2", "-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert time.monotonic() - began < 10
    assert code == ExitCode.NETWORK, err
    assert "response head not complete within 2 s" in err
    assert not (tmp_path / "f").exists()


def test_slow_head_within_the_timeout_is_fine(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A head that arrives slowly but whole within --timeout is believed as usual."""
    data = make_data(300_000)
    fault_server.add_file("/f", data)
    fault_server.set_faults("/f", Faults(head_bytes_per_s=1000, times=1))
    code, _, err = run_cli(
        "-q", "--timeout", "3", "-o", str(tmp_path / "f"), fault_server.url("/f")
    )
    assert code == ExitCode.OK, err
    assert (tmp_path / "f").read_bytes() == data


def test_trickled_body_counts_as_stalled(fault_server: FaultServer, tmp_path: Path) -> None:
    """A body trickling under 1 KiB per --timeout fails as a stall: not progress, not forever."""
    fault_server.add_file("/f", b"x" * 100_000)
    fault_server.set_faults("/f", Faults(throttle_bytes_per_s=200))
    argv = ["--timeout", "2", "--retries", "1", "--retry-wait", "0", "-x", "1"]
    began = time.monotonic()
    code, _, err = run_cli(*argv, "-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert time.monotonic() - began < 15
    assert code == ExitCode.NETWORK, err
    assert "body trickled" in err


def test_lowest_speed_limit_raises_the_body_floor(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """With --lowest-speed-limit, a body slower than it for --timeout counts as stalled too."""
    fault_server.add_file("/f", b"x" * 1_000_000)
    fault_server.set_faults("/f", Faults(throttle_bytes_per_s=8000))
    argv = ["--timeout", "1", "--retries", "0", "-x", "1", "--lowest-speed-limit", "64K"]
    code, _, err = run_cli(*argv, "-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert code == ExitCode.NETWORK, err
    assert "body trickled" in err and "under 65536 per 1 s" in err


def _range_past_zero(request: RequestRecord) -> bool:
    return request.range is not None and not request.range.startswith("bytes=0-")


@pytest.mark.parametrize("run", range(3))
def test_ranges_closed_after_their_head_still_give_the_file(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, run: int
) -> None:
    """Every 206 past byte 0 closing after its head: the file still comes, by one plain
    stream that keeps the bytes already in, after a bounded number of requests; no traceback
    (the abort of a released response once raised RuntimeError here)."""
    data = make_data(8 * 1024 * 1024, seed=run)
    fault_server.add_file("/f", data)
    fault_server.set_faults("/f", Faults(truncate_after=0, when=_range_past_zero))
    out = tmp_path / "f"
    code, _, err = run_cli(
        "-x", "8", "--retry-wait", "0.01", "-o", str(out), fault_server.url("/f")
    )
    assert code == ExitCode.OK, err
    assert out.read_bytes() == data
    assert "one plain stream" in err or "ranged answers keep ending" in err
    assert len(fault_server.requests) <= 16
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "faults",
    [
        Faults(extra_headers=(("Content-Length", "8192"),)),  # a second field, another value
        Faults(no_content_length=True, extra_headers=(("Content-Length", "4096, 8192"),)),
    ],
    ids=["two-fields", "one-list"],
)
def test_conflicting_content_length_exits_7(
    fault_server: FaultServer, tmp_path: Path, faults: Faults
) -> None:
    """Two Content-Length values that differ are an answer that cannot be believed: exit 7."""
    fault_server.add_file("/f", b"x" * 4096)
    fault_server.set_faults("/f", faults)
    code, _, err = run_cli("-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert code == ExitCode.PROTOCOL, err
    assert "Content-Length" in err and err.count("\n") == 1
    assert not (tmp_path / "f").exists()


def test_a_head_with_too_many_header_fields_exits_7_unretried(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """More header fields than http.client reads is the server's fault: exit 7 at once,
    one line naming it, no retry (recognised by its type, not its message)."""
    fault_server.add_file("/f", b"x" * 4096)
    many = tuple((f"X-Field-{n}", "v") for n in range(120))
    fault_server.set_faults("/f", Faults(extra_headers=many))
    code, _, err = run_cli("--retry-wait", "0", "-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert code == ExitCode.PROTOCOL, err
    assert "header fields" in err and err.count("\n") == 1
    assert len(fault_server.requests) == 1
    assert not (tmp_path / "f").exists()


def test_proxy_407_without_credentials_exits_6(fault_server: FaultServer, tmp_path: Path) -> None:
    """A forwarding proxy answering 407 when no proxy credentials were given: exit 6."""
    challenge = (("Proxy-Authenticate", 'Basic realm="proxy"'),)
    fault_server.set_faults("/f", Faults(status=407, extra_headers=challenge))
    proxy = fault_server.base_url
    url = "http://127.0.0.1:9/f"  # never dialled: the proxy answers for it
    argv = ["--no-proxy-env", "--proxy", proxy, "--retries", "0", "-o", str(tmp_path / "f"), url]
    code, _, err = run_cli(*argv)
    assert code == ExitCode.AUTH, err
    assert "requires authentication (407)" in err


def test_twin_outputs_in_a_batch_are_named_as_such(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Two entries of one batch naming the same output: the second fails saying so, not with
    'another segdl (pid N)' where N is the batch's own pid; the first still completes."""
    data = make_data(400_000)
    fault_server.add_file("/a", data)
    fault_server.set_faults("/a", Faults(throttle_bytes_per_s=400_000))
    url = fault_server.url("/a")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{url}\n  out=same.bin\n{url}\n  out=same.bin\n")
    code, _, err = run_cli("-j", "2", "-d", str(tmp_path), "-i", str(listing))
    assert code == ExitCode.LOCKED, err
    assert "two entries of this batch name the same file" in err
    assert "pid" not in err
    assert (tmp_path / "same.bin").read_bytes() == data


def test_head_reader_raises_at_the_deadline() -> None:
    """Past the deadline the next read that must wait raises, whatever arrived before."""
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(5.0)
        fp = left.makefile("rb")
        reader = HeadReader(fp, left, 0.3)
        right.sendall(b"HTTP/1.1 200 OK\r\nX: ")
        assert reader.readline(100) == b"HTTP/1.1 200 OK\r\n"
        with pytest.raises(HeadTimeout):
            reader.readline(100)
        fp.close()


def test_an_unexpected_exception_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Whatever escapes the library (a bug), the CLI prints one line and exits 1."""
    import segdl

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Cannot shutdown as connection has already been released to the pool")

    monkeypatch.setattr(segdl, "download", broken)
    code, _, err = run_cli("-o", str(tmp_path / "f"), "http://127.0.0.1:9/f")
    assert code == ExitCode.GENERIC
    assert err.count("\n") == 1 and "unexpected RuntimeError" in err


def _disposition(name: str) -> Faults:
    from urllib.parse import quote

    value = f"attachment; filename*=UTF-8''{quote(name)}"
    return Faults(extra_headers=(("Content-Disposition", value),))


def _siblings_left(directory: Path) -> list[str]:
    return sorted(
        p.name for p in directory.iterdir() if p.name.startswith(".") or ".segdl" in p.name
    )


def test_a_230_byte_server_name_is_saved_whole(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A legal 230-byte name: saved under that name; its lock, state and temporary siblings fit."""
    name = "B" * 226 + ".bin"
    data = make_data(3 * 1024 * 1024)
    fault_server.add_file("/f", data)
    fault_server.set_faults("/f", _disposition(name))
    code, _, err = run_cli("-x", "4", "-d", str(tmp_path), fault_server.url("/f"))
    assert code == ExitCode.OK, err
    assert (tmp_path / name).read_bytes() == data
    assert _siblings_left(tmp_path) == []


def test_a_250_byte_server_name_is_cut_on_a_character_keeping_its_extension(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A 250-byte UTF-8 name is shortened so its longest sibling fits NAME_MAX: whole
    characters, extension kept, and the file is saved."""
    name = "é" * 122 + "xx.bin"
    assert len(name.encode()) == 250
    data = make_data(100_000)
    fault_server.add_file("/f", data)
    fault_server.set_faults("/f", _disposition(name))
    code, _, err = run_cli("-d", str(tmp_path), fault_server.url("/f"))
    assert code == ExitCode.OK, err
    (saved,) = list(tmp_path.iterdir())
    assert saved.read_bytes() == data
    assert saved.name.endswith(".bin") and saved.name.startswith("é" * 100)
    encoded = saved.name.encode()
    assert len(encoded) + len(".segdl-state") <= 255 and len(encoded) >= 230
    assert encoded.decode() == saved.name


def test_a_user_output_name_too_long_for_its_siblings_exits_3(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """-o with a 250-byte name: exit 3 naming the limit, nothing fetched, nothing left."""
    fault_server.add_file("/f", b"x" * 1000)
    out = tmp_path / ("C" * 246 + ".bin")
    code, _, err = run_cli("-o", str(out), fault_server.url("/f"))
    assert code == ExitCode.FILE_IO, err
    assert "250 bytes" in err and "255-byte name limit" in err and "at most 243" in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [] and fault_server.requests == []


def test_a_user_output_name_at_the_limit_is_saved(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """-o with the longest name whose siblings fit (243 bytes on a 255-byte file system) works,
    resume state and lock included."""
    data = make_data(2 * 1024 * 1024)
    fault_server.add_file("/f", data)
    out = tmp_path / ("D" * 239 + ".bin")
    code, _, err = run_cli("-x", "4", "-o", str(out), fault_server.url("/f"))
    assert code == ExitCode.OK, err
    assert out.read_bytes() == data
    assert _siblings_left(tmp_path) == []


def test_a_trickled_range_then_an_honest_one_gives_the_exact_file(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path, body_path: str
) -> None:
    """A range failed for trickling is fetched again without a stale byte: the verdict comes
    before a read, never after bytes went into the buffer or the splice pipe (found by
    bench/chaos.py: the pipe kept the trickled bytes and wrote them into the next range)."""
    data = make_data(700 * 1024)
    fault_server.add_file("/f", data)
    fault_server.set_faults("/f", Faults(throttle_bytes_per_s=200, times=2))
    argv = ["-q", "--timeout", "1", "--retry-wait", "0.01", "-x", "4"]
    code, _, err = run_cli(*argv, "-o", str(tmp_path / "f"), fault_server.url("/f"))
    assert code == ExitCode.OK, err
    assert (tmp_path / "f").read_bytes() == data
