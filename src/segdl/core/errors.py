"""The exception tree: every error segdl raises is a :class:`SegdlError`.

::

    SegdlError
    ├── UsageError (ValueError)              bad option or argument
    ├── NetworkError (OSError)               could not talk to the server
    │   ├── ConnectError                     refused, unreachable, DNS
    │   │   └── ProxyAuthError               the proxy wants other credentials
    │   ├── TimeoutError_                    no byte within the timeout
    │   │   ├── ConnectTimeout               no connection within the timeout
    │   │   ├── SlowHead                     the response head took longer than the timeout
    │   │   └── SlowBody                     the body trickled below the rate floor
    │   ├── TLSError                         certificate or handshake failure
    │   └── ConnectionBroken                 reset or closed mid-body
    ├── ServerError                          the server answered, but not with the file
    │   ├── HTTPStatusError                  4xx / 5xx (the body is never stored)
    │   └── TooManyRedirects                 also a redirect loop
    ├── ProtocolError                        an answer segdl refuses to believe
    │   ├── InvalidHeader                    malformed or conflicting header value
    │   ├── RangeNotHonoured                 ranged request answered otherwise
    │   ├── ContentRangeMismatch             206 for other bytes than asked
    │   ├── UnexpectedEncoding               Content-Encoding on a byte range
    │   ├── RemoteChanged                    validator differs from the first contact
    │   ├── ShortBody                        body ended before the promised length
    │   └── InsecureRedirect                 https → http (or another scheme) refused
    ├── LocalFileError (OSError)             disk, permissions, paths
    │   ├── OutputExists (FileExistsError)   would clobber an existing file
    │   ├── OutputLocked                     another segdl is writing this output
    │   ├── StateInvalid                     resume state unreadable, corrupt or foreign
    │   └── NoSpace                          the file would not fit (or exceeds --max-size)
    ├── IntegrityError                       the finished file is not what was promised
    └── Cancelled                            stopped on request (Ctrl-C, API cancel)

Subclasses carry the context a caller needs (url, status, asked range) as attributes, and
also inherit the builtin a caller expects (``ValueError``, ``OSError``, ``FileExistsError``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segdl.core.models import ByteRange


def shown(url: str, *, query: bool = True, no_path: bool = False) -> str:
    """A URL fit for messages, logs and the state file: no ``user:password@``, no query values
    (for signed URLs they are credentials too: ``?…`` is left, with ``query=False`` not even
    that) and no fragment. Read as text, never parsed: any string can be shown, and showing
    it again changes nothing.

    ``no_path``: a URL with no path worth showing, typed by hand (a proxy's), whose password
    may hold ``/ ? # @`` unencoded: everything up to its last ``@`` is userinfo."""
    if no_path:
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "", url
        return f"{scheme}{sep}{rest.rpartition('@')[2]}"
    head, _, values = url.split("#", 1)[0].partition("?")
    start = head.find("//")
    if start >= 0:
        start += 2
        end = head.find("/", start)
        end = len(head) if end < 0 else end
        # RFC 3986 §3.2: authority = [ userinfo "@" ] host [ ":" port ]; a host holds no "@".
        head = head[:start] + head[start:end].rpartition("@")[2] + head[end:]
    return head + ("?…" if query and values else "")


class SegdlError(Exception):
    """Root of every error segdl raises on purpose."""


class UsageError(SegdlError, ValueError):
    """An option or argument is invalid."""


class NetworkError(SegdlError, OSError):
    """Could not exchange bytes with the server."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{reason} ({shown(url)})")
        self.url = url
        self.reason = reason


class ConnectError(NetworkError):
    """The connection could not be established."""


class ProxyAuthError(ConnectError):
    """The proxy refused our credentials (or wants some): asking again will not help."""


class TimeoutError_(NetworkError):  # the builtin name is taken
    """No byte arrived within the timeout."""


class ConnectTimeout(TimeoutError_):
    """No connection within the timeout: the server (or the way to it) drops the attempts."""


class SlowHead(TimeoutError_):
    """The response head did not end within the read timeout, bytes trickling or not."""


class SlowBody(TimeoutError_):
    """The body trickled: fewer bytes per read timeout than a live transfer sends."""


class TLSError(NetworkError):
    """TLS handshake or certificate verification failed."""


class ConnectionBroken(NetworkError):
    """The connection was reset or closed in the middle of a body."""


class ServerError(SegdlError):
    """The server answered, but not with the file."""


class HTTPStatusError(ServerError):
    """The server answered with an error status; its body is never stored."""

    def __init__(
        self, url: str, status: int, reason: str = "", retry_after: str | None = None
    ) -> None:
        text = f"{status} {reason}".strip()
        super().__init__(f"{text} for {shown(url)}")
        self.url = url
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        """The server's ``Retry-After`` value, as sent."""


class TooManyRedirects(ServerError):
    """More redirects than allowed, or a redirect loop."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(f"more than {limit} redirects starting at {shown(url)}")
        self.url = url
        self.limit = limit


class ProtocolError(SegdlError):
    """The server's answer cannot be believed."""


class InvalidHeader(ProtocolError):
    """A header value is malformed, out of range or conflicts with another."""

    def __init__(self, name: str, value: str, why: str) -> None:
        super().__init__(f"invalid {name} header {value!r}: {why}")
        self.name = name
        self.value = value
        self.why = why


class RangeNotHonoured(ProtocolError):
    """A ranged request was answered with something other than that range."""

    def __init__(self, url: str, asked: ByteRange, status: int) -> None:
        super().__init__(
            f"server ignored Range (asked {asked}, got status {status}) for {shown(url)}"
        )
        self.url = url
        self.asked = asked
        self.status = status


class ContentRangeMismatch(ProtocolError):
    """A 206 whose Content-Range is not the range asked for, or of another size."""

    def __init__(self, url: str, asked: ByteRange, content_range: str | None, why: str) -> None:
        super().__init__(f"bad Content-Range {content_range!r} for {asked}: {why} ({shown(url)})")
        self.url = url
        self.asked = asked
        self.content_range = content_range
        self.why = why


class UnexpectedEncoding(ProtocolError):
    """A byte range came with a Content-Encoding, so its offsets are not the file's."""

    def __init__(self, url: str, encoding: str) -> None:
        super().__init__(
            f"server sent Content-Encoding {encoding!r} for a byte range ({shown(url)})"
        )
        self.url = url
        self.encoding = encoding


class RemoteChanged(ProtocolError):
    """The remote file changed since the first contact (validator or size differs)."""

    def __init__(self, url: str, what: str) -> None:
        super().__init__(f"remote file changed: {what} ({shown(url)})")
        self.url = url
        self.what = what


class ShortBody(ProtocolError):
    """The body ended before the promised number of bytes."""

    def __init__(self, url: str, expected_bytes: int, received_bytes: int) -> None:
        super().__init__(
            f"body ended after {received_bytes} of {expected_bytes} bytes ({shown(url)})"
        )
        self.url = url
        self.expected_bytes = expected_bytes
        self.received_bytes = received_bytes


class InsecureRedirect(ProtocolError):
    """A redirect from https to http (or to another scheme) that was not allowed."""

    def __init__(self, url: str, target: str) -> None:
        super().__init__(f"refusing redirect from {shown(url)} to {shown(target)}")
        self.url = url
        self.target = target


class LocalFileError(SegdlError, OSError):
    """A local file could not be created, written or moved."""


class OutputExists(LocalFileError, FileExistsError):
    """The output path exists and overwriting was not asked for."""

    def __init__(self, path: str) -> None:
        super().__init__(f"output file exists: {path} (use --overwrite to replace it)")
        self.path = path


class OutputChanged(OutputExists):
    """A batch's output is at its name, but it is not the file segdl finished there."""

    def __init__(self, path: str) -> None:
        LocalFileError.__init__(
            self,
            f"{path} exists but is not the file segdl finished there (replaced or changed "
            "since): left alone (--if-exists overwrite replaces it)",
        )
        self.path = path


class OutputLocked(LocalFileError):
    """Another process (or download) owns this output; its bytes are never interleaved."""

    def __init__(
        self, path: str, owner: str, *, same_process: bool = False, message: str | None = None
    ) -> None:
        if message is None and same_process:  # two calls in one program chose the same output
            message = f"{path} is being downloaded by another download of this process ({owner})"
        super().__init__(message or f"{path} is being downloaded by another segdl ({owner})")
        self.path = path
        self.owner = owner
        self.same_process = same_process
        """The lock is held by this very process: not another segdl, a twin download."""


class StateInvalid(LocalFileError):
    """A resume state file cannot be trusted; the partial download it describes is dropped."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"resume state {path} is not usable: {why}")
        self.path = path
        self.why = why


class NoSpace(LocalFileError):
    """The file is larger than the free space (or than the size allowed); nothing written."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(28, message, path)  # ENOSPC
        self.path = path


def disk_refuses(error: BaseException | None) -> bool:
    """Whether ``error`` says the output's file system takes no more files: full (ENOSPC),
    the quota spent (EDQUOT) or read-only (EROFS), so that every file written there after it
    would fail alike. Not :class:`NoSpace`: that one file did not fit where a smaller one
    may."""
    refused = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    return isinstance(error, OSError) and error.errno in refused and not isinstance(error, NoSpace)


class IntegrityError(SegdlError):
    """The finished file is not what the server promised (size or digest)."""


class Cancelled(SegdlError):
    """The download was stopped on request; what was written stays in the .part file."""
