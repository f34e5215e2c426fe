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

from segdl.cli.exitcodes import ExitCode, exit_code_for
from segdl.cli.parser import build_parser, download_options
from segdl.core.printable import printable

if TYPE_CHECKING:
    import ssl

    from segdl.cli.display import Display
    from segdl.core.models import Result
    from segdl.core.options import DownloadOptions


def main(
    argv: Sequence[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run the CLI; return the exit code instead of exiting."""
    from segdl.cli.pipes import hold_standard_fds

    closed = hold_standard_fds()
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
    from segdl.cli.pipes import GuardedStream, PipeWatch, or_nowhere, silence_closed

    if args.output == "-" and (1 in closed or (stdout or sys.stdout) is None):
        print("segdl: error: stdout is closed: -o - has nowhere to write the file",
              file=stderr or sys.stderr)  # fmt: skip
        return int(ExitCode.USAGE)
    stop = _StopOnSignals()
    watch = PipeWatch(stop.event)
    real_out, real_err = or_nowhere(stdout or sys.stdout), or_nowhere(stderr or sys.stderr)
    guarded_out, guarded_err = GuardedStream(real_out, watch), GuardedStream(real_err, watch)
    code = _run(args, stop, cast("IO[str]", guarded_out), cast("IO[str]", guarded_err))
    if watch.closed:  # a reader went away (| head): quiet, resumable, its own exit code
        silence_closed(watch, *(s.fileno() for s in (real_out, real_err) if _is_std(s)))
        return int(ExitCode.PIPE_CLOSED)
    return code


def _is_std(stream: IO[str]) -> bool:
    return stream is sys.stdout or stream is sys.stderr


def _run(args: argparse.Namespace, stop: _StopOnSignals, stdout: IO[str], stderr: IO[str]) -> int:
    """Run the parsed command: one download, a batch, or a batch on a Ray cluster."""
    # Imported here, not at the top: `segdl --version` and `--help` stay fast.
    from segdl.core.errors import SegdlError

    early = args.input_file is None and len(args.urls) == 1 and args.ray is None
    if early:  # one URL: the connect starts now; its request waits below
        _dial_early(args)
    try:
        options = download_options(args)
    except SegdlError as exc:  # before anything is sent, even the early request
        if early:
            from segdl.net import dial  # start-up: only one URL is dialled early

            dial.discard()
        return _failed(args, exit_code_for(exc), _one_line(exc), stdout, stderr)
    if args.ray is not None:  # the batch on a Ray cluster (segdl.cluster)
        from segdl.cli.cluster import run_cluster

        with stop:
            code = run_cluster(args, options, stdout, stderr, stop.event)
        return 128 + stop.signum if stop.signum is not None else int(code)
    if not early:
        from segdl.cli.batch import run_batch

        with stop:
            code = run_batch(args, options, stdout, stderr, stop.event)
        return 128 + stop.signum if stop.signum is not None else int(code)
    from segdl.net import dial

    # The options are good: the early request may go (over https, verified as they say).
    dial.release(tls=lambda: _early_tls(options))
    return _run_one(args, options, stop, stdout, stderr)


def _early_tls(options: DownloadOptions) -> ssl.SSLContext | None:
    """The context the early ``https`` request is sent with (see :mod:`segdl.net.dial`);
    called in the dialling thread, which loads ``ssl`` meanwhile."""
    from segdl.net.leantls import verifying_context

    return verifying_context(options.ca_bundle, options.insecure)


def _run_one(
    args: argparse.Namespace,
    options: DownloadOptions,
    stop: _StopOnSignals,
    stdout: IO[str],
    stderr: IO[str],
) -> int:
    """One URL, to a file or (``-o -``) to stdout; errors become one line and an exit code."""
    import segdl
    from segdl.net import dial

    to_stdout = args.output == "-"
    if to_stdout and args.progress == "json":
        print("segdl: error: -o - writes the file to stdout: use --progress plain", file=stderr)
        return int(ExitCode.USAGE)
    display = _make_display(args.progress, args.quiet, stdout, stderr)
    try:
        with stop:
            result = _fetch(args, options, display, stop.event)
    except BrokenPipeError:  # -o - into a pipe whose reader went away (| head -c)
        display.close()
        return int(ExitCode.PIPE_CLOSED)
    except (segdl.SegdlError, OSError, KeyboardInterrupt) as exc:
        display.close()
        code = exit_code_for(exc)
        if stop.signum == signal.SIGTERM:
            code = ExitCode.TERMINATED
        return _failed(args, code, _one_line(exc), stdout, stderr)
    except Exception as exc:  # a bug: still one line and exit 1, never a traceback
        display.close()
        text = f"unexpected {type(exc).__name__}: {_one_line(exc)} (a bug in segdl)"
        return _failed(args, ExitCode.GENERIC, text, stdout, stderr)
    finally:
        dial.discard()  # a socket dialled early that no connection took
    display.close()
    _report(args, result, to_stdout, stdout, stderr)
    return int(ExitCode.OK)


def _fetch(
    args: argparse.Namespace, options: DownloadOptions, display: Display, cancel: threading.Event
) -> Result:
    """The download itself: into the output file, or streamed in order to stdout."""
    if args.output == "-":
        from segdl.run.stream import stream_to

        return stream_to(
            args.urls[0], sys.stdout.fileno(), options=options, progress=display, cancel=cancel
        )
    if args.output is None or args.dir is None:  # a small file before the engine loads
        from pathlib import Path

        from segdl.run.quick import quick_download

        output = None if args.output is None else Path(args.output)
        directory = None if args.dir is None else Path(args.dir)
        result = quick_download(args.urls[0], output, options, display, cancel, directory=directory)
        if result is not None:
            return result
    import segdl

    return segdl.download(
        args.urls[0],
        args.output,
        options=options,
        directory=args.dir,
        progress=display,
        cancel=cancel,
    )


def _failed(
    args: argparse.Namespace, code: ExitCode, text: str, stdout: IO[str], stderr: IO[str]
) -> int:
    """Say why the run failed (one line on stderr, and the JSON summary if asked for)."""
    print(f"segdl: error: {text}", file=stderr)
    if args.progress == "json":
        _json_summary(stdout, code, error=text)
    return int(code)


def _report(
    args: argparse.Namespace, result: Result, to_stdout: bool, stdout: IO[str], stderr: IO[str]
) -> None:
    """How a finished download ended: the JSON summary, or one line unless quiet."""
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
    elif args.quiet:
        return
    elif result.skipped:
        print(f"segdl: skipped {printable(str(result.path))} (already there)", file=stderr)
    else:
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
    here. A Ctrl-C before the download's own handler is in place (while the command line is
    read) or after it is gone ends with exit 130 and nothing else, as curl's and wget's do:
    nothing had been written, or all of it was. Any other exception still goes through the
    usual exit, traceback and all."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = int(ExitCode.INTERRUPTED)
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: started with it closed (segdl ... >&-)
                stream.flush()
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
    if args.output is not None and not _fresh_output(args.output):
        return None
    return dial.first_request(args.urls[0], args.user_agent)


def _fresh_output(output: str) -> bool:
    """Nothing at ``-o``'s paths to resume or refuse, and a name that fits beside its
    siblings (else the engine says so before any request)."""
    from pathlib import Path

    from segdl.core.errors import LocalFileError
    from segdl.disk.paths import OutputPaths, check_name_fits

    paths = OutputPaths.of(Path(output))
    if any(os.path.lexists(path) for path in (paths.final, paths.part, paths.state)):
        return False
    try:
        check_name_fits(paths.final)
    except LocalFileError:
        return False
    return True


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
