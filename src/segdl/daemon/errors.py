"""The daemon's one error: a refused RPC call, in segdl's exception tree (a UsageError)."""

from __future__ import annotations

from segdl.core.errors import UsageError

# JSON-RPC 2.0 (jsonrpc.org/specification §5.1) and aria2's code for a refused call.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
ARIA2_ERROR = 1
"""aria2 answers every failed method call (and a bad token) with code 1 and a message."""


class RpcError(UsageError):
    """A call the daemon refuses: a JSON-RPC error with ``code`` and ``message``."""

    def __init__(self, message: str, code: int = ARIA2_ERROR) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
