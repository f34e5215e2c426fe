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
    shaped = [r for name, r in targets.items() if name.startswith(("per-conn", "slow4", "shared"))]
    assert len(shaped) == 3 and all("Python floor" in r["measured"] for r in shaped), done.stdout
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


def test_floor_counts_start_up_two_round_trips_and_the_bytes() -> None:
    """A fresh connection's handshake and request come before any byte, whatever the tool."""
    scenarios = build_scenarios(quick=False)
    per_conn, shared = scenarios["per-conn"], scenarios["shared"]
    assert per_conn.floor_s(0.04) == pytest.approx(0.04 + 0.080 + 100 * MiB / 80e6)
    assert shared.floor_s(0.0) == pytest.approx(0.100 + 100 * MiB / 50e6)
    assert scenarios["raw"].floor_s(0.04) is None


def test_a_goal_below_the_floor_is_flagged() -> None:
    """The targets table says when a shaped row's goal is under the Python floor."""
    from bench.measure import Measurement
    from bench.report import Row
    from bench.targets import Extras, render_targets

    per_conn = build_scenarios(quick=False)["per-conn"]
    run = Measurement(wall_s=1.6, cpu_s=0.4, max_rss_bytes=30 << 20, exit_code=0, error=None)
    row = Row(per_conn, "segdl", runs=(run,))
    floor = per_conn.floor_s(0.04)
    assert floor is not None
    ideal = per_conn.ideal_s()
    assert ideal is not None and floor / ideal > 1.05
    table = render_targets([row], Extras(interpreter_s=0.04))
    line = next(r for r in table.splitlines() if r.startswith("| per-conn"))
    assert f"Python floor {floor / ideal:.2f}x ({floor:.2f} s) (the goal is below it)" in line
    assert line.endswith("| **no** |")
    fast = render_targets([row], Extras(interpreter_s=0.0))
    assert "below it" not in next(r for r in fast.splitlines() if r.startswith("| per-conn"))


@pytest.mark.nginx
def test_small_files_bench_checks_every_file_of_segdl_curl_and_the_python_floor() -> None:
    """`python -m bench.smallfiles` prints a row per tool, each run's files checked whole
    (the Python floor too: a floor that wrote wrong files would be no floor)."""
    argv = [sys.executable, "-m", "bench.smallfiles", "--files", "60", "--size-kib", "4",
            "--parallel", "4", "--repeat", "1",
            "--tools", "segdl,curl,py-floor,py-floor-durable,py-floor-durable-2"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["tool"]: r for r in _table(done.stdout, "tool")}
    assert set(rows) == {"segdl", "curl", "py-floor", "py-floor-durable", "py-floor-durable-2"}
    assert all(r["ok"] == "ok" for r in rows.values()), done.stdout
    assert all(r["vs curl (wall)"].endswith("x") for r in rows.values()), done.stdout


@pytest.mark.nginx
def test_small_files_bench_over_https_checks_every_file() -> None:
    """`--https`: nginx over TLS with a throwaway CA every tool is told to trust; each run's
    files checked whole."""
    argv = [sys.executable, "-m", "bench.smallfiles", "--files", "40", "--size-kib", "4",
            "--parallel", "4", "--repeat", "1", "--tools", "segdl,curl", "--https",
            "--one-file"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("over https: ")
    rows = {r["tool"]: r for r in _table(done.stdout, "tool")}
    assert set(rows) == {"segdl", "curl"} and all(r["ok"] == "ok" for r in rows.values())
    assert "| one 16 KiB file over https, end to end |" in done.stdout  # each run checked


@pytest.mark.nginx
def test_small_files_bench_behind_redirects_checks_every_file() -> None:
    """`--redirect`: every file's URL answers 302 to it; each tool's files checked whole."""
    argv = [sys.executable, "-m", "bench.smallfiles", "--files", "30", "--size-kib", "4",
            "--parallel", "4", "--repeat", "1", "--tools", "segdl,curl", "--redirect"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("behind a 302: ")
    rows = {r["tool"]: r for r in _table(done.stdout, "tool")}
    assert set(rows) == {"segdl", "curl"} and all(r["ok"] == "ok" for r in rows.values())
