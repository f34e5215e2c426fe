"""Turn measurements into the markdown report: one row per (scenario, tool)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.measure import Measurement
from bench.scenarios import Scenario

BASELINE = "aria2c"
_HEADER = ("scenario", "tool", "wall s", "wall min-max", "CPU s", "peak RSS MiB", "sha ok",
           "vs aria2c", "vs ideal", "conns", "sent/size")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    """Every run of one tool in one scenario, or why the tool was not run."""

    scenario: Scenario
    tool: str
    runs: tuple[Measurement, ...] = ()
    not_run: str | None = None

    @property
    def failure(self) -> str | None:
        """Why this row has no time: tool not run, or any run failed (first reason shown)."""
        if self.not_run is not None:
            return f"not run: {self.not_run}"
        bad = [m for m in self.runs if not m.ok]
        if not self.runs:
            return "not run"
        if bad:
            return f"FAIL ({len(bad)}/{len(self.runs)} runs): {bad[0].error}"
        return None

    def median_wall_s(self) -> float | None:
        """Median wall time over runs; None unless every run produced the right file."""
        if self.failure is not None:
            return None
        return statistics.median(m.wall_s for m in self.runs)


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or reference <= 0:
        return "-"
    return f"{value / reference:.2f}x"


def _cells(row: Row, baseline_s: float | None) -> list[str]:
    """Table cells for one row; a missing tool says so, a failed row shows FAIL and no time."""
    wall = row.median_wall_s()
    if wall is None:
        if row.not_run is not None:
            return [row.scenario.name, row.tool, "missing", *["-"] * (len(_HEADER) - 3)]
        fails = sum(not m.ok for m in row.runs)
        verdict = f"FAIL {fails}/{len(row.runs)}"
        return [row.scenario.name, row.tool, "FAIL", "-", "-", "-", verdict, "-", "-", "-", "-"]
    walls = [m.wall_s for m in row.runs]
    cpu = statistics.median(m.cpu_s for m in row.runs)
    peaks = [m.max_rss_bytes for m in row.runs if m.max_rss_bytes is not None]
    rss = f"{max(peaks) / (1 << 20):.0f}" if peaks else "n/a"
    return [
        row.scenario.name,
        row.tool,
        f"{wall:.2f}",
        f"{min(walls):.2f}-{max(walls):.2f}",
        f"{cpu:.2f}",
        rss,
        "ok",
        _ratio(wall, baseline_s),
        _ratio(wall, row.scenario.ideal_s()),
        *_server_cells(row),
    ]


def _server_cells(row: Row) -> list[str]:
    """Median connections nginx saw per run, and median bytes it sent / file size."""
    conns = [m.server_connections for m in row.runs if m.server_connections is not None]
    sent = [m.server_bytes for m in row.runs if m.server_bytes is not None]
    size = row.scenario.size_bytes
    conns_text = f"{statistics.median(conns):g}" if conns else "?"
    sent_text = f"{statistics.median(sent) / size:.3f}" if sent and size else "?"
    return [conns_text, sent_text]


def render_table(rows: Sequence[Row]) -> str:
    """The markdown table; 'vs aria2c' uses aria2c's median in the same scenario."""
    baselines = {r.scenario.name: r.median_wall_s() for r in rows if r.tool == BASELINE}
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    for row in rows:
        cells = _cells(row, baselines.get(row.scenario.name))
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def render_notes(rows: Sequence[Row], scenarios: Sequence[Scenario]) -> str:
    """Scenario legend with ideals, the shaper's own CPU, and every failure in full."""
    lines = ["Scenarios:"]
    for sc in scenarios:
        ideal = sc.ideal_s()
        ideal_text = f"ideal {ideal:.2f} s" if ideal is not None else "no ideal (ratio to aria2c)"
        harness = [m.harness_cpu_s for r in rows if r.scenario is sc for m in r.runs]
        proxy = ""
        if harness and sc.shaper is not None:
            proxy = f"; shaper CPU per run {min(harness):.2f}-{max(harness):.2f} s"
        lines.append(f"- {sc.name}: {sc.summary}; {ideal_text}{proxy}")
    missing = {r.tool: r.not_run for r in rows if r.not_run is not None}
    failures = [f"- {tool}: missing ({why})" for tool, why in missing.items()]
    failures += [
        f"- {r.scenario.name}/{r.tool} run {i + 1}: {m.error}"
        for r in rows
        for i, m in enumerate(r.runs)
        if not m.ok
    ]
    if failures:
        lines += ["", "Missing tools and failures:", *failures]
    return "\n".join(lines)
