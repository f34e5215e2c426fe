"""Batches on a Ray cluster, with the per-host cap and pauses held cluster-wide.

``segdl.cluster.run(input, dest, address=...)`` cuts the input into shards
(:mod:`segdl.run.shards`), runs each as a Ray task on whichever node is free, skips shards
whose completion marker says they are done, and returns the exact sum of the shard reports.
One book (:mod:`segdl.cluster.leases`, held by the actor of :mod:`segdl.cluster.actor`) owns
every host's connection slots and pauses for the run; each worker's batch consults it
through a :class:`segdl.cluster.gate.LeasedGate`. Needs ``pip install 'segdl[cluster]'``
(Ray) and a destination every worker sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segdl.cluster.report import RunProgress as RunProgress
    from segdl.cluster.report import RunReport as RunReport
    from segdl.cluster.runner import run as run

__all__ = ["RunProgress", "RunReport", "run"]


def __getattr__(name: str) -> Any:
    if name in ("RunProgress", "RunReport"):
        from segdl.cluster import report

        return getattr(report, name)
    if name == "run":  # Ray is imported only when the runner is used
        from segdl.cluster import runner

        return runner.run
    raise AttributeError(f"module 'segdl.cluster' has no attribute {name!r}")
