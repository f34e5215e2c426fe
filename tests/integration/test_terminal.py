"""segdl in a real terminal (tmux at a fixed size): displays redraw in place, never scroll."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from segdl.cli import render
from tests.server import Faults, FaultServer

MakeData = Callable[..., bytes]
_MAP_CHARS = set(render.DONE + render.PARTLY + render.EMPTY + render.HEAD)
_WRONG_UNITS = re.compile(r"\d (MB|KB|GB|bytes)\b|MB/s|KB/s|bytes/s")

if shutil.which("tmux") is None:  # scripts/test.sh installs it; never skip silently
    pytest.fail("tmux is needed for the terminal tests (apt-get install tmux)", pytrace=False)


class Pane:
    """One tmux server of our own (its own socket), one window of a fixed size."""

    def __init__(self, width: int, height: int = 25) -> None:
        self.socket = f"segdl-test-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def run(self, command: str, cwd: Path) -> None:
        script = f"cd {shlex.quote(str(cwd))} && {command}; echo rc=$?; sleep 60"
        self.tmux(
            "new-session", "-d", "-x", str(self.width), "-y", str(self.height), "sh", "-c", script
        )

    def screen(self, *, escapes: bool = False) -> list[str]:
        lines = self.tmux("capture-pane", "-p", *(["-e"] if escapes else []))
        return lines.rstrip("\n").split("\n")

    def wait_for(self, pattern: str, timeout_s: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            screen = self.screen()
            if any(re.search(pattern, line) for line in screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} never appeared:\n" + "\n".join(self.screen()))

    def resize(self, width: int) -> None:
        self.width = width
        self.tmux("resize-window", "-x", str(width), "-y", str(self.height))

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def pane_factory() -> Iterator[Callable[[int], Pane]]:
    panes: list[Pane] = []

    def make(width: int) -> Pane:
        panes.append(Pane(width))
        return panes[-1]

    yield make
    for pane in panes:
        pane.close()


def _segdl(*argv: str, env: str = "") -> str:
    return f"{env} {shlex.quote(sys.executable)} -m segdl " + " ".join(map(shlex.quote, argv))


def _map_lines(screen: list[str]) -> list[str]:
    return [line for line in screen if line and set(line) <= _MAP_CHARS]


def _progress_lines(screen: list[str]) -> list[str]:
    """A file's live line: its bytes as done/total, then a rate."""
    return [line for line in screen if re.search(r"\d/\d+\.\d \w+ .*/s", line)]


def _check_single(screen: list[str], width: int) -> None:
    progress, maps = _progress_lines(screen), _map_lines(screen)
    assert len(progress) == 1 and len(maps) == 1, "\n".join(screen)
    assert "MiB" in progress[0] and not _WRONG_UNITS.search(progress[0])
    assert all(len(line) < width for line in progress + maps)


def _serve(server: FaultServer, data: bytes, rate: float) -> str:
    server.add_file("/big.bin", data)
    server.set_faults("/big.bin", Faults(throttle_bytes_per_s=rate))
    return server.url("/big.bin")


@pytest.mark.parametrize("width", [40, 80, 200])
def test_single_download_redraws_two_lines_in_place(
    width: int,
    pane_factory: Callable[[int], Pane],
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
) -> None:
    """During and after a ranged download: one progress line, one segment map, then the summary."""
    url = _serve(fault_server, make_data(8 << 20), 1 << 20)
    pane = pane_factory(width)
    pane.run(_segdl("-x", "4", "-o", "out.bin", url), tmp_path)
    during = pane.wait_for(r"ETA \d")
    time.sleep(0.6)  # a few redraws later: still the same two lines
    _check_single(pane.screen(), width)
    assert render.HEAD in _map_lines(during)[0]
    after = pane.wait_for(r"^rc=")
    _check_single(after, width)
    assert "rc=0" in after and any(line.startswith("segdl: saved out.bin") for line in after)
    assert set(_map_lines(after)[0]) == {render.DONE}
    assert (tmp_path / "out.bin").read_bytes() == make_data(8 << 20)


def test_a_resize_mid_download_leaves_no_copies(
    pane_factory: Callable[[int], Pane],
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
) -> None:
    """Resizing 80 -> 40 -> 200 columns mid-download: each redraw fits the new width, no copies."""
    url = _serve(fault_server, make_data(12 << 20), 1 << 20)
    pane = pane_factory(80)
    pane.run(_segdl("-x", "4", "-o", "out.bin", url), tmp_path)
    pane.wait_for(r"ETA \d")
    for width in (40, 200):
        pane.resize(width)
        time.sleep(0.7)
        _check_single(pane.screen(), width)
    after = pane.wait_for(r"^rc=")
    _check_single(after, 200)
    assert "rc=0" in after


def test_batch_shows_one_overall_line_and_bounded_file_lines(
    pane_factory: Callable[[int], Pane],
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
) -> None:
    """A batch: one overall line, file lines that fit, saved lines above, summary at the end."""
    files = 16
    for n in range(files):
        fault_server.add_file(f"/f{n:02d}.bin", make_data(256 << 10, seed=n))
        fault_server.set_faults(f"/f{n:02d}.bin", Faults(throttle_bytes_per_s=256 << 10))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(fault_server.url(f"/f{n:02d}.bin") + "\n" for n in range(files)))
    pane = pane_factory(80)
    pane.run(_segdl("-j", "6", "-i", "list.txt", "-d", "out"), tmp_path)
    during = pane.wait_for(r"^  f\d\d\.bin .*KiB/s")
    overall = [line for line in during if re.match(rf"^\d+/{files} files", line)]
    active = [line for line in during if line.startswith("  f")]
    assert len(overall) == 1, "\n".join(during)
    assert 1 <= len(active) <= 6 and not _WRONG_UNITS.search("\n".join(during))
    after = pane.wait_for(r"^rc=")
    text = "\n".join(after)
    assert len([line for line in after if re.match(rf"^\d+/{files} files", line)]) == 1, text
    assert f"{files}/{files} files" in text and "rc=0" in text
    assert re.search(rf"segdl: {files} done, 0 skipped, 0 failed; 4\.0 MiB in [\d.]+ s \(", text)
    assert not [line for line in after if line.startswith("  f")], text
    assert not _WRONG_UNITS.search(text)


def test_no_color_and_dumb_terminals(
    pane_factory: Callable[[int], Pane],
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
) -> None:
    """NO_COLOR draws the live lines without colours; TERM=dumb gets plain lines instead."""
    url = _serve(fault_server, make_data(4 << 20), 1 << 20)
    pane = pane_factory(80)
    pane.run(_segdl("-x", "2", "-o", "a.bin", url, env="NO_COLOR=1"), tmp_path)
    pane.wait_for(r"ETA \d")
    coloured = "\n".join(pane.screen(escapes=True))
    assert not re.search(r"\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;)", coloured), repr(coloured)
    assert _map_lines(pane.wait_for("^rc=0"))
    dumb = pane_factory(80)
    dumb.run(_segdl("-x", "2", "-o", "b.bin", url, env="TERM=dumb"), tmp_path)
    after = dumb.wait_for("^rc=")
    assert "rc=0" in after and not _map_lines(after)
    assert any(re.match(r"segdl: +[\d.]+% .*MiB/s", line) for line in after), after


def test_a_file_handed_to_the_full_path_keeps_one_line(
    pane_factory: Callable[[int], Pane],
    fault_server: FaultServer,
    make_data: MakeData,
    tmp_path: Path,
) -> None:
    """A file the lean path reads for a while and then gives up on (a chunked answer that
    outgrows a small file) goes the full way: its lean line ends when it is handed over, so
    it never has two lines at once, and it ends done."""
    size = 3 << 19  # 1.5 MiB: past what the lean path takes whole
    fault_server.add_file("/f00.bin", make_data(size, seed=0))
    fault_server.set_faults(
        "/f00.bin", Faults(ignore_range=True, chunked=True, throttle_bytes_per_s=1 << 20)
    )
    fault_server.add_file("/f01.bin", make_data(4096, seed=1))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(fault_server.url(f"/f{n:02d}.bin") + "\n" for n in range(2)))
    pane = pane_factory(80)
    pane.run(_segdl("-j", "3", "-i", "list.txt", "-d", "out"), tmp_path)
    deadline = time.monotonic() + 30
    most = seen = 0
    while time.monotonic() < deadline:
        screen = pane.screen()
        lines = [line for line in screen if line.startswith("  f00.bin")]
        most, seen = max(most, len(lines)), seen + bool(lines)
        if any(line.startswith("rc=") for line in screen):
            break
        time.sleep(0.03)
    text = "\n".join(pane.screen())
    assert "rc=0" in text and "2 done, 0 skipped, 0 failed" in text, text
    assert seen > 10 and most == 1, (seen, most)
    assert len([r for r in fault_server.requests if r.path == "/f00.bin"]) == 2
    assert (tmp_path / "out" / "f00.bin").read_bytes() == make_data(size, seed=0)
