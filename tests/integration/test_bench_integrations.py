"""Smoke run of bench/integrations.py: every row present, every file correct."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.nginx
def test_the_integrations_bench_runs_every_tool_with_correct_files() -> None:
    """A small run prints one row per tool, each file checked, segdl's rows with a ratio."""
    argv = [sys.executable, "-m", "bench.integrations", "--size", "4Mi", "--rate", "50M"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {
        cells[0]: cells
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| tool")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert set(rows) == {
        "pooch+HTTPDownloader", "pooch+SegdlDownloader", "fsspec HTTPFileSystem", "fsspec segdl"
    }  # fmt: skip
    assert all(cells[-1] == "ok" for cells in rows.values()), done.stdout
    assert rows["pooch+SegdlDownloader"][4].endswith("x")
    assert rows["fsspec segdl"][4].endswith("x")
