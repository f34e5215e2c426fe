"""Header parsing against hostile values: numbers are ASCII digits or invalid."""

from __future__ import annotations

import pytest

from segdl.core.errors import InvalidHeader
from segdl.core.models import ByteRange
from segdl.core.ranges import (
    ContentRange,
    parse_content_length,
    parse_content_range,
    range_header,
    single_header,
)


def test_range_header_is_inclusive() -> None:
    """Half-open [0, 10) becomes HTTP's inclusive bytes=0-9 (RFC 9110 §14.1.2)."""
    assert range_header(ByteRange(0, 10)) == "bytes=0-9"
    assert range_header(ByteRange(5, 6)) == "bytes=5-5"
    with pytest.raises(ValueError):
        range_header(ByteRange(3, 3))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-9/10", ContentRange(0, 10, 10)),
        ("bytes 5-5/100", ContentRange(5, 6, 100)),
        ("bytes 0-99/*", ContentRange(0, 100, None)),
        ("bytes */0", ContentRange(0, 0, 0, satisfied=False)),
        ("bytes */1234", ContentRange(0, 0, 1234, satisfied=False)),
    ],
)
def test_content_range_valid(value: str, expected: ContentRange) -> None:
    """Well-formed Content-Range values parse to half-open ranges."""
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes",
        "bytes 0-9",
        "bytes 9-0/10",  # last before first
        "bytes 0-10/10",  # ends beyond the total
        "bytes +0-9/10",
        "bytes 0-+9/10",
        "bytes 0-9/+10",
        "bytes 0 -9/10",
        "bytes  0-9/10",
        "bytes 0-9/10 ",
        " bytes 0-9/10",
        "bytes 0-9/1_0",
        "bytes 0-9/\u0661\u0660",  # Arabic-Indic digits: int() would accept them
        "bytes -1-9/10",
        "bytes 0-9/-10",
        "items 0-9/10",
        "bytes 0x0-9/10",
        "bytes 0-99999999999999999999999/99999999999999999999999",
        "bytes 0-9,20-29/100",
    ],
)
def test_content_range_hostile(value: str) -> None:
    """Anything but strict 'bytes first-last/total' is refused."""
    with pytest.raises(InvalidHeader):
        parse_content_range(value)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], None), (["0"], 0), (["12"], 12), (["12", "12"], 12), (["12, 12"], 12)],
)
def test_content_length_valid(values: list[str], expected: int | None) -> None:
    """Plain digits, and identical repeats (RFC 9110 §8.6), are accepted."""
    assert parse_content_length(values) == expected


@pytest.mark.parametrize(
    "values",
    [
        ["+12"],
        [" 12x"],
        ["1_000"],
        ["\u0661\u0662"],
        ["-1"],
        ["12", "13"],
        ["12, 13"],
        [""],
        ["1e3"],
    ],
)
def test_content_length_hostile(values: list[str]) -> None:
    """Signs, underscores, non-ASCII digits and conflicting repeats are refused."""
    with pytest.raises(InvalidHeader):
        parse_content_length(values)


def test_single_header_refuses_repeats() -> None:
    """A header that must appear once is invalid when repeated."""
    assert single_header("ETag", []) is None
    assert single_header("ETag", ['"a"']) == '"a"'
    with pytest.raises(InvalidHeader):
        single_header("ETag", ['"a"', '"b"'])
