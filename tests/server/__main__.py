"""``python -m tests.server --size 64M [--port 0] [--throttle RATE] [--seed N]``.

Serves one deterministic pseudo-random file at /file.bin, prints ``url <URL>`` and
``sha256 <hex>`` on stdout, and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import signal
import sys
import threading
from types import FrameType

from tests.server.core import FaultServer
from tests.server.faults import Faults

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str) -> int:
    """``123``, ``64K``, ``64M``, ``1G`` (binary units, an optional trailing B or iB)."""
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = cleaned[-1:] if cleaned[-1:] in _UNITS else ""
    number = cleaned[: len(cleaned) - len(unit)]
    if not (number.isascii() and number.isdigit()):
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(number) * _UNITS[unit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.server", description=__doc__)
    parser.add_argument("--size", type=parse_size, default=parse_size("64M"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--throttle", type=parse_size, default=None, help="bytes/s per connection")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = random.Random(args.seed).randbytes(args.size)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with FaultServer(args.host, args.port) as server:
        server.add_file("/file.bin", data)
        if args.throttle is not None:
            server.set_faults("/file.bin", Faults(throttle_bytes_per_s=float(args.throttle)))
        sys.stdout.write(f"url {server.url('/file.bin')}\n")
        sys.stdout.write(f"sha256 {hashlib.sha256(data).hexdigest()}\n")
        sys.stdout.flush()
        while not stopping.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
