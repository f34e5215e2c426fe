"""The server's own byte-range logic (RFC 9110 §14), written independently of segdl.

Positions here are HTTP's: ``first`` and ``last`` are both inclusive, as on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# Python's int() takes at most 4300 digits; a longer position is treated as a syntax error.
_MAX_DIGITS = 4000


class RangeKind(Enum):
    """What the server does with a request's Range header."""

    FULL = "full"  # no Range, a syntax error, several ranges, or If-Range failed: 200
    PARTIAL = "partial"  # one satisfiable range: 206
    UNSATISFIABLE = "unsatisfiable"  # 416 with Content-Range: bytes */size


@dataclass(frozen=True, slots=True)
class RangeDecision:
    """The answer to one Range header against a representation of a known size."""

    kind: RangeKind
    first: int = 0
    last: int = -1

    @property
    def length(self) -> int:
        return self.last - self.first + 1 if self.kind is RangeKind.PARTIAL else 0


FULL = RangeDecision(RangeKind.FULL)
UNSATISFIABLE = RangeDecision(RangeKind.UNSATISFIABLE)


@dataclass(frozen=True, slots=True)
class _Spec:
    """One syntactically valid byte-range-spec: an int-range or (first None) a suffix-range."""

    first: int | None
    last: int | None  # for a suffix-range: the suffix length


def _position(text: str) -> int | None:
    """ASCII digits only: int() would also accept ' 1', '+1', '1_0' and non-ASCII digits."""
    if not text or len(text) > _MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def _parse_spec(text: str) -> _Spec | None:
    """One range-spec (RFC 9110 §14.1.1), or None when it is not valid syntax."""
    first_text, dash, last_text = text.partition("-")
    if not dash:
        return None
    if first_text == "":
        suffix = _position(last_text)
        return None if suffix is None else _Spec(None, suffix)
    first = _position(first_text)
    if first is None:
        return None
    if last_text == "":
        return _Spec(first, None)
    last = _position(last_text)
    # §14.1.1: an int-range whose last-pos is less than its first-pos is invalid.
    if last is None or last < first:
        return None
    return _Spec(first, last)


def parse_range_set(value: str) -> list[_Spec] | None:
    """The byte-range-specs of a Range value, or None on a syntax error or another unit."""
    unit, equals, range_set = value.partition("=")
    if not equals or unit.lower() != "bytes":
        return None
    # §5.6.1: a recipient accepts empty list elements and OWS around the commas.
    elements = [part.strip(" \t") for part in range_set.split(",")]
    specs: list[_Spec] = []
    for element in elements:
        if not element:
            continue
        spec = _parse_spec(element)
        if spec is None:
            return None
        specs.append(spec)
    return specs or None


def decide_range(value: str | None, size: int) -> RangeDecision:
    """How to answer a GET carrying Range ``value`` for a representation of ``size`` bytes.

    A syntax error or several ranges are ignored (§14.2 allows it): the answer is the full 200.
    Every range of a 0-byte representation is answered 416 ``bytes */0``: there is no byte to
    name in a Content-Range, even for the suffix form §14.1.1 calls satisfiable.
    """
    if value is None:
        return FULL
    specs = parse_range_set(value)
    if specs is None or len(specs) != 1:
        return FULL
    spec = specs[0]
    if size == 0:
        return UNSATISFIABLE
    if spec.first is None:
        suffix = spec.last if spec.last is not None else 0
        if suffix == 0:
            return UNSATISFIABLE
        return RangeDecision(RangeKind.PARTIAL, max(0, size - suffix), size - 1)
    if spec.first >= size:
        return UNSATISFIABLE
    last = size - 1 if spec.last is None else min(spec.last, size - 1)
    return RangeDecision(RangeKind.PARTIAL, spec.first, last)


def if_range_matches(value: str, etag: str | None, last_modified: str | None) -> bool:
    """RFC 9110 §13.1.5: does an If-Range value still name the current representation?

    An entity-tag is compared strongly (a weak tag on either side never matches); an HTTP-date
    must exactly match the Last-Modified field value.
    """
    value = value.strip(" \t")
    if value.startswith('W/"'):
        return False
    if value.startswith('"'):
        return etag is not None and not etag.startswith("W/") and value == etag
    return last_modified is not None and value == last_modified


def content_range(first: int, last: int, total: int) -> str:
    """A Content-Range value for a 206: ``bytes first-last/total`` (inclusive positions)."""
    return f"bytes {first}-{last}/{total}"


def unsatisfied_range(total: int) -> str:
    """The Content-Range value of a 416 (§14.4): ``bytes */total``."""
    return f"bytes */{total}"
