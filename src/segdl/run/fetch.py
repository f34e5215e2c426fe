"""One connection's work: ask for a range, check the answer, stream it to its offsets.

Every ranged response is checked before a byte of it is written (STYLE.md, "believe the
server only after checking it"): status 206, exactly one ``Content-Range`` starting at the byte
asked for and totalling the size seen at first contact, no ``Content-Encoding``, the same
validator. Bytes then go socket → reused buffer (``readinto``) → ``os.pwrite`` at the offset the
planner says, or on Linux over plain HTTP socket → pipe → file with ``splice``, never through
Python; no chunk is ever held whole in memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from segdl.core.answers import check_range_answer, if_range
from segdl.core.errors import (
    Cancelled,
    ShortBody,
)
from segdl.core.models import ByteRange, Resource
from segdl.core.planning import Claim, Planner
from segdl.core.ranges import range_header
from segdl.disk.storage import PartFile, Pipe
from segdl.net.interfaces import Response, Transport

log = logging.getLogger(__name__)


def open_range(
    transport: Transport,
    resource: Resource,
    asked: ByteRange,
    headers: Mapping[str, str],
) -> Response:
    """Request ``asked`` from the final URL; return the response only if it can be believed."""
    request_headers = {**headers, "Range": range_header(asked)}
    guard = if_range(resource.validator)
    if guard is not None:
        # RFC 9110 §13.1.5: a changed file then comes back as 200, never as a 206 of the
        # new version spliced into the old one.
        request_headers["If-Range"] = guard
    response = transport.request("GET", resource.final_url, request_headers)
    try:
        check_range_answer(response, resource, asked)
    except BaseException:
        response.close()
        raise
    return response


def stream_claim(
    response: Response,
    claim: Claim,
    planner: Planner,
    part: PartFile,
    buffer: memoryview,
    clock: Callable[[], float],
    stop: threading.Event,
    url: str,
    throttle: Callable[[int], None] | None = None,
    pipe: Pipe | None = None,
) -> None:
    """Read ``claim``'s stream into ``part`` until the planner says stop.

    Bytes go through ``pipe`` (socket → pipe → file, never through Python) when the response
    can splice, else through ``buffer``. Raises :class:`ShortBody` if the body ends before the
    claim is done; the unwritten remainder stays in the plan for another attempt.
    """
    size = len(buffer)
    try:
        while True:
            if stop.is_set():
                raise Cancelled("download stopped")
            left = claim.request.end - claim.stream_pos
            spliced = None
            if pipe is not None:
                spliced = response.splice_into(pipe.write_fd, min(pipe.capacity, left))
            if spliced is None:
                received = response.readinto(buffer[: min(size, left)])
            else:
                received = spliced
                if pipe is not None:
                    pipe.pending = spliced
            if throttle is not None and received:
                throttle(received)  # --limit-rate: wait here until the average is back in line
            if received == 0:
                raise ShortBody(url, claim.request.length, claim.stream_pos - claim.request.start)
            advance = planner.advance(claim, received, clock())
            write, skip = advance.write, advance.skip_bytes
            if spliced is None:
                if write.length:
                    part.write_at(write.start, buffer[skip : skip + write.length])
            elif pipe is not None:
                pipe.discard(skip)  # a race partner wrote these first
                part.write_from_pipe(pipe, write.start, write.length)
                pipe.discard(pipe.pending)  # past the range's (new) end
            if write.length:
                planner.mark_written(claim.segment, write)
            if advance.stop:
                return
    finally:
        if pipe is not None and pipe.pending:
            pipe.discard(pipe.pending)  # never hand stale bytes to the next range


def stream_to_end(
    response: Response,
    part: PartFile,
    buffer: memoryview,
    stop: threading.Event,
    on_bytes: Callable[[int], None],
    throttle: Callable[[int], None] | None = None,
) -> int:
    """Write a whole body from offset 0 as it comes (the single-stream fallback)."""
    offset = 0
    while True:
        if stop.is_set():
            raise Cancelled("download stopped")
        received = response.readinto(buffer)
        if received == 0:
            return offset
        if throttle is not None:
            throttle(received)
        part.write_at(offset, buffer[:received])
        offset += received
        on_bytes(offset)
