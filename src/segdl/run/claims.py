"""The output names a batch's files have taken, for "two entries of this batch name the same
file", in little memory: 8 bytes a name (a 64-bit hash of its path), not the path itself.

A list of a million files would otherwise hold a million paths (hundreds of bytes each) for
the whole batch. Hashes go into a small set first; every :data:`_RECENT` of them are sorted
into an array, and arrays of like size are merged (a log-structured merge), so a lookup is a
set probe and a binary search in each of a few arrays. Two different paths share a hash
with a probability of about n² / 2⁶⁵ (for a million names, one in 36 million).
"""

from __future__ import annotations

import itertools
from array import array
from bisect import bisect_left
from pathlib import Path

_RECENT = 1 << 15


def _digest(path: Path | str) -> int:
    # str's own hash: 64 bits (SipHash, keyed per process: fine for names held in memory)
    return hash(str(path))


def _holds(values: array[int], wanted: int) -> bool:
    at = bisect_left(values, wanted)
    return at < len(values) and values[at] == wanted


class Claims:
    """Paths (or names) taken so far; not thread-safe (one thread names a batch's files)."""

    def __init__(self) -> None:
        self._recent: set[int] = set()
        self._levels: list[array[int]] = []  # sorted, largest first

    def __contains__(self, path: Path | str) -> bool:
        wanted = _digest(path)
        if wanted in self._recent:
            return True
        return any(_holds(level, wanted) for level in self._levels)

    def add(self, path: Path | str) -> None:
        self._recent.add(_digest(path))
        if len(self._recent) >= _RECENT:
            merged = array("q", sorted(self._recent))
            self._recent = set()
            while self._levels and len(self._levels[-1]) <= len(merged):
                # two sorted runs: timsort merges them in one pass
                merged = array("q", sorted(itertools.chain(self._levels.pop(), merged)))
            self._levels.append(merged)

    def __len__(self) -> int:
        return len(self._recent) + sum(len(level) for level in self._levels)
