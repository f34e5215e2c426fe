"""The one seam to the network: a tiny request/response interface, implemented on urllib3.

This is the only module that imports urllib3. Everything above it sees :class:`Transport` and
:class:`Response` and segdl's own exceptions, so tests can hand the engine a fake transport.
urllib3 is used with retries and redirects off (segdl decides both), without preloading or
decoding the body: bytes go from the socket into the caller's buffer untouched.
"""

from __future__ import annotations

import http.client
import logging
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Protocol

import urllib3
import urllib3.connection
from urllib3 import exceptions as u3

from segdl.errors import (
    ConnectError,
    ConnectionBroken,
    NetworkError,
    ProtocolError,
    ShortBody,
    TimeoutError_,
    TLSError,
    UsageError,
)

log = logging.getLogger(__name__)


class Response(Protocol):
    """A response whose body has not been read yet."""

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str: ...

    def header_values(self, name: str) -> list[str]:
        """Every field line of header ``name`` (case-insensitive), in order."""
        ...

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` with body bytes; fewer only at the end of the body; 0 at its end."""
        ...

    def abort(self) -> None:
        """From another thread: make a blocked :meth:`readinto` return or fail promptly."""
        ...

    def close(self) -> None:
        """Done with this response: keep the connection if the body was read to its end,
        otherwise drop it (never hand a half-read connection to another request)."""
        ...


class Transport(Protocol):
    """Sends one request at a time per calling thread; safe to share between threads."""

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response: ...

    def close(self) -> None: ...


# A server may send informational (1xx) responses before the real one (RFC 9110 §15.2), but
# an endless stream of them must not keep a connection busy forever.
MAX_INTERIM_RESPONSES = 10


class TooManyInterimResponses(http.client.HTTPException):
    """More 1xx responses than anyone needs before a final one."""


class _BoundedResponse(http.client.HTTPResponse):
    """http.client's response, but skipping every 1xx (not only 100) and at most a few."""

    _interim = 0

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            self._interim += 1
            if self._interim > MAX_INTERIM_RESPONSES:
                raise TooManyInterimResponses(f"more than {MAX_INTERIM_RESPONSES} 1xx responses")
            if status == 100:
                return version, status, reason  # begin() skips a 100's header itself
            http.client._read_headers(self.fp)  # type: ignore[attr-defined]


class _HTTPConnection(urllib3.connection.HTTPConnection):
    response_class = _BoundedResponse


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = _BoundedResponse


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class Urllib3Transport:
    """:class:`Transport` over one urllib3 ``PoolManager`` (thread-safe connection pools)."""

    def __init__(self, *, max_connections_per_host: int = 16, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self._pool = urllib3.PoolManager(
            num_pools=32,
            maxsize=max_connections_per_host,
            block=False,
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=False,
        )
        self._pool.pool_classes_by_scheme = {
            "http": _HTTPConnectionPool,
            "https": _HTTPSConnectionPool,
        }

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        with _mapped_errors(url):
            raw = self._pool.request(
                method,
                url,
                headers=dict(headers),
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
            )
        return _Urllib3Response(url, raw)

    def close(self) -> None:
        self._pool.clear()


class _Urllib3Response:
    def __init__(self, url: str, raw: urllib3.BaseHTTPResponse) -> None:
        self._url = url
        self._raw = raw
        # urllib3's own readinto copies through read(); http.client's fills our buffer
        # directly and still handles Content-Length and chunked framing.
        fp = getattr(raw, "_fp", None)
        self._fp: http.client.HTTPResponse | None = (
            fp if isinstance(fp, http.client.HTTPResponse) else None
        )
        self._received_bytes = 0
        self._aborted = False

    @property
    def status(self) -> int:
        return self._raw.status

    @property
    def reason(self) -> str:
        return self._raw.reason or ""

    def header_values(self, name: str) -> list[str]:
        return self._raw.headers.getlist(name)

    def readinto(self, buffer: memoryview) -> int:
        with _mapped_errors(self._url, self._received_bytes):
            n = self._readinto(buffer) if self._fp is not None else self._raw.readinto(buffer)
        self._received_bytes += n
        return n

    def _readinto(self, buffer: memoryview) -> int:
        """http.client's ``readinto``, but returning after one ``recv`` instead of waiting
        for the whole buffer: a slow connection then shows its progress (and its rate, which
        the planner needs to decide a race) instead of going quiet until 256 KiB arrived."""
        fp = self._fp
        assert fp is not None
        reader = fp.fp
        if reader is None:  # http.client closes itself at the end of the body
            return 0
        if fp.chunked:
            return fp.readinto(buffer)  # chunk framing stays http.client's business
        length: int | None = fp.length
        view = buffer if length is None else buffer[:length]
        n = reader.readinto1(view) if view else 0
        if not n:
            fp._close_conn()  # type: ignore[attr-defined]
        elif length is not None:
            fp.length = length - n
            if not fp.length:
                fp._close_conn()  # type: ignore[attr-defined]
        return n

    def abort(self) -> None:
        self._aborted = True
        shutdown = getattr(self._raw, "shutdown", None)  # urllib3 >= 2.3
        if shutdown is not None:
            with suppress(OSError, ValueError):  # ValueError: no socket (yet, or any more)
                shutdown()

    def close(self) -> None:
        finished = self._fp is None or self._fp.isclosed()
        if self._aborted or not finished:
            self._raw.close()  # closes the socket: the rest of the body is never read
        self._raw.release_conn()


@contextmanager
def _mapped_errors(url: str, received_bytes: int = 0) -> Iterator[None]:
    """Turn urllib3, http.client and socket errors into segdl's tree."""
    try:
        yield
    except http.client.IncompleteRead as exc:
        expected = received_bytes + len(exc.partial) + (exc.expected or 0)
        raise ShortBody(url, expected, received_bytes + len(exc.partial)) from exc
    except u3.IncompleteRead as exc:
        raise ShortBody(url, exc.expected + exc.partial, exc.partial) from exc
    except u3.SSLError as exc:
        raise TLSError(url, f"TLS error: {exc}") from exc
    except ssl.SSLError as exc:
        raise TLSError(url, f"TLS error: {exc.reason or exc}") from exc
    except u3.NameResolutionError as exc:
        raise ConnectError(url, "host name not found") from exc
    except u3.NewConnectionError as exc:  # a ConnectTimeoutError subclass: test it first
        raise ConnectError(url, _connect_reason(exc)) from exc
    except (TimeoutError, u3.ConnectTimeoutError, u3.ReadTimeoutError) as exc:
        raise TimeoutError_(url, "timed out") from exc
    except (u3.LocationValueError, u3.URLSchemeUnknown) as exc:
        raise UsageError(f"invalid URL {url!r}: {exc}") from exc
    except (u3.ProtocolError, ConnectionError, http.client.HTTPException) as exc:
        root = _root_cause(exc)
        # Oversized heads and endless 1xx are the server's fault, not the network's: final.
        oversized = "got more than" in str(root)  # http.client: over 100 header fields
        if oversized or isinstance(root, (TooManyInterimResponses, http.client.LineTooLong)):
            raise ProtocolError(f"invalid response: {root} ({url})") from exc
        raise ConnectionBroken(url, f"connection broken: {_root_cause(exc)}") from exc
    except u3.HTTPError as exc:
        raise NetworkError(url, str(exc)) from exc


def _connect_reason(exc: BaseException) -> str:
    root = _root_cause(exc)
    if isinstance(root, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect: {root}"


def _root_cause(exc: BaseException) -> BaseException:
    seen = exc
    while True:
        inner = seen.__cause__ or seen.__context__
        if inner is None and seen.args and isinstance(seen.args[-1], BaseException):
            inner = seen.args[-1]
        if inner is None or inner is seen:
            return seen
        seen = inner
