"""Every parser of server input, fed hostile bytes by hypothesis: only its documented error
may come out (the same targets run longer, coverage-guided, in bench/fuzz.py)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzing import TARGETS, Target, check

# Bounded and derandomized: the same examples on every run, the whole file in seconds.
FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
BY_NAME = {target.name: target for target in TARGETS}

_TOKENS = [
    b"HTTP/1.1 ",
    b"HTTP/1.0 ",
    b"HTTP/2 ",
    b"100",
    b"103",
    b"200",
    b"206",
    b"416",
    b"503",
    b" OK",
    b"\r\n",
    b"\n",
    b": ",
    b"Content-Length",
    b"Content-Range",
    b"Transfer-Encoding",
    b"chunked",
    b"bytes ",
    b"*/",
    b"-",
    b"/",
    b"0",
    b"1",
    b"9" * 20,
    b"ETag",
    b'W/"x"',
    b'"e"',
    b"Last-Modified",
    b"Content-Encoding",
    b"gzip",
    b"identity",
    b"Repr-Digest",
    b"sha-256=:",
    b":",
    b"Digest",
    b"SHA-256=",
    b"Content-MD5",
    b",",
    b" ",
    b"\t",
    b"\x00",
    b"\xff",
    b"\x1b[2J",
    b"=",
    b"filename*=UTF-8''",
    b"filename=",
    b'"',
    b"%C3%A9",
    b";",
]
wire = st.lists(st.sampled_from(_TOKENS) | st.binary(max_size=8), max_size=40).map(b"".join)


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes_raise_only_documented_errors(target: Target, data: bytes) -> None:
    """Any bytes at all: the parser answers or raises its own documented error."""
    check(target, data)


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@FUZZ
@given(data=wire)
def test_wire_like_bytes_raise_only_documented_errors(target: Target, data: bytes) -> None:
    """Bytes built from HTTP's own tokens (deeper into each parser than noise gets)."""
    check(target, data)


@FUZZ
@given(
    status=st.integers(100, 599),
    interim=st.lists(st.sampled_from([b"100", b"102", b"103", b"199"]), max_size=12),
    fields=st.lists(st.tuples(st.sampled_from(_TOKENS[12:30]), wire), max_size=12),
)
def test_heads_with_interim_answers_raise_only_documented_errors(
    status: int, interim: list[bytes], fields: list[tuple[bytes, bytes]]
) -> None:
    """Interim 1xx heads (bounded in number), then a final head with hostile fields."""
    head = b"".join(b"HTTP/1.1 " + code + b" Wait\r\nX: y\r\n\r\n" for code in interim)
    head += b"HTTP/1.1 %d Hi\r\n" % status
    head += b"".join(name + b": " + value.replace(b"\n", b" ") + b"\r\n" for name, value in fields)
    check(BY_NAME["head"], head + b"\r\n")


@FUZZ
@given(
    first=st.integers(-5, 2**64),
    last=st.integers(-5, 2**64),
    total=st.one_of(st.integers(-5, 2**64).map(str), st.just("*")),
)
def test_content_range_numbers_raise_only_invalid_header(first: int, last: int, total: str) -> None:
    """bytes first-last/total with any numbers: a believable range or InvalidHeader."""
    check(BY_NAME["content_range"], f"bytes {first}-{last}/{total}".encode())


@FUZZ
@given(
    name=st.text(max_size=300),
    quoted=st.booleans(),
)
def test_content_disposition_names_come_out_plain(name: str, quoted: bool) -> None:
    """Any name in filename*= (percent-encoded UTF-8) or filename=: a plain short name."""
    from urllib.parse import quote

    value = (
        f'attachment; filename="{name}"'
        if quoted
        else f"attachment; filename*=UTF-8''{quote(name)}"
    )
    check(BY_NAME["content_disposition"], b"\xff" + value.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "value",
    [
        b", 21 Oct 2088888888888888888888888888888888888888888888888815 07:8:00 GMT",  # atheris
        b"9" * 400,  # delay-seconds too large for a float
        b"9" * 5000,  # past int()'s digit limit
        b"Wed, 21 Oct 99999 07:28:00 GMT",
    ],
)
def test_retry_after_found_crashes(value: bytes) -> None:
    """Inputs bench/fuzz.py and review found: an HTTP-date whose year overflows a C long
    (OverflowError from email.utils), delay-seconds too large for a float."""
    check(BY_NAME["retry_after"], value)


def test_proxy_choice_for_an_unparsable_url_found_by_atheris() -> None:
    """A URL urlsplit refuses ("Invalid IPv6 URL") gets no proxy, not a ValueError."""
    check(BY_NAME["proxies"], b"http://p:1\x00\x00[")
    check(BY_NAME["proxies"], b"http://p:1\x00.example.org\x00[")
