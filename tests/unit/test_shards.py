"""Shards: streamed cutting with stable ids, and markers that make a shard's rerun free."""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from segdl.core.errors import HTTPStatusError, UsageError
from segdl.run.shards import (
    MARKER_DIR,
    Failure,
    ShardReport,
    Totals,
    download_shard,
    failure_kind,
    iter_shards,
    marker_path,
    read_marker,
    write_marker,
)

LIST = """\
# a comment before anything
http://h/1
  out=one.bin
http://h/2\thttp://mirror/2

http://h/3
\tchecksum=sha-256=00
http://h/4
http://h/5
"""


def test_shards_hold_size_files_with_their_options() -> None:
    """Every file lands in exactly one shard, in order, with its mirrors and options."""
    shards = list(iter_shards(LIST.splitlines(keepends=True), size=2))
    assert [len(s.jobs) for s in shards] == [2, 2, 1]
    assert [s.index for s in shards] == [0, 1, 2]
    urls = [job.url for s in shards for job in s.jobs]
    assert urls == [f"http://h/{n}" for n in range(1, 6)]
    assert shards[0].jobs[0].options == {"dest": "one.bin"}
    assert shards[0].jobs[1].urls == ("http://h/2", "http://mirror/2")
    assert shards[1].jobs[0].options == {"checksum": "sha-256=00"}


def test_ids_are_stable_and_follow_the_content() -> None:
    """The same input cut the same way gives the same ids; an edited shard gets a new id."""
    first = [s.id for s in iter_shards(LIST.splitlines(), size=2)]
    again = [s.id for s in iter_shards(LIST.splitlines(), size=2)]
    edited = [s.id for s in iter_shards(LIST.replace("h/3", "h/33").splitlines(), size=2)]
    assert first == again
    assert len(set(first)) == 3
    assert edited[0] == first[0] and edited[1] != first[1] and edited[2] == first[2]
    assert all(i.startswith(f"{n:06d}-") for n, i in enumerate(first))


def test_gzip_and_plain_files_cut_alike(tmp_path: Path) -> None:
    """A .gz list (recognised by its magic bytes) gives the very shards of the plain one."""
    plain = tmp_path / "urls.txt"
    plain.write_text(LIST)
    packed = tmp_path / "urls.txt.gz"
    packed.write_bytes(gzip.compress(LIST.encode()))
    assert list(iter_shards(plain, 2)) == list(iter_shards(packed, 2))


def test_input_is_streamed_not_loaded() -> None:
    """Shards come out while the input is still being read (an endless input works)."""

    def endless() -> Iterator[str]:
        for n in itertools.count():
            yield f"http://h/{n}\n"

    shards = list(itertools.islice(iter_shards(endless(), 1000), 3))
    assert [s.jobs[0].url for s in shards] == ["http://h/0", "http://h/1000", "http://h/2000"]


def test_errors_name_the_line_of_the_whole_input() -> None:
    """A bad option in a later shard is reported at its line in the input, not in the shard."""
    text = "http://h/1\nhttp://h/2\nhttp://h/3\n  nonsense=1\n"
    with pytest.raises(UsageError, match="input line 4"):
        list(iter_shards(text.splitlines(), size=2))


def test_unreadable_list_and_bad_size_are_usage_errors(tmp_path: Path) -> None:
    """A missing list or a shard size below 1 is a one-line usage error."""
    with pytest.raises(UsageError, match="cannot read input list"):
        list(iter_shards(tmp_path / "absent.txt"))
    with pytest.raises(UsageError):
        list(iter_shards(["http://h/1"], size=0))


def test_marker_round_trip_and_atomic_write(tmp_path: Path) -> None:
    """A written marker reads back equal, and no temporary file is left beside it."""
    shard = next(iter_shards(["http://h/1", "http://h/2"], 2))
    report = ShardReport(
        shard.id,
        2,
        done=1,
        failed={"http 404": 1},
        bytes=10,
        seconds=0.5,
        failures=(Failure("http://h/2", "http 404", "404 Not Found"),),
    )
    path = write_marker(tmp_path, report)
    assert path == marker_path(tmp_path, shard.id)
    assert read_marker(tmp_path, shard) == report
    assert [p.name for p in (tmp_path / MARKER_DIR).iterdir()] == [path.name]
    assert not report.complete


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"version": 9}', b'{"version": 1, "shard": "x"}'],
)
def test_damaged_markers_are_ignored(tmp_path: Path, content: bytes) -> None:
    """A truncated, foreign or corrupt marker never passes for a finished shard."""
    shard = next(iter_shards(["http://h/1"], 1))
    path = marker_path(tmp_path, shard.id)
    path.parent.mkdir()
    path.write_bytes(content)
    assert read_marker(tmp_path, shard) is None


def test_marker_with_bad_counts_or_other_cut_is_ignored(tmp_path: Path) -> None:
    """Negative or non-integer counts, or another number of items, are not trusted."""
    shard = next(iter_shards(["http://h/1"], 1))
    good = ShardReport(shard.id, 1, done=1).to_json()
    path = marker_path(tmp_path, shard.id)
    path.parent.mkdir()
    for bad in ({**good, "done": -1}, {**good, "bytes": 1.5}, {**good, "items": 2}):
        path.write_text(json.dumps(bad))
        assert read_marker(tmp_path, shard) is None


def test_complete_marker_means_no_request(tmp_path: Path) -> None:
    """A shard whose marker says complete is reported skipped without contacting anyone
    (its URLs point at a closed port: any attempt would fail)."""
    shard = next(iter_shards([f"http://127.0.0.1:9/{n}" for n in range(3)], 3))
    write_marker(tmp_path, ShardReport(shard.id, 3, done=3, bytes=30))
    report = download_shard(shard, tmp_path, {"retries": 0})
    assert report.from_marker and report.skipped == 3 and report.complete
    assert report.done == 0 and report.bytes == 0


def test_incomplete_marker_means_the_shard_runs_again(tmp_path: Path) -> None:
    """A marker with failures does not stop a rerun; the new marker replaces it."""
    shard = next(iter_shards(["http://127.0.0.1:9/a"], 1))
    write_marker(tmp_path, ShardReport(shard.id, 1, failed={"ConnectError": 1}))
    report = download_shard(shard, tmp_path, {"retries": 0})
    assert not report.from_marker and report.failed == {"ConnectError": 1}
    assert report.failures[0].url == "http://127.0.0.1:9/a"
    assert read_marker(tmp_path, shard) == report


def test_totals_are_the_exact_sum() -> None:
    """A run's totals add every shard's counts, failure kinds merged."""
    a = ShardReport("a", 3, done=2, failed={"http 404": 1}, bytes=5)
    b = ShardReport("b", 4, done=1, skipped=2, failed={"http 404": 1, "ConnectError": 1}, bytes=7)
    totals = Totals.of([a, b])
    assert (totals.shards, totals.items, totals.done, totals.skipped) == (2, 7, 3, 2)
    assert totals.failed == {"http 404": 2, "ConnectError": 1} and totals.failed_count == 3
    assert totals.bytes == 12


def test_failure_kind() -> None:
    """HTTP statuses are counted by status, other errors by class."""
    assert failure_kind(HTTPStatusError("http://h/", 404, "Not Found")) == "http 404"
    assert failure_kind(UsageError("x")) == "UsageError"
