"""Smoke run of the benchmark harness (bench/), and the arithmetic of its ideal times."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import MiB, build_scenarios

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("segdl", "aria2c", "curl")
SCENARIOS = ("raw", "per-conn", "slow4", "shared", "https")


def _tables(stdout: str) -> list[list[dict[str, str]]]:
    """Every markdown table in the output, its rows as dicts keyed by its header."""
    tables: list[list[list[str]]] = [[]]
    for line in stdout.splitlines():
        if line.startswith("|"):
            tables[-1].append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif tables[-1]:
            tables.append([])
    parsed = []
    for cells in (t for t in tables if t):
        header, rows = cells[0], [c for c in cells[1:] if not set(c[0]) <= {"-"}]
        parsed.append([dict(zip(header, row, strict=True)) for row in rows])
    return parsed


def _table(stdout: str, first_column: str) -> list[dict[str, str]]:
    return next(t for t in _tables(stdout) if t and first_column in t[0])


@pytest.mark.nginx
def test_quick_bench_prints_every_row_with_correct_files() -> None:
    """`python -m bench.run --quick` prints one row per tool and scenario, each with sha ok."""
    argv = [sys.executable, "-m", "bench.run", "--quick", "--tools", ",".join(TOOLS)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _table(done.stdout, "scenario")
    assert {(r["scenario"], r["tool"]) for r in rows} == {(s, t) for s in SCENARIOS for t in TOOLS}
    bad = [(r["scenario"], r["tool"], r["wall s"]) for r in rows if r["sha ok"] != "ok"]
    assert not bad, done.stdout
    assert all(float(r["wall s"]) > 0 for r in rows)
    assert all(r["vs aria2c"] != "-" for r in rows)
    assert all(r["vs ideal"] == "-" for r in rows if r["scenario"] in ("raw", "https"))
    targets = {r["target"]: r for r in _table(done.stdout, "target")}
    assert len(targets) == 9, done.stdout  # every row of issue 7, raw wall and CPU apart
    assert all(r["measured"] not in ("not run", "-") for r in targets.values()), done.stdout
    many = _table(done.stdout, "ok")
    assert {r["tool"] for r in many} == {"segdl", "aria2c"}
    assert all(r["ok"] == "ok" for r in many), done.stdout


def test_ideal_counts_the_slow_connections_share() -> None:
    """slow4's ideal uses 12 full-rate and 4 eighth-rate connections, plus one round trip."""
    scenarios = build_scenarios(quick=False)
    assert scenarios["slow4"].aggregate_rate_bytes_per_s() == 12 * 5e6 + 4 * 5e6 / 8
    assert scenarios["slow4"].ideal_s() == pytest.approx(100 * MiB / 62.5e6 + 0.040)
    assert scenarios["per-conn"].ideal_s() == pytest.approx(100 * MiB / 80e6 + 0.040)
    assert scenarios["shared"].ideal_s() == pytest.approx(100 * MiB / 50e6 + 0.050)
    assert scenarios["raw"].ideal_s() is None
    assert scenarios["https"].ideal_s() is None and scenarios["https"].tls
