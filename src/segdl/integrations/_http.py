"""Single requests with segdl's rules, for what a whole-file download does not cover: is the
URL there, what is it (size, type, validators), a byte range of it, a small page of links.

Every answer goes through segdl's first contact (:func:`segdl.run.probe.first_contact`): redirects
followed within its limits (https to http refused), credentials sent to the URL's origin only,
``Accept-Encoding: identity``, a ranged answer believed only if its ``Content-Range`` starts at
the byte asked for. On top of that a range must be the whole range asked for, of a file of the
size and validator seen when it was opened; transient failures are retried with segdl's
policy, the whole request again, since a few megabytes are cheaper to ask again than to resume.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from segdl.core.answers import Mode, Witness, changed
from segdl.core.errors import RangeNotHonoured, RemoteChanged, ShortBody
from segdl.core.models import ByteRange, Resource
from segdl.core.options import DownloadOptions, with_overrides
from segdl.net.auth import Identity, identity_for
from segdl.net.interfaces import Response, Transport
from segdl.net.transport import Urllib3Transport
from segdl.run.probe import FirstContact, first_contact
from segdl.run.probe import check_url as probed_url_check
from segdl.run.retries import call_with_retries

log = logging.getLogger(__name__)
T = TypeVar("T")

# download() keywords that are not options (what to do, not how): the rest are options,
# checked by with_overrides as download() checks them.
_NOT_OPTIONS = frozenset(
    {"progress", "transport", "cancel", "mirrors", "rate_limiter", "workers", "directory"}
)
_READ_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Head:
    """What one answer said about a URL, without its body."""

    resource: Resource
    partial: bool
    """Byte ranges work (the server answered a range with that range)."""
    headers: Mapping[str, str]
    """Header fields of the final answer that describe the whole file (ETag, Last-Modified,
    Digest; Content-MD5 only when the answer was the whole file)."""


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes
    resource: Resource


@dataclass(frozen=True, slots=True)
class Given:
    """:func:`segdl.download`'s keywords as a caller gave them to an integration."""

    options: DownloadOptions
    keywords: Mapping[str, Any]
    """The others: what to do, not how (``progress``, ``transport``, ``cancel``...)."""


def split_given(keywords: Mapping[str, Any]) -> Given:
    """The options, checked now and whole: an unknown or ill-typed one is a UsageError
    where it was given ("did you mean..."), not at the first download."""
    options = with_overrides(None, {k: v for k, v in keywords.items() if k not in _NOT_OPTIONS})
    return Given(options, {k: v for k, v in keywords.items() if k in _NOT_OPTIONS})


class Requester:
    """Makes the single requests of one integration; thread-safe, one connection pool."""

    def __init__(self, options: DownloadOptions, transport: Transport | None = None) -> None:
        self.options = options
        self._given_transport = transport
        self._transport: Transport | None = transport
        self._lock = threading.Lock()

    def transport(self) -> Transport:
        with self._lock:
            if self._transport is None:
                self._transport = Urllib3Transport.for_options(
                    self.options, max_connections_per_host=self.options.max_connections_per_host
                )
            return self._transport

    def close(self) -> None:
        with self._lock:
            transport, self._transport = self._transport, self._given_transport
        if transport is not None and transport is not self._given_transport:
            transport.close()

    def head(self, url: str) -> Head:
        """Ask for byte 0 only: the answer tells the size, type and validators (never a
        ``HEAD``, which many servers refuse or answer with another length)."""

        def attempt() -> Head:
            contact = self._contact(url, start=0, end=1)
            try:
                return _head_of(contact)
            finally:
                _finish(contact.response)

        return self._retried(attempt)

    def read_range(self, url: str, wanted: ByteRange, expected: Head) -> bytes:
        """Bytes ``wanted`` of the file ``expected`` describes; :class:`RemoteChanged` if the
        server now has another version, :class:`RangeNotHonoured` if it ignores the range
        (except for a range from byte 0, which is then read off the start of the body)."""
        if wanted.length == 0:
            return b""
        if_range = expected.resource.validator.strong_etag

        def attempt() -> bytes:
            contact = self._contact(url, start=wanted.start, end=wanted.end, if_range=if_range)
            try:
                _check_same(url, contact.resource, expected.resource)
                ranged = contact.mode is Mode.RANGED and contact.first_range == wanted
                if contact.response is None or not (ranged or wanted.start == 0):
                    status = contact.response.status if contact.response is not None else 0
                    raise RangeNotHonoured(url, wanted, status)
                return _read_exactly(url, contact.response, wanted.length)
            finally:
                _finish(contact.response, abort=True)

        return self._retried(attempt)

    def read_all(
        self, url: str, *, only_types: frozenset[str | None], limit_bytes: int
    ) -> Body | None:
        """The body of ``url``, a page of links (held in memory): None when its media type is
        not one of ``only_types`` or it is longer than ``limit_bytes`` (it is then left
        unread, or read no further than the limit)."""

        def attempt() -> Body | None:
            contact = self._contact(url, ranged=False)
            try:
                size = contact.resource.size_bytes
                media = _media_type(contact.resource.content_type)
                if contact.response is None:
                    return Body(b"", contact.resource)
                if media not in only_types or (size is not None and size > limit_bytes):
                    return None
                data = _read_to_end(contact.response, limit_bytes + 1)
                return Body(data, contact.resource) if len(data) <= limit_bytes else None
            finally:
                _finish(contact.response, abort=True)

        return self._retried(attempt)

    def _contact(
        self,
        url: str,
        *,
        ranged: bool = True,
        start: int = 0,
        end: int | None = None,
        if_range: str | None = None,
    ) -> FirstContact:
        clean, plain_headers, identity = self._identity(url)
        return first_contact(
            self.transport(),
            clean,
            # Credentials travel in the identity, bound to the URL's origin: never as plain
            # headers, which every redirect target would get.
            dataclasses.replace(self.options, headers=plain_headers),
            ranged=ranged,
            start=start,
            end=end,
            if_range=if_range,
            identity=identity,
        )

    def _identity(self, url: str) -> tuple[str, dict[str, str], Identity]:
        o = self.options
        return identity_for(
            url,
            o.headers,
            user=o.user,
            use_netrc=o.use_netrc,
            netrc_file=Path(o.netrc_file) if o.netrc_file is not None else None,
            cookies_file=Path(o.cookies_file) if o.cookies_file is not None else None,
            location_trusted=o.location_trusted,
        )

    def _retried(self, attempt: Callable[[], T]) -> T:
        def told(wait_s: float, error: BaseException) -> None:
            log.info("retrying in %.1f s after: %s", wait_s, error)

        return call_with_retries(attempt, self.options.retry_policy(), threading.Event(), told)


def check_url(url: str) -> str:
    """``url`` if it is http(s); else :class:`UsageError`, as :func:`segdl.download` says it
    (no scheme is guessed)."""
    probed_url_check(url)
    return url


def _head_of(contact: FirstContact) -> Head:
    response = contact.response
    fields: dict[str, str] = {}
    validator = contact.resource.validator
    if validator.etag is not None:
        fields["ETag"] = validator.etag
    accept_ranges = ""
    if response is not None:
        for name in ("Content-MD5", "Digest"):
            values = response.header_values(name)
            # Content-MD5 describes the body sent, which is the file only on a 200 (RFC 1864).
            if len(values) == 1 and (name != "Content-MD5" or response.status == 200):
                fields[name] = values[0]
        accept_ranges = ",".join(response.header_values("Accept-Ranges")).strip().lower()
    if validator.last_modified is not None:
        fields["Last-Modified"] = validator.last_modified
    partial = contact.mode is Mode.RANGED and accept_ranges != "none"
    return Head(contact.resource, partial, fields)


def _check_same(url: str, now: Resource, then: Resource) -> None:
    reason = changed(
        then.size_bytes, then.validator, now.size_bytes, now.validator, Witness.SAME_SERVER
    )
    if reason is not None:
        raise RemoteChanged(url, reason)


def _media_type(content_type: str | None) -> str | None:
    return None if content_type is None else content_type.partition(";")[0].strip().lower()


def _read_exactly(url: str, response: Response, length: int) -> bytes:
    data = bytearray(length)
    view = memoryview(data)
    done = 0
    while done < length:
        n = response.readinto(view[done:])
        if n == 0:
            raise ShortBody(url, length, done)
        done += n
    return bytes(data)


def _read_to_end(response: Response, limit_bytes: int) -> bytes:
    """The body up to its end or ``limit_bytes``, whichever comes first."""
    chunks: list[bytes] = []
    buffer = bytearray(_READ_BYTES)
    view = memoryview(buffer)
    left = limit_bytes
    while left > 0 and (n := response.readinto(view[: min(left, _READ_BYTES)])):
        chunks.append(bytes(view[:n]))
        left -= n
    return b"".join(chunks)


def _finish(response: Response | None, *, abort: bool = False) -> None:
    """Close an answer; a short unread rest (the byte of a probe) is read first, so the
    connection goes back to the pool instead of being closed."""
    if response is None:
        return
    try:
        if not abort:
            buffer = memoryview(bytearray(16))
            for _ in range(4):
                if response.readinto(buffer) == 0:
                    break
    except Exception:  # the answer is done with either way; closing is what matters
        log.debug("draining a probe's body failed", exc_info=True)
    finally:
        response.close()
