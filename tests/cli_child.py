"""The command line in a Python process of its own, to see what a run loaded or made there
(modules imported, the committer chosen) without this test process's imports in the way."""

from __future__ import annotations

import subprocess
import sys


def main_in_child(
    argv: list[str], *, before: str = "", shown: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``segdl.cli.main.main(argv)`` in a fresh interpreter: ``before`` runs first (a spy, a
    setting; ``sys`` is imported), then ``main``, then its exit code is printed, followed by
    the value of the expressions in ``shown`` (``"'urllib3' in sys.modules"``)."""
    code = (
        f"import sys\n{before}\n"
        "from segdl.cli.main import main\n"
        f"code = main({argv!r})\n"
        f"print(code{', ' + shown if shown else ''})\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
