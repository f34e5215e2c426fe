"""Do we believe this answer? segdl.core.answers tested as tables, with no I/O (as h11's
test_state.py tests its transition table)."""

from __future__ import annotations

import pytest

from segdl.core.answers import (
    Mode,
    StaticHead,
    Witness,
    changed,
    check_range_answer,
    content_encoding,
    if_range,
    judge_first,
    retry_after,
    status_error,
)
from segdl.core.errors import (
    ContentRangeMismatch,
    HTTPStatusError,
    InvalidHeader,
    ProtocolError,
    RangeNotHonoured,
    RemoteChanged,
    UnexpectedEncoding,
)
from segdl.core.models import ByteRange, Resource, Validator

URL = "http://h/f.bin"
SIZE = 1000
ETAG = '"v1"'
LM = "Wed, 21 Oct 2015 07:28:00 GMT"


def first(status: int, start: int = 0, ranged: bool = True, **fields: str) -> object:
    """The verdict on a first answer, or the type of the error it raises."""
    head = StaticHead(status, {k.replace("_", "-"): v for k, v in fields.items()})
    try:
        answer = judge_first(head, url=URL, final_url=URL, ranged=ranged, start=start)
    except (HTTPStatusError, RemoteChanged, ProtocolError, InvalidHeader) as exc:
        return type(exc)
    size = answer.resource.size_bytes
    return (answer.mode, answer.use_body, size, answer.resource.accepts_ranges, answer.first_range)


R = ByteRange
# (status, start, header fields) -> (mode, read the body?, size, ranges?, first range) or error
FIRST_CONTACT = [
    # the good case: a 206 from byte 0 with a total
    (206, 0, {"Content_Range": "bytes 0-999/1000"}, (Mode.RANGED, True, 1000, True, R(0, 1000))),
    (
        206,
        0,
        {"Content_Range": "bytes 0-99/1000", "Content_Length": "100"},
        (Mode.RANGED, True, 1000, True, R(0, 100)),
    ),
    # a resume asks from a later byte
    (
        206,
        500,
        {"Content_Range": "bytes 500-999/1000"},
        (Mode.RANGED, True, 1000, True, R(500, 1000)),
    ),
    # ranges ignored: the body is the whole file, read it as one stream
    (200, 0, {"Content_Length": "1000"}, (Mode.SINGLE_STREAM, True, 1000, False, None)),
    (200, 0, {}, (Mode.SINGLE_STREAM, True, None, False, None)),
    (
        200,
        0,
        {"Content_Length": "1000", "Transfer_Encoding": "chunked"},
        (Mode.SINGLE_STREAM, True, None, False, None),
    ),
    # a 206 that cannot be believed: close it, ask again without Range
    (206, 0, {}, (Mode.SINGLE_STREAM, False, None, False, None)),
    (206, 0, {"Content_Range": "bytes 1-999/1000"}, (Mode.SINGLE_STREAM, False, None, False, None)),
    (
        206,
        0,
        {"Content_Range": "bytes 0-999/1000", "Content_Length": "5"},
        (Mode.SINGLE_STREAM, False, None, False, None),
    ),
    (206, 0, {"Content_Range": "bytes 0-999/*"}, (Mode.SINGLE_STREAM, False, None, False, None)),
    (
        206,
        0,
        {"Content_Range": "bytes 0-999/1000", "Content_Encoding": "gzip"},
        (Mode.SINGLE_STREAM, False, None, False, None),
    ),
    (206, 0, {"Content_Range": "bytes 0-99/+1000"}, (Mode.SINGLE_STREAM, False, None, False, None)),
    # empty files
    (416, 0, {"Content_Range": "bytes */0"}, (Mode.EMPTY, False, 0, True, None)),
    (204, 0, {}, (Mode.EMPTY, False, 0, False, None)),
    (200, 0, {"Content_Length": "0"}, (Mode.EMPTY, False, 0, False, None)),
    # what no download can follow
    (416, 0, {"Content_Range": "bytes */1000"}, ProtocolError),
    (416, 500, {"Content_Range": "bytes */400"}, RemoteChanged),  # resuming past the new end
    (416, 0, {}, InvalidHeader),
    (302, 0, {}, ProtocolError),  # a redirect reaching the judgment (probe follows them)
    (404, 0, {}, HTTPStatusError),
    (503, 0, {"Retry_After": "5"}, HTTPStatusError),
    # numbers from the wire are parsed strictly
    (200, 0, {"Content_Length": "+1000"}, InvalidHeader),
    (200, 0, {"Content_Length": "1_000"}, InvalidHeader),
    (200, 0, {"ETag": '"a"', "Etag": '"b"'}, InvalidHeader),
]


@pytest.mark.parametrize(("status", "start", "fields", "verdict"), FIRST_CONTACT)
def test_first_contact_table(
    status: int, start: int, fields: dict[str, str], verdict: object
) -> None:
    """Each first answer gets the mode (and whether its body is used) the table says."""
    assert first(status, start, **fields) == verdict


def test_a_plain_request_is_one_stream_whatever_its_length() -> None:
    """Without Range (the fallback), a 200 is the whole file and a 416 is an error status."""
    assert first(200, ranged=False, Content_Length="10") == (
        Mode.SINGLE_STREAM,
        True,
        10,
        False,
        None,
    )
    assert first(416, ranged=False) is HTTPStatusError


def test_the_first_answer_keeps_what_identifies_the_file() -> None:
    """Validator and Content-Type come from the final answer, and the reason says why."""
    head = StaticHead(
        206,
        {"Content-Range": "bytes 0-9/10", "ETag": ETAG, "Last-Modified": LM, "Content-Type": "a/b"},
    )
    answer = judge_first(head, url=URL, final_url=URL + "?signed", ranged=True, start=0)
    assert answer.resource == Resource(URL, URL + "?signed", 10, True, Validator(ETAG, LM), "a/b")
    assert answer.reason == "ranges supported"
    encoded = StaticHead(200, {"Content-Encoding": "gzip"})
    assert judge_first(encoded, url=URL, final_url=URL, ranged=True, start=0).reason == (
        "server sent Content-Encoding gzip"
    )


KNOWN = Resource(URL, URL, SIZE, True, Validator(ETAG, LM))
ASKED = ByteRange(100, 200)
# header fields of an answer to bytes 100-199 -> the error it raises (None: believed)
RANGE_ANSWERS: list[tuple[int, dict[str, str | list[str]], type[Exception] | None]] = [
    (206, {"Content-Range": "bytes 100-199/1000"}, None),
    (206, {"Content-Range": "bytes 100-149/1000"}, None),  # shorter: the rest is asked again
    (206, {"Content-Range": "bytes 100-199/1000", "ETag": ETAG, "Last-Modified": LM}, None),
    (206, {"Content-Range": "bytes 100-199/1000", "Content-Encoding": "identity"}, None),
    (206, {"Content-Range": "bytes 100-199/1000", "Content-Length": "100"}, None),
    (200, {}, RangeNotHonoured),
    (200, {"ETag": '"v2"'}, RemoteChanged),  # If-Range sent the whole, changed, file
    (206, {"Content-Range": "bytes 100-199/1000", "ETag": '"v2"'}, RemoteChanged),
    (206, {"Content-Range": "bytes 100-199/1000", "Last-Modified": "x"}, RemoteChanged),
    (206, {"Content-Range": "bytes 100-199/1000", "Content-Encoding": "gzip"}, UnexpectedEncoding),
    (206, {}, ContentRangeMismatch),
    (206, {"Content-Range": ["bytes 100-199/1000", "bytes 100-199/1000"]}, ContentRangeMismatch),
    (206, {"Content-Range": "bytes 99-199/1000"}, ContentRangeMismatch),
    (206, {"Content-Range": "bytes 100-299/1000"}, ContentRangeMismatch),
    (206, {"Content-Range": "bytes 100-199/2000"}, ContentRangeMismatch),
    (206, {"Content-Range": "bytes 100-199/*"}, ContentRangeMismatch),
    (206, {"Content-Range": "bytes 100-199/1000", "Content-Length": "99"}, ContentRangeMismatch),
    (206, {"Content-Range": "bytes 100-199/1000", "Content-Length": "1e2"}, InvalidHeader),
    (206, {"Content-Range": "items 100-199/1000"}, ContentRangeMismatch),
    (503, {"Retry-After": "1"}, HTTPStatusError),
    (404, {}, HTTPStatusError),
]


@pytest.mark.parametrize(("status", "fields", "error"), RANGE_ANSWERS)
def test_range_answer_table(
    status: int, fields: dict[str, str | list[str]], error: type[Exception] | None
) -> None:
    """A ranged answer is believed only whole: 206, one Content-Range from the byte asked
    for, within the range, with the known total, not encoded, the same validator."""
    head = StaticHead(status, fields)
    if error is None:
        check_range_answer(head, KNOWN, ASKED)
    else:
        with pytest.raises(error):
            check_range_answer(head, KNOWN, ASKED)


V1 = Validator(ETAG, LM)
WEAK = Validator('W/"v1"', None)
# known size, known validator, fresh size, fresh validator, witness -> changed?
SAME_FILE = [
    (SIZE, V1, SIZE, V1, Witness.SAME_SERVER, False),
    (SIZE, V1, SIZE, Validator(), Witness.SAME_SERVER, False),  # says nothing: not a change
    (SIZE, V1, None, V1, Witness.SAME_SERVER, False),  # size unknown in one of them
    (SIZE, V1, SIZE + 1, V1, Witness.SAME_SERVER, True),
    (SIZE, V1, SIZE, Validator('"v2"', LM), Witness.SAME_SERVER, True),
    (SIZE, WEAK, SIZE, Validator('W/"v2"'), Witness.SAME_SERVER, True),  # same server: weak too
    (SIZE, V1, SIZE, Validator(ETAG, "other"), Witness.SAME_SERVER, True),
    (SIZE, V1, SIZE, V1, Witness.MIRROR, False),
    (SIZE, V1, None, V1, Witness.MIRROR, True),  # a mirror must know the size
    (SIZE, WEAK, SIZE, Validator('W/"v2"'), Witness.MIRROR, False),  # weak: each server's own
    (SIZE, V1, SIZE, Validator('"v2"'), Witness.MIRROR, True),
    (SIZE, V1, SIZE, Validator(None, "other"), Witness.MIRROR, True),
    (SIZE, V1, SIZE + 1, V1, Witness.MIRROR, True),
    (SIZE, Validator(ETAG), SIZE, V1, Witness.STATE, False),
    (SIZE, Validator(ETAG), SIZE, Validator(None, LM), Witness.STATE, True),  # ETag gone
    (SIZE, Validator(ETAG), SIZE, Validator('W/"v1"'), Witness.STATE, True),  # now weak
    (SIZE, Validator(None, LM), SIZE, Validator('"new"', LM), Witness.STATE, False),
    (SIZE, Validator(None, LM), SIZE, Validator(), Witness.STATE, True),  # date gone
    (SIZE, Validator(), SIZE, V1, Witness.STATE, False),  # nothing kept: the size decides
    (SIZE, Validator(), SIZE + 1, V1, Witness.STATE, True),
]


@pytest.mark.parametrize(("known_size", "known", "size", "fresh", "witness", "differs"), SAME_FILE)
def test_same_file_table(
    known_size: int,
    known: Validator,
    size: int | None,
    fresh: Validator,
    witness: Witness,
    differs: bool,
) -> None:
    """One comparison says whether two sightings are the same file, by who gave the second."""
    assert (changed(known_size, known, size, fresh, witness) is not None) is differs


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["120"], "120"),
        (["120", "120"], "120"),  # repeated by a proxy: the same advice
        (["120", " 120 "], "120"),
        (["5", "3600"], None),  # disagrees with itself: ignored, the status decides
        (["Wed, 21 Oct 2015 07:28:00 GMT"], "Wed, 21 Oct 2015 07:28:00 GMT"),
    ],
)
def test_retry_after_table(values: list[str], expected: str | None) -> None:
    """Retry-After is one value or none; repeats that differ say nothing believable."""
    assert retry_after(StaticHead(503, {"Retry-After": values})) == expected


def test_a_repeated_retry_after_leaves_a_503_transient_everywhere() -> None:
    """The first request and a range judge a 503 with two Retry-After values alike: an
    HTTPStatusError carrying no Retry-After (segdl's own backoff), never InvalidHeader."""
    head = StaticHead(503, {"Retry-After": ["5", "3600"]})
    with pytest.raises(HTTPStatusError) as on_first:
        judge_first(head, url=URL, final_url=URL, ranged=True, start=0)
    with pytest.raises(HTTPStatusError) as on_range:
        check_range_answer(head, KNOWN, ASKED)
    assert on_first.value.retry_after is None and on_range.value.retry_after is None
    assert status_error(StaticHead(429, {"Retry-After": "7"}), URL).retry_after == "7"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["identity"], None),
        (["gzip"], "gzip"),
        (["identity, gzip"], "gzip"),
        (["gzip", "br"], "gzip, br"),
        (["IDENTITY", ""], None),
    ],
)
def test_content_encoding_table(values: list[str], expected: str | None) -> None:
    """Every coding but identity counts, across repeated and comma-joined fields."""
    assert content_encoding(StaticHead(200, {"Content-Encoding": values})) == expected


@pytest.mark.parametrize(
    ("known", "expected"),
    [
        (Validator(ETAG, LM), ETAG),
        (Validator('W/"v1"', LM), LM),  # a weak ETag never guards bytes
        (Validator(None, LM), LM),
        (Validator('W/"v1"'), None),
        (Validator(), None),
    ],
)
def test_if_range_table(known: Validator, expected: str | None) -> None:
    """If-Range carries a strong ETag, else Last-Modified, else nothing is sent."""
    assert if_range(known) == expected
