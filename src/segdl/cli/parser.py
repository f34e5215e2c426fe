"""The command line's declaration, and the :class:`~segdl.core.options.DownloadOptions` it
gives: an option of the command line is added here in both places.

The defaults and descriptions of the options themselves are :mod:`segdl.core.option_table`'s,
read without importing the options module (start-up); only what is the command line's own
is written here.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from segdl._version import __version__

if TYPE_CHECKING:
    from segdl.core.options import DownloadOptions

_EPILOG = """\
exit codes: 0 ok, 1 generic, 2 usage, 3 local file, 4 network, 5 TLS, 6 auth,
7 protocol (answer not believable, remote changed), 8 server error status,
9 output exists, 10 integrity, 11 output locked by another segdl,
130 interrupted (SIGINT), 141 output closed (a pipe's reader went away, as with | head),
143 terminated (SIGTERM); all three leave a resumable download
"""


def build_parser() -> argparse.ArgumentParser:
    """The options' defaults and descriptions are :mod:`segdl.core.option_table`'s (the
    ones :class:`~segdl.core.options.DownloadOptions` has; ``_help``), read without importing
    the rest; only what is the command line's own is written here."""
    from segdl.core.option_table import IF_EXISTS_CHOICES
    from segdl.core.option_table import default as option_default

    parser = argparse.ArgumentParser(
        prog="segdl",
        description="Download a file over many HTTP(S) connections at once.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "urls", nargs="*", metavar="URL", help="http:// or https:// URL(s); several = a batch"
    )
    parser.add_argument(
        "-i",
        "--input-file",
        metavar="FILE",
        help="URLs to download, aria2's format: TAB-separated mirrors of one file per line, "
        "then indented key=value lines (out, dir, header, connections); '-' reads stdin",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=4,
        metavar="N",
        help="files transferring at once (default: 4)",
    )
    parser.add_argument(
        "--no-pipelining",
        action="store_true",
        help="in a batch, never send a file's request before the previous answer on its "
        "connection has ended (default: pipeline one request deep, direct connections only)",
    )
    parser.add_argument(
        "--remote-time", action="store_true", help=_help("remote_time", default=False)
    )
    parser.add_argument(
        "--keep-cache",
        action="store_true",
        help=_help("keep_cache", default=False),
    )
    parser.add_argument(
        "--limit-rate",
        metavar="RATE",
        help="at most RATE bytes/s over everything (K, M, G suffixes, 1024-based)",
    )
    parser.add_argument(
        "--checksum",
        metavar="ALGO=HEX",
        help=_help("checksum", default=None) + "; a mismatch exits 10",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="PATH", help="write to PATH")
    where.add_argument(
        "-d",
        "--dir",
        metavar="DIR",
        help="write into DIR, named after the URL's path (default: current directory)",
    )
    parser.add_argument(
        "-x",
        "--connections",
        type=int,
        default=option_default("connections"),
        metavar="N",
        help=_help("connections"),
    )
    parser.add_argument(
        "--min-split-size",
        metavar="SIZE",
        help=_help("min_split_bytes", "K, M, G suffixes are 1024-based"),
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header, repeatable",
    )
    parser.add_argument(
        "--user-agent",
        metavar="TEXT",
        default=option_default("user_agent"),
        help=_help("user_agent"),
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=option_default("timeout_s"),
        metavar="SECONDS",
        help=_help("timeout_s"),
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=option_default("retries"),
        metavar="N",
        help=_help("retries"),
    )
    parser.add_argument(
        "--retry-wait",
        type=float,
        default=option_default("retry_wait_s"),
        metavar="SECONDS",
        help=_help("retry_wait_s"),
    )
    parser.add_argument(
        "--max-retry-after",
        type=float,
        default=option_default("max_retry_after_s"),
        metavar="SECONDS",
        help=_help("max_retry_after_s"),
    )
    parser.add_argument(
        "--max-redirects",
        type=int,
        default=option_default("max_redirects"),
        metavar="N",
        help=_help("max_redirects"),
    )
    parser.add_argument(
        "--max-connections-per-host",
        type=int,
        default=option_default("max_connections_per_host"),
        metavar="N",
        help=_help("max_connections_per_host"),
    )
    parser.add_argument(
        "--lowest-speed-limit",
        metavar="RATE",
        help=_help("lowest_speed_bytes_per_s", "RATE in bytes/s, K, M suffixes", default=None),
    )
    parser.add_argument(
        "--max-size",
        metavar="SIZE",
        help=_help("max_size_bytes", "K, M, G suffixes", default=None),
    )
    parser.add_argument(
        "--stream-buffer",
        metavar="SIZE",
        help=_help("stream_buffer_bytes", "K, M, G suffixes", default="64M"),
    )
    parser.add_argument(
        "--if-exists",
        choices=IF_EXISTS_CHOICES,
        default=option_default("if_exists"),
        help="when the output file exists: error (default, exit 9), skip it (exit 0), "
        "overwrite it, or rename (name.1.ext, ...; a partial one is resumed)",
    )
    parser.add_argument("--overwrite", action="store_true", help="same as --if-exists overwrite")
    security = parser.add_argument_group("security and identity")
    security.add_argument("-u", "--user", metavar="USER:PASSWORD", help=_help("user", default=None))
    security.add_argument("--netrc", action="store_true", help=_help("use_netrc", default=None))
    security.add_argument("--netrc-file", metavar="PATH", help=_help("netrc_file", default=None))
    security.add_argument(
        "--load-cookies", metavar="FILE", help=_help("cookies_file", default=None)
    )
    security.add_argument(
        "--location-trusted",
        action="store_true",
        help=_help("location_trusted", default=None),
    )
    security.add_argument(
        "--allow-insecure-redirect",
        action="store_true",
        help=_help("allow_insecure_redirect", default="refuse"),
    )
    security.add_argument("--ca-bundle", metavar="PATH", help=_help("ca_bundle", default=None))
    security.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help=_help("insecure", default=None),
    )
    security.add_argument(
        "--proxy",
        metavar="URL",
        help=_help("proxy", default=None),
    )
    security.add_argument(
        "--no-proxy-env",
        action="store_true",
        help="ignore HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY",
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="start over even if a resumable partial download exists (default: resume)",
    )
    parser.add_argument(
        "--lock-wait",
        type=float,
        default=option_default("lock_wait_s"),
        metavar="SECONDS",
        help=_help("lock_wait_s"),
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument(
        "--progress",
        choices=["auto", "bar", "plain", "json", "none"],
        default="auto",
        help="auto (default): a bar when stderr is a terminal, else plain lines every few "
        "seconds; json: one JSON object per line on stdout, ending with a summary",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="read option defaults from PATH (default: $XDG_CONFIG_HOME/segdl/config.toml); "
        "the command line wins",
    )
    parser.add_argument("--no-config", action="store_true", help="read no config file")
    parser.add_argument(
        "--print-completion",
        choices=["bash", "zsh"],
        metavar="{bash,zsh}",
        help="print a completion script for the shell and exit (see the README for where it goes)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run -i's list on a Ray cluster (segdl[cluster]): 'auto' or host:port joins one, "
        "none starts Ray here; -d must be a directory every worker sees",
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=1000,
        metavar="N",
        help="with --ray: files per shard, the unit of work and of reruns (default: 1000)",
    )
    parser.add_argument("--version", action="version", version=f"segdl {__version__}")
    return parser


_NO_DEFAULT = object()


def _help(name: str, units: str = "", *, default: object = _NO_DEFAULT) -> str:
    """Option ``name``'s description, ``units`` of the command line's spelling, and its
    default (``DownloadOptions``' own unless told; None: none is shown)."""
    from segdl.core.option_table import default as option_default
    from segdl.core.option_table import description

    text = description(name) + (f"; {units}" if units else "")
    shown = option_default(name) if default is _NO_DEFAULT else default
    if shown is None or isinstance(shown, bool):
        return text
    if name.endswith("_bytes") and isinstance(shown, int):
        shown = _size_text(shown)
    elif isinstance(shown, float) and shown.is_integer():
        shown = int(shown)
    return f"{text} (default: {shown})"


def _size_text(size_bytes: int) -> str:
    """``1M`` for 1048576: a size as the command line spells it."""
    for suffix, unit in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size_bytes % unit == 0:
            return f"{size_bytes // unit}{suffix}"
    return str(size_bytes)


def download_options(args: argparse.Namespace) -> DownloadOptions:
    """The options every file gets from the command line."""
    from segdl.core.options import parse_headers, with_overrides

    given: dict[str, object] = {
        "connections": args.connections,
        "overwrite": args.overwrite,
        "if_exists": args.if_exists,
        "user": args.user,
        "use_netrc": args.netrc,
        "netrc_file": args.netrc_file,
        "cookies_file": args.load_cookies,
        "location_trusted": args.location_trusted,
        "allow_insecure_redirect": args.allow_insecure_redirect,
        "ca_bundle": args.ca_bundle,
        "insecure": args.insecure,
        "proxy": args.proxy,
        "use_proxy_env": not args.no_proxy_env,
        "timeout_s": args.timeout,
        "headers": parse_headers(args.header),
        "user_agent": args.user_agent,
        "resume": not args.no_resume,
        "lock_wait_s": args.lock_wait,
        "retries": args.retries,
        "retry_wait_s": args.retry_wait,
        "max_retry_after_s": args.max_retry_after,
        "max_redirects": args.max_redirects,
        "max_connections_per_host": args.max_connections_per_host,
        "lowest_speed_bytes_per_s": _optional_size(args.lowest_speed_limit),
        "max_size_bytes": _optional_size(args.max_size),
        "remote_time": args.remote_time,
        "keep_cache": args.keep_cache,
        "limit_rate_bytes_per_s": _optional_size(args.limit_rate),
        "checksum": args.checksum,
    }
    if args.stream_buffer is not None:
        given["stream_buffer_bytes"] = _optional_size(args.stream_buffer)
    if args.min_split_size is not None:
        given["min_split_bytes"] = _optional_size(args.min_split_size)
    return with_overrides(None, given)


def _optional_size(text: str | None) -> int | None:
    from segdl.core.options import parse_size

    return None if text is None else parse_size(text)
