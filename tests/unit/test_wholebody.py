"""The lean path's one judgment of an answer: the whole small file, or deferred, by table."""

from __future__ import annotations

import pytest

from segdl.core.wholebody import judge, larger_than_asked, promised_whole


def _headers(**fields: str) -> object:
    table = {name.replace("_", "-").lower(): [value] for name, value in fields.items()}
    return lambda name: table.get(name.lower(), [])


WHOLE = [
    (206, {"Content_Range": "bytes 0-99/100", "Content_Length": "100"}, 100, 100),
    (206, {"Content_Range": "bytes 0-0/1"}, 1, 1),
    (200, {"Content_Length": "5"}, 5, 5),
    (200, {"Transfer_Encoding": "chunked"}, 7, 7),
    (200, {"Content_Length": "3", "Content_Encoding": "identity"}, 3, 3),
    (416, {"Content_Range": "bytes */0"}, 0, 0),
]
DEFERRED = [
    (206, {"Content_Range": "bytes 0-99/200"}, 100),  # part of a larger file
    (206, {"Content_Range": "bytes 1-100/101"}, 100),  # not from byte 0
    (206, {"Content_Range": "bytes 0-99/100", "Content_Length": "99"}, 100),
    (206, {"Content_Range": "bytes 0-99/*"}, 100),  # total unknown
    (206, {}, 100),  # no Content-Range
    (206, {"Content_Range": "bytes 0-99/1_00"}, 100),  # not plain digits
    (200, {"Content_Length": "5", "Content_Encoding": "gzip"}, 5),
    (200, {"Content_Length": "+5"}, 5),
    (200, {"Content_Length": "6"}, 5),  # the bytes are counted, not believed
    (416, {"Content_Range": "bytes */10"}, 0),
    (404, {"Content_Length": "3"}, 3),
    (302, {"Content_Length": "0"}, 0),
    (204, {}, 0),
]


@pytest.mark.parametrize(("status", "fields", "body", "size"), WHOLE)
def test_whole_answers_are_taken(status: int, fields: dict[str, str], body: int, size: int) -> None:
    """A believable answer holding every byte of the file is taken, with its size."""
    verdict = judge(status, _headers(**fields), body)  # type: ignore[arg-type]
    assert verdict.whole and verdict.size_bytes == size


@pytest.mark.parametrize(("status", "fields", "body"), DEFERRED)
def test_everything_else_is_deferred_with_a_reason(
    status: int, fields: dict[str, str], body: int
) -> None:
    """Part of a file, an encoding, a length that disagrees, an error or redirect: deferred."""
    verdict = judge(status, _headers(**fields), body)  # type: ignore[arg-type]
    assert not verdict.whole and verdict.why


def test_a_head_shows_a_larger_file_before_its_body() -> None:
    """A 206 of a larger total, or a 200 longer than the limit, is known at the head."""
    assert larger_than_asked(206, _headers(Content_Range="bytes 0-9/11"), 10)  # type: ignore[arg-type]
    assert larger_than_asked(200, _headers(Content_Length="11"), 10)  # type: ignore[arg-type]
    assert not larger_than_asked(206, _headers(Content_Range="bytes 0-9/10"), 10)  # type: ignore[arg-type]
    assert not larger_than_asked(404, _headers(Content_Length="99"), 10)  # type: ignore[arg-type]


PROMISED = [
    (206, {"Content_Range": "bytes 0-99/100", "Content_Length": "100"}, 100),
    (200, {"Content_Length": "1000"}, 1000),
    (200, {"Content_Length": "0"}, 0),
]
NOT_PROMISED = [
    (200, {"Transfer_Encoding": "chunked"}),  # its length is known only at its end
    (200, {}),  # framed by the connection's end
    (200, {"Content_Length": "1001"}),  # over the limit
    (206, {"Content_Range": "bytes 0-99/5000", "Content_Length": "100"}),  # a larger file
    (206, {"Content_Range": "bytes 0-99/100", "Content_Length": "99"}),
    (200, {"Content_Length": "10", "Content_Encoding": "gzip"}),
    (200, {"Content_Length": "x"}),
    (416, {"Content_Range": "bytes */0", "Content_Length": "0"}),  # the engine's to judge
    (302, {"Content_Length": "0"}),
    (404, {"Content_Length": "3"}),
]


@pytest.mark.parametrize(("status", "fields", "size"), PROMISED)
def test_a_head_promising_the_whole_small_file(
    status: int, fields: dict[str, str], size: int
) -> None:
    assert promised_whole(status, _headers(**fields), 1000).size_bytes == size  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "fields"), NOT_PROMISED)
def test_a_head_not_promising_it(status: int, fields: dict[str, str]) -> None:
    verdict = promised_whole(status, _headers(**fields), 1000)  # type: ignore[arg-type]
    assert not verdict.whole and verdict.why
