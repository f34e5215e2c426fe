"""The README's pooch and fsspec examples, run as written against the test server they name
(``python3 -m tests.server --size 32M``: seed 0's bytes at /file.bin)."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import FaultServer

REPO = Path(__file__).resolve().parents[2]
README_URL = "http://127.0.0.1:8765"
DATA = random.Random(0).randbytes(32 * 1024 * 1024)  # what the README's server command serves


def example(section: str, index: int = 0) -> str:
    """The ``index``-th Python block of the README section titled ``section``."""
    text = (REPO / "README.md").read_text()
    start = text.index(section)
    end = text.find("\n## ", start)
    block = re.findall(r"```python\n(.*?)```", text[start:end], re.S)[index]
    return textwrap.dedent(block)  # a block inside a list item is indented


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        srv.add_file("/file.bin", DATA)
        yield srv


def run(code: str, server: FaultServer, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = code.replace(README_URL, server.base_url)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip


def test_the_pooch_example_runs_as_written(server: FaultServer, tmp_path: Path) -> None:
    """The pooch example's known_hash is the served file's; it prints the cached path."""
    done = run(example("### pooch: `SegdlDownloader`"), server, tmp_path)
    assert done.stdout.strip() == str(tmp_path / "cache" / "file.bin")
    assert (tmp_path / "cache" / "file.bin").read_bytes() == DATA


def test_the_fsspec_example_runs_as_written(server: FaultServer, tmp_path: Path) -> None:
    """The fsspec example downloads the file and prints its size and 8 bytes at 1 MiB."""
    done = run(example("### fsspec: the `segdl` filesystem"), server, tmp_path)
    assert done.stdout.split() == [str(len(DATA)), DATA[1 << 20 : (1 << 20) + 8].hex()]
    assert (tmp_path / "downloads" / "file.bin").read_bytes() == DATA


def test_the_https_opt_in_line_of_the_readme_works(server: FaultServer, tmp_path: Path) -> None:
    """The README's opt-in lines make fsspec open plain URLs with segdl's filesystem."""
    opt_in = example("### fsspec: the `segdl` filesystem", 1).replace('"https"', '"http"')
    code = (
        "import fsspec\n"
        + opt_in
        + (
            f"with fsspec.open({server.url('/file.bin')!r}) as f:\n"
            "    print(type(f).__name__, f.read(4).hex())\n"
        )
    )
    done = run(code, server, tmp_path)
    assert done.stdout.split() == ["SegdlFile", DATA[:4].hex()]
