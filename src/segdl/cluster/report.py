"""What a cluster run reports: the live view, a few times a second, and the final sum.

Plain values with no Ray in them, so that displays (and their tests) need no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from segdl.run.shards import Totals


@dataclass(frozen=True, slots=True)
class RunProgress:
    """The driver's view a few times a second: the live sum over every shard."""

    files: int | None
    """Files in the input (None while it is read from a pipe)."""
    done: int
    skipped: int
    failed: int
    bytes: int
    shards_finished: int
    workers: int
    nodes: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class RunReport:
    totals: Totals
    elapsed_s: float
    shards_from_markers: int
    """Shards a marker said were complete: no task ran for them."""
    shards_lost: int
    """Shards whose every attempt was lost (their files counted failed, kind ``lost``)."""
    leases_granted: int
    nodes_used: tuple[str, ...] = ()
    """Ray node ids that ran a shard attempt (lost ones included)."""

    @property
    def ok(self) -> bool:
        return self.totals.failed_count == 0
