"""Is this answer a whole small file? The one question the lean batch path asks of an answer.

The lean path (:mod:`segdl.run.lean`) asks for ``Range: bytes=0-(limit-1)``: a small file
comes back whole in one answer, a large one shows its size in ``Content-Range``. An answer is
taken only when every byte of the file is in it and it can be believed, by the same rules the
full path applies (STYLE.md, "believe the server only after checking it"): a ``206`` with one
``Content-Range`` from byte 0 to the last byte of the total, a ``Content-Length`` (if any) that
agrees, or a ``200`` whose framing the parser checked; never a ``Content-Encoding``; and the
bytes counted here, not taken from a header. Anything else is not refused here but *deferred*:
the full path asks again and follows redirects, retries, falls back or reports the error, as
for any single download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from segdl.core.errors import InvalidHeader
from segdl.core.ranges import parse_content_length, parse_content_range, single_header

Headers = Callable[[str], list[str]]

# A lean answer's Content-Range is read at its head (is the file larger than asked?) and at
# its end (is it the whole file?), and files of one size share it: parsed once each.
_content_range = lru_cache(maxsize=256)(parse_content_range)


@dataclass(frozen=True, slots=True)
class Verdict:
    """``size_bytes`` of the whole file if the answer is one, else why it is deferred."""

    size_bytes: int | None
    why: str = ""

    @property
    def whole(self) -> bool:
        return self.size_bytes is not None


def judge(status: int, headers: Headers, body_bytes: int) -> Verdict:
    """Whether an answer of ``status`` with ``headers`` and ``body_bytes`` of body (as the
    parser delimited it) to ``Range: bytes=0-N`` is the whole file."""
    try:
        encodings = [
            token.strip()
            for line in headers("Content-Encoding")
            for token in line.split(",")
            if token.strip() and token.strip().lower() != "identity"
        ]
        if encodings:
            return Verdict(None, f"Content-Encoding {', '.join(encodings)}")
        length = parse_content_length(headers("Content-Length"))
        if headers("Transfer-Encoding"):
            length = None  # RFC 9112 §6.3: the parser framed it by its chunks
        if length is not None and length != body_bytes:
            return Verdict(None, f"Content-Length {length}, body {body_bytes}")
        if status == 200:
            return Verdict(body_bytes)
        if status == 206:
            return _partial(headers, body_bytes)
        if status == 416:
            content_range = _content_range(
                single_header("Content-Range", headers("Content-Range")) or ""
            )
            if not content_range.satisfied and content_range.total == 0:
                return Verdict(0)
        return Verdict(None, f"status {status}")
    except InvalidHeader as exc:
        return Verdict(None, str(exc))


def _partial(headers: Headers, body_bytes: int) -> Verdict:
    header = single_header("Content-Range", headers("Content-Range"))
    if header is None:
        return Verdict(None, "206 without Content-Range")
    content_range = _content_range(header)
    if content_range.start != 0 or not content_range.satisfied:
        return Verdict(None, f"Content-Range {header} does not start at byte 0")
    if content_range.end - content_range.start != body_bytes:
        return Verdict(None, f"Content-Range {header}, body {body_bytes}")
    if content_range.total != content_range.end:
        return Verdict(None, f"Content-Range {header}: not the whole file")
    return Verdict(body_bytes)


def larger_than_asked(status: int, headers: Headers, limit_bytes: int) -> bool:
    """Whether a head already shows a file larger than ``limit_bytes``: then its body is not
    worth reading (a ``206`` for part of a larger total, a ``200`` with a larger length)."""
    try:
        if status == 206:
            header = single_header("Content-Range", headers("Content-Range"))
            content_range = _content_range(header or "")
            return content_range.total is None or content_range.total > limit_bytes
        if status == 200 and not headers("Transfer-Encoding"):
            length = parse_content_length(headers("Content-Length"))
            return length is not None and length > limit_bytes
    except InvalidHeader:
        return False  # judge() says why, once the answer is in
    return False


def larger_size(status: int, headers: Headers) -> int | None:
    """The file's size as a head tells it (a ``206``'s total, a ``200``'s length), for
    displays; None if it does not say or cannot be read."""
    try:
        if status == 206:
            return _content_range(
                single_header("Content-Range", headers("Content-Range")) or ""
            ).total
        if status == 200:
            return parse_content_length(headers("Content-Length"))
    except InvalidHeader:
        return None
    return None


def promised_whole(status: int, headers: Headers, limit_bytes: int) -> Verdict:
    """Whether a head alone promises the whole file in at most ``limit_bytes`` of body: the
    answer is then worth reading for a small file (and :func:`judge` still checks it once
    read). Its size, or why not (a status but 200 or 206, no length, larger)."""
    if status not in (200, 206):
        return Verdict(None, f"status {status}")
    if headers("Transfer-Encoding"):
        return Verdict(None, "no length before the body")
    try:
        length = parse_content_length(headers("Content-Length"))
    except InvalidHeader as exc:
        return Verdict(None, str(exc))
    if length is None:
        return Verdict(None, "no length before the body")
    if length > limit_bytes or larger_than_asked(status, headers, limit_bytes):
        return Verdict(None, "a larger file")
    return judge(status, headers, length)  # as if the body comes as long as it says
