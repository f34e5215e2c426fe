"""The README's first command: a real download with the installed ``segdl`` command.

Serves 64 MiB of random bytes from the project's test server on 127.0.0.1 (this machine has
no internet), downloads them with ``segdl -x 8``, and checks the SHA-256.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's tests/ package

from tests.server import FaultServer

SIZE_BYTES = 64 * 1024 * 1024


def main() -> int:
    command = shutil.which("segdl") or sys.exit("the segdl command is not installed")
    data = random.Random(2026).randbytes(SIZE_BYTES)
    with FaultServer("127.0.0.1") as server, tempfile.TemporaryDirectory() as tmp:
        server.add_file("/demo/random.bin", data)
        out = Path(tmp) / "random.bin"
        argv = [command, "-x", "8", "-o", str(out), server.url("/demo/random.bin")]
        print("$", " ".join(argv), flush=True)
        code = subprocess.call(argv)
        if code != 0:
            print(f"segdl exited with {code}")
            return code
        same = hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
        print("sha256 matches the served file" if same else "sha256 MISMATCH")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
