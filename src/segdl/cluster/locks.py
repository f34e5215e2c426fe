"""Owner locks left by a machine the cluster lost, taken over when its shard is retried.

A file that was being written when its node died keeps that node's owner lock, and
:mod:`segdl.disk.lock` never judges another host's lock (it cannot see whether that pid
lives), so the retry elsewhere would fail the file with exit 11. Within a run Ray knows
more: a node it reports dead, whose host name no live node has, runs no segdl any more (a
dead raylet takes its workers with it). So when a shard runs again after a lost attempt,
the locks in its directories whose owner is such a host are removed, each with a warning,
and the retry resumes those files from their ``.part``. Locks of live hosts, of this host
(judged by the lock itself: same host, dead pid), or of hosts Ray does not know are left
alone: a machine outside the cluster may be writing there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from segdl.disk.lock import NotRegularFile, read_regular_file
from segdl.disk.paths import LOCK_SUFFIX
from segdl.run.inputs import Job

log = logging.getLogger(__name__)

_MAX_LOCK_BYTES = 64 * 1024


def dead_hosts(nodes: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Host names of the nodes Ray reports dead and no live node has (``ray.nodes()``)."""
    alive: set[str] = set()
    dead: set[str] = set()
    for node in nodes:
        host = node.get("NodeManagerHostname")
        if isinstance(host, str) and host:
            (alive if node.get("Alive") else dead).add(host)
    return frozenset(dead - alive)


def owner_host(raw: bytes) -> str | None:
    """The host named by an owner lock's record; None if it is no record. Pure."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    host = record.get("host") if isinstance(record, dict) else None
    return host if isinstance(host, str) and host else None


def directories_of(jobs: Iterable[Job], dest: Path) -> list[Path]:
    """Where a shard's files go: ``dest``, each ``dir=`` (relative ones inside ``dest``,
    as :func:`segdl.run.shards.download_shard` puts them) and the directories of ``out=``."""
    found = {dest: None}
    for job in jobs:
        directory = job.options.get("directory")
        place = dest if directory is None else dest / directory
        name = job.options.get("dest")
        found[place if name is None else (place / name).parent] = None
    return list(found)


def take_over(directories: Iterable[Path], dead: frozenset[str]) -> list[Path]:
    """Remove the owner locks in ``directories`` held by a host of ``dead``; the locks
    removed. A lock is removed only if it still holds what was judged (read again just
    before), and a symlink or anything but a small regular file is never touched."""
    if not dead:
        return []
    removed = []
    for directory in directories:
        try:
            entries = [e for e in os.scandir(directory) if e.name.endswith(LOCK_SUFFIX)]
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            raw = _read(path)
            host = None if raw is None else owner_host(raw)
            if host not in dead or _read(path) != raw:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                log.warning("took over %s: its owner, host %s, left the cluster dead", path, host)
                removed.append(path)
    return removed


def _read(path: Path) -> bytes | None:
    try:
        got = read_regular_file(path, _MAX_LOCK_BYTES)
    except (NotRegularFile, OSError):
        return None
    return None if got is None else got[0]
