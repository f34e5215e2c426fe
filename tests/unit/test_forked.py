"""Group commits from a forked child: every file named with its bytes and journalled first,
refusals and a lost child reported per file, and never a fork while another thread runs.

Each case runs in a process of its own (a script below): a fork is only ever made from a
process with one thread, and the test process has others (servers of other tests)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from segdl.disk.commit import GroupCommit
from segdl.disk.forked import can_fork, new_committer

_PRELUDE = """
import json, os, signal, sys, time
from pathlib import Path
from segdl.disk.forked import ForkedCommit, can_fork

out = Path(sys.argv[1])
done = {}

def on_done(staged, error):
    done[staged.token] = None if error is None else error.errno

def record(files):  # runs in the child: what it records goes to a file
    with open(out / "journal.txt", "a") as journal:
        for url, path, info in files:
            journal.write(f"{url} {path.name} {info.st_size} {path.exists()}\\n")

def finish():
    print(json.dumps({"can_fork": can_fork(), "done": done}))
"""


def _run(tmp_path: Path, body: str) -> dict[str, object]:
    script = tmp_path / "case.py"
    script.write_text(_PRELUDE + textwrap.dedent(body) + "\nfinish()\n")
    (tmp_path / "out").mkdir(exist_ok=True)
    ran = subprocess.run([sys.executable, str(script), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result: dict[str, object] = json.loads(ran.stdout)
    return result


def test_every_file_is_named_whole_after_its_journal_line(tmp_path: Path) -> None:
    """300 files through a small queue (the caller waits for the child), held and handed
    over a round at a time: each reported done, named with its bytes, and its journal line
    written before its name existed, by the child."""
    result = _run(
        tmp_path,
        """
        committer = ForkedCommit(on_done, url_of=lambda token: "http://h/" + token,
                                 record=record, queued_bytes=64 * 1024)
        for n in range(300):
            name = f"f{n}"
            committer.stage(out, bytes([n % 256]) * (n * 37), out / name, overwrite=False,
                            token=name, now=n % 7 == 0)
        committer.close()
    """,
    )
    out = tmp_path / "out"
    assert result["can_fork"] is True
    assert result["done"] == {f"f{n}": None for n in range(300)}
    for n in range(300):
        assert (out / f"f{n}").read_bytes() == bytes([n % 256]) * (n * 37)
    lines = (out / "journal.txt").read_text().splitlines()
    assert sorted(lines) == sorted(f"http://h/f{n} f{n} {n * 37} False" for n in range(300))


def test_refusals_come_back_per_file_and_nothing_is_linked_over(tmp_path: Path) -> None:
    """An existing name without overwrite, and a directory that is not there: each file's
    errno comes back; the existing file keeps its bytes; an overwrite replaces it."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kept").write_bytes(b"old")
    (tmp_path / "out" / "replaced").write_bytes(b"old")
    result = _run(
        tmp_path,
        """
        committer = ForkedCommit(on_done, url_of=str, record=None)
        committer.stage(out, b"new", out / "kept", overwrite=False, token="kept")
        committer.stage(out, b"new", out / "replaced", overwrite=True, token="replaced")
        committer.stage(out / "nowhere", b"x", out / "nowhere" / "x", overwrite=False,
                        token="nowhere")
        committer.close()
    """,
    )
    assert result["done"] == {"kept": 17, "replaced": None, "nowhere": 2}  # EEXIST, ENOENT
    assert (tmp_path / "out" / "kept").read_bytes() == b"old"
    assert (tmp_path / "out" / "replaced").read_bytes() == b"new"
    assert not (tmp_path / "out" / "nowhere").exists()


def test_a_child_that_dies_leaves_its_files_reported_as_not_done(tmp_path: Path) -> None:
    """The child killed with files still to commit: close() returns, every file is reported
    (done, or an error), and each name there holds its whole file."""
    result = _run(
        tmp_path,
        """
        committer = ForkedCommit(on_done, url_of=str, record=None)
        for n in range(50):
            committer.stage(out, b"x" * 4096, out / f"f{n}", overwrite=False, token=f"f{n}")
        os.kill(committer._pid, signal.SIGKILL)
        for n in range(50, 100):
            committer.stage(out, b"x" * 4096, out / f"f{n}", overwrite=False, token=f"f{n}")
        committer.close()
    """,
    )
    done = result["done"]
    assert isinstance(done, dict) and sorted(done) == sorted(f"f{n}" for n in range(100))
    assert any(code is not None for code in done.values())
    for path in (tmp_path / "out").iterdir():
        assert path.read_bytes() == b"x" * 4096


def test_the_child_ignores_an_interrupt_and_commits_what_it_was_given(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group: the child goes on; the batch decides."""
    result = _run(
        tmp_path,
        """
        committer = ForkedCommit(on_done, url_of=str, record=None)
        os.kill(committer._pid, signal.SIGINT)
        os.kill(committer._pid, signal.SIGTERM)
        time.sleep(0.1)
        committer.stage(out, b"kept", out / "f", overwrite=False, token="f")
        committer.close()
    """,
    )
    assert result["done"] == {"f": None}
    assert (tmp_path / "out" / "f").read_bytes() == b"kept"


def test_no_fork_while_another_thread_runs(tmp_path: Path) -> None:
    """With a second thread alive, new_committer commits in this process (threads)."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not can_fork()
        committer = new_committer(lambda staged, error: None, url_of=str, record=None)
        assert isinstance(committer, GroupCommit)
        committer.close()
    finally:
        stop.set()
        other.join()


def test_the_child_holds_no_descriptor_of_the_batch_but_its_pipes(tmp_path: Path) -> None:
    """A connection or file the batch had open when it forked is not held open by the child
    (closing it in the batch must close it)."""
    result = _run(
        tmp_path,
        """
        held = open(out / "held", "w")
        listener = __import__("socket").create_server(("127.0.0.1", 0))
        committer = ForkedCommit(on_done, url_of=str, record=None)
        time.sleep(0.2)
        theirs = {int(fd) for fd in os.listdir(f"/proc/{committer._pid}/fd")}
        done["held"] = held.fileno() in theirs or listener.fileno() in theirs
        done["count"] = len(theirs)
        committer.close()
    """,
    )
    done = result["done"]
    assert isinstance(done, dict) and done["held"] is False
    assert isinstance(done["count"], int) and done["count"] <= 7  # 0-2, its pipes, a directory
