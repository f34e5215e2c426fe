"""segdl as pooch's downloader, against the fault server: pooch's own calls, pooch's checks."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pooch
import pytest
import requests

import segdl
from segdl.integrations.pooch import SegdlDownloader, resume_path
from tests.server import FaultServer
from tests.server.faults import Faults
from tests.stopping import stop_after

KIB = 1024
MIB = 1024 * KIB
MakeData = Callable[..., bytes]
# Small splits so that a file of a few MiB is fetched over several connections.
FAST = {"connections": 4, "min_split_bytes": 256 * KIB, "retry_wait_s": 0.01}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(directory: Path) -> list[str]:
    """Files in ``directory`` that are neither a finished download nor pooch's registry."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith((".segdl-", "tmp")))


def test_retrieve_writes_the_file_pooch_checks(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """pooch.retrieve with SegdlDownloader returns pooch's path holding the exact bytes, its
    hash checked by pooch, fetched in several ranges, with nothing left beside it."""
    data = make_data(3 * MIB)
    fault_server.add_file("/data/big.bin", data)
    path = pooch.retrieve(
        fault_server.url("/data/big.bin"),
        known_hash=f"sha256:{sha256(data)}",
        fname="big.bin",
        path=tmp_path,
        downloader=SegdlDownloader(**FAST),
    )
    assert Path(path) == tmp_path / "big.bin"
    assert Path(path).read_bytes() == data
    starts = {r.range for r in fault_server.requests if r.path == "/data/big.bin"}
    assert len(starts) >= 3, starts
    assert leftovers(tmp_path) == []


def test_a_wrong_known_hash_fails_as_pooch_documents(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A file whose hash is not the known one raises pooch's ValueError and is not kept,
    neither under its name nor as a partial download."""
    data = make_data(512 * KIB)
    fault_server.add_file("/f.bin", data)
    with pytest.raises(ValueError, match="does not match the known hash"):
        pooch.retrieve(
            fault_server.url("/f.bin"),
            known_hash=f"sha256:{'0' * 64}",
            fname="f.bin",
            path=tmp_path,
            downloader=SegdlDownloader(),
        )
    assert not (tmp_path / "f.bin").exists()
    assert leftovers(tmp_path) == []


def test_an_interrupted_retrieve_resumes_on_the_next_call(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A retrieve stopped part-way keeps its bytes under a name derived from the URL, not
    pooch's temporary name; the next retrieve fetches only the rest (the server's log)."""
    data = make_data(4 * MIB)
    url = fault_server.url("/f.bin")
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=MIB))
    cancel = stop_after(2 * MIB)
    with pytest.raises(segdl.Cancelled):
        pooch.retrieve(
            url, known_hash=f"sha256:{sha256(data)}", fname="f.bin", path=tmp_path,
            downloader=SegdlDownloader(cancel=cancel, progress=cancel.listener, connections=2,
                                       min_split_bytes=MIB),
        )  # fmt: skip
    partial = resume_path(tmp_path, url)
    assert partial.with_name(partial.name + ".part").exists()
    assert not (tmp_path / "f.bin").exists()
    assert 0 < fault_server.bytes_sent < len(data)

    _settle(fault_server)
    fault_server.set_faults("/f.bin", None)
    fault_server.clear_log()
    path = pooch.retrieve(
        url, known_hash=f"sha256:{sha256(data)}", fname="f.bin", path=tmp_path,
        downloader=SegdlDownloader(connections=2, min_split_bytes=MIB),
    )  # fmt: skip
    assert Path(path).read_bytes() == data
    assert fault_server.bytes_sent < len(data) - MIB
    assert all(r.range != "bytes=0-" for r in fault_server.requests)
    assert leftovers(tmp_path) == []


def test_a_retrieve_killed_with_sigkill_resumes_in_the_next_process(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A process killed (SIGKILL) in the middle of pooch.retrieve leaves a partial download
    the next process's retrieve of the same URL trusts: it fetches only the missing bytes
    and pooch's hash check passes."""
    data = make_data(6 * MIB)
    url = fault_server.url("/f.bin")
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=MIB))
    known = f"sha256:{sha256(data)}"
    script = (
        "import pooch\n"
        "from segdl.integrations.pooch import SegdlDownloader\n"
        f"pooch.retrieve({url!r}, known_hash={known!r}, fname='f.bin', path={str(tmp_path)!r},"
        " downloader=SegdlDownloader(connections=2, min_split_bytes=1 << 20))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    partial = resume_path(tmp_path, url)
    state = partial.with_name(partial.name + ".segdl-state")
    deadline = time.monotonic() + 20
    while not state.exists() and time.monotonic() < deadline:  # a checkpoint is on disk
        time.sleep(0.05)
    time.sleep(1.5)  # a save at most every second: by then one covers a second of bytes
    child.kill()
    assert child.wait(timeout=10) == -9
    assert state.exists() and not (tmp_path / "f.bin").exists()

    _settle(fault_server)
    fault_server.set_faults("/f.bin", None)
    fault_server.clear_log()
    path = pooch.retrieve(url, known_hash=known, fname="f.bin", path=tmp_path,
                          downloader=SegdlDownloader(connections=2))  # fmt: skip
    assert Path(path).read_bytes() == data
    assert fault_server.bytes_sent < len(data) - MIB
    # Nothing of segdl's is left; the killed pooch's own (empty) temporary file is.
    assert [n for n in leftovers(tmp_path) if n.startswith(".segdl-")] == []


def test_https_with_a_ca_bundle(
    tls_server: FaultServer, ca_bundle: str, make_data: MakeData, tmp_path: Path
) -> None:
    """Over HTTPS the downloader verifies the server against ca_bundle, for the download and
    for check_only; without it the certificate is refused (requests' SSLError for pooch)."""
    data = make_data(MIB)
    tls_server.add_file("/data/f.bin", data)
    store = pooch.create(path=tmp_path, base_url=tls_server.url("/data/"),
                         registry={"f.bin": f"sha256:{sha256(data)}"})  # fmt: skip
    trusted = SegdlDownloader(ca_bundle=ca_bundle, **FAST)
    assert store.is_available("f.bin", downloader=trusted) is True
    assert Path(store.fetch("f.bin", downloader=trusted)).read_bytes() == data
    (tmp_path / "f.bin").unlink()
    with pytest.raises(requests.exceptions.SSLError, match="certificate verify failed"):
        store.fetch("f.bin", downloader=SegdlDownloader())
    assert leftovers(tmp_path) == []


def test_two_processes_retrieving_one_file_into_one_cache_both_succeed(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Two processes (pytest-xdist workers, say) retrieving the same URL into the same cache
    at once both return the file, hash checked: the second waits for the first's partial
    download instead of failing on its lock or mixing bytes into it."""
    data = make_data(2 * MIB)
    url = fault_server.url("/f.bin")
    fault_server.add_file("/f.bin", data)
    # Slow enough (about a second) that the two overlap whatever their start-up times.
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=MIB))
    script = (
        "import pooch\n"
        "from segdl.integrations.pooch import SegdlDownloader\n"
        f"print(pooch.retrieve({url!r}, known_hash='sha256:{sha256(data)}', fname='f.bin',"
        f" path={str(tmp_path)!r}, downloader=SegdlDownloader(connections=2)))\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0, 0], outcomes
    assert [out.strip() for out, _ in outcomes] == [str(tmp_path / "f.bin")] * 2
    assert (tmp_path / "f.bin").read_bytes() == data
    assert leftovers(tmp_path) == []


def test_pooch_retries_resume_what_segdl_gave_up_on(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """With segdl's own retries used up, the failure is one pooch retries
    (retry_if_failed), and pooch's second attempt resumes instead of starting over."""
    data = make_data(2 * MIB)
    fault_server.add_file("/data/f.bin", data)
    fault_server.set_faults("/data/f.bin", Faults(reset_after=MIB, times=1))
    store = pooch.create(
        path=tmp_path,
        base_url=fault_server.url("/data/"),
        registry={"f.bin": f"sha256:{sha256(data)}"},
        retry_if_failed=1,
    )
    downloader = SegdlDownloader(connections=1, retries=0)
    assert Path(store.fetch("f.bin", downloader=downloader)).read_bytes() == data
    gets = [r for r in fault_server.requests if r.path == "/data/f.bin"]
    assert [r.range for r in gets][:1] == ["bytes=0-"]
    # The second attempt asks from where the durable bytes of the first one end.
    assert len(gets) == 2 and gets[1].range != "bytes=0-"
    assert 0 < gets[1].body_bytes_sent < len(data)


def test_pooch_fetch_with_a_registry_of_twenty_files(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Pooch.fetch over a registry of 20 files (one large enough to be split) gets every file
    right, each hash checked by pooch; a second fetch of all downloads nothing."""
    files = {f"file-{i:02d}.bin": make_data(4 * KIB * (i + 1), seed=i) for i in range(19)}
    files["large.bin"] = make_data(2 * MIB, seed=99)
    for name, data in files.items():
        fault_server.add_file(f"/data/{name}", data)
    store = pooch.create(
        path=tmp_path / "cache",
        base_url=fault_server.url("/data/"),
        registry={name: f"sha256:{sha256(data)}" for name, data in files.items()},
    )
    downloader = SegdlDownloader(**FAST)
    for name, data in files.items():
        assert Path(store.fetch(name, downloader=downloader)).read_bytes() == data
    large = {r.range for r in fault_server.requests if r.path == "/data/large.bin"}
    assert len(large) >= 2
    fault_server.clear_log()
    for name in files:
        store.fetch(name, downloader=downloader)
    assert fault_server.requests == []
    assert leftovers(tmp_path / "cache") == []


def test_check_only_answers_without_downloading(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Pooch.is_available through SegdlDownloader: True for a file the server has, after
    one byte at most; False for one it does not (404)."""
    fault_server.add_file("/data/there.bin", make_data(MIB))
    store = pooch.create(
        path=tmp_path,
        base_url=fault_server.url("/data/"),
        registry={"there.bin": None, "missing.bin": None},
    )
    downloader = SegdlDownloader()
    assert store.is_available("there.bin", downloader=downloader) is True
    assert store.is_available("missing.bin", downloader=downloader) is False
    there = [r for r in fault_server.requests if r.path == "/data/there.bin"]
    assert [(r.method, r.range) for r in there] == [("GET", "bytes=0-0")]
    assert there[0].body_bytes_sent == 1
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_fails_with_what_pooch_retries_on(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    """A 404 raises requests' HTTPError (what pooch's HTTPDownloader raises and its retry
    loop catches), carrying segdl's error as its cause."""
    with pytest.raises(requests.exceptions.HTTPError, match="404") as caught:
        pooch.retrieve(
            fault_server.url("/nothing.bin"), known_hash=None, path=tmp_path,
            downloader=SegdlDownloader(),
        )  # fmt: skip
    assert isinstance(caught.value.__cause__, segdl.HTTPStatusError)
    assert leftovers(tmp_path) == []


def test_an_open_file_object_receives_the_bytes(
    fault_server: FaultServer, make_data: MakeData
) -> None:
    """Called with a file object as output_file (pooch's interface allows it), the
    downloader writes the file's bytes into it."""
    data = make_data(MIB + 17)
    fault_server.add_file("/f.bin", data)
    sink = io.BytesIO()
    SegdlDownloader(**FAST)(fault_server.url("/f.bin"), sink, None)
    assert sink.getvalue() == data


def test_a_tqdm_like_progressbar_is_driven_to_the_full_size(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """A custom progress bar (pooch's convention: total, update, reset, close) gets the size,
    updates that add up to it, and is closed."""
    data = make_data(2 * MIB)
    fault_server.add_file("/f.bin", data)

    class Bar:
        total = 0
        count = 0
        closed = False

        def update(self, n: int) -> None:
            self.count += n

        def reset(self) -> None:
            self.count = 0

        def close(self) -> None:
            self.closed = True

    bar = Bar()
    pooch.retrieve(
        fault_server.url("/f.bin"), known_hash=f"sha256:{sha256(data)}", path=tmp_path,
        downloader=SegdlDownloader(progressbar=bar, **FAST),
    )  # fmt: skip
    assert (bar.total, bar.count, bar.closed) == (len(data), len(data), True)


def test_the_library_prints_nothing_unless_a_bar_is_asked_for(
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Without progressbar nothing reaches stdout or stderr; with progressbar=True segdl's
    plain progress lines go to stderr when stderr is not a terminal."""
    data = make_data(MIB)
    fault_server.add_file("/f.bin", data)
    pooch.retrieve(fault_server.url("/f.bin"), known_hash=None, fname="a", path=tmp_path,
                   downloader=SegdlDownloader())  # fmt: skip
    assert capfd.readouterr() == ("", "")
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=4 * MIB))
    pooch.retrieve(fault_server.url("/f.bin"), known_hash=None, fname="b", path=tmp_path,
                   downloader=SegdlDownloader(progressbar=True))  # fmt: skip
    out, err = capfd.readouterr()
    assert out == ""
    assert "segdl:" in err and "MiB" in err


def test_progressbar_true_draws_segdls_bar_on_a_terminal(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """On a terminal (a pty here) progressbar=True draws the CLI's rich bar: bytes of the
    total and the connection count, ending at the full size."""
    data = make_data(2 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=2 * MIB))
    script = textwrap.dedent(
        f"""
        import pooch
        from segdl.integrations.pooch import SegdlDownloader
        pooch.retrieve({fault_server.url("/f.bin")!r}, known_hash=None, fname="f.bin",
                       path={str(tmp_path)!r}, downloader=SegdlDownloader(progressbar=True))
        """
    )
    screen = _run_on_a_pty([sys.executable, "-c", script])
    assert "2.0/2.0 MiB" in screen, screen
    assert "conn" in screen
    assert "f.bin" in screen and ".segdl-" not in screen  # the file's name, not segdl's own
    assert (tmp_path / "f.bin").read_bytes() == data


def test_an_unsupported_pooch_version_fails_at_import(tmp_path: Path) -> None:
    """With pooch 1.0 installed (a fake distribution first on the path), importing the
    integration fails with one ImportError naming the version, the range and the extra."""
    fake = tmp_path / "pooch-1.0.0.dist-info"
    fake.mkdir()
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: pooch\nVersion: 1.0.0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", "import segdl.integrations.pooch"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: segdl.integrations.pooch supports pooch>=1.6,<2, but pooch 1.0.0 is "
        "installed (pip install 'segdl[pooch]')"
    )


def _settle(server: FaultServer) -> None:
    """Let the server log the responses cut by the interruption."""
    deadline = time.monotonic() + 5
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.02)


def _run_on_a_pty(argv: list[str]) -> str:
    """Run ``argv`` with stderr on a pseudo-terminal of 100 columns; what it drew there."""
    import fcntl
    import pty
    import struct
    import termios

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen(argv, stderr=child_fd, stdout=subprocess.DEVNULL, env=env)
    os.close(child_fd)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode("utf-8", "replace")


def test_a_url_that_is_not_http_is_refused_as_download_refuses_it(tmp_path: Path) -> None:
    """Another scheme, or a URL that does not parse, is the UsageError download() gives:
    nothing is sent, nothing written."""
    downloader = SegdlDownloader()
    for url in ("ftp://127.0.0.1/f", "http://[::1/f"):
        with pytest.raises(segdl.UsageError, match="invalid URL"):
            downloader(url, str(tmp_path / "f"), None)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_option_fails_where_it_is_given() -> None:
    """A misspelt option is a UsageError (a ValueError) when the downloader is made, and
    the downloader's own choices (the output path) cannot be given."""
    with pytest.raises(segdl.UsageError, match="did you mean 'connections'"):
        SegdlDownloader(conections=4)
    with pytest.raises(TypeError, match="dest"):
        SegdlDownloader(dest="x")
