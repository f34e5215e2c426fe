"""segdl as an fsspec filesystem, against the fault server, side by side with fsspec's own
HTTPFileSystem for the same URLs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import pandas
import pytest
from fsspec.implementations.http import HTTPFileSystem

import segdl
from segdl.integrations.fsspec import SegdlFile, SegdlFileSystem
from tests.integration.test_pooch import stop_after
from tests.server import FaultServer
from tests.server.faults import Faults

KIB = 1024
MIB = 1024 * KIB
MakeData = Callable[..., bytes]
FAST = {"connections": 4, "min_split_bytes": 256 * KIB, "retry_wait_s": 0.01}


@pytest.fixture
def fs() -> Iterator[SegdlFileSystem]:
    """A fresh segdl filesystem (no instance shared between tests)."""
    filesystem = fsspec.filesystem("segdl", skip_instance_cache=True, **FAST)
    assert isinstance(filesystem, SegdlFileSystem)
    yield filesystem
    filesystem.requester.close()


@pytest.fixture
def http_fs() -> HTTPFileSystem:
    """fsspec's own HTTP filesystem, to compare with."""
    return HTTPFileSystem(skip_instance_cache=True)


def ranges_of(server: FaultServer, path: str) -> list[str | None]:
    return [r.range for r in server.requests if r.path == path]


def test_get_of_twenty_urls_into_a_directory(
    fault_server: FaultServer, make_data: MakeData, fs: SegdlFileSystem, tmp_path: Path
) -> None:
    """filesystem("segdl").get([20 URLs], dir) writes every file under its URL's name, byte
    for byte; the large ones come in several ranges (the server's log)."""
    files = {f"small-{i:02d}.bin": make_data(3 * KIB * (i + 1), seed=i) for i in range(17)}
    files.update({f"large-{i}.bin": make_data(2 * MIB + i, seed=100 + i) for i in range(3)})
    for name, data in files.items():
        fault_server.add_file(f"/d/{name}", data)
    fs.get([fault_server.url(f"/d/{name}") for name in files], str(tmp_path / "out") + "/")
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data, name
    for i in range(3):
        asked = ranges_of(fault_server, f"/d/large-{i}.bin")
        assert len(set(asked)) >= 3, asked
    assert sorted(os.listdir(tmp_path / "out")) == sorted(files)


def test_get_with_segdl_protocol_urls_and_a_callback(
    fault_server: FaultServer, make_data: MakeData, fs: SegdlFileSystem, tmp_path: Path
) -> None:
    """segdl+http:// URLs name the same files; fsspec's callback hears of every file."""
    files = {f"f{i}.bin": make_data(10 * KIB, seed=i) for i in range(3)}
    for name, data in files.items():
        fault_server.add_file(f"/{name}", data)
    seen: list[int] = []
    hooks = {"count": lambda size, value, **_: seen.append(value)}
    callback = fsspec.callbacks.Callback(hooks=hooks)
    urls = ["segdl+" + fault_server.url(f"/{name}") for name in files]
    fs.get(urls, str(tmp_path) + "/", callback=callback)
    assert {n: (tmp_path / n).read_bytes() for n in files} == files
    assert callback.size == 3 and seen[-1] == 3


def test_open_seek_read_uses_ranged_requests(
    fault_server: FaultServer, make_data: MakeData, fs: SegdlFileSystem
) -> None:
    """open(url).seek(n); read(k) returns bytes [n, n+k), fetched by a range request for
    that block, not the whole file (the server's log)."""
    data = make_data(8 * MIB)
    fault_server.add_file("/f.bin", data)
    n, k = 5 * MIB + 123, 1000
    with fs.open(fault_server.url("/f.bin"), block_size=64 * KIB) as f:
        assert isinstance(f, SegdlFile)
        f.seek(n)
        assert f.read(k) == data[n : n + k]
        assert f.tell() == n + k
        f.seek(-10, 2)
        assert f.read() == data[-10:]
    asked = ranges_of(fault_server, "/f.bin")
    assert asked[0] == "bytes=0-0"  # what info() needed: the size and validators
    # One request for the block at n (the read, and the read-ahead of one block size).
    assert f"bytes={n}-{n + k + 64 * KIB - 1}" in asked
    assert fault_server.bytes_sent < 512 * KIB


def test_reading_a_whole_file_uses_many_connections(
    fault_server: FaultServer, make_data: MakeData, fs: SegdlFileSystem
) -> None:
    """read() of a whole file larger than a block is one segdl download over several
    connections (the server's log), not a block at a time; later seeks read from the cache
    as before."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    with fs.open(fault_server.url("/f.bin"), block_size=MIB) as f:
        assert f.read() == data
        assert f.tell() == len(data)
        f.seek(100)
        assert f.read(10) == data[100:110]
    asked = ranges_of(fault_server, "/f.bin")
    assert "bytes=0-" in asked and len(set(asked)) >= 4, asked


def test_fsspec_open_with_a_segdl_url(fault_server: FaultServer, make_data: MakeData) -> None:
    """fsspec.open("segdl+http://...") reaches the segdl filesystem through the entry point
    and reads the right bytes; http:// stays fsspec's own HTTPFileSystem."""
    data = make_data(300 * KIB)
    fault_server.add_file("/f.bin", data)
    with fsspec.open("segdl+" + fault_server.url("/f.bin"), block_size=32 * KIB) as f:
        f.seek(1000)
        assert f.read(50_000) == data[1000:51_000]
    assert fsspec.get_filesystem_class("segdl+https") is SegdlFileSystem
    assert fsspec.get_filesystem_class("segdl") is SegdlFileSystem
    assert fsspec.get_filesystem_class("http") is HTTPFileSystem


def test_pandas_read_csv_through_the_filesystem(fault_server: FaultServer) -> None:
    """pandas.read_csv("segdl+http://...csv") parses the CSV the server holds."""
    rows = ["name,size"] + [f"file-{i},{i * 1024}" for i in range(500)]
    fault_server.add_file("/t.csv", ("\n".join(rows) + "\n").encode(), content_type="text/csv")
    frame = pandas.read_csv("segdl+" + fault_server.url("/t.csv"))
    assert list(frame.columns) == ["name", "size"]
    assert len(frame) == 500
    assert frame["size"].sum() == sum(i * 1024 for i in range(500))
    assert frame.iloc[7]["name"] == "file-7"


def test_info_is_what_http_filesystem_says(
    fault_server: FaultServer, fs: SegdlFileSystem, http_fs: HTTPFileSystem
) -> None:
    """info() gives the same dict as HTTPFileSystem.info for a file, a redirected file, a
    file without validators and a text file."""
    fault_server.add_file("/a.bin", b"x" * 5000)
    fault_server.add_file("/t.txt", b"hello\n", content_type="text/plain; charset=utf-8")
    fault_server.add_file("/bare.bin", b"y" * 10, etag=None, last_modified=None)
    fault_server.add_redirect("/moved", "/a.bin")
    for path in ("/a.bin", "/t.txt", "/bare.bin", "/moved"):
        url = fault_server.url(path)
        assert fs.info(url) == http_fs.info(url), path
    assert fs.info(fault_server.url("/moved"))["url"] == fault_server.url("/a.bin")


def test_cat_file_is_what_http_filesystem_gives(
    fault_server: FaultServer, make_data: MakeData, fs: SegdlFileSystem, http_fs: HTTPFileSystem
) -> None:
    """cat_file, whole and in ranges (negative and open-ended ones too), returns the bytes
    HTTPFileSystem returns for the same arguments."""
    data = make_data(MIB + 77)
    fault_server.add_file("/f.bin", data)
    url = fault_server.url("/f.bin")
    assert fs.cat_file(url) == data
    for start, end in [(0, 10), (100, 5000), (MIB, None), (-100, None), (10, -10), (5, 5)]:
        assert fs.cat_file(url, start, end) == http_fs.cat_file(url, start, end), (start, end)
        assert fs.cat_file(url, start, end) == data[start:end]


def test_ls_lists_the_links_http_filesystem_lists(
    fault_server: FaultServer, fs: SegdlFileSystem, http_fs: HTTPFileSystem
) -> None:
    """ls() of an HTML index finds the links HTTPFileSystem finds (relative, absolute,
    sub-directories, not the parent), with and without details."""
    base = fault_server.url("/dir/")
    page = (
        '<html><body><a href="a.bin">a</a> <a href="/dir/b.bin">b</a>'
        f'<a href="{base}sub/">sub</a> <a href="../">up</a> <A HREF="c.csv">c</A>'
        f" see {base}d.bin and http://elsewhere.example/x</body></html>"
    )
    fault_server.add_file("/dir/", page.encode(), content_type="text/html")
    fault_server.add_file("/dir/a.bin", b"a")
    assert fs.ls(base, detail=False) == http_fs.ls(base, detail=False)
    detailed = sorted(fs.ls(base), key=lambda e: e["name"])
    assert detailed == sorted(http_fs.ls(base), key=lambda e: e["name"])
    names = ("a.bin", "b.bin", "sub/", "c.csv", "d.bin")
    assert {e["name"] for e in detailed} == {base + n for n in names}
    assert fs.ls(fault_server.url("/dir/a.bin")) == http_fs.ls(fault_server.url("/dir/a.bin")) == []


def test_a_missing_url_is_file_not_found_as_with_http_filesystem(
    fault_server: FaultServer, fs: SegdlFileSystem, http_fs: HTTPFileSystem, tmp_path: Path
) -> None:
    """A 404 raises FileNotFoundError from info, open, cat_file, ls and get_file, as it does
    with HTTPFileSystem; exists() is False."""
    url = fault_server.url("/missing.bin")
    for call in (fs.info, fs.open, fs.cat_file, fs.ls, http_fs.info, http_fs.cat_file, http_fs.ls):
        with pytest.raises(FileNotFoundError):
            call(url)
    with pytest.raises(FileNotFoundError):
        fs.get_file(url, str(tmp_path / "x"))
    assert fs.exists(url) is False and http_fs.exists(url) is False
    assert not (tmp_path / "x").exists()


def test_an_interrupted_get_file_resumes(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """get_file stopped part-way leaves a resumable partial download at the local path
    (nothing under the final name); the next get_file fetches only what is missing."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(throttle_bytes_per_s=MIB))
    cancel = stop_after(2 * MIB)
    stopping = SegdlFileSystem(
        skip_instance_cache=True, cancel=cancel, progress=cancel.listener, connections=2
    )
    target = tmp_path / "f.bin"
    with pytest.raises(segdl.Cancelled):
        stopping.get_file(fault_server.url("/f.bin"), str(target))
    assert not target.exists() and (tmp_path / "f.bin.part").exists()
    _settle(fault_server)
    fault_server.set_faults("/f.bin", None)
    fault_server.clear_log()
    SegdlFileSystem(skip_instance_cache=True, connections=2).get_file(
        fault_server.url("/f.bin"), str(target)
    )
    assert target.read_bytes() == data
    assert fault_server.bytes_sent < len(data) - MIB
    assert "bytes=0-" not in ranges_of(fault_server, "/f.bin")


def test_a_file_that_changes_while_open_is_never_mixed(
    fault_server: FaultServer, make_data: MakeData, fs: SegdlFileSystem
) -> None:
    """Blocks read after the remote file changed fail with RemoteChanged instead of
    returning bytes of the new version after those of the old."""
    old, new = make_data(MIB, seed=1), make_data(MIB, seed=2)
    fault_server.add_file("/f.bin", old)
    with fs.open(fault_server.url("/f.bin"), block_size=64 * KIB, cache_type="none") as f:
        assert f.read(1000) == old[:1000]
        fault_server.replace_file("/f.bin", new)
        f.seek(512 * KIB)
        with pytest.raises(segdl.RemoteChanged):
            f.read(1000)


def test_a_server_without_ranges_still_opens_and_reads(
    fault_server: FaultServer, make_data: MakeData, fs: SegdlFileSystem
) -> None:
    """A server that ignores Range gets one download; the file opened is that download,
    seekable, and its name is gone from the disk."""
    data = make_data(600 * KIB)
    fault_server.add_file("/f.bin", data)
    fault_server.set_faults("/f.bin", Faults(ignore_range=True))
    assert fs.info(fault_server.url("/f.bin"))["partial"] is False
    with fs.open(fault_server.url("/f.bin")) as f:
        assert not isinstance(f, SegdlFile)
        f.seek(1234)
        assert f.read(10) == data[1234:1244]
        assert not os.path.exists(f.name)


def test_get_file_into_a_file_object(
    fault_server: FaultServer, make_data: MakeData, fs: SegdlFileSystem
) -> None:
    """get_file with an open binary file as the local side writes the bytes into it."""
    data = make_data(MIB + 3)
    fault_server.add_file("/f.bin", data)
    sink = io.BytesIO()
    fs.get_file(fault_server.url("/f.bin"), sink)
    assert sink.getvalue() == data


def test_the_https_opt_in_puts_segdl_behind_plain_urls(
    fault_server: FaultServer, make_data: MakeData
) -> None:
    """After the documented one-line opt-in (register_implementation(..., clobber=True)),
    fsspec.open of a plain URL goes through segdl: its User-Agent is in the server's log."""
    data = make_data(100 * KIB)
    fault_server.add_file("/f.bin", data)
    script = textwrap.dedent(
        f"""
        import fsspec
        from segdl.integrations.fsspec import SegdlFileSystem
        fsspec.register_implementation("http", SegdlFileSystem, clobber=True)
        with fsspec.open({fault_server.url("/f.bin")!r}) as f:
            f.seek(100)
            print(f.read(16).hex(), type(f.fs).__name__)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.split() == [data[100:116].hex(), "SegdlFileSystem"]
    agents = {r.header("User-Agent") for r in fault_server.requests}
    assert agents == {f"segdl/{segdl.__version__}"}


def test_an_unsupported_fsspec_version_fails_at_import(tmp_path: Path) -> None:
    """With fsspec 2022.1.0 installed (a fake distribution first on the path), importing the
    integration fails with one ImportError naming the version, the range and the extra."""
    fake = tmp_path / "fsspec-2022.1.0.dist-info"
    fake.mkdir()
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: fsspec\nVersion: 2022.1.0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", "import segdl.integrations.fsspec"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: segdl.integrations.fsspec supports fsspec>=2023.1.0, but fsspec "
        "2022.1.0 is installed (pip install 'segdl[fsspec]')"
    )


def test_import_segdl_imports_neither_integration() -> None:
    """import segdl (and a download) load neither pooch, fsspec nor the integrations."""
    script = (
        "import sys, segdl; segdl.download; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pooch', 'fsspec', 'requests')"
        " or m.startswith('segdl.integrations')))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


def _settle(server: FaultServer) -> None:
    deadline = time.monotonic() + 5
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_body_too_large_for_a_page_of_links_is_not_read_whole(
    fault_server: FaultServer, fs: SegdlFileSystem
) -> None:
    """ls() reads at most 16 MiB of a body looking for links (HTTPFileSystem reads it all):
    a larger one has no links, and isdir() of it is False without holding it in memory."""
    page = b'<a href="x.bin">x</a>' + b" " * (17 * MIB)
    fault_server.add_file("/big/", page, content_type="text/html")
    url = fault_server.url("/big/")
    assert fs.ls(url) == [] and fs.isdir(url) is False
    # The length says it is too large: the answers were closed, not read to their end.
    sent = [r.body_bytes_sent for r in fault_server.requests]
    assert sent and all(n < len(page) // 2 for n in sent), sent


def test_a_recursive_get_of_an_index_writes_what_find_lists(
    fault_server: FaultServer,
    make_data: MakeData,
    fs: SegdlFileSystem,
    http_fs: HTTPFileSystem,
    tmp_path: Path,
) -> None:
    """get(index_url, dir, recursive=True) writes each file find() lists (find() is the same
    as HTTPFileSystem's) under its relative name, and makes the listed directories."""
    base = fault_server.url("/tree/")
    index = b'<a href="a.bin">a</a> <a href="sub/">s</a> <a href="c.bin">c</a>'
    fault_server.add_file("/tree/", index, content_type="text/html")
    fault_server.add_file("/tree/sub/", b'<a href="b.bin">b</a>', content_type="text/html")
    files = {"a.bin": make_data(300 * KIB, seed=1), "c.bin": make_data(900 * KIB, seed=3)}
    for name, data in files.items():
        fault_server.add_file(f"/tree/{name}", data)
    assert fs.find(base) == http_fs.find(base) == [base + "a.bin", base + "c.bin"]
    fs.get(base, str(tmp_path / "out"), recursive=True)
    written = {
        str(p.relative_to(tmp_path / "out")): p.read_bytes()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file()
    }
    assert written == files
    assert (tmp_path / "out" / "sub").is_dir()


def test_https_with_a_ca_bundle(
    tls_server: FaultServer, ca_bundle: str, make_data: MakeData, tmp_path: Path
) -> None:
    """With ca_bundle the filesystem verifies the server for info, ranged reads and get;
    without it the certificate is refused (info: FileNotFoundError, as HTTPFileSystem says
    of any failure; get: segdl's TLSError)."""
    data = make_data(2 * MIB)
    tls_server.add_file("/f.bin", data)
    url = tls_server.url("/f.bin")
    fs = SegdlFileSystem(skip_instance_cache=True, ca_bundle=ca_bundle, **FAST)
    assert fs.info(url)["size"] == len(data)
    with fs.open("segdl+" + url, block_size=64 * KIB) as f:
        f.seek(MIB)
        assert f.read(100) == data[MIB : MIB + 100]
    fs.get([url], str(tmp_path) + "/")
    assert (tmp_path / "f.bin").read_bytes() == data
    untrusting = SegdlFileSystem(skip_instance_cache=True)
    with pytest.raises(FileNotFoundError) as caught:
        untrusting.info(url)
    assert isinstance(caught.value.__cause__, segdl.TLSError)
    with pytest.raises(segdl.TLSError):
        untrusting.get_file(url, str(tmp_path / "g.bin"))


def test_chained_caches_and_pickling_work_as_with_any_filesystem(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """ "simplecache::segdl+http://..." fills its cache with segdl's ranged download; the
    filesystem survives pickling (as dask ships it to workers) and still reads."""
    import pickle

    data = make_data(3 * MIB)
    fault_server.add_file("/f.bin", data)
    url = "simplecache::segdl+" + fault_server.url("/f.bin")
    with fsspec.open(url, simplecache={"cache_storage": str(tmp_path)}) as f:
        assert f.read() == data
    assert len(set(ranges_of(fault_server, "/f.bin"))) >= 3  # the cache was filled by ranges
    fs = SegdlFileSystem(skip_instance_cache=True, **FAST)
    again = pickle.loads(pickle.dumps(fs))
    assert isinstance(again, SegdlFileSystem)
    assert again.cat_file(fault_server.url("/f.bin"), 10, 20) == data[10:20]


def test_credentials_go_to_the_urls_origin_only(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """An Authorization header given to the filesystem reaches the URL's origin on info,
    ranged reads and get, and never the other origin a redirect leads to."""
    data = make_data(2 * MIB)
    with FaultServer() as elsewhere:
        elsewhere.add_file("/f.bin", data)
        fault_server.add_redirect("/f.bin", elsewhere.url("/f.bin"))
        fs = SegdlFileSystem(skip_instance_cache=True, headers={"Authorization": "Bearer s3cret"},
                             **FAST)  # fmt: skip
        url = fault_server.url("/f.bin")
        assert fs.info(url)["url"] == elsewhere.url("/f.bin")
        with fs.open(url, block_size=64 * KIB) as f:
            f.seek(MIB)
            assert f.read(10) == data[MIB : MIB + 10]
        fs.get_file(url, str(tmp_path / "f.bin"))
        assert (tmp_path / "f.bin").read_bytes() == data
        assert {r.header("Authorization") for r in fault_server.requests} == {"Bearer s3cret"}
        assert elsewhere.requests and all(r.header("Authorization") is None
                                          for r in elsewhere.requests)  # fmt: skip


def test_a_url_that_is_not_http_is_refused_as_download_refuses_it() -> None:
    """Another scheme, or a URL that does not parse, is the UsageError download() gives."""
    fs = SegdlFileSystem(skip_instance_cache=True)
    for url in ("ftp://127.0.0.1/f", "segdl+http://[::1/f"):
        with pytest.raises(segdl.UsageError, match="invalid URL"):
            fs.cat_file(url)


def test_an_unknown_option_fails_where_it_is_given() -> None:
    """A misspelt option is a UsageError when the filesystem is made, naming the option."""
    with pytest.raises(segdl.UsageError, match="did you mean 'connections'"):
        SegdlFileSystem(skip_instance_cache=True, conections=4)


def test_a_get_with_a_missing_url_raises_and_keeps_the_others(
    fault_server: FaultServer, make_data: MakeData, fs: SegdlFileSystem, tmp_path: Path
) -> None:
    """get() of several URLs, one of them missing, writes the others and then raises
    FileNotFoundError for the missing one (as HTTPFileSystem's get raises for it)."""
    files = {f"f{i}.bin": make_data(50 * KIB, seed=i) for i in range(3)}
    for name, data in files.items():
        fault_server.add_file(f"/{name}", data)
    urls = [fault_server.url(f"/{name}") for name in files] + [fault_server.url("/nope.bin")]
    with pytest.raises(FileNotFoundError, match=r"nope\.bin"):
        fs.get(urls, str(tmp_path) + "/")
    assert {n: (tmp_path / n).read_bytes() for n in files} == files
    assert not (tmp_path / "nope.bin").exists()
    with pytest.raises(FileNotFoundError):
        HTTPFileSystem(skip_instance_cache=True).get(urls, str(tmp_path / "http") + "/")


def test_files_of_one_filesystem_read_from_many_threads(
    fault_server: FaultServer, make_data: MakeData, fs: SegdlFileSystem
) -> None:
    """Eight threads, each with its own file of one filesystem (as dask's threads read),
    get the right bytes at their own offsets."""
    data = make_data(4 * MIB)
    fault_server.add_file("/f.bin", data)
    url = fault_server.url("/f.bin")
    wrong: list[int] = []

    def reader(index: int) -> None:
        offset = index * 500 * KIB + index
        with fs.open(url, block_size=128 * KIB) as f:
            f.seek(offset)
            if f.read(200 * KIB) != data[offset : offset + 200 * KIB]:
                wrong.append(index)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert wrong == [] and not any(t.is_alive() for t in threads)
