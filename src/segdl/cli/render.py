"""Pure: the lines of the live displays, for a given width, from plain values.

No terminal: :mod:`segdl.cli.screen` draws these lines and styles them, and tests check them
at any width. Every line is at most ``width - 1`` cells (a character in the last column makes
some terminals wrap), counted as rich counts them when it draws and crops them, and sizes are
1024-based everywhere (KiB, MiB, MiB/s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from segdl.core.progress import SegmentMap

DONE, PARTLY, EMPTY, HEAD = "█", "▓", "░", ">"
"""The segment map's cells: all in, partly in, nothing yet, a connection's next byte."""
_MIN_NAME = 8
MAX_WIDTH = 120
"""Wider terminals get lines this wide: numbers far from their name read worse."""
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``12.3 MiB``: 1024-based, one decimal past bytes."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_rate(bytes_per_s: float) -> str:
    return human_bytes(bytes_per_s) + "/s"


def bytes_of(done: int, total: int | None) -> str:
    """``12.3/27.0 MiB``: both in the total's unit, so the pair reads at a glance."""
    if total is None:
        return human_bytes(done)
    text = human_bytes(total)
    number, unit = text.split(" ")
    scale = 1024 ** _UNITS.index(unit)
    shown = f"{done:.0f}" if unit == "B" else f"{done / scale:.1f}"
    return f"{shown}/{number} {unit}"


def clock(seconds: float | None) -> str:
    """``0:07``, ``12:34``, ``1:02:03``; ``--:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_s(done: int, total: int | None, rate: float) -> float | None:
    if total is None or rate <= 0:
        return None
    return max(0, total - done) / rate


def percent(done: int, total: int | None) -> str:
    if not total:
        return ""
    return f"{min(100.0, 100 * done / total):.0f}%"


def cells(text: str) -> int:
    """Terminal columns ``text`` takes, by rich's tables (newer than Python's: U+4DC0 is two
    columns to rich and one to ``unicodedata``), since rich crops and places these lines.
    Imported here: only a live display measures, and it has imported rich already."""
    from rich.cells import cell_len

    return cell_len(text)


def ellipsized(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, its end replaced by ``…`` when cut."""
    if cells(text) <= width:
        return text
    if width <= 0:
        return ""
    from rich.cells import set_cell_size  # a wide character cut in two: a space instead

    return set_cell_size(text, width - 1) + "…"


def padded(text: str, width: int) -> str:
    return text + " " * max(0, width - cells(text))


def fitted(
    name: str, fields: Sequence[tuple[int, str]], width: int, *, min_name: int = _MIN_NAME
) -> str:
    """``name`` then ``fields`` in ``width - 1`` cells. Each field comes with its rank (0 the
    most wanted): the fields that do not fit are dropped, least wanted first, then the name
    is shortened. The fields stay right-aligned, so they do not jump about as numbers change."""
    room = min(width, MAX_WIDTH) - 1
    kept = [(rank, text) for rank, text in fields if text]
    while kept and len(" ".join(t for _, t in kept)) + 1 + min(min_name, cells(name)) > room:
        kept.remove(max(kept, key=lambda field: field[0]))
    stats = " ".join(text for _, text in kept)
    name_room = room - len(stats) - (1 if stats else 0)
    shown = ellipsized(name, name_room)
    return padded(shown, name_room) + " " + stats if stats else shown


@dataclass(slots=True)
class FileView:
    """What a display knows of one file, updated from its events. ``name`` is shown as is:
    whoever makes the view passes server-chosen text through
    :func:`segdl.core.printable.printable`."""

    name: str
    size_bytes: int | None
    done_bytes: int = 0
    rate_bytes_per_s: float = 0.0
    connections: int = 0
    segments: SegmentMap | None = None
    took_s: float | None = None
    """Set when the file is complete: the line then says how long it took, not an ETA."""


def file_line(view: FileView, width: int, *, indent: str = "") -> str:
    """One file: name, percent, bytes, rate, ETA, connections (no ETA or connections once all
    its bytes are in); on a narrow terminal the connections go first, then the percent, the
    ETA and the rate."""
    rate = view.rate_bytes_per_s
    fields = [
        (3, percent(view.done_bytes, view.size_bytes)),
        (0, bytes_of(view.done_bytes, view.size_bytes)),
        (1, human_rate(rate)),
    ]
    if view.took_s is not None:
        fields.append((2, "in " + clock(view.took_s)))
    elif view.size_bytes and view.done_bytes >= view.size_bytes:
        pass  # all of it is here, being checked or synced: "ETA 0:00, 1 conn" says nothing
    else:
        fields.append((2, "ETA " + clock(eta_s(view.done_bytes, view.size_bytes, rate))))
        fields.append((4, f"{view.connections} conn"))
    return indent + fitted(view.name, fields, min(width, MAX_WIDTH) - len(indent))


def map_line(segments: SegmentMap, width: int) -> str:
    """The file as ``width - 1`` cells: ``█`` all in, ``▓`` partly, ``░`` not yet, and a
    ``>`` where each connection's next byte is."""
    cells = max(1, min(width, MAX_WIDTH) - 1)
    size = segments.size_bytes
    if size <= 0:
        return DONE * cells
    filled = [0.0] * cells
    for r in segments.done:
        first, last = r.start * cells // size, min(cells - 1, (r.end - 1) * cells // size)
        for i in range(first, last + 1):
            lo, hi = i * size / cells, (i + 1) * size / cells
            filled[i] += max(0.0, min(hi, r.end) - max(lo, r.start)) / (hi - lo)
    chars = [DONE if f >= 0.999 else PARTLY if f > 0 else EMPTY for f in filled]
    for stream in segments.connections:
        if stream.start < size:
            chars[min(cells - 1, stream.start * cells // size)] = HEAD
    return "".join(chars)


def single_lines(view: FileView, width: int) -> list[str]:
    """A single download: its line, then the segment map when the size is known."""
    lines = [file_line(view, width)]
    if view.segments is not None:
        lines.append(map_line(view.segments, width))
    return lines


@dataclass(slots=True)
class BatchView:
    """A batch as a display knows it."""

    files: int
    finished: int = 0
    failed: int = 0
    complete_before: int = 0
    """Already complete from an earlier run: counted in ``finished``, nothing fetched."""
    bytes_done: int = 0
    rate_bytes_per_s: float = 0.0
    elapsed_s: float = 0.0
    over: bool = False
    """No file is fetched any more (stopped early: Ctrl-C): the line says how long it took."""


def batch_lines(batch: BatchView, active: Sequence[FileView], width: int, height: int) -> list[str]:
    """The overall line, then as many active files as fit in about half the screen (at
    least one), then ``+N more`` for the rest."""
    ended = batch.finished + batch.failed
    eta = None
    fetched = ended - batch.complete_before
    if fetched > 0 and ended < batch.files:
        eta = batch.elapsed_s * (batch.files - ended) / fetched
    going = not batch.over and (ended < batch.files or not batch.files)  # 0/0: none read yet
    fields = [
        (0, f"{batch.failed} failed" if batch.failed else ""),
        (3, human_bytes(batch.bytes_done)),
        (1, human_rate(batch.rate_bytes_per_s)),
        (2, "ETA " + clock(eta) if going else "in " + clock(batch.elapsed_s)),
    ]
    label = f"{batch.finished}/{batch.files} files"
    lines = [fitted(label, fields, width, min_name=len(label))]
    rows = max(1, min(len(active), (height - 2) // 2))
    if len(active) > rows:
        rows = max(1, rows - 1)  # the last row says how many more
    lines += [file_line(view, width, indent="  ") for view in active[:rows]]
    if len(active) > rows:
        lines.append(ellipsized(f"  +{len(active) - rows} more", width - 1))
    return lines
