"""Tests run the segdl of the checkout they are in, not whichever copy pip installed last.

An editable install points at one checkout; a second work tree of the same repository (a
branch beside main) would otherwise test main's code and pass. The tests' subprocesses
(``python -m segdl``, the console script) inherit the same path.
"""

import os
import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parent / "src")
sys.path.insert(0, _SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p)
