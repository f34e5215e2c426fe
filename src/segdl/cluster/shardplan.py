"""What one attempt at a shard asks of its batch: the runner's choices, kept apart from Ray."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from segdl.disk.journal import JOURNAL_NAME
from segdl.run.shards import Shard


def journal_mode(dest: str | os.PathLike[str]) -> bool | Literal["append"]:
    """How a first attempt at a shard uses the journal of ``dest``: read (as every batch
    does) if an earlier run finished files there, else only appended to (see
    :func:`shard_batch`)."""
    return True if os.path.lexists(Path(dest) / JOURNAL_NAME) else "append"


def run_batch(dest: str | os.PathLike[str], parallel: int, pipelining: bool) -> dict[str, object]:
    """The batch settings every shard of a run starts from. A shard's batch builds no
    progress events for its small files: the run's tally counts items, and a small file's
    events cost more than its download (see :func:`journal_mode` for the journal)."""
    return {
        "parallel": parallel,
        "pipelining": pipelining,
        "lean_events": False,
        "journal": journal_mode(dest),
    }


def shard_batch(batch: Mapping[str, object], shard: Shard, retry: bool) -> dict[str, object]:
    """The batch settings of one attempt at a shard. Each shard is a new batch, and reading
    the journal of a directory costs a parse of every line (all the earlier shards' files:
    a run's reading would grow with the square of its size); a first attempt into a
    destination that had no journal when the run began only appends to it: none of its
    files can be in it (another shard's copy of a URL finds its name taken and is skipped).
    A retry, or a shard writing into its own ``dir=``s, reads it."""
    if retry or any("directory" in job.options for job in shard.jobs):
        return {**batch, "journal": True}
    return dict(batch)
