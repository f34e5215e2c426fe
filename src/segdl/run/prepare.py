"""What a download and a stream do before anything is sent: the options checked, the URL's
credentials taken out of it (they go only where :class:`~segdl.net.auth.Identity` allows),
and, unless the caller lends them, the transport and the rate limit built from the options."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from segdl.core.options import DownloadOptions, with_overrides
from segdl.net.auth import Identity, identity_for
from segdl.net.transport import Urllib3Transport
from segdl.run.probe import check_url
from segdl.run.ratelimit import TokenBucket


@dataclass(frozen=True, slots=True)
class Prepared:
    url: str
    """The URL without its userinfo."""
    options: DownloadOptions
    """The options, their headers without credentials (those travel in ``identity``)."""
    identity: Identity


def prepare(url: str, options: DownloadOptions | None, overrides: dict[str, object]) -> Prepared:
    """``options`` with ``overrides`` applied (UsageError for an unknown or bad one), the
    URL checked, and its credentials (userinfo, user=, netrc, cookies) in an identity."""
    settings = with_overrides(options, overrides)
    check_url(url)
    clean_url, plain_headers, identity = identity_for(
        url,
        dict(settings.headers),
        user=settings.user,
        use_netrc=settings.use_netrc,
        netrc_file=_path(settings.netrc_file),
        cookies_file=_path(settings.cookies_file),
        location_trusted=settings.location_trusted,
    )
    return Prepared(clean_url, replace(settings, headers=plain_headers), identity)


def own_transport(options: DownloadOptions) -> Urllib3Transport:
    """A transport for one file: one connection more than the download opens, for the
    preconnects that race the first request."""
    per_host = min(options.connections, options.max_connections_per_host) + 1
    return Urllib3Transport.for_options(options, max_connections_per_host=per_host)


def rate_limits(options: DownloadOptions, shared: TokenBucket | None = None) -> list[TokenBucket]:
    """The download's own ``limit_rate`` bucket, beside one ``shared`` with other downloads."""
    limits = [] if shared is None else [shared]
    if options.limit_rate_bytes_per_s is not None:
        limits.append(TokenBucket(options.limit_rate_bytes_per_s))
    return limits


def _path(text: str | None) -> Path | None:
    return Path(text) if text is not None else None
