"""The live displays' lines: within the width, 1024-based units, the map where bytes are."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from rich.cells import cell_len

from segdl.cli import render
from segdl.cli.render import BatchView, FileView
from segdl.core.models import ByteRange
from segdl.core.progress import SegmentMap

MIB = 1 << 20


def _view(name: str = "ubuntu-24.04-desktop-amd64.iso") -> FileView:
    segments = SegmentMap(
        27 * MIB,
        (ByteRange(0, 3 * MIB), ByteRange(9 * MIB, 12 * MIB)),
        (ByteRange(3 * MIB, 9 * MIB),),
    )
    return FileView(name, 27 * MIB, 6 * MIB, 4.1 * MIB, 8, segments)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (int(1.5 * MIB), "1.5 MiB"),
        (5 << 30, "5.0 GiB"),
    ],
)
def test_sizes_are_1024_based(n: int, text: str) -> None:
    """human_bytes counts in KiB, MiB, GiB of 1024."""
    assert render.human_bytes(n) == text


def test_done_and_total_share_the_total_unit() -> None:
    """The bytes pair reads 0.5/27.0 MiB, not 512.0 KiB/27.0 MiB."""
    assert render.bytes_of(MIB // 2, 27 * MIB) == "0.5/27.0 MiB"
    assert render.bytes_of(10, 100) == "10/100 B"


@given(st.integers(10, 300), st.text(min_size=0, max_size=80))
@example(15, "\u4dc0")  # two columns to rich, one to Python's unicodedata 14
@example(12, "\u263a\ufe0f" * 5)  # a narrow character made wide by its variation selector
def test_every_line_fits_the_width(width: int, name: str) -> None:
    """No live line reaches the last column, whatever the width and the name."""
    view = _view(name)
    lines = render.single_lines(view, width)
    lines += render.batch_lines(BatchView(300, 157, 2), [view] * 20, width, 25)
    assert all(cell_len(line) <= min(width, render.MAX_WIDTH) - 1 for line in lines), lines


def test_narrow_lines_keep_bytes_and_rate_and_drop_connections_first() -> None:
    """At 40 columns a file line keeps its bytes and rate; connections go before them."""
    line = render.file_line(_view(), 40)
    assert "6.0/27.0 MiB" in line and "4.1 MiB/s" in line and "conn" not in line
    wide = render.file_line(_view(), 80)
    assert wide.endswith("22% 6.0/27.0 MiB 4.1 MiB/s ETA 0:05 8 conn")
    arrived = render.file_line(FileView("f.bin", 16 * 1024, 16 * 1024, 2048.0, 1), 80)
    assert arrived.endswith("100% 16.0/16.0 KiB 2.0 KiB/s"), arrived  # no ETA while it syncs


def test_segment_map_marks_done_partial_empty_and_connections() -> None:
    """The map shows done bytes as full cells, a connection's next byte as its head."""
    line = render.map_line(_view().segments or SegmentMap(0, (), ()), 28)  # 27 cells, 1 MiB each
    assert line == "███>░░░░░███" + "░" * 15


def test_batch_shows_what_fits_and_counts_the_rest() -> None:
    """With more files active than rows, the last row says how many more there are."""
    active = [FileView(f"f{n}.bin", MIB, MIB // 2, MIB, 1) for n in range(12)]
    lines = render.batch_lines(BatchView(50, 10, 1, 0, 12 * MIB, 3 * MIB, 10.0), active, 80, 12)
    assert lines[0].startswith("10/50 files") and "1 failed" in lines[0] and "MiB/s" in lines[0]
    assert lines[-1] == "  +8 more" and len(lines) == 1 + 4 + 1
    starting = render.batch_lines(BatchView(0, elapsed_s=0.1), [], 80, 12)  # none read yet
    assert (
        starting[0].startswith("0/0 files") and "ETA" in starting[0] and " in " not in starting[0]
    )
    stopped = BatchView(50, 10, 1, 0, 12 * MIB, 3 * MIB, 10.0, over=True)  # Ctrl-C at 11 of 50
    assert render.batch_lines(stopped, [], 80, 12)[0].endswith(" in 0:10")


def test_batch_screen_ends_a_file_whose_end_comes_from_another_thread() -> None:
    """A file started on one thread and finished on another leaves no line behind."""
    import io
    import threading
    from pathlib import Path

    from segdl.cli.screen import BatchScreen
    from segdl.core.progress import DownloadFinished, DownloadProgress, DownloadStarted

    screen = BatchScreen(io.StringIO(), 2)
    url = "http://h/a.bin"
    screen(DownloadStarted(url, Path("a.bin"), MIB, True, 1))
    screen(DownloadStarted("http://h/b.bin", Path("b.bin"), MIB, True, 1))
    screen(DownloadProgress(url, MIB // 2, MIB, 0.5, float(MIB), 1))
    lines = [t.plain for t in screen._lines(80, 25)]
    assert any(line.startswith("  a.bin") and "0.5/1.0 MiB" in line for line in lines), lines
    finisher = threading.Thread(
        target=screen, args=(DownloadFinished(url, Path("a.bin"), MIB, 1.0),)
    )
    finisher.start()
    finisher.join()
    lines = [t.plain for t in screen._lines(80, 25)]
    assert not any(line.startswith("  a.bin") for line in lines) and len(lines) == 2, lines
    screen.close()


def test_a_plain_line_says_what_is_left_until_the_end_and_then_only_the_total() -> None:
    """While bytes flow: percent, bytes, rate, ETA and the connections streaming; the last
    line, after every worker stopped, drops the ETA and the connections (no "0 connections"
    at 100%: the summary line says how many were used)."""
    from segdl.cli.display import _progress_text
    from segdl.core.progress import DownloadProgress

    running = _progress_text(DownloadProgress("u", 1 << 20, 4 << 20, 1.0, float(1 << 20), 3))
    assert running == " 25.0% 1.0/4.0 MiB, 1.0 MiB/s, ETA 0:03, 3 connections"
    done = _progress_text(DownloadProgress("u", 4 << 20, 4 << 20, 2.0, float(2 << 20), 0))
    assert done == "100.0% 4.0/4.0 MiB, 2.0 MiB/s"
    unknown = _progress_text(DownloadProgress("u", 1 << 20, None, 1.0, float(1 << 20), 1))
    assert unknown == "1.0 MiB, 1.0 MiB/s, 1 connection"


def test_lines_printed_above_a_live_screen_come_together_in_order_and_none_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lines go out from the screen's own thread, together, in order: one shows within a
    few tenths of a second without waiting for another; stop() prints whatever still waits;
    the caller never writes to the terminal itself."""
    import io
    import threading
    import time

    from segdl.cli.screen import Screen

    stream = io.StringIO()
    screen = Screen(stream, lambda width, height: [])
    for n in range(500):
        screen.print(f"line {n}")
    screen.print("alone")
    deadline = time.monotonic() + 5
    while "alone" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "alone" in stream.getvalue()
    callers: list[threading.Thread] = []
    real_print = screen.console.print

    def print_noting_the_caller(text: object, **how: bool) -> None:
        callers.append(threading.current_thread())
        real_print(text, **how)

    monkeypatch.setattr(screen.console, "print", print_noting_the_caller)
    screen.print("last")
    time.sleep(0.3)
    assert callers and threading.current_thread() not in callers  # its own thread printed
    screen.stop()
    printed = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert printed == [*(f"line {n}" for n in range(500)), "alone", "last"]


def test_a_batch_stopped_mid_way_counts_its_unfinished_files_neither_done_nor_failed() -> None:
    """On the live batch line, a file the stop left unfinished is not a failure (the summary
    counts it as interrupted); a real failure still is."""
    import argparse
    import io
    import threading

    from segdl.cli.batch import _item_reporter
    from segdl.cli.screen import BatchScreen
    from segdl.core.errors import Cancelled, NetworkError
    from segdl.run.batch import Job
    from segdl.run.reports import ItemReport, Outcome

    stderr = io.StringIO()
    bar = BatchScreen(stderr, 3)
    args = argparse.Namespace(progress="bar", quiet=False)
    on_item = _item_reporter(args, bar, stderr, threading.Lock())
    on_item(ItemReport(Job(("http://h/a",)), Outcome.FAILED, error=Cancelled("interrupted")))
    on_item(ItemReport(Job(("http://h/b",)), Outcome.FAILED, error=NetworkError("h", "reset")))
    bar.close()
    assert bar._batch.failed == 1 and bar._batch.finished == 0
    assert (
        "http://h/a" not in stderr.getvalue() and "failed: http://h/b: reset" in stderr.getvalue()
    )


def test_a_batch_screen_starts_no_thread_until_the_batch_begins() -> None:
    """A batch forks its committing child before its first event, which needs a process
    with no other thread: the batch display starts drawing (and its on_begin, the list's
    count) at the first event, not when it is made; a batch that never had one still ends
    on its last frame."""
    import io
    import threading
    from pathlib import Path

    from segdl.cli.screen import BatchScreen
    from segdl.core.progress import DownloadStarted

    before = threading.active_count()
    stderr = io.StringIO()
    begun: list[int] = []
    screen = BatchScreen(stderr, 2)
    screen.on_begin = lambda: begun.append(threading.active_count())
    screen.files_known(5)  # the list's reader: not a beginning
    assert threading.active_count() == before and begun == [] and stderr.getvalue() == ""
    screen(DownloadStarted("http://h/a", Path("/tmp/a"), 10, False, 1))
    screen(DownloadStarted("http://h/b", Path("/tmp/b"), 10, False, 1))
    assert len(begun) == 1 and begun[0] > before  # drawing, once
    screen.close()

    quiet = io.StringIO()
    running = threading.active_count()  # rich's refresh thread may still be ending
    never = BatchScreen(quiet, 0)
    assert threading.active_count() <= running
    never.close()
    assert "0/0 files" in quiet.getvalue()


def test_a_terminal_that_gives_no_size_still_gets_the_batch_line() -> None:
    """A terminal whose size reads 0x0 (a pty nobody sized): the batch is drawn at rich's
    default width, not at a width of zero (which drew nothing, not even the last frame)."""
    import os
    import select
    import time

    from segdl.cli.screen import BatchScreen

    master, terminal = os.openpty()  # no TIOCSWINSZ: 0 columns, 0 lines
    try:
        assert os.get_terminal_size(terminal).columns == 0
        with open(terminal, "w", closefd=False) as stream:
            screen = BatchScreen(stream, 1)
            screen.item_ended(failed=False, size_bytes=5, complete_before=False)
            screen.close()
        drawn = b""
        deadline = time.monotonic() + 5  # a pty hands bytes over to its other end later
        while b"1/1 files" not in drawn and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                drawn += os.read(master, 65536)
    finally:
        os.close(terminal)
        os.close(master)
    assert b"1/1 files" in drawn


def test_a_long_line_above_the_live_lines_is_written_whole_and_as_given() -> None:
    """A saved file's line wider than the terminal is neither cut nor broken by segdl (the
    terminal wraps it: a path copied from the screen is whole), and nothing in it is taken
    for markup or styling."""
    import io

    from segdl.cli.screen import Screen

    stream = io.StringIO()
    screen = Screen(stream, lambda width, height: [])
    screen.console.width = 40
    long = "segdl: saved /data/" + "d" * 60 + "/[bold]x[/bold].bin"
    screen.print(long)
    screen.print("segdl: saved b.bin")
    screen.stop()
    printed = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert printed == [long, "segdl: saved b.bin"]


def test_the_last_frame_of_a_stopped_batch_lists_no_file_as_if_it_were_still_going() -> None:
    """After a stop, the files that were transferring are not drawn at 0% with no ETA: the
    last frame is the batch's line (the summary counts them as interrupted)."""
    import io
    from pathlib import Path

    from segdl.cli.screen import BatchScreen
    from segdl.core.progress import DownloadStarted

    stream = io.StringIO()
    screen = BatchScreen(stream, 3)
    screen(DownloadStarted("http://h/a.bin", Path("a.bin"), MIB, True, 1))
    screen.item_ended(failed=False, size_bytes=MIB, complete_before=False)
    assert any("a.bin" in t.plain for t in screen._lines(80, 25))
    screen.close()
    assert [t.plain for t in screen._lines(80, 25)] == [screen._lines(80, 25)[0].plain]
    last = stream.getvalue().rsplit("1/3 files", 1)[-1]
    assert "a.bin" not in last and " in 0:0" in last
