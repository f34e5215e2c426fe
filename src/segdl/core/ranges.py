"""Pure parsing and formatting of the HTTP headers that decide where bytes go.

Inside segdl a byte range is half-open (:class:`~segdl.core.models.ByteRange`); HTTP's inclusive
``first-last`` form is produced by :func:`range_header` and read by :func:`parse_content_range`,
nowhere else. Numbers from the wire are ASCII digits or invalid: ``int()`` would accept
``" 12"``, ``"+12"``, ``"1_000"`` and ``"١٢"``, and a downloader that believes those writes
bytes at offsets the server never meant.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from segdl.core.errors import InvalidHeader
from segdl.core.models import ByteRange

# Offsets beyond 2**63 cannot be passed to pwrite/ftruncate; refuse them as invalid.
_MAX_OFFSET = 2**63 - 1
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)", re.ASCII)
_UNSATISFIED_RANGE = re.compile(r"bytes \*/([0-9]+)", re.ASCII)


def range_header(r: ByteRange) -> str:
    """The ``Range`` value for ``r``; RFC 9110 §14.1.2: last-pos is inclusive."""
    if r.length == 0:
        raise ValueError("an empty range cannot be requested")
    return f"bytes={r.start}-{r.end - 1}"


def open_range_header(start: int) -> str:
    """``Range: bytes=start-``: everything from ``start`` to the end (RFC 9110 §14.1.1)."""
    return f"bytes={start}-"


def parse_decimal(name: str, value: str) -> int:
    """A non-negative decimal made of ASCII digits only, as RFC 9110 §5.6.1 numbers are."""
    if not _DIGITS.fullmatch(value):
        raise InvalidHeader(name, value, "not a plain decimal number")
    number = int(value)
    if number > _MAX_OFFSET:
        raise InvalidHeader(name, value, "number too large")
    return number


def parse_content_length(values: Sequence[str]) -> int | None:
    """The body length from every ``Content-Length`` field line, or None if there is none.

    RFC 9110 §8.6: a list of identical values may be collapsed to one; differing values
    mean the message framing cannot be trusted.
    """
    numbers: set[int] = set()
    for line in values:
        for item in line.split(","):
            numbers.add(parse_decimal("Content-Length", item.strip(" \t")))
    if len(numbers) > 1:
        raise InvalidHeader("Content-Length", ", ".join(values), "conflicting values")
    return numbers.pop() if numbers else None


@dataclass(frozen=True, slots=True)
class ContentRange:
    """A parsed ``Content-Range``: bytes [start, end) of a representation of ``total`` bytes.

    ``total`` is None for ``bytes first-last/*`` (length unknown to the server). For the
    unsatisfied form ``bytes */N`` (sent with 416), ``satisfied`` is False and the range
    is empty.
    """

    start: int
    end: int
    total: int | None
    satisfied: bool = True


def parse_content_range(value: str) -> ContentRange:
    """Parse one ``Content-Range`` value strictly (RFC 9110 §14.4)."""
    match = _CONTENT_RANGE.fullmatch(value)
    if match is not None:
        first = parse_decimal("Content-Range", match[1])
        last = parse_decimal("Content-Range", match[2])
        total = None if match[3] == "*" else parse_decimal("Content-Range", match[3])
        if last < first:
            raise InvalidHeader("Content-Range", value, "last byte before first byte")
        if total is not None and last >= total:
            raise InvalidHeader("Content-Range", value, "range ends beyond the total length")
        return ContentRange(first, last + 1, total)
    match = _UNSATISFIED_RANGE.fullmatch(value)
    if match is not None:
        total = parse_decimal("Content-Range", match[1])
        return ContentRange(0, 0, total, satisfied=False)
    raise InvalidHeader("Content-Range", value, "not of the form 'bytes first-last/total'")


def single_header(name: str, values: Sequence[str]) -> str | None:
    """The value of a header that must appear at most once; a repeat is invalid."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidHeader(name, ", ".join(values), "repeated header")
    return values[0]
