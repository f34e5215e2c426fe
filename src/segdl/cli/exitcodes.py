"""Exit codes: one per class of failure, documented in the README (like wget's)."""

from __future__ import annotations

from enum import IntEnum

from segdl.core.errors import (
    Cancelled,
    HTTPStatusError,
    IntegrityError,
    LocalFileError,
    NetworkError,
    OutputExists,
    OutputLocked,
    ProtocolError,
    ProxyAuthError,
    ServerError,
    TLSError,
    UsageError,
)


class ExitCode(IntEnum):
    OK = 0
    GENERIC = 1
    """An error no other code describes (a bug, if it ever happens)."""
    USAGE = 2
    """Bad option or argument."""
    FILE_IO = 3
    """Local file could not be created, written or moved."""
    NETWORK = 4
    """Connection refused, reset, timed out, host not found."""
    TLS = 5
    """TLS handshake or certificate verification failed."""
    AUTH = 6
    """The server asked for credentials (401, 407)."""
    PROTOCOL = 7
    """The server's answer could not be believed (bad headers, remote file changed...)."""
    SERVER_ERROR = 8
    """The server answered with an error status (4xx/5xx) or too many redirects."""
    OUTPUT_EXISTS = 9
    """The output file exists and --overwrite was not given."""
    INTEGRITY = 10
    """The finished file is not what the server promised."""
    LOCKED = 11
    """Another segdl is downloading to the same output."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C (128 + SIGINT); the download resumes when run again."""
    PIPE_CLOSED = 141
    """stdout or stderr was a pipe whose reader went away (128 + SIGPIPE, what a shell shows
    for a program SIGPIPE ended); the download resumes when run again."""
    TERMINATED = 143
    """Stopped by SIGTERM (128 + 15); the download resumes when run again."""


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for an error that ended a download."""
    if isinstance(error, OutputExists):
        return ExitCode.OUTPUT_EXISTS
    if isinstance(error, OutputLocked):
        return ExitCode.LOCKED
    if isinstance(error, UsageError):
        return ExitCode.USAGE
    if isinstance(error, LocalFileError):
        return ExitCode.FILE_IO
    if isinstance(error, TLSError):
        return ExitCode.TLS
    if isinstance(error, ProxyAuthError):
        return ExitCode.AUTH  # 407: the proxy wants (other) credentials, as the README says
    if isinstance(error, NetworkError):
        return ExitCode.NETWORK
    if isinstance(error, HTTPStatusError) and error.status in (401, 407):
        return ExitCode.AUTH
    if isinstance(error, ServerError):
        return ExitCode.SERVER_ERROR
    if isinstance(error, ProtocolError):
        return ExitCode.PROTOCOL
    if isinstance(error, IntegrityError):
        return ExitCode.INTEGRITY
    if isinstance(error, (Cancelled, KeyboardInterrupt)):
        return ExitCode.INTERRUPTED
    if isinstance(error, OSError):
        return ExitCode.FILE_IO
    return ExitCode.GENERIC
