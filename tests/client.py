"""Small client-side helpers for transport-level tests: poll for a condition, read a body."""

from __future__ import annotations

import time
from collections.abc import Callable

from segdl.net.transport import Urllib3Transport


def wait_for(condition: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; its last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def get_body(transport: Urllib3Transport, url: str) -> bytes:
    """GET ``url`` through ``transport`` and read the whole body."""
    response = transport.request("GET", url, {})
    buffer = memoryview(bytearray(64 * 1024))
    body = bytearray()
    while n := response.readinto(buffer):
        body += buffer[:n]
    response.close()
    return bytes(body)
