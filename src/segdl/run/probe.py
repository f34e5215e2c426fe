"""First contact: one ``GET`` with ``Range: bytes=0-`` learns everything and wastes nothing.

A ``206`` with a total tells the size and that ranges work, and its body is already streaming
byte 0 onwards, so that connection simply keeps going while others start. A ``200`` (range
ignored or unsupported), a body without a length, a chunked body or a ``Content-Encoding``
mean one plain stream. No ``HEAD`` is ever needed: many servers refuse it (403/405) or answer
it with another length than the ``GET``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urljoin, urlsplit

from segdl.core.errors import (
    HTTPStatusError,
    InsecureRedirect,
    InvalidHeader,
    ProtocolError,
    RemoteChanged,
    TooManyRedirects,
    shown,
)
from segdl.core.models import ByteRange, Resource, Validator
from segdl.core.options import DownloadOptions
from segdl.core.ranges import (
    open_range_header,
    parse_content_length,
    parse_content_range,
    range_header,
    single_header,
)
from segdl.disk.digests import Expected, from_headers
from segdl.net.auth import Identity, split_userinfo
from segdl.net.transport import Response, Transport

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Mode(Enum):
    RANGED = "ranged"
    """206 from byte 0 with a known total: split the rest across connections."""
    SINGLE_STREAM = "single-stream"
    """One body, read to its end: the server ignored the range or cannot do ranges."""
    EMPTY = "empty"
    """Nothing to fetch: a 0-byte file."""


@dataclass(slots=True)
class FirstContact:
    resource: Resource
    mode: Mode
    response: Response | None
    """The open response; its body starts at byte 0. None for :attr:`Mode.EMPTY`."""
    first_range: ByteRange | None = None
    """For :attr:`Mode.RANGED`: the bytes the body of ``response`` carries."""
    reason: str = ""
    """Why this mode, for notices and logs."""
    content_disposition: str | None = None
    """The final response's ``Content-Disposition``, which may name the file."""
    expected_digest: Expected | None = None
    """A digest of the whole file the server sent (Repr-Digest, Digest, Content-MD5)."""


def first_contact(
    transport: Transport,
    url: str,
    options: DownloadOptions,
    *,
    ranged: bool = True,
    start: int = 0,
    end: int | None = None,
    if_range: str | None = None,
    identity: Identity | None = None,
) -> FirstContact:
    """Send the first request, following redirects, and classify the answer.

    It asks for ``bytes=start-`` (when resuming: ``start`` up to ``end``, the first missing
    range, with ``if_range`` so a changed file comes back whole as a 200). With
    ``ranged=False`` no ``Range`` is sent (the fallback when ranges cannot be trusted).
    """
    headers = options.request_headers()
    if ranged:
        headers["Range"] = (
            open_range_header(start) if end is None else range_header(ByteRange(start, end))
        )
        if if_range is not None:
            headers["If-Range"] = if_range
    current = url
    seen = {url}
    for _ in range(options.max_redirects + 1):
        credentials = identity.headers_for(current) if identity is not None else {}
        response = transport.request("GET", current, {**headers, **credentials})
        if response.status not in _REDIRECTS:
            contact = _classify(url, current, response, ranged=ranged, start=start)
            contact.content_disposition = _content_disposition(response)
            # Content-MD5 describes this body, so only a whole (200) body (RFC 1864).
            contact.expected_digest = from_headers(
                response.header_values, full_response=response.status == 200
            )
            return contact
        location = single_header("Location", response.header_values("Location"))
        response.close()
        if location is None:
            raise ProtocolError(
                f"redirect {response.status} without Location from {shown(current)}"
            )
        target = split_userinfo(urljoin(current, location.strip()))[0]  # never from a target
        _check_redirect(current, target, options)
        if target in seen:
            raise TooManyRedirects(url, options.max_redirects)
        log.debug("redirect %d from %s to %s", response.status, shown(current), shown(target))
        seen.add(target)
        current = target
    raise TooManyRedirects(url, options.max_redirects)


def _check_redirect(current: str, target: str, options: DownloadOptions) -> None:
    """http and https only; https to http only when allowed (it would expose the rest)."""
    source_scheme, target_scheme = urlsplit(current).scheme, urlsplit(target).scheme
    if target_scheme not in ("http", "https"):
        raise InsecureRedirect(current, target)
    if source_scheme == "https" and target_scheme == "http" and not options.allow_insecure_redirect:
        raise InsecureRedirect(current, target)


def _content_disposition(response: Response) -> str | None:
    values = response.header_values("Content-Disposition")
    return values[0] if len(values) == 1 else None


def _classify(
    url: str, final_url: str, response: Response, *, ranged: bool, start: int
) -> FirstContact:
    status = response.status
    try:
        if status >= 400 and not (status == 416 and ranged):
            retry_after = single_header("Retry-After", response.header_values("Retry-After"))
            raise HTTPStatusError(final_url, status, response.reason, retry_after)
        validator = Validator(
            etag=single_header("ETag", response.header_values("ETag")),
            last_modified=single_header("Last-Modified", response.header_values("Last-Modified")),
        )
        length = parse_content_length(response.header_values("Content-Length"))
        chunked = any("chunked" in v.lower() for v in response.header_values("Transfer-Encoding"))
        if chunked:
            length = None  # RFC 9112 §6.3: Transfer-Encoding overrides Content-Length
        encoded = _content_encoding(response)
        content_type = single_header("Content-Type", response.header_values("Content-Type"))
    except BaseException:
        response.close()
        raise

    def resource(size_bytes: int | None, accepts_ranges: bool) -> Resource:
        return Resource(url, final_url, size_bytes, accepts_ranges, validator, content_type)

    if status == 416:
        content_range = parse_content_range(
            single_header("Content-Range", response.header_values("Content-Range")) or ""
        )
        response.close()
        if content_range.total == 0 and start == 0:
            return FirstContact(resource(0, True), Mode.EMPTY, None, reason="empty file")
        if start > 0:  # resuming beyond the end: the file is not the one we had
            raise RemoteChanged(final_url, f"size is now {content_range.total}")
        raise ProtocolError(f"server refused 'Range: bytes=0-' for a non-empty file ({url})")
    if status == 204 or (status in (200, 206) and length == 0 and not chunked):
        response.close()
        return FirstContact(resource(0, status == 206), Mode.EMPTY, None, reason="empty body")
    if status == 206:
        return _classify_partial(response, resource, length, encoded, start)
    if status != 200:
        response.close()
        raise ProtocolError(f"unexpected status {status} {response.reason} from {final_url}")
    reason = "server ignored Range" if ranged else "plain request"
    if encoded:
        reason = f"server sent Content-Encoding {encoded}"
    return FirstContact(resource(length, False), Mode.SINGLE_STREAM, response, reason=reason)


def _classify_partial(
    response: Response,
    resource: Callable[[int | None, bool], Resource],
    length: int | None,
    encoded: str | None,
    start: int,
) -> FirstContact:
    try:
        header = single_header("Content-Range", response.header_values("Content-Range"))
        if header is None:
            raise InvalidHeader("Content-Range", "", "missing on a 206 response")
        content_range = parse_content_range(header)
        if content_range.start != start or not content_range.satisfied:
            raise InvalidHeader("Content-Range", header, f"does not start at byte {start}")
        if length is not None and length != content_range.end - content_range.start:
            raise InvalidHeader("Content-Length", str(length), f"disagrees with {header}")
    except InvalidHeader as exc:
        # Ranges from this server cannot be believed; a plain GET needs no range headers.
        response.close()
        return FirstContact(resource(None, False), Mode.SINGLE_STREAM, None, reason=str(exc))
    except BaseException:
        response.close()
        raise
    if encoded or content_range.total is None:
        # Offsets in an encoded body are not the file's; a total of '*' gives nothing to
        # split. Either way, ask again without Range and take the body as it comes.
        why = f"server sent Content-Encoding {encoded}" if encoded else "unknown total size"
        response.close()
        return FirstContact(resource(None, False), Mode.SINGLE_STREAM, None, reason=why)
    return FirstContact(
        resource(content_range.total, True),
        Mode.RANGED,
        response,
        ByteRange(content_range.start, content_range.end),
        reason="ranges supported",
    )


def _content_encoding(response: Response) -> str | None:
    values = [
        token.strip()
        for line in response.header_values("Content-Encoding")
        for token in line.split(",")
        if token.strip() and token.strip().lower() != "identity"
    ]
    return ", ".join(values) or None
