"""Where a URL goes: its host, its origin, its gate key.

Light to import (urllib3 is imported when first needed): the command line's early connect
and its proxy choice read :data:`DEFAULT_PORTS` before urllib3 is loaded.
"""

from __future__ import annotations

import functools
import socket

from segdl.core.errors import UsageError, shown

DEFAULT_PORTS = {"http": 80, "https": 443}
"""The port of a URL that names none, by scheme."""


def first_address(host: str, port: int) -> tuple[int, tuple[object, ...]] | None:
    """The family and address a connection to ``host`` tries first; None if the name does
    not resolve."""
    try:
        # An ASCII name as bytes: a str goes through the idna codec, whose import
        # (encodings.idna, stringprep) cost more than the lookup of a local name.
        name: str | bytes = host.encode("ascii") if host.isascii() else host
        found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    return (found[0][0], found[0][4]) if found else None


def gate_key(host: str, port: int | None, scheme: str = "http") -> str:
    """``host:port`` as a gate names it (lower case, no IPv6 brackets, the scheme's port
    when none is given)."""
    name = host.lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return f"{name}:{port or DEFAULT_PORTS.get(scheme, 80)}"


def host_of(url: str) -> str:
    """The host, for log lines; "?" when there is none to read."""
    import urllib3.util

    try:
        return urllib3.util.parse_url(url).host or "?"
    except ValueError:  # urllib3's LocationParseError
        return "?"


@functools.lru_cache(maxsize=1024)
def origin(url: str) -> tuple[str, str, int]:
    """Scheme, host and port, as RFC 6454 compares origins (credentials go to one origin
    only) and as the connection pools read them (urllib3's reading of the URL: the host
    lower-cased and IDNA-encoded, an IPv6 one without its brackets; the scheme's port filled
    in). Cached: a batch asks it of each URL several times (a lane's origin, then whether
    each waiting file may ride it). UsageError for a URL with no host and port to read."""
    import urllib3.util

    try:
        parsed = urllib3.util.parse_url(url)
    except ValueError:  # urllib3's LocationParseError, whose text holds the whole URL
        raise UsageError(f"invalid host or port in URL {shown(url)!r}") from None
    scheme = (parsed.scheme or "").lower()
    host = (parsed.host or "").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return scheme, host, parsed.port or DEFAULT_PORTS.get(scheme, 0)


def gate_key_of(url: str) -> str:
    scheme, host, port = origin(url)
    return gate_key(host, port, scheme)
