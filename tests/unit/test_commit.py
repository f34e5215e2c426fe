"""Group commits of small files: named only once synced, never over an existing file unless
asked, nothing left behind when a file cannot be named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from segdl.disk.commit import GroupCommit, Staged, unnamed_files_work


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    if not unnamed_files_work(tmp_path):
        pytest.fail("this file system takes no O_TMPFILE files: the lean path would defer all")
    return tmp_path


def _commit(directory: Path, files: dict[str, bytes], *, overwrite: bool = False
            ) -> dict[str, OSError | None]:  # fmt: skip
    done: dict[str, OSError | None] = {}
    journal: list[str] = []

    def on_done(staged: Staged, error: OSError | None) -> None:
        done[staged.final_path.name] = error

    def before_link(group: list[tuple[Staged, os.stat_result]]) -> None:
        for staged, info in group:
            assert info.st_size == len(files[staged.final_path.name])  # synced, not yet named
            journal.append(staged.final_path.name)

    committer = GroupCommit(on_done, before_link=before_link, group_files=3, group_wait_s=0.05)
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
