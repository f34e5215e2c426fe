"""aria2's answer structs for an item: tellStatus, getFiles, getUris, getServers.

Pure functions of an :class:`~segdl.daemon.model.Item`. As aria2 does, every number is a
decimal string and every boolean the string ``"true"``/``"false"``; keys follow aria2's
manual (aria2c.rst, "RPC interface") and what aria2 1.36 answers for an HTTP download.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from segdl.daemon.errors import RpcError
from segdl.daemon.model import Item, Status

PIECE_BYTES = 1024 * 1024
"""aria2's default --piece-length: what ``bitfield`` and ``numPieces`` count in."""


def file_path(item: Item) -> str:
    """The output file as known now: the final one, the asked-for ``out``, or "" (aria2
    reports an empty path until the server has named the file)."""
    if item.path is not None:
        return item.path
    out = item.options.get("out")
    if isinstance(out, str):
        return os.path.join(item.directory, out)
    return ""


def uris(item: Item) -> list[dict[str, str]]:
    used = item.status is Status.ACTIVE or item.path is not None
    return [
        {"uri": uri, "status": "used" if used and n == 0 else "waiting"}
        for n, uri in enumerate(item.uris)
    ]


def done_ranges(item: Item) -> Sequence[tuple[int, int]]:
    """Done byte ranges: from the engine when it reports them, else the bytes done as one
    prefix (all of it once complete)."""
    size = item.live.size_bytes
    if item.status is Status.COMPLETE and size:
        return [(0, size)]
    if item.live.segments:
        return item.live.segments
    done = item.live.done_bytes
    return [(0, done)] if done else []


def bitfield(size_bytes: int, ranges: Iterable[tuple[int, int]]) -> str:
    """aria2's bitfield: a bit per piece, the highest bit of the first byte for piece 0, set
    when the whole piece is done; in hex, padded to whole bytes."""
    pieces = -(-size_bytes // PIECE_BYTES)
    bits = bytearray(-(-pieces // 8))
    for start, end in ranges:
        first = -(-start // PIECE_BYTES)
        last = end // PIECE_BYTES if end < size_bytes else pieces  # the short last piece
        for piece in range(first, last):
            bits[piece // 8] |= 0x80 >> (piece % 8)
    return bits.hex()


def files(item: Item) -> list[dict[str, Any]]:
    size = item.live.size_bytes or 0
    return [
        {
            "index": "1",
            "path": file_path(item),
            "length": str(size),
            "completedLength": str(_completed(item)),
            "selected": "true",
            "uris": uris(item),
        }
    ]


def _completed(item: Item) -> int:
    if item.status is Status.COMPLETE:
        return item.live.size_bytes or item.live.done_bytes
    return item.live.done_bytes


def status(item: Item, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """tellStatus: every key aria2 gives for an HTTP download (only ``keys`` if given)."""
    live = item.live
    size = live.size_bytes or 0
    active = item.status is Status.ACTIVE
    struct: dict[str, Any] = {
        "gid": item.gid,
        "status": item.status.value,
        "totalLength": str(size),
        "completedLength": str(_completed(item)),
        "uploadLength": "0",
        "downloadSpeed": str(int(live.rate_bytes_per_s)) if active else "0",
        "uploadSpeed": "0",
        "pieceLength": str(PIECE_BYTES),
        "numPieces": str(-(-size // PIECE_BYTES)),
        "connections": str(live.connections) if active else "0",
        "dir": item.directory,
        "files": files(item),
    }
    if size:
        struct["bitfield"] = bitfield(size, done_ranges(item))
    if item.status in (Status.ERROR, Status.COMPLETE, Status.REMOVED):
        struct["errorCode"] = str(item.error_code)
        struct["errorMessage"] = item.error_message
    if keys:
        return {key: value for key, value in struct.items() if key in keys}
    return struct


def servers(item: Item) -> list[dict[str, Any]]:
    """getServers: the server the download is on now (only for an active one, as aria2)."""
    if item.status is not Status.ACTIVE:
        raise RpcError(f"No active download for GID#{item.gid}")
    live = item.live
    current = live.current_url or item.uris[0]
    return [
        {
            "index": "1",
            "servers": [
                {
                    "uri": item.uris[0],
                    "currentUri": current,
                    "downloadSpeed": str(int(live.rate_bytes_per_s)),
                }
            ],
        }
    ]


def detail(item: Item) -> dict[str, Any]:
    """segdl.tellDetail: the segment map (done ranges, each connection's offset) and the
    notices, for the page; numbers here are JSON numbers, not aria2 strings."""
    return {
        "gid": item.gid,
        "totalLength": item.live.size_bytes or 0,
        "done": [list(r) for r in done_ranges(item)],
        "connections": list(item.live.positions),
        "notices": [
            {"time": at_s, "kind": kind, "message": message} for at_s, kind, message in item.notices
        ],
    }
