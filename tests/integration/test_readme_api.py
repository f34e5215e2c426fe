"""The README's Python API examples, run as written in an empty directory, their URLs (and
the checksum placeholder) pointed at the test server."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.server import FaultServer

REPO = Path(__file__).resolve().parents[2]
NAMES = ("big.iso", "a.iso", "b.iso", "c.iso", "d.iso")


def _blocks(section: str) -> list[str]:
    """The Python blocks of the README from ``section`` to the next ``## `` heading."""
    text = (REPO / "README.md").read_text()
    start = text.index(section)
    end = text.find("\n## ", start + 1)
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text[start:end], re.S)]


def _pointed(code: str, server: FaultServer, digest: str) -> str:
    for host in ("https://example.org", "https://m1.example.org", "https://m2.example.org"):
        code = code.replace(host, server.base_url)
    return code.replace('"sha256=…"', f'"sha256={digest}"')


def test_the_python_api_examples_run_as_written(fault_server: FaultServer, tmp_path: Path) -> None:
    """download(), download_many(), Downloader and adownload as the README shows them work
    in an empty directory (downloads/ is created), each file identical to the served one."""
    served = {name: hashlib.sha256(name.encode()).digest() * 32768 for name in NAMES}  # 1 MiB
    for name, data in served.items():
        fault_server.add_file(f"/{name}", data)
    digest = hashlib.sha256(served["b.iso"]).hexdigest()
    blocks = _blocks("## Python API")
    assert len(blocks) >= 2, "the README lost its API examples"
    outputs = []
    for code in blocks[:2]:
        done = subprocess.run(
            [sys.executable, "-c", _pointed(code, fault_server, digest)],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.splitlines())
    single, many = outputs
    assert any(line.startswith("DownloadFinished(") for line in single)  # progress=print
    assert single[-1].split()[:2] == ["big.iso", str(len(served["big.iso"]))]
    assert many[0] == "2 0 []", many
    assert (tmp_path / "big.iso").read_bytes() == served["big.iso"]
    assert (tmp_path / "d.iso").read_bytes() == served["d.iso"]
    for name in ("a.iso", "b.iso", "c.iso"):
        assert (tmp_path / "downloads" / name).read_bytes() == served[name], name
