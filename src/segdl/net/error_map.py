"""urllib3, http.client and socket errors turned into segdl's exception tree."""

from __future__ import annotations

import http.client
import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from urllib3 import exceptions as u3

from segdl.core.errors import (
    ConnectError,
    ConnectionBroken,
    ConnectTimeout,
    NetworkError,
    ProtocolError,
    ShortBody,
    SlowHead,
    TimeoutError_,
    TLSError,
    UsageError,
    shown,
)
from segdl.net.head import HeadTimeout, TooManyHeaders, TooManyInterimResponses
from segdl.net.origins import host_of
from segdl.net.proxies import ProxyURL, proxy_error

log = logging.getLogger(__name__)


@contextmanager
def mapped_errors(
    url: str, received_bytes: int = 0, proxy: ProxyURL | None = None
) -> Iterator[None]:
    """Turn urllib3, http.client and socket errors into segdl's tree."""
    try:
        yield
    except http.client.IncompleteRead as exc:
        expected = received_bytes + len(exc.partial) + (exc.expected or 0)
        raise ShortBody(url, expected, received_bytes + len(exc.partial)) from exc
    except u3.IncompleteRead as exc:
        raise ShortBody(url, exc.expected + exc.partial, exc.partial) from exc
    except u3.ProxyError as exc:  # urllib3 wraps what fails before the proxy is connected
        raise _proxy_error(url, proxy, exc) from exc
    except (u3.SSLError, ssl.SSLError) as exc:
        raise TLSError(url, _tls_reason(exc)) from exc
    except u3.NameResolutionError as exc:
        raise ConnectError(url, "host name not found") from exc
    except u3.NewConnectionError as exc:  # a ConnectTimeoutError subclass: test it first
        if proxy is not None and proxy.socks:  # SOCKS failures arrive unwrapped
            raise _proxy_error(url, proxy, exc) from exc
        raise ConnectError(url, _connect_reason(exc)) from exc
    except u3.ConnectTimeoutError as exc:  # dropped connection attempts (not a slow answer)
        raise ConnectTimeout(url, "connect timed out") from exc
    except (TimeoutError, u3.ReadTimeoutError) as exc:
        head = _in_chain(exc, HeadTimeout)
        if head is not None:
            raise SlowHead(url, str(head)) from exc
        raise TimeoutError_(url, "timed out") from exc
    except (u3.LocationValueError, u3.URLSchemeUnknown) as exc:
        raise UsageError(f"invalid URL {url!r}: {exc}") from exc
    except (u3.ProtocolError, ConnectionError, http.client.HTTPException) as exc:
        root = _root_cause(exc)
        # Oversized heads and endless 1xx are the server's fault, not the network's: final.
        if isinstance(root, (TooManyInterimResponses, TooManyHeaders, http.client.LineTooLong)):
            raise ProtocolError(f"invalid response: {root} ({shown(url)})") from exc
        raise ConnectionBroken(url, f"connection broken: {_root_cause(exc)}") from exc
    except u3.InvalidHeader as exc:  # two Content-Length values that differ: not believable
        raise ProtocolError(f"invalid response: {exc} ({shown(url)})") from exc
    except u3.HTTPError as exc:
        raise NetworkError(url, str(exc)) from exc
    except (RuntimeError, AttributeError) as exc:
        # urllib3 and http.client on a connection another thread aborted or released (#19:
        # "Cannot shutdown as connection has already been released to the pool"): the
        # connection is unusable, which is what a broken connection means; retried as one.
        log.debug("transport state error for %s", host_of(url), exc_info=True)
        raise ConnectionBroken(url, f"connection broken: {type(exc).__name__}: {exc}") from exc


def _tls_reason(exc: BaseException) -> str:
    """One line: "certificate verify failed: self-signed certificate", not urllib3's repr."""
    root = _root_cause(exc)
    if isinstance(root, ssl.SSLCertVerificationError) and root.verify_message:
        return f"certificate verify failed: {root.verify_message}"
    if isinstance(root, ssl.SSLError) and root.reason:
        return f"TLS error: {root.reason.lower().replace('_', ' ')}"
    return f"TLS error: {root}"


def _proxy_error(url: str, proxy: ProxyURL | None, exc: BaseException) -> NetworkError:
    root = _root_cause(exc)
    if isinstance(root, ssl.SSLError):  # TLS to an https:// proxy
        return TLSError(url, f"proxy {proxy}: {_tls_reason(root)}")
    return proxy_error(url, proxy, root)


def _connect_reason(exc: BaseException) -> str:
    root = _root_cause(exc)
    if isinstance(root, ConnectionRefusedError):
        return "connection refused"
    return f"cannot connect: {root}"


def _in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` in ``exc``'s chain of causes, or None."""
    seen: BaseException | None = exc
    for _ in range(32):  # a chain is a few links long; never loop on a cycle
        if seen is None or isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _root_cause(exc: BaseException) -> BaseException:
    seen = exc
    while True:
        inner = seen.__cause__ or seen.__context__
        if inner is None and seen.args and isinstance(seen.args[-1], BaseException):
            inner = seen.args[-1]
        if inner is None or inner is seen:
            return seen
        seen = inner
