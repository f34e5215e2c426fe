"""Fuzz targets: every parser of what a server (or a file it left) hands segdl, fed bytes.

Each target takes arbitrary bytes and may raise only the error its parser documents; anything
else is a bug. tests/unit/test_fuzz.py runs them under hypothesis in the suite, bench/fuzz.py
under atheris (coverage-guided) for minutes at a time.
"""

from __future__ import annotations

import contextlib
import http.client
import io
from collections.abc import Callable
from dataclasses import dataclass

from segdl.core.answers import StaticHead, judge_first
from segdl.core.digests import from_headers
from segdl.core.errors import InvalidHeader, SegdlError, StateInvalid, UsageError
from segdl.core.names import (
    MAX_NAME_BYTES,
    choose_filename,
    parse_content_disposition,
    sanitise_filename,
)
from segdl.core.ranges import parse_content_length, parse_content_range
from segdl.core.retry import parse_retry_after
from segdl.disk.state import decode_state
from segdl.net.proxies import bypass, parse_proxy, proxy_for
from segdl.net.urllib3_compat import BoundedResponse
from segdl.run.batch import parse_input_file


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    """The documented errors: any other exception is a bug."""


def _text(data: bytes) -> str:
    return data.decode("latin-1")  # how http.client turns header bytes into str


class _Socket:
    """What http.client's response needs of a socket: bytes to read, a timeout to keep."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self._data))  # type: ignore[arg-type]

    def gettimeout(self) -> float:
        return 30.0

    def settimeout(self, value: float | None) -> None:
        pass


def head(data: bytes) -> None:
    """A response head as read off the wire (1xx interim heads skipped, a deadline on the
    whole), then judged as a first answer: status, length, range, encoding, validators."""
    response = BoundedResponse(_Socket(data), method="GET")  # type: ignore[arg-type]
    response.begin()
    fields: dict[str, list[str]] = {}
    for key, value in response.msg.items():
        fields.setdefault(key, []).append(value)
    parsed = StaticHead(response.status, fields, response.reason)
    for ranged in (True, False):
        judge_first(parsed, url="http://h/f", final_url="http://h/f", ranged=ranged, start=0)
    from_headers(parsed.header_values, full_response=response.status == 200)


def content_range(data: bytes) -> None:
    parsed = parse_content_range(_text(data))
    if parsed.satisfied:
        assert 0 <= parsed.start < parsed.end
        assert parsed.total is None or parsed.end <= parsed.total


def content_length(data: bytes) -> None:
    length = parse_content_length(_text(data).split("\x00"))
    assert length is None or length >= 0


def content_disposition(data: bytes) -> None:
    """RFC 6266 / 8187: never raises; what comes out is a plain, short, sanitised name."""
    value = _text(data) if data[:1] != b"\xff" else data[1:].decode("utf-8", "replace")
    suggested = parse_content_disposition(value)
    if suggested is not None:
        sanitise_filename(suggested)
    name = choose_filename("http://h/dir/file.bin", value)
    assert name and "/" not in name and "\\" not in name and "\x00" not in name
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert name == sanitise_filename(name)


def digests(data: bytes) -> None:
    """Repr-Digest (RFC 9530 structured fields), Digest (RFC 3230), Content-MD5: never raise."""
    parts = _text(data).split("\x00")
    fields = {"Repr-Digest": parts[0:1], "Digest": parts[1:2], "Content-MD5": parts[2:3]}
    from_headers(lambda name: [v for v in fields.get(name, []) if v], full_response=True)


def retry_after(data: bytes) -> None:
    """delay-seconds or an HTTP-date: a number of seconds from now, or None; never raises."""
    waited = parse_retry_after(_text(data), 1_700_000_000.0)
    assert waited is None or waited >= 0


def state_file(data: bytes) -> None:
    """A state file left on disk: decoded exactly, or StateInvalid."""
    decode_state(data)


def input_file(data: bytes) -> None:
    """aria2's input-file format: jobs, or one UsageError naming the line."""
    parse_input_file(data.decode("utf-8", "surrogateescape"))


def proxies(data: bytes) -> None:
    """A proxy URL and NO_PROXY list from the environment: parsed, or UsageError."""
    proxy, _, rest = _text(data).partition("\x00")
    no_proxy, _, target = rest.partition("\x00")
    url = "http://" + (target or "example.org") + "/f"
    bypass(url, no_proxy)
    chosen = proxy_for(
        url, explicit=None, environ={"http_proxy": proxy, "no_proxy": no_proxy}, use_env=True
    )
    if chosen:
        parse_proxy(chosen)


TARGETS = (
    Target("head", head, (http.client.HTTPException, SegdlError)),
    Target("content_range", content_range, (InvalidHeader,)),
    Target("content_length", content_length, (InvalidHeader,)),
    Target("content_disposition", content_disposition, ()),
    Target("digests", digests, ()),
    Target("retry_after", retry_after, ()),
    Target("state_file", state_file, (StateInvalid,)),
    Target("input_file", input_file, (UsageError,)),
    Target("proxies", proxies, (UsageError,)),
)


def check(target: Target, data: bytes) -> None:
    """Run ``target`` on ``data``; its documented errors are fine, anything else raises."""
    with contextlib.suppress(*target.allowed):
        target.run(data)
