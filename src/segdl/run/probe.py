"""First contact: one ``GET`` with ``Range: bytes=0-`` learns everything and wastes nothing.

A ``206`` with a total tells the size and that ranges work, and its body is already streaming
byte 0 onwards, so that connection simply keeps going while others start. A ``200`` (range
ignored or unsupported), a body without a length, a chunked body or a ``Content-Encoding``
mean one plain stream. No ``HEAD`` is ever needed: many servers refuse it (403/405) or answer
it with another length than the ``GET``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from segdl.core.answers import REDIRECTS, Mode, check_redirect, judge_first
from segdl.core.digests import Expected, from_headers
from segdl.core.errors import (
    ProtocolError,
    TooManyRedirects,
    UsageError,
    shown,
)
from segdl.core.models import ByteRange, Resource
from segdl.core.options import DownloadOptions
from segdl.core.progress import NoticeKind
from segdl.core.ranges import (
    open_range_header,
    range_header,
    single_header,
)
from segdl.net.auth import Identity, split_userinfo
from segdl.net.interfaces import NoPreconnection, Preconnection, Response, Transport
from segdl.run.retries import call_with_retries

log = logging.getLogger(__name__)


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


def check_url(url: str) -> None:
    """Refuse, before anything is sent, a URL that cannot be parsed or is not HTTP(S): no
    scheme is guessed (``example.org/f`` is not taken for ``http://example.org/f``)."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise UsageError(f"invalid URL: {exc}") from exc
    if scheme not in ("http", "https"):
        raise UsageError(f"invalid URL {shown(url)!r}: only http:// and https:// are supported")


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
        if response.status not in REDIRECTS:
            return _contact(url, current, response, ranged=ranged, start=start)
        location = single_header("Location", response.header_values("Location"))
        response.close()
        if location is None:
            raise ProtocolError(
                f"redirect {response.status} without Location from {shown(current)}"
            )
        target = split_userinfo(urljoin(current, location.strip()))[0]  # never from a target
        check_redirect(current, target, allow_insecure=options.allow_insecure_redirect)
        if target in seen:
            raise TooManyRedirects(url, options.max_redirects)
        log.debug("redirect %d from %s to %s", response.status, shown(current), shown(target))
        seen.add(target)
        current = target
    raise TooManyRedirects(url, options.max_redirects)


def _content_disposition(response: Response) -> str | None:
    values = response.header_values("Content-Disposition")
    return values[0] if len(values) == 1 else None


def _contact(
    url: str, final_url: str, response: Response, *, ranged: bool, start: int
) -> FirstContact:
    """The first contact as :func:`~segdl.core.answers.judge_first` judges its answer; the
    response is closed unless its body is to be read."""
    try:
        answer = judge_first(response, url=url, final_url=final_url, ranged=ranged, start=start)
        # Content-MD5 describes this body, so only a whole (200) body (RFC 1864).
        digest = from_headers(response.header_values, full_response=response.status == 200)
    except BaseException:
        response.close()
        raise
    if not answer.use_body:
        response.close()
    return FirstContact(
        answer.resource,
        answer.mode,
        response if answer.use_body else None,
        answer.first_range,
        answer.reason,
        _content_disposition(response),
        digest,
    )


class Contacts:
    """A download's first requests (the first contact, a resume's first missing range), each
    retried while its failure is transient (503, resets...). The first of them also starts the
    other connections' handshakes, once per download, beside it; they are used only once it
    has been answered."""

    def __init__(
        self,
        transport: Transport,
        url: str,
        options: DownloadOptions,
        identity: Identity,
        cancel: threading.Event,
        notify: Callable[[NoticeKind, str], None],
    ) -> None:
        self.transport = transport
        self.url = url
        self.options = options
        self.identity = identity
        self.cancel = cancel
        self._notify = notify
        wanted = min(options.connections, options.max_connections_per_host) - 1
        self._preconnect_wanted = wanted if options.preconnect else 0

    def first(
        self, *, start: int = 0, end: int | None = None, if_range: str | None = None
    ) -> FirstContact:
        """:func:`first_contact`, retried under the retry policy."""
        warm = self._preconnect()

        def attempt() -> FirstContact:
            return first_contact(
                self.transport,
                self.url,
                self.options,
                start=start,
                end=end,
                if_range=if_range,
                identity=self.identity,
            )

        def on_retry(wait_s: float, error: BaseException) -> None:
            warm.discard()
            self._notify(NoticeKind.CONNECTION_RETRY, f"retrying in {wait_s:.1f} s: {error}")

        try:
            contact = call_with_retries(attempt, self.options.retry_policy(), self.cancel, on_retry)
        except BaseException:
            warm.discard()
            raise
        warm.release()
        return contact

    def _preconnect(self) -> Preconnection:
        wanted, self._preconnect_wanted = self._preconnect_wanted, 0  # once per download
        if wanted < 1:
            return NoPreconnection()
        return self.transport.preconnect(self.url, wanted)


def close(contact: FirstContact | None) -> None:
    """Drop a first contact that will not be used (its connection is not reusable)."""
    if contact is not None and contact.response is not None:
        contact.response.close()
