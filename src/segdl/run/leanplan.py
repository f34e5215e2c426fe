"""Which files of a batch the lean path may try, the request it sends for each, and which
answers it takes as the file.

See :mod:`segdl.run.lean`: ``http`` or ``https`` (verified), no proxy, no credentials, no
rate limit, one URL, a policy of error/skip/overwrite; the request asks for the first
:data:`SMALL_BYTES`; the answer must be the whole file, believable, matching any digest,
within ``--max-size``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from segdl.core.digests import Expected, from_headers, parse_checksum_option, verify
from segdl.core.errors import IntegrityError, SegdlError
from segdl.core.options import DownloadOptions, IfExists
from segdl.core.wholebody import judge
from segdl.net.proxies import proxy_for

if TYPE_CHECKING:
    import ssl

    from segdl.net.leanconn import Answer
    from segdl.run.batch import Downloader

SMALL_BYTES = 1 << 20
"""Files up to this size are taken whole from the first answer; larger ones go to the full
path (what was read of them is thrown away: at most this much per large file)."""


class Target(NamedTuple):
    """Where a lean request goes: the server, and the request target as it is sent."""

    host: str
    port: int
    netloc: str
    path: str  # with its query
    tls: bool = False  # https


def lean_batch_usable(downloader: Downloader) -> bool:
    """Whether the batch as a whole may use the lean path (per-file checks come later); a
    host gate is consulted by the lean loop as by the full path's pools."""
    # A given transport: the loop's own sockets would bypass it.
    return downloader._rate_limiter is None and not downloader.transport_given


def lean_target(options: DownloadOptions, url: str, job_urls: Sequence[str]) -> Target | str:
    """Where the lean path sends this file's request, or why it goes to the full path."""
    if len(job_urls) != 1:
        return "mirrors"
    return _options_refusal(options) or _url_target(url)


def _options_refusal(options: DownloadOptions) -> str | None:
    """Why no file with these options takes the lean path (None: the URL decides)."""
    if options.if_exists is IfExists.RENAME:
        return "--if-exists rename"
    if options.limit_rate_bytes_per_s is not None or options.remote_time:
        return "a per-file rate or --remote-time"
    if options.user or options.use_netrc or options.netrc_file or options.cookies_file:
        return "credentials"
    if any(name.lower() in ("authorization", "cookie") for name in options.headers):
        return "credentials"
    return None


def _url_target(url: str) -> Target | str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "an unparsable URL"
    tls = parts.scheme.lower() == "https"
    if not (tls or parts.scheme.lower() == "http") or not parts.hostname or "@" in parts.netloc:
        return "not http(s)"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not target.isascii() or any(c in target for c in " \t\r\n\0") or port == 0:
        return "a URL to be encoded"
    return Target(parts.hostname, port or (443 if tls else 80), parts.netloc, target, tls)


def tls_context(options: DownloadOptions) -> ssl.SSLContext | None:
    """The context of the lean path's ``https`` connections: verifying, as the full path's
    (:mod:`segdl.net.leantls`). None, and those files go the full way, with ``--insecure``
    (whose warning the full path gives) or a CA bundle that cannot be read (which it
    reports)."""
    from segdl.net.leantls import verifying_context  # start-up: only a batch with https

    return verifying_context(options.ca_bundle, options.insecure)


# A URL whose every character is printable ASCII, with no user part, fragment or bare "?":
# split as urlsplit splits it, with its server's part looked up (see Targets).
_PLAIN_HTTP = re.compile(r"http://([^/?#@\\\s]+)(/[!-\"$-~]*)?")


class Targets:
    """:func:`lean_target` and :func:`request_bytes` for a batch's files, with what repeats
    from file to file worked out once: the verdict on the options (the files of a list
    share one options object unless a line sets its own), each server's host and port,
    and the request's header lines. Splitting each URL in full showed in the loop's
    profile; the answers are the same (a test holds them equal)."""

    def __init__(self) -> None:
        self._options: DownloadOptions | None = None
        self._refusal: str | None = None
        self._tail = b""
        self._servers: dict[str, Target | str] = {}

    def request(self, options: DownloadOptions, url: str,
                job_urls: Sequence[str]) -> tuple[Target, bytes] | str:  # fmt: skip
        """The file's target and its request's bytes, or why it goes to the full path."""
        if len(job_urls) != 1:
            return "mirrors"
        if options is not self._options:
            self._options, self._refusal = options, _options_refusal(options)
            self._tail = _tail(options.request_headers())
        if self._refusal is not None:
            return self._refusal
        plain = _PLAIN_HTTP.fullmatch(url)
        if plain is None or url.endswith("?"):
            target = _url_target(url)
        else:
            netloc, path = plain.group(1, 2)
            server = self._servers.get(netloc)
            if server is None:
                server = self._servers[netloc] = _url_target(f"http://{netloc}/")
            if isinstance(server, str):
                return server
            target = server._replace(path=path or "/")
        if isinstance(target, str):
            return target
        return target, _head(target) + self._tail


def why_not_lean(options: DownloadOptions, url: str, job_urls: Sequence[str]) -> str | None:
    """Why this file goes to the full path (None: the lean path may try it)."""
    target = lean_target(options, url, job_urls)
    return target if isinstance(target, str) else None


def proxied(url: str, options: DownloadOptions) -> str | None:
    """ "a proxy" if the URL goes through one (the lean path connects only directly)."""
    try:
        chosen = proxy_for(url, explicit=options.proxy, environ=os.environ,
                           use_env=options.use_proxy_env)  # fmt: skip
    except ValueError:
        return "an unparsable URL"
    return None if chosen is None else "a proxy"


class ProxyChoices:
    """:func:`proxied` once per server and proxy option of a batch, not once per file
    (reading the environment's proxy variables for every file showed in the loop's profile;
    a batch's environment does not change under it)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, str | None, bool], str | None] = {}

    def why(self, url: str, options: DownloadOptions) -> str | None:
        """:func:`proxied` for a URL :func:`why_not_lean` took (``http`` or ``https``, no
        user part: what proxy_for reads of it is its scheme, host and port)."""
        scheme, _, server = url.split("/", 3)[:3]
        key = (scheme, server, options.proxy, options.use_proxy_env)
        if key not in self._known:
            self._known[key] = proxied(url, options)
        return self._known[key]


def request_bytes(target: Target, headers: dict[str, str]) -> bytes:
    """The bytes of ``GET`` to ``target`` with ``headers`` and the lean ``Range`` (a target
    :func:`lean_target` gave can be sent as it is)."""
    return _head(target) + _tail(headers)


def _head(target: Target) -> bytes:
    """A lean request's first two lines: ``GET`` its target, and ``Host``."""
    return f"GET {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n".encode("latin-1")


def _tail(headers: dict[str, str]) -> bytes:
    """A lean request's lines after ``Host``: ``headers``, the lean ``Range``, the end."""
    lines = [f"{name}: {value}\r\n" for name, value in headers.items()]
    lines.append(f"Range: bytes=0-{SMALL_BYTES - 1}\r\n\r\n")
    return "".join(lines).encode("latin-1")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the lean path does not take an answer as its file (the full path asks again)."""

    why: str
    mismatch: bool = False
    """A digest did not match: perhaps a pipelined answer that came out of turn."""


def refusal(options: DownloadOptions, answer: Answer) -> Refusal | None:
    """Whether a whole answer is the file: all of it and believable (:func:`judge`), any
    digest given or sent matching, within ``--max-size``. None: it is."""
    verdict = judge(answer.status, answer.header_values, len(answer.body))
    if not verdict.whole:
        return Refusal(verdict.why)
    try:
        expected = expected_digest(options, answer)
        if expected is not None:
            verify(expected, hashlib.new(expected.algorithm, answer.body).digest())
    except IntegrityError as exc:
        return Refusal(str(exc), mismatch=True)
    except SegdlError as exc:  # a checksum option that does not parse: the full path says so
        return Refusal(str(exc))
    if options.max_size_bytes is not None and len(answer.body) > options.max_size_bytes:
        return Refusal("over --max-size")
    return None


def expected_digest(options: DownloadOptions, answer: Answer) -> Expected | None:
    """The digest the file must have: the job's checksum, else one the server sent."""
    if options.checksum is not None:
        return parse_checksum_option(options.checksum)
    return from_headers(answer.header_values, full_response=answer.status == 200)
