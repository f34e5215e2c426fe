"""Where a URL goes: its host, its origin, its gate key."""

from __future__ import annotations

import functools

import urllib3
import urllib3.connection

from segdl.net.gate import gate_key


def host_of(url: str) -> str:
    return urllib3.util.parse_url(url).host or "?"


@functools.lru_cache(maxsize=1024)
def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``url``; cached, since a batch asks it of each URL several
    times (a lane's origin, then whether each waiting file may ride it)."""
    parsed = urllib3.util.parse_url(url)
    scheme = (parsed.scheme or "").lower()
    return scheme, (parsed.host or "").lower(), parsed.port or (443 if scheme == "https" else 80)


def gate_key_of(url: str) -> str:
    scheme, host, port = origin_of(url)
    return gate_key(host, port, scheme)
