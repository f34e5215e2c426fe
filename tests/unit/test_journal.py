"""The journal of finished files: complete only when size and mtime still match."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segdl.disk.journal import (
    JOURNAL_NAME,
    Completion,
    Entry,
    Journals,
    _line,
    _parse,
    read_journal,
)
from segdl.disk.paths import url_digest


def test_a_recorded_file_is_complete_until_it_changes(tmp_path: Path) -> None:
    """Recorded: complete; rewritten with other bytes: changed; removed: absent."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    Journals().record("http://h/f.bin", path)
    fresh = Journals()  # a rerun reads the journal from disk
    assert fresh.check("http://h/f.bin", tmp_path).completion is Completion.COMPLETE
    assert fresh.check("http://h/other", tmp_path).completion is Completion.ABSENT
    assert fresh.check("http://h/f.bin", tmp_path, "g.bin").completion is Completion.ABSENT
    path.write_bytes(b"y" * 10)
    os.utime(path, ns=(1, 1))
    assert fresh.check("http://h/f.bin", tmp_path).completion is Completion.CHANGED
    path.unlink()
    assert fresh.check("http://h/f.bin", tmp_path).completion is Completion.ABSENT


def test_torn_or_hostile_lines_are_ignored_and_the_last_line_wins(tmp_path: Path) -> None:
    """A line cut short, a name with a slash or another version never counts."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    journals = Journals()
    journals.record("u1", path)
    journals.record("u2", path)
    with open(tmp_path / JOURNAL_NAME, "a") as handle:
        handle.write('{"v": 1, "url_sha256": "aa", "name": "../etc/passwd", "size": 1, ')
        handle.write('"mtime_ns": 1}\n{"v": 9, "url_sha256": "bb", "name": "x", "size": 1, ')
        handle.write('"mtime_ns": 1}\n{"v": 1, "url_sha')
    entries = read_journal(tmp_path / JOURNAL_NAME)
    assert len(entries) == 2 and {n for e in entries.values() for n in e} == {"f.bin"}


def test_one_url_saved_under_several_names_is_complete_under_each(tmp_path: Path) -> None:
    """The same URL written as a.bin and b.bin (out=): each name is looked up on its own."""
    for name in ("a.bin", "b.bin"):
        (tmp_path / name).write_bytes(name.encode())
        Journals().record("http://h/same", tmp_path / name)
    fresh = Journals()
    for name in ("a.bin", "b.bin"):
        assert fresh.check("http://h/same", tmp_path, name).completion is Completion.COMPLETE
    latest = fresh.check("http://h/same", tmp_path)
    assert latest.completion is Completion.COMPLETE and latest.path == tmp_path / "b.bin"


@given(st.text(), st.integers(0, 2**63), st.integers(-(2**63), 2**63))
def test_a_line_is_what_json_dumps_writes_of_its_record(name: str, size: int, mtime: int) -> None:
    """The line, written without json.dumps for speed, is its record as json.dumps writes it
    (any name: quotes, controls, non-ASCII, lone surrogates), and reads back as its entry."""
    entry = Entry(url_digest("http://h/x"), name, size, mtime)
    record = {"v": 1, "url_sha256": entry.url_digest, "name": name, "size": size, "mtime_ns": mtime}
    assert _line(entry) == json.dumps(record) + "\n"
    if "/" not in name and name not in ("", ".", ".."):
        assert _parse(_line(entry).encode("utf-8", "surrogatepass")) == entry


def test_a_line_torn_before_a_record_does_not_swallow_it(tmp_path: Path) -> None:
    """A journal whose last line was cut short (a crash, a full disk): the next record
    starts on a line of its own, so it is read back."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    (tmp_path / JOURNAL_NAME).write_bytes(b'{"v": 1, "url_sha256": "ab')  # torn, no newline
    Journals().record("http://h/f.bin", path)
    assert Journals().check("http://h/f.bin", tmp_path).completion is Completion.COMPLETE


def test_a_full_disk_that_takes_part_of_a_line_fails_the_record_and_removes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk takes part of the line (a short write) and refuses the rest: the record
    fails, and a file that already had its name is removed (record_named), so a rerun
    fetches it rather than refusing a file at its name the journal does not know; the torn
    part is not read as an entry."""
    import errno

    from segdl.core.errors import LocalFileError

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    real_write = os.write
    calls: list[int] = []

    def full_disk_write(fd: int, data: bytes | memoryview) -> int:
        calls.append(fd)
        if len(calls) == 1:
            return real_write(fd, bytes(data[:7]))  # what fitted
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk_write)
    with pytest.raises(LocalFileError) as caught:
        Journals().record_named("http://h/f.bin", path)
    monkeypatch.setattr(os, "write", real_write)
    assert caught.value.errno == errno.ENOSPC and "in its journal" in str(caught.value)
    assert not path.exists() and len(calls) == 2
    assert read_journal(tmp_path / JOURNAL_NAME) == {}
    path.write_bytes(b"x" * 10)  # the rerun fetched it again
    Journals().record_named("http://h/f.bin", path)
    assert Journals().check("http://h/f.bin", tmp_path).completion is Completion.COMPLETE


def test_a_journal_that_cannot_be_written_for_another_reason_leaves_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a full disk (say, permission): the error is raised as it is and the file stays
    (the batch only warns: a rerun will not know the file is segdl's)."""
    import errno

    path = tmp_path / "f.bin"
    path.write_bytes(b"x")

    def refused(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "write", refused)
    with pytest.raises(PermissionError):
        Journals().record_named("http://h/f.bin", path)
    assert path.exists()
