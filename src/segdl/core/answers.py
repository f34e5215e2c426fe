"""Do we believe this answer? Every judgment of a response head, in one pure module.

Everything that decides whether a status line and its header fields can be believed lives
here, the way h11's ``_state.py`` holds everything that moves its state machine: the first
contact's answer (:func:`judge_first`), a ranged answer (:func:`check_range_answer`), whether
two sightings are the same remote file (:func:`changed`), ``Retry-After`` (:func:`retry_after`),
``Content-Encoding`` (:func:`content_encoding`) and the ``If-Range`` value (:func:`if_range`).
Nothing here reads a body, opens a socket or closes a response: callers do, on the verdict.
``tests/unit/test_answers.py`` tests these as tables.

``Retry-After`` is a singleton field (RFC 9110 §10.2.3). Repeated with the same value (a
proxy that copied it), it is that value; repeated with different values it says nothing
believable, so it is ignored and the status alone decides: a ``503`` stays transient and is
retried after segdl's own backoff, on the first request as on a range. (Before, the first
request failed for good with ``InvalidHeader`` while a range took the first value.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol
from urllib.parse import urlsplit

from segdl.core.errors import (
    ContentRangeMismatch,
    HTTPStatusError,
    InsecureRedirect,
    InvalidHeader,
    ProtocolError,
    RangeNotHonoured,
    RemoteChanged,
    UnexpectedEncoding,
)
from segdl.core.models import ByteRange, Resource, Validator
from segdl.core.ranges import parse_content_length, parse_content_range, single_header

REDIRECTS = frozenset({301, 302, 303, 307, 308})


def check_redirect(current: str, target: str, *, allow_insecure: bool) -> None:
    """http and https only; https to http only when allowed (it would expose the rest):
    :class:`InsecureRedirect` otherwise."""
    source_scheme, target_scheme = urlsplit(current).scheme, urlsplit(target).scheme
    if target_scheme not in ("http", "https"):
        raise InsecureRedirect(current, target)
    if source_scheme == "https" and target_scheme == "http" and not allow_insecure:
        raise InsecureRedirect(current, target)


class Head(Protocol):
    """A response's status line and header fields (every transport's response is one)."""

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str: ...

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order; [] when absent."""
        ...


@dataclass(frozen=True, slots=True)
class StaticHead:
    """A head given as a table (tests, fakes): header names are case-insensitive."""

    status: int
    fields: Mapping[str, str | Sequence[str]]
    reason: str = ""

    def header_values(self, name: str) -> list[str]:
        values: list[str] = []
        for key, value in self.fields.items():
            if key.lower() == name.lower():
                values += [value] if isinstance(value, str) else list(value)
        return values


class Mode(Enum):
    RANGED = "ranged"
    """206 from byte 0 with a known total: split the rest across connections."""
    SINGLE_STREAM = "single-stream"
    """One body, read to its end: the server ignored the range or cannot do ranges."""
    EMPTY = "empty"
    """Nothing to fetch: a 0-byte file."""


@dataclass(frozen=True, slots=True)
class FirstAnswer:
    """The verdict on the first contact's (non-redirect) answer."""

    resource: Resource
    mode: Mode
    use_body: bool
    """Read this answer's body (True), or close it: nothing to read, or ask again."""
    first_range: ByteRange | None = None
    """For :attr:`Mode.RANGED`: the bytes the body carries."""
    reason: str = ""
    """Why this mode, for notices and logs."""


def retry_after(head: Head) -> str | None:
    """The one ``Retry-After`` value, or None (absent, or repeated with different values)."""
    values = {value.strip() for value in head.header_values("Retry-After")}
    return values.pop() if len(values) == 1 else None


def status_error(head: Head, url: str) -> HTTPStatusError:
    return HTTPStatusError(url, head.status, head.reason, retry_after(head))


def content_encoding(head: Head) -> str | None:
    """The codings applied to the body, ``identity`` left out (RFC 9110 §8.4), or None."""
    codings = [
        token.strip()
        for line in head.header_values("Content-Encoding")
        for token in line.split(",")
        if token.strip() and token.strip().lower() != "identity"
    ]
    return ", ".join(codings) or None


def validator(head: Head) -> Validator:
    """ETag and Last-Modified; a repeated one that disagrees is an :class:`InvalidHeader`."""
    return Validator(
        etag=single_header("ETag", head.header_values("ETag")),
        last_modified=single_header("Last-Modified", head.header_values("Last-Modified")),
    )


def if_range(known: Validator) -> str | None:
    """What ``If-Range`` carries (RFC 9110 §13.1.5): a strong ETag, else Last-Modified (a
    weak ETag never guards bytes); None: send no ``If-Range``."""
    return known.strong_etag or known.last_modified


class Witness(Enum):
    """Who gives the second sighting of a file, which decides what must agree."""

    SAME_SERVER = "same server"
    """A later answer for the same URL: any ETag, and Last-Modified, that both sides give
    must agree; a size both know must agree."""
    MIRROR = "mirror"
    """Another server: weak ETags are each server's own, so only strong ones compare; the
    size must agree."""
    STATE = "state"
    """What the state file of a partial download recorded: the size must agree, and the
    validator it kept (a strong ETag, else Last-Modified) must still be there, unchanged."""


def changed(
    known_size: int | None,
    known: Validator,
    fresh_size: int | None,
    fresh: Validator,
    witness: Witness,
) -> str | None:
    """Why ``fresh`` is not the file ``known`` described (None: it is the same file)."""
    if witness is Witness.SAME_SERVER:
        sizes_differ = None not in (known_size, fresh_size) and known_size != fresh_size
    else:
        sizes_differ = fresh_size != known_size
    if sizes_differ:
        return f"size is now {fresh_size}, was {known_size}"
    if witness is Witness.STATE:
        if known.etag is not None:
            return None if fresh.strong_etag == known.etag else _etag_change(known, fresh)
        if known.last_modified is not None and fresh.last_modified != known.last_modified:
            return _modified_change(known, fresh)
        return None
    if witness is Witness.MIRROR:
        old_etag, new_etag = known.strong_etag, fresh.strong_etag
    else:
        old_etag, new_etag = known.etag, fresh.etag
    if None not in (old_etag, new_etag) and old_etag != new_etag:
        return _etag_change(known, fresh)
    old_modified, new_modified = known.last_modified, fresh.last_modified
    if None not in (old_modified, new_modified) and old_modified != new_modified:
        return _modified_change(known, fresh)
    return None


def _etag_change(known: Validator, fresh: Validator) -> str:
    return f"ETag is now {fresh.etag}, was {known.etag}"


def _modified_change(known: Validator, fresh: Validator) -> str:
    return f"Last-Modified is now {fresh.last_modified}, was {known.last_modified}"


def judge_first(head: Head, *, url: str, final_url: str, ranged: bool, start: int) -> FirstAnswer:
    """The first contact's answer (after redirects) to ``Range: bytes=start-`` (or to a
    plain GET when not ``ranged``): what the file is and how to fetch it. Raises
    :class:`HTTPStatusError` for an error status, :class:`RemoteChanged` when resuming past
    the end, :class:`ProtocolError` for what no download can follow."""
    status = head.status
    if status >= 400 and not (status == 416 and ranged):
        raise status_error(head, final_url)
    length = parse_content_length(head.header_values("Content-Length"))
    chunked = any("chunked" in v.lower() for v in head.header_values("Transfer-Encoding"))
    if chunked:
        length = None  # RFC 9112 §6.3: Transfer-Encoding overrides Content-Length
    found = validator(head)
    content_type = single_header("Content-Type", head.header_values("Content-Type"))

    def resource(size_bytes: int | None, accepts_ranges: bool) -> Resource:
        return Resource(url, final_url, size_bytes, accepts_ranges, found, content_type)

    if status == 416:
        header = single_header("Content-Range", head.header_values("Content-Range")) or ""
        total = parse_content_range(header).total
        if total == 0 and start == 0:
            return FirstAnswer(resource(0, True), Mode.EMPTY, False, reason="empty file")
        if start > 0:  # resuming beyond the end: the file is not the one we had
            raise RemoteChanged(final_url, f"size is now {total}")
        raise ProtocolError(f"server refused 'Range: bytes=0-' for a non-empty file ({url})")
    if status == 204 or (status in (200, 206) and length == 0 and not chunked):
        return FirstAnswer(resource(0, status == 206), Mode.EMPTY, False, reason="empty body")
    encoded = content_encoding(head)
    if status == 206:
        return _judge_partial(head, resource(None, False), length, encoded, start)
    if status != 200:
        raise ProtocolError(f"unexpected status {status} {head.reason} from {final_url}")
    reason = "server ignored Range" if ranged else "plain request"
    if encoded:
        reason = f"server sent Content-Encoding {encoded}"
    return FirstAnswer(resource(length, False), Mode.SINGLE_STREAM, True, reason=reason)


def _judge_partial(
    head: Head, unranged: Resource, length: int | None, encoded: str | None, start: int
) -> FirstAnswer:
    """A 206 to the first request: believed only whole; otherwise a plain GET follows."""
    try:
        header = single_header("Content-Range", head.header_values("Content-Range"))
        if header is None:
            raise InvalidHeader("Content-Range", "", "missing on a 206 response")
        content_range = parse_content_range(header)
        if content_range.start != start or not content_range.satisfied:
            raise InvalidHeader("Content-Range", header, f"does not start at byte {start}")
        if length is not None and length != content_range.end - content_range.start:
            raise InvalidHeader("Content-Length", str(length), f"disagrees with {header}")
    except InvalidHeader as exc:
        # Ranges from this server cannot be believed; a plain GET needs no range headers.
        return FirstAnswer(unranged, Mode.SINGLE_STREAM, False, reason=str(exc))
    if encoded or content_range.total is None:
        # Offsets in an encoded body are not the file's; a total of '*' gives nothing to
        # split. Either way, ask again without Range and take the body as it comes.
        why = f"server sent Content-Encoding {encoded}" if encoded else "unknown total size"
        return FirstAnswer(unranged, Mode.SINGLE_STREAM, False, reason=why)
    size = content_range.total
    ranged = Resource(
        unranged.url, unranged.final_url, size, True, unranged.validator, unranged.content_type
    )
    first = ByteRange(content_range.start, content_range.end)
    return FirstAnswer(ranged, Mode.RANGED, True, first, reason="ranges supported")


def check_range_answer(head: Head, resource: Resource, asked: ByteRange) -> None:
    """Raise unless ``head`` answers ``asked`` with exactly bytes ``asked.start``… of the file
    ``resource`` describes: 206, one ``Content-Range`` from the byte asked for, within the
    range, with the known total, no ``Content-Encoding``, the same validator."""
    url = resource.final_url
    status = head.status
    if status >= 400:
        raise status_error(head, url)
    if status != 206:
        _check_same_server(head, resource)  # a 200 after If-Range: the file changed
        raise RangeNotHonoured(url, asked, status)
    encoded = content_encoding(head)
    if encoded:
        raise UnexpectedEncoding(url, encoded)
    values = head.header_values("Content-Range")
    if len(values) != 1:
        why = "missing" if not values else "repeated"
        raise ContentRangeMismatch(url, asked, ", ".join(values) or None, why)
    try:
        content_range = parse_content_range(values[0])
    except InvalidHeader as exc:
        raise ContentRangeMismatch(url, asked, values[0], exc.why) from exc
    if not content_range.satisfied or content_range.start != asked.start:
        raise ContentRangeMismatch(url, asked, values[0], f"does not start at {asked.start}")
    if content_range.end > asked.end:
        raise ContentRangeMismatch(url, asked, values[0], "extends beyond the range asked")
    if content_range.total != resource.size_bytes:
        raise ContentRangeMismatch(
            url, asked, values[0], f"total differs from the size {resource.size_bytes}"
        )
    length = parse_content_length(head.header_values("Content-Length"))
    if length is not None and length != content_range.end - content_range.start:
        raise ContentRangeMismatch(url, asked, values[0], f"Content-Length is {length}")
    _check_same_server(head, resource)


def _check_same_server(head: Head, resource: Resource) -> None:
    """The validator this answer gives, if any, is still the one first seen."""
    why = changed(None, resource.validator, None, validator(head), Witness.SAME_SERVER)
    if why is not None:
        raise RemoteChanged(resource.final_url, why)
