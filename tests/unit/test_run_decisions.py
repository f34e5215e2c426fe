"""The run layer's decisions on a fake transport: fallback to one stream, a mirror dropped,
an expired signed URL renewed, the restart loop, a first request retried. No socket."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import segdl
from segdl.core.errors import RemoteChanged
from segdl.core.failures import SINGLE_AFTER
from segdl.core.progress import Event, Notice, NoticeKind
from segdl.net.fake import FakeAnswer, FakeFile, FakeRequest, FakeTransport, Route, serve
from segdl.net.interfaces import NoPreconnection, Preconnection

URL = "http://origin.test/f.bin"
MIRROR = "http://mirror.test/f.bin"
KIB = 1024
SIZE = 1024 * KIB
FIRST_BYTES = 64 * KIB


def data(seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(SIZE)


def short_first(route: Route) -> Route:
    """The first answer (``bytes=0-``) carries only the first 64 KiB, so the rest of the
    file must come over ranged requests: what a test misbehaves on is always asked."""

    def first(request: FakeRequest) -> FakeAnswer:
        if request.header("Range") == "bytes=0-":
            request = FakeRequest(
                request.method,
                request.url,
                {**request.headers, "Range": f"bytes=0-{FIRST_BYTES - 1}"},
            )
        return route(request)

    return first


def run(transport: FakeTransport, dest: Path, **options: Any) -> list[Notice]:
    events: list[Event] = []

    def listen(event: Event) -> None:
        events.append(event)

    segdl.download(
        URL,
        dest,
        transport=transport,
        progress=listen,
        connections=4,
        min_split_bytes=64 * KIB,
        retry_wait_s=0.0,
        **options,
    )
    return [e for e in events if isinstance(e, Notice)]


def kinds(notices: list[Notice]) -> set[NoticeKind]:
    return {notice.kind for notice in notices}


@pytest.fixture
def dest(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "f.bin"


def test_ranges_that_cannot_be_believed_fall_back_to_one_stream(dest: Path) -> None:
    """A server answering later ranges with the whole file (200): the download switches to
    one plain stream (no Range) and the file is right."""
    body = data()
    honest = serve(FakeFile(body))

    def ignores_ranges(request: FakeRequest) -> FakeAnswer:
        asked = request.header("Range")
        if asked is None or asked == f"bytes=0-{FIRST_BYTES - 1}":
            return honest(request)
        return FakeAnswer(200, {"Content-Length": str(SIZE), "ETag": '"fake-1"'}, body)

    transport = FakeTransport({URL: short_first(ignores_ranges)})
    notices = run(transport, dest)
    assert dest.read_bytes() == body
    assert NoticeKind.FALLBACK_SINGLE_STREAM in kinds(notices)
    assert transport.requests[-1].header("Range") is None


def test_a_mirror_whose_ranges_cannot_be_believed_is_dropped(dest: Path) -> None:
    """A mirror that passes the first check but ignores ranges is dropped; the main URL
    finishes the file alone."""
    body = data()
    honest_mirror = serve(FakeFile(body))

    def bad_mirror(request: FakeRequest) -> FakeAnswer:
        if request.header("Range") == f"bytes={SIZE - 1}-":  # the check of its last byte
            return honest_mirror(request)
        return FakeAnswer(200, {"Content-Length": str(SIZE)}, body)

    honest = serve(FakeFile(body))

    def slow(request: FakeRequest) -> FakeAnswer:  # so that every connection gets work
        answer = honest(request)
        return FakeAnswer(answer.status, answer.headers, answer.body, read_delay_s=0.05)

    transport = FakeTransport({URL: short_first(slow), MIRROR: bad_mirror})
    notices = run(transport, dest, mirrors=[MIRROR])
    assert dest.read_bytes() == body
    dropped = [n for n in notices if n.kind is NoticeKind.MIRROR_DROPPED]
    assert len(dropped) == 1 and "mirror.test" in dropped[0].message
    assert len([r for r in transport.requests if r.url == MIRROR]) >= 2


def test_an_expired_signed_url_is_renewed_from_the_original(dest: Path) -> None:
    """The redirect target starts answering 403: the original URL is asked again, its new
    target serves the rest, and the file is right."""
    body = data()
    first_target, second_target = URL + "?sig=1", URL + "?sig=2"
    redirects = itertools.chain([first_target], itertools.repeat(second_target))

    def origin(request: FakeRequest) -> FakeAnswer:
        return FakeAnswer(302, {"Location": next(redirects)})

    honest = serve(FakeFile(body))

    def expiring(request: FakeRequest) -> FakeAnswer:
        if request.header("Range") == "bytes=0-":
            return short_first(honest)(request)
        return FakeAnswer(403, reason="Forbidden")

    transport = FakeTransport({URL: origin, first_target: expiring, second_target: honest})
    notices = run(transport, dest)
    assert dest.read_bytes() == body
    assert NoticeKind.URL_RENEWED in kinds(notices)
    assert any(r.url == second_target and r.header("Range") for r in transport.requests)


class ChangingFile:
    """A file replaced by a new version right after each first contact (``bytes=0-``)."""

    def __init__(self, changes: int) -> None:
        self.version = 0
        self.changes = changes

    def route(self, request: FakeRequest) -> FakeAnswer:
        answer = short_first(serve(FakeFile(data(self.version), etag=f'"v{self.version}"')))(
            request
        )
        if request.header("Range") == "bytes=0-" and self.version < self.changes:
            self.version += 1
        return answer


def test_a_file_that_changed_is_downloaded_again_from_the_start(dest: Path) -> None:
    """Ranges of a new version (If-Range gets the whole new file): the download restarts,
    says so, and ends with the new version whole, never a mix."""
    changing = ChangingFile(changes=1)
    notices = run(FakeTransport({URL: changing.route}), dest)
    assert dest.read_bytes() == data(1)
    assert NoticeKind.REMOTE_CHANGED in kinds(notices)


def test_a_file_that_keeps_changing_fails_after_three_attempts(dest: Path) -> None:
    """The restart loop is bounded: a file changing under every attempt is RemoteChanged."""
    changing = ChangingFile(changes=10)
    with pytest.raises(RemoteChanged, match="changed 3 times"):
        run(FakeTransport({URL: changing.route}), dest)
    assert changing.version == 3
    assert not dest.exists()


def test_a_503_with_a_self_contradicting_retry_after_is_retried(dest: Path) -> None:
    """The first request's 503 with two different Retry-After values is transient (retried
    on segdl's own backoff), not a permanent InvalidHeader."""
    body = data()
    honest = serve(FakeFile(body))
    answers = iter([FakeAnswer(503, {"Retry-After": ["5", "3600"]}, reason="Busy")])

    def busy_once(request: FakeRequest) -> FakeAnswer:
        return next(answers, None) or honest(request)

    notices = run(FakeTransport({URL: busy_once}), dest)
    assert dest.read_bytes() == body
    assert NoticeKind.CONNECTION_RETRY in kinds(notices)


def test_a_reset_range_resumes_where_it_broke(dest: Path) -> None:
    """A connection reset mid-range is retried from its last byte: nothing is asked twice
    but the range's remainder, and the file is right."""
    body = data()
    honest = serve(FakeFile(body))
    broken: set[str] = set()

    def resets_once(request: FakeRequest) -> FakeAnswer:
        answer = honest(request)
        asked = request.header("Range") or ""
        if answer.status == 206 and asked != "bytes=0-" and not broken:
            broken.add(asked)
            return FakeAnswer(answer.status, answer.headers, answer.body, break_after=KIB)
        return answer

    transport = FakeTransport({URL: short_first(resets_once)})
    notices = run(transport, dest)
    assert dest.read_bytes() == body
    assert NoticeKind.CONNECTION_RETRY in kinds(notices)


def test_ranges_that_break_before_their_first_byte_end_in_one_stream(dest: Path) -> None:
    """#19 on the fake transport: every 206 past byte 0 breaks right after its head. After
    six breaks in a row the rest comes in one plain stream and the file is right, long
    before a retry policy of 20 attempts per range would have given up (which connections
    were lowered on the way depends on which threads got there first)."""
    body = data()
    honest = serve(FakeFile(body))

    def breaks_past_zero(request: FakeRequest) -> FakeAnswer:
        answer = honest(request)
        asked = request.header("Range") or ""
        if answer.status == 206 and not asked.startswith("bytes=0-"):
            return FakeAnswer(answer.status, answer.headers, answer.body, break_after=0)
        return answer

    transport = FakeTransport({URL: short_first(breaks_past_zero)})
    notices = run(transport, dest, retries=20)
    assert dest.read_bytes() == body
    fallbacks = [n for n in notices if n.kind is NoticeKind.FALLBACK_SINGLE_STREAM]
    assert len(fallbacks) == 1 and "before their first byte" in fallbacks[0].message
    ranged = [r for r in transport.requests if r.header("Range") not in (None, "bytes=0-")]
    assert SINGLE_AFTER <= len(ranged) <= 4 * SINGLE_AFTER, len(ranged)  # without: 4 x 21
    assert transport.requests[-1].header("Range") is None


class CountingPreconnects(FakeTransport):
    """A fake transport that counts the preconnects asked of it."""

    def __init__(self, routes: dict[str, Route]) -> None:
        super().__init__(routes)
        self.preconnects: list[int] = []

    def preconnect(self, url: str, count: int) -> Preconnection:
        self.preconnects.append(count)
        return NoPreconnection()


def test_a_download_preconnects_once_even_when_it_starts_over(dest: Path) -> None:
    """The other connections' handshakes start beside the first request only, once per
    download: neither a retried first request (503) nor a restart after the file changed
    opens a second set."""
    changing = ChangingFile(changes=1)
    answers = iter([FakeAnswer(503, reason="Busy")])

    def busy_once(request: FakeRequest) -> FakeAnswer:
        return next(answers, None) or changing.route(request)

    transport = CountingPreconnects({URL: busy_once})
    notices = run(transport, dest, preconnect=True)
    assert dest.read_bytes() == data(1)
    assert {NoticeKind.CONNECTION_RETRY, NoticeKind.REMOTE_CHANGED} <= kinds(notices)
    assert transport.preconnects == [3]
