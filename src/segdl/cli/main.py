"""``segdl URL``: parse arguments, run the download, speak, and exit with a documented code.

``main(argv, stdout, stderr) -> int`` runs in-process for tests; ``run()`` is the console
script. Only this package prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, cast

from segdl._version import __version__
from segdl.cli.exitcodes import ExitCode, exit_code_for
from segdl.core.printable import printable

if TYPE_CHECKING:
    from segdl.cli.display import Display
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


def main(
    argv: Sequence[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run the CLI; return the exit code instead of exiting."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["daemon"]:  # `segdl daemon ...`: the download manager (segdl[daemon])
        from segdl.cli.daemon import main as daemon_main

        return daemon_main(words[1:], stderr or sys.stderr)
    parser = build_parser()
    from segdl.cli.config import apply_config, chosen_path
    from segdl.core.errors import UsageError

    config, required = chosen_path(words, os.environ)
    try:
        from_config = apply_config(parser, config, required=required) if config else set()
    except UsageError as exc:
        print(f"segdl: error: {printable(str(exc))}", file=stderr or sys.stderr)
        return int(ExitCode.USAGE)
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0)
    if args.print_completion is not None:
        from segdl.cli.completion import completion_script

        (stdout or sys.stdout).write(completion_script(parser, args.print_completion))
        return int(ExitCode.OK)
    if args.output is not None and "dir" in from_config:
        args.dir = None  # -o on the command line wins over a configured directory
    from segdl.cli.pipes import GuardedStream, PipeWatch, silence_closed

    stop = _StopOnSignals()
    watch = PipeWatch(stop.event)
    real_out, real_err = stdout or sys.stdout, stderr or sys.stderr
    guarded_out, guarded_err = GuardedStream(real_out, watch), GuardedStream(real_err, watch)
    code = _run(args, stop, cast("IO[str]", guarded_out), cast("IO[str]", guarded_err))
    if watch.closed:  # a reader went away (| head): quiet, resumable, its own exit code
        silence_closed(watch, *(s.fileno() for s in (real_out, real_err) if _is_std(s)))
        return int(ExitCode.PIPE_CLOSED)
    return code


def _is_std(stream: IO[str]) -> bool:
    return stream is sys.stdout or stream is sys.stderr


def _run(args: argparse.Namespace, stop: _StopOnSignals, stdout: IO[str], stderr: IO[str]) -> int:
    """Run the parsed command: one download or a batch."""
    # Imported here, not at the top: `segdl --version` and `--help` stay fast.
    from segdl.core.errors import SegdlError
    from segdl.net import dial

    single = args.input_file is None and len(args.urls) == 1
    if single and args.ray is None:  # the connect starts now; its request waits below
        _dial_early(args)
    try:
        options = _download_options(args)
    except SegdlError as exc:  # before anything is sent, even the early request
        dial.discard()
        code = exit_code_for(exc)
        print(f"segdl: error: {_one_line(exc)}", file=stderr)
        if args.progress == "json":
            _json_summary(stdout, code, error=_one_line(exc))
        return int(code)
    if args.ray is not None:  # the batch on a Ray cluster (segdl.cluster)
        from segdl.cli.cluster import run_cluster

        with stop:
            code = run_cluster(args, options, stdout, stderr, stop.event)
        return 128 + stop.signum if stop.signum is not None else int(code)
    dial.release()  # the options are good: the early request may go
    import segdl

    if not single:
        from segdl.cli.batch import run_batch

        with stop:
            code = run_batch(args, options, stdout, stderr, stop.event)
        if stop.signum is not None:
            return 128 + stop.signum
        return int(code)
    to_stdout = args.output == "-"
    if to_stdout and args.progress == "json":
        print("segdl: error: -o - writes the file to stdout: use --progress plain", file=stderr)
        return int(ExitCode.USAGE)
    display = _make_display(args.progress, args.quiet, stdout, stderr)
    try:
        with stop:
            if to_stdout:
                from segdl.run.stream import stream_to

                result = stream_to(
                    args.urls[0], sys.stdout.fileno(), options=options, progress=display,
                    cancel=stop.event,
                )  # fmt: skip
            else:
                result = segdl.download(
                    args.urls[0],
                    args.output,
                    options=options,
                    directory=args.dir,
                    progress=display,
                    cancel=stop.event,
                )
    except BrokenPipeError:  # -o - into a pipe whose reader went away (| head -c)
        display.close()
        return int(ExitCode.PIPE_CLOSED)
    except (segdl.SegdlError, OSError, KeyboardInterrupt) as exc:
        display.close()
        code = exit_code_for(exc)
        if stop.signum == signal.SIGTERM:
            code = ExitCode.TERMINATED
        print(f"segdl: error: {_one_line(exc)}", file=stderr)
        if args.progress == "json":
            _json_summary(stdout, code, error=_one_line(exc))
        return int(code)
    except Exception as exc:  # a bug: still one line and exit 1, never a traceback
        display.close()
        text = f"unexpected {type(exc).__name__}: {_one_line(exc)} (a bug in segdl)"
        print(f"segdl: error: {text}", file=stderr)
        if args.progress == "json":
            _json_summary(stdout, ExitCode.GENERIC, error=text)
        return int(ExitCode.GENERIC)
    finally:
        dial.discard()  # a socket dialled early that no connection took
    display.close()
    if args.progress == "json":
        _json_summary(
            stdout,
            ExitCode.OK,
            path=str(result.path),
            size_bytes=result.size_bytes,
            elapsed_s=result.elapsed_s,
            connections=result.connections_used,
            ranged=result.ranged,
            skipped=result.skipped,
        )
    elif result.skipped:
        if not args.quiet:
            print(f"segdl: skipped {printable(str(result.path))} (already there)", file=stderr)
    elif not args.quiet:
        rate = result.size_bytes / result.elapsed_s if result.elapsed_s > 0 else 0.0
        from segdl.cli.render import human_bytes

        where = "to stdout" if to_stdout else printable(str(result.path))
        print(
            f"segdl: {'streamed' if to_stdout else 'saved'} {where} "
            f"({human_bytes(result.size_bytes)} in "
            f"{result.elapsed_s:.2f} s, {human_bytes(rate)}/s, "
            f"{result.connections_used} connection(s))",
            file=stderr,
        )
    return int(ExitCode.OK)


def _json_summary(stdout: IO[str], code: ExitCode, **fields: object) -> None:
    """The last line of ``--progress json``: how the run ended, whatever happened."""
    from segdl.core.printable import json_line

    record = {"event": "Summary", "ok": code is ExitCode.OK, "exit_code": int(code), **fields}
    stdout.write(json_line(record) + "\n")
    stdout.flush()


def run() -> None:
    """Console-script entry point.

    After a normal return the interpreter's teardown is skipped: freeing every object and
    module was a tenth of segdl's start-up cost (bench/README.md). Nothing is left for it to do:
    every thread has been joined and every file closed; output and log handlers are flushed
    here. An exception still goes through the usual exit, traceback and all."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: let the interpreter report it as it always did
        sys.exit(code)
    logging.shutdown()
    os._exit(code)


class _StopOnSignals:
    """SIGINT and SIGTERM ask the download to stop cleanly (state saved, resumable); a
    second signal exits at once, relying on the state already on disk."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            os._exit(128 + self.signum)
        self.signum = signum
        self.event.set()


def _dial_early(args: argparse.Namespace) -> None:
    """Start the TCP connect to the URL's server now, while the engine is imported (50-80
    ms), and send the first request on it when it is segdl's plain one; the transport takes
    that socket for its first connection. Never when a proxy would carry the request:
    nothing goes straight to the server that the proxy should carry."""
    from segdl.net import dial
    from segdl.net.proxies import proxy_for

    url = args.urls[0]
    use_env = not args.no_proxy_env
    try:
        proxied = proxy_for(url, explicit=args.proxy, environ=os.environ, use_env=use_env)
    except ValueError:  # an unparsable URL: the download says so
        return
    if proxied is None:
        dial.dial(url, args.timeout, _early_request(args), hold=True)


def _early_request(args: argparse.Namespace) -> bytes | None:
    """The first request, to send with the early connect, for a fresh download whose first
    request is segdl's plain one: no credentials, cookies or extra headers, and nothing at
    the output path to resume or refuse (see :func:`segdl.net.dial.first_request`)."""
    from segdl.net import dial

    if args.header or args.user or args.netrc or args.netrc_file or args.load_cookies:
        return None
    if args.output is not None and any(
        os.path.lexists(args.output + suffix) for suffix in ("", ".part", ".segdl-state")
    ):
        return None
    if args.output is not None and len(os.fsencode(os.path.basename(args.output))) > 240:
        return None  # it may not fit beside its siblings: the engine says so before any request
    return dial.first_request(args.urls[0], args.user_agent)


def _download_options(args: argparse.Namespace) -> DownloadOptions:
    """The options every file gets from the command line."""
    from segdl.core.options import with_overrides

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
        "headers": _parse_headers(args.header),
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


def _parse_headers(values: list[str]) -> dict[str, str]:
    from segdl.core.errors import UsageError

    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"header {value!r} is not 'Name: value'")
        headers[name.strip()] = content.strip()
    return headers


def _make_display(mode: str, quiet: bool, stdout: IO[str], stderr: IO[str]) -> Display:
    from segdl.cli import display

    if mode == "json":
        return display.JsonDisplay(stdout)
    if quiet or mode == "none":
        return display.SilentDisplay(stderr, quiet=quiet)
    if mode == "plain":
        return display.PlainDisplay(stderr, quiet=quiet)
    if display.live_terminal(mode, stderr):
        from segdl.cli.screen import SingleScreen

        return SingleScreen(stderr)
    return display.PlainDisplay(stderr, quiet=quiet)


def _one_line(exc: BaseException) -> str:
    """An error as one line fit for a terminal: its text may quote the server (a reason
    phrase, a Location, a header value), so control characters are shown escaped."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    from segdl.core.errors import LocalFileError

    if isinstance(exc, LocalFileError) and exc.strerror:
        text = exc.strerror  # already names the path and the cause
    else:
        text = str(exc) or type(exc).__name__
    return printable(" ".join(text.split()))
