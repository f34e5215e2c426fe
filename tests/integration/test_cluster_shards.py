"""download_shard against the fault server: idempotent, resumable, exact (no Ray needed)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from segdl.disk.journal import JOURNAL_NAME, Completion, Journals
from segdl.run.reports import ItemReport
from segdl.run.shards import download_shard, iter_shards, marker_path, read_marker
from tests.server import FaultServer
from tests.server.faults import Faults

MakeData = Callable[..., bytes]


def _serve(server: FaultServer, make_data: MakeData, count: int) -> dict[str, bytes]:
    files = {f"f{n:03d}.bin": make_data(1000 + 37 * n, seed=n) for n in range(count)}
    for name, data in files.items():
        server.add_file(f"/{name}", data)
    return files


def test_shard_downloads_then_reruns_without_a_request(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """Every file arrives byte for byte, the marker holds the exact figures, and running the
    shard again sends nothing at all."""
    files = _serve(fault_server, make_data, 20)
    shard = next(iter_shards([fault_server.url(f"/{name}") for name in files], 20))
    report = download_shard(shard, tmp_path, {"parallel": 4})
    assert (report.done, report.skipped, report.failed) == (20, 0, {})
    assert report.bytes == sum(map(len, files.values()))
    for name, data in files.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).digest() == (
            hashlib.sha256(data).digest()
        )
    assert read_marker(tmp_path, shard) == report
    fault_server.clear_log()
    again = download_shard(shard, tmp_path, {"parallel": 4})
    assert again.from_marker and again.skipped == 20
    assert fault_server.requests == []


def test_shard_after_a_crash_fetches_only_what_is_missing(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """With no marker (the run died before the end) the files already in are skipped with
    the one request that names them, and only the missing one is fetched; a failed file
    leaves the shard incomplete, and the next run completes it."""
    files = _serve(fault_server, make_data, 6)
    lines = []
    for name in files:
        lines += [fault_server.url(f"/{name}"), f"  out={name}"]
    shard = next(iter_shards(lines, 6))
    fault_server.set_faults("/f005.bin", Faults(status=404))
    first = download_shard(shard, tmp_path, {"parallel": 2, "retries": 0})
    assert (first.done, first.failed) == (5, {"http 404": 1}) and not first.complete
    fault_server.set_faults("/f005.bin", None)
    (tmp_path / "f002.bin").unlink()
    marker_path(tmp_path, shard.id).unlink()  # as if the run died before writing it
    fault_server.clear_log()
    second = download_shard(shard, tmp_path, {"parallel": 2})
    assert (second.done, second.skipped, second.failed) == (2, 4, {})
    assert sorted(r.path for r in fault_server.requests) == ["/f002.bin", "/f005.bin"]
    assert second.bytes == len(files["f002.bin"]) + len(files["f005.bin"])
    assert (tmp_path / "f005.bin").read_bytes() == files["f005.bin"]


def test_relative_dir_in_the_list_is_inside_dest(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """An item's relative ``dir`` is taken inside ``dest``, whatever the worker's cwd."""
    files = _serve(fault_server, make_data, 1)
    shard = next(iter_shards([fault_server.url("/f000.bin"), "  dir=sub"], 1))
    report = download_shard(shard, tmp_path / "dest", {})
    assert report.done == 1
    assert (tmp_path / "dest" / "sub" / "f000.bin").read_bytes() == files["f000.bin"]


def test_a_shard_without_lean_events_still_reports_every_file(
    fault_server: FaultServer, make_data: MakeData, tmp_path: Path
) -> None:
    """With ``lean_events=False`` (what the cluster's tally asks) the small files' events are
    not built, yet every file arrives and is reported; a file the full path takes still
    sends its own."""
    files = _serve(fault_server, make_data, 20)
    fault_server.add_file("/big.bin", make_data(3 << 20, seed=99))
    urls = [fault_server.url(f"/{name}") for name in files] + [fault_server.url("/big.bin")]
    shard = next(iter_shards(urls, 21))
    events: list[object] = []
    items: list[ItemReport] = []
    settings = {"parallel": 4, "lean_events": False, "progress": events.append}
    report = download_shard(shard, tmp_path, settings, on_item=items.append)
    assert (report.done, report.failed) == (21, {}) and len(items) == 21
    assert all((tmp_path / name).read_bytes() == data for name, data in files.items())
    urls_with_events = {getattr(event, "url", None) for event in events}
    assert urls_with_events == {fault_server.url("/big.bin")}


def test_an_append_only_journal_records_without_reading(tmp_path: Path) -> None:
    """``Journals(read=False)`` appends every line as a reading journal does, and never
    reads the file: a check finds nothing (a new shard's files cannot be in it yet)."""
    (tmp_path / "a.bin").write_bytes(b"x")
    Journals().record("http://h/a.bin", tmp_path / "a.bin")
    before = (tmp_path / JOURNAL_NAME).read_bytes()
    assert Journals().check("http://h/a.bin", tmp_path).completion is Completion.COMPLETE
    appending = Journals(read=False)
    assert appending.check("http://h/a.bin", tmp_path).completion is Completion.ABSENT
    (tmp_path / "b.bin").write_bytes(b"yy")
    appending.record("http://h/b.bin", tmp_path / "b.bin")
    assert (tmp_path / JOURNAL_NAME).read_bytes().startswith(before)
    assert Journals().check("http://h/b.bin", tmp_path).completion is Completion.COMPLETE
