"""Group commits of small files: named only once synced, never over an existing file unless
asked, nothing left behind when a file cannot be named."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from segdl.disk import kernel
from segdl.disk.commit import SYNCFS_FROM_FILES, GroupCommit, Staged, unnamed_files_work


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    if not unnamed_files_work(tmp_path):
        pytest.fail("this file system takes no O_TMPFILE files: the lean path would defer all")
    return tmp_path


def _commit(
    directory: Path, files: dict[str, bytes], *, overwrite: bool = False, group_files: int = 3
) -> dict[str, OSError | None]:
    done: dict[str, OSError | None] = {}
    journal: list[str] = []

    def on_done(staged: Staged, error: OSError | None) -> None:
        done[staged.final_path.name] = error

    def before_link(group: list[tuple[Staged, os.stat_result]]) -> None:
        for staged, info in group:
            assert info.st_size == len(files[staged.final_path.name])  # synced, not yet named
            journal.append(staged.final_path.name)

    committer = GroupCommit(on_done, before_link=before_link, group_files=group_files,
                            group_wait_s=0.05)  # fmt: skip
    for name, body in files.items():
        committer.stage(directory, body, directory / name, overwrite=overwrite, token=name)
    committer.close()
    assert sorted(journal) == sorted(files)
    return done


def test_files_get_their_names_with_their_bytes_and_nothing_else_appears(directory: Path) -> None:
    """Seven files in groups of three: each named, whole, with the umask's mode; no other
    entry (no temporary) in the directory."""
    files = {f"f{n}": os.urandom(100 * n + 1) for n in range(7)}
    done = _commit(directory, files)
    assert done == dict.fromkeys(files)
    assert sorted(p.name for p in directory.iterdir()) == sorted(files)
    umask = os.umask(0)
    os.umask(umask)
    for name, body in files.items():
        assert (directory / name).read_bytes() == body
        assert (directory / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failing_record_names_no_file_of_its_group(directory: Path) -> None:
    """If the journal cannot be written, none of the group is named, and each says why."""
    done: dict[str, OSError | None] = {}

    def before_link(group: list[tuple[Staged, os.stat_result]]) -> None:
        raise ValueError("journal unwritable")

    committer = GroupCommit(lambda s, e: done.update({s.final_path.name: e}),
                            before_link=before_link)  # fmt: skip
    for name in ("a", "b"):
        committer.stage(directory, b"x", directory / name, overwrite=False, token=name)
    committer.close()
    assert set(done) == {"a", "b"} and all(isinstance(e, OSError) for e in done.values())
    assert list(directory.iterdir()) == []


def test_an_existing_file_is_never_linked_over_unless_overwriting(directory: Path) -> None:
    """A name taken meanwhile: that file fails with FileExistsError and the other file stays
    as it was; with overwrite the new bytes replace it."""
    (directory / "taken").write_bytes(b"theirs")
    done = _commit(directory, {"taken": b"ours", "free": b"x"})
    assert isinstance(done["taken"], FileExistsError) and done["free"] is None
    assert (directory / "taken").read_bytes() == b"theirs"
    assert sorted(p.name for p in directory.iterdir()) == ["free", "taken"]
    done = _commit(directory, {"taken": b"ours"}, overwrite=True)
    assert done == {"taken": None}
    assert (directory / "taken").read_bytes() == b"ours"


def test_a_file_that_cannot_be_written_reaches_on_done_with_its_error(directory: Path) -> None:
    """The writing threads report a file they cannot create (its directory is gone) to
    on_done with the error, and the batch of staged files still ends: nothing is named."""
    target = directory / "gone"
    target.mkdir()
    done: dict[str, OSError | None] = {}
    committer = GroupCommit(lambda s, e: done.update({s.final_path.name: e}),
                            group_files=1000, group_wait_s=5.0)  # fmt: skip
    committer.stage(target, b"first", target / "a", overwrite=False, token="a")
    target.rmdir()  # the unnamed file of "a" holds no name there, so the directory goes
    committer.stage(target, b"second", target / "b", overwrite=False, token="b")
    committer.close()
    assert set(done) == {"a", "b"} and all(isinstance(e, OSError) for e in done.values())
    assert not target.exists()


def test_a_full_queue_holds_the_stager_back_and_loses_nothing(directory: Path) -> None:
    """With room for one body, stage() waits for the writers each time: at most one body
    past the bound is ever queued, and every file still arrives whole at its name."""
    files = {f"f{n}": os.urandom(1000 + n) for n in range(200)}
    done: dict[str, OSError | None] = {}
    committer = GroupCommit(lambda s, e: done.update({s.final_path.name: e}),
                            group_files=16, group_wait_s=0.01, queued_bytes=1)  # fmt: skip
    for name, body in files.items():
        committer.stage(directory, body, directory / name, overwrite=False, token=name)
        assert committer._incoming_bytes <= 1 + len(body)
    committer.close()
    assert done == dict.fromkeys(files)
    for name, body in files.items():
        assert (directory / name).read_bytes() == body


def test_files_written_and_not_named_stay_under_the_bound(directory: Path) -> None:
    """With room for 32 open files and groups that would wait 5 s for 1000, the writers do
    not pile up descriptors: the committer takes what is there when they wait, so no group
    holds more than 32 files and the batch does not wait for the group's clock."""
    files = {f"f{n}": os.urandom(100) for n in range(300)}
    done: dict[str, OSError | None] = {}
    groups: list[int] = []
    committer = GroupCommit(lambda s, e: done.update({s.final_path.name: e}),
                            before_link=lambda group: groups.append(len(group)),
                            group_files=1000, group_wait_s=5.0, open_files=32)  # fmt: skip
    started_s = time.monotonic()
    for name, body in files.items():
        committer.stage(directory, body, directory / name, overwrite=False, token=name)
    committer.close()
    assert time.monotonic() - started_s < 4.0
    assert done == dict.fromkeys(files) and sum(groups) == len(files)
    assert max(groups) <= 32
    for name, body in files.items():
        assert (directory / name).read_bytes() == body


def test_a_group_whose_file_system_sync_fails_names_none_of_its_files(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group large enough for one syncfs: if that fails, every file of the group says so and
    none is named; a group of a few files is synced file by file and does not depend on it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        assert kernel.syncs_whole_file_system(fd), "needs ext4, XFS, btrfs or tmpfs here"
    finally:
        os.close(fd)

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "lost a page")

    monkeypatch.setattr(kernel, "sync_file_system", failing)
    done: dict[str, OSError | None] = {}
    committer = GroupCommit(lambda s, e: done.update({s.final_path.name: e}),
                            group_files=SYNCFS_FROM_FILES, group_wait_s=5.0)  # fmt: skip
    many = [f"m{n}" for n in range(SYNCFS_FROM_FILES)]
    for name in many:
        committer.stage(directory, b"x", directory / name, overwrite=False, token=name)
    committer.close()
    assert all(isinstance(e, OSError) and e.errno == errno.EIO for e in done.values())
    assert set(done) == set(many) and list(directory.iterdir()) == []
    few = {f"f{n}": b"y" for n in range(SYNCFS_FROM_FILES - 1)}
    assert _commit(directory, few, group_files=len(few)) == dict.fromkeys(few)
    assert sorted(p.name for p in directory.iterdir()) == sorted(few)


def test_held_files_wait_for_hand_over_and_close_hands_over_the_rest(directory: Path) -> None:
    """Staged with now=False, files stay with the caller (none is written, none is named)
    until hand_over(); the ones held when close() comes are committed all the same."""
    done: list[str] = []
    committer = GroupCommit(lambda staged, error: done.append(staged.final_path.name),
                            group_files=2, group_wait_s=0.01)  # fmt: skip
    for name in ("a", "b"):
        committer.stage(directory, name.encode(), directory / name, overwrite=False, token=name,
                        now=False)  # fmt: skip
    time.sleep(0.2)
    assert done == [] and list(directory.iterdir()) == []
    committer.hand_over()
    deadline = time.monotonic() + 10
    while len(done) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(done) == ["a", "b"]
    committer.stage(directory, b"c", directory / "c", overwrite=False, token="c", now=False)
    committer.close()
    assert sorted(done) == ["a", "b", "c"]
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == {
        "a": b"a",
        "b": b"b",
        "c": b"c",
    }
