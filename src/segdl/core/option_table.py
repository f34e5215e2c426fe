"""Every option's default and its one description, declared once, in a module light enough
for the command line to read before anything else is imported (its parser's defaults and
help come from here, before the early connect). :class:`segdl.core.options.DownloadOptions`
takes both from here and adds each option's type and checks."""

from __future__ import annotations

from segdl._version import __version__

MIB = 1024 * 1024
DEFAULT_USER_AGENT = f"segdl/{__version__}"
IF_EXISTS_CHOICES = ("error", "skip", "overwrite", "rename")
"""The values of :class:`segdl.core.options.IfExists`, the first the default."""

DEFAULTS_TABLE: dict[str, tuple[object, str]] = {
    "if_exists": (IF_EXISTS_CHOICES[0], "what to do when the output file exists"),
    "headers": ({}, "extra request headers"),
    "connections": (8, "connections to use at most"),
    "min_split_bytes": (
        MIB,
        "split ranges no smaller than this, except smaller tails in the end game",
    ),
    "timeout_s": (30.0, "connect and idle-read timeout"),
    "user_agent": (DEFAULT_USER_AGENT, "the User-Agent header"),
    "buffer_bytes": (256 * 1024, "read buffer per connection"),
    "max_redirects": (10, "redirects followed at most"),
    "retries": (5, "attempts in a row without progress per range"),
    "retry_wait_s": (0.5, "base of the exponential backoff (with full jitter) between attempts"),
    "max_retry_after_s": (
        300.0,
        "longest Retry-After honoured; a server asking for more fails the attempt",
    ),
    "max_connections_per_host": (16, "never more connections than this to one host"),
    "lowest_speed_bytes_per_s": (
        None,
        "a connection slower than this for 3 s gives its range to a fresh one",
    ),
    "max_size_bytes": (None, "refuse files larger than this before any byte is written"),
    "resume": (True, "continue a partial download found at the output path, if it can be trusted"),
    "lock_wait_s": (0.0, "how long to wait for another segdl writing the same output"),
    "preconnect": (
        True,
        "open the other connections while the first request is in flight (never in "
        "batches, whose files share warm connections)",
    ),
    "user": (None, "USER:PASSWORD for HTTP Basic, sent to the URL's origin only"),
    "use_netrc": (False, "take credentials from ~/.netrc"),
    "netrc_file": (None, "take credentials from this netrc file"),
    "cookies_file": (None, "send cookies from a Netscape cookies.txt file"),
    "location_trusted": (
        False,
        "send credentials to redirect targets on other origins too (curl's --location-trusted)",
    ),
    "allow_insecure_redirect": (False, "follow a redirect from https to http"),
    "ca_bundle": (None, "verify TLS against this CA file"),
    "insecure": (
        False,
        "do NOT verify TLS certificates, for this download only (warned about every time)",
    ),
    "proxy": (
        None,
        "http://, https://, socks5:// or socks5h:// proxy, with user:password if needed",
    ),  # may hold a password
    "use_proxy_env": (True, "use HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY"),
    "remote_time": (False, "give the finished file the server's Last-Modified time"),
    "keep_cache": (
        False,
        "leave a file of 256 MiB or more in the page cache (by default its pages are dropped "
        "as they are synced)",
    ),  # the size: segdl.disk.resume.DROP_CACHE_FROM_BYTES
    "limit_rate_bytes_per_s": (
        None,
        "this download's own rate limit (a batch's is shared by its files)",
    ),
    "checksum": (None, "ALGO=HEX the finished file must match (md5, sha-1, sha-256, sha-512)"),
    "stream_buffer_bytes": (
        64 * MIB,
        "with -o - (to stdout): bytes held at most to put the connections' pieces in order; "
        "a connection that runs ahead waits rather than grow it",
    ),
}
"""Option name -> (default, description)."""


def default(name: str) -> object:
    return DEFAULTS_TABLE[name][0]


def description(name: str) -> str:
    return DEFAULTS_TABLE[name][1]
