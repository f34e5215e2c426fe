"""Durability in groups: a batch of small files killed with SIGKILL at random moments never
leaves a partial file at a final name nor a temporary, and a rerun finishes it exactly."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.nginx import Nginx

FILES = 2000


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_partial_run(out: Path, expected: dict[str, str]) -> int:
    """Every file at a final name is whole and right; nothing else is there. How many."""
    names = {p.name for p in out.iterdir()} if out.exists() else set()
    names.discard(".segdl-journal")
    assert names <= expected.keys(), sorted(names - expected.keys())[:5]  # no temporary
    for name in names:
        assert _sha((out / name).read_bytes()) == expected[name], name
    return len(names)


@pytest.mark.nginx
def test_sigkill_at_10_random_moments_then_a_rerun(tmp_path: Path) -> None:
    """A 2,000-file batch killed 10 times: each time every named file is complete, no
    temporary is left; the rerun exits 0 and every file is sha256-identical."""
    www = tmp_path / "www"
    www.mkdir()
    sizes = random.Random(22)
    expected = {}
    for n in range(FILES):
        data = os.urandom(sizes.randint(1, 12 * 1024))
        (www / f"s{n:04d}.bin").write_bytes(data)
        expected[f"s{n:04d}.bin"] = _sha(data)
    out = tmp_path / "out"
    moments = random.Random(2026)
    with Nginx(www) as nginx:
        listing = tmp_path / "list.txt"
        listing.write_text("".join(f"http://127.0.0.1:{nginx.port}/{n}\n" for n in expected))
        argv = [sys.executable, "-m", "segdl", "-q", "-j", "16", "-d", str(out), "-i", str(listing)]
        seen = []
        for _ in range(10):
            proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
            time.sleep(moments.uniform(0.4, 2.0))
            proc.kill()
            proc.wait()
            seen.append(_check_partial_run(out, expected))
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert _check_partial_run(out, expected) == FILES
    print({"files_named_after_each_kill": seen})
