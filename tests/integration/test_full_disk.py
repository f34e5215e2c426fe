"""A batch whose disk fills up (or is read-only) stops there, as wget does, instead of trying
every file left only to fail each one alike; nothing at a final name is partial, and once
there is room the same command finishes the batch.

The disk is a real one-MiB tmpfs, mounted in a mount namespace of the test's own
(``unshare --mount --map-root-user``: no root needed where user namespaces are allowed, and
nothing mounted outside the test)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import random_files
from tests.nginx import Nginx

FILES = 200
SIZE = 16 * 1024

# Runs inside the namespace: mounts the small disk, runs the batch, makes room, runs it again,
# then once more into the disk made read-only; prints what the test checks (the tmpfs is gone
# once the namespace ends).
_DRIVER = r"""
import hashlib, json, os, subprocess, sys
disk, listing = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", disk], check=True)
out = os.path.join(disk, "out")
def run(*extra, into=out):
    argv = [sys.executable, "-m", "segdl", "-j", "8", "-x", "1", "-d", into, "-i", listing]
    done = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=120)
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
def files():
    return {name: hashlib.sha256(open(os.path.join(out, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(out))}
full = run("--progress", "json")
after_full = files()
subprocess.run(["mount", "-o", "remount,size=16m", disk], check=True)
rerun = run("-q")
after = files()
read_only = os.path.join(disk, "read-only")
os.mkdir(read_only)
subprocess.run(["mount", "-o", "remount,ro", disk], check=True)
refused = run("--progress", "json", into=read_only)
# fsspec's get() of the whole list into another full disk: the disk's error, not "interrupted".
second = sys.argv[3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", second], check=True)
import fsspec
urls = open(listing).read().split()
try:
    fsspec.filesystem("segdl", skip_instance_cache=True).get(urls, second + "/")
    raised = None
except Exception as exc:
    raised = {"type": type(exc).__name__, "errno": getattr(exc, "errno", None)}
print(json.dumps({"full": full, "after_full": after_full, "rerun": rerun, "after": after,
                  "read_only": refused, "fsspec": raised}))
"""


@pytest.mark.nginx
def test_a_full_disk_stops_the_batch_and_a_rerun_with_room_finishes_it(tmp_path: Path) -> None:
    """Into a 1 MiB file system, 200 files of 16 KiB: the batch stops at the first file the
    full disk refused (exit 3, the summary says why and where), most files are counted as
    interrupted rather than each failing; every file at a final name is whole; with room
    made, the same command fetches the rest and leaves no temporary."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "unshare (util-linux) is needed"
    www = tmp_path / "www"
    www.mkdir()
    expected = random_files(www, FILES, SIZE)
    disk, second = tmp_path / "disk", tmp_path / "second"
    disk.mkdir()
    second.mkdir()
    with Nginx(www) as nginx:
        listing = tmp_path / "list.txt"
        listing.write_text("".join(f"http://127.0.0.1:{nginx.port}/{name}\n" for name in expected))
        namespace = [unshare, "--mount", "--map-root-user"]
        driver = [sys.executable, "-c", _DRIVER, str(disk), str(listing), str(second)]
        ran = subprocess.run([*namespace, *driver], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    seen = json.loads(ran.stdout)
    full, rerun = seen["full"], seen["rerun"]

    assert full["code"] == 3, full["stderr"][-2000:]
    summary = json.loads(full["stdout"].splitlines()[-1])
    assert summary["event"] == "Summary" and summary["exit_code"] == 3
    assert "No space left on device" in summary["stopped_by"]
    counted = summary["done"] + summary["failed"] + summary["interrupted"]
    assert summary["done"] < FILES and counted <= FILES, summary
    # Stopped, not failing file after file: most of what was left is interrupted.
    assert summary["interrupted"] > 2 * summary["failed"], summary
    named = {n: h for n, h in seen["after_full"].items() if n in expected}
    assert all(expected[name] == digest for name, digest in named.items())  # none partial
    assert len(named) == summary["done"]

    assert rerun["code"] == 0, rerun["stderr"][-2000:]
    after = dict(seen["after"])
    after.pop(".segdl-journal")
    assert after == expected  # every file, whole, and no .part or state left behind

    read_only = seen["read_only"]  # nothing can be written: stopped at once, not 200 failures
    assert read_only["code"] == 3, read_only["stderr"][-2000:]
    summary = json.loads(read_only["stdout"].splitlines()[-1])
    assert "Read-only file system" in summary["stopped_by"], summary
    assert summary["done"] == 0 and summary["interrupted"] > 2 * summary["failed"], summary
    assert seen["fsspec"] == {"type": "LocalFileError", "errno": 28}, seen["fsspec"]


def test_a_shard_stopped_by_a_full_disk_counts_its_files_under_the_disk_error() -> None:
    """On a cluster, a shard a full disk stopped reports the files it left under the disk's
    kind of failure (its exit code 3), not as interrupted (which reads as a Ctrl-C, 130)."""
    import errno

    from segdl.cli.cluster import exit_code_for_kind
    from segdl.core.errors import Cancelled, LocalFileError
    from segdl.run.batch import Job
    from segdl.run.reports import ItemReport, Outcome
    from segdl.run.shards import Shard, _report

    full = LocalFileError(errno.ENOSPC, "cannot write /w/b.part: no space", "/w/b.part")
    items = [
        ItemReport(Job(("http://h/a",)), Outcome.FAILED, error=Cancelled("interrupted")),
        ItemReport(Job(("http://h/b",)), Outcome.FAILED, error=full),
        ItemReport(Job(("http://h/c",)), Outcome.FAILED, error=Cancelled("interrupted")),
    ]
    shard = Shard(0, "s1", tuple(Job(item.job.urls) for item in items))
    report = _report(shard, items, 1.0, full)
    assert report.failed == {"LocalFileError": 3}
    assert report.failures[0].message.startswith("not fetched: [Errno 28]")
    assert exit_code_for_kind("LocalFileError") == 3


def test_the_summary_says_what_stopped_a_batch_and_its_exit_code_is_the_disks() -> None:
    """The lines a person reads: where the disk is full and that a rerun finishes the
    batch; the exit code is 3 (a local file error), not 130 as for a Ctrl-C. One file too
    large for the room left does not stop the others (a smaller one may fit)."""
    import errno
    import io

    from segdl.cli.batch import _finish, summary_lines
    from segdl.core.errors import Cancelled, LocalFileError, NoSpace
    from segdl.run.batch import Job
    from segdl.run.reports import Collector, ItemReport, Outcome

    stops: list[int] = []
    collector = Collector(keep_all=True, on_disk_refused=lambda: stops.append(1))
    too_large = NoSpace("/data/out/big.iso", "no space left: 9 GiB needed, 2 GiB free")
    collector.add(3, ItemReport(Job(("http://h/big.iso",)), Outcome.FAILED, error=too_large))
    assert stops == []
    full = LocalFileError(errno.ENOSPC, "cannot write /data/out/a.bin.part", "/data/out/a.bin.part")
    collector.add(0, ItemReport(Job(("http://h/a",)), Outcome.FAILED, error=full))
    collector.add(1, ItemReport(Job(("http://h/b",)), Outcome.FAILED, error=full))
    collector.add(2, ItemReport(Job(("http://h/c",)), Outcome.FAILED, error=Cancelled("x")))
    report = collector.report(1.0)
    assert stops == [1] and report.stopped_by is full  # once, at the first
    lines = summary_lines(report)
    assert lines[-1] == (
        "stopped: no space left on device in /data/out: once files can be written there, "
        "the same command run again fetches what is not finished"
    )
    assert not any(line.startswith("interrupted:") for line in lines)
    code = _finish(report, as_json=False, quiet=True, stdout=io.StringIO(), stderr=io.StringIO())
    assert int(code) == 3
