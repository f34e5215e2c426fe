"""JSON-RPC 2.0 as aria2 speaks it: single calls, batches, ``system.multicall``, and the
``token:`` first parameter of every call (also inside a multicall).

:class:`Dispatcher` turns one request text into one answer text. Method functions are
synchronous (the queue lives in memory); after the whole request has run, its changes are
committed (:meth:`~segdl.daemon.manager.Manager.commit`) and only then is it answered, so
10,000 ``addUri`` in one multicall cost one transaction, and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from segdl.daemon.errors import (
    ARIA2_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    RpcError,
)
from segdl.daemon.manager import Manager

log = logging.getLogger(__name__)

Method = Callable[..., Any]
# Callable without the secret (aria2: they only say what exists).
NO_TOKEN = frozenset({"system.listMethods", "system.listNotifications"})
MULTICALL = "system.multicall"
# A wrong token costs the caller this long (aria2 too slows guessing down); the loop is free.
_WRONG_TOKEN_DELAY_S = 0.05


class Raw:
    """A piece of an answer already serialized (a cached tellStatus struct): spliced into
    the answer's text as it is, instead of being built and encoded again."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def encode(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Splicer:
    """json.dumps with Raw pieces: each becomes a placeholder string, then its text."""

    def __init__(self) -> None:
        self._mark = f"segdl-raw-{secrets.token_hex(8)}-"
        self._pattern = re.compile(f'"{self._mark}(\\d+)"')
        self._pieces: list[str] = []

    def _placeholder(self, value: object) -> str:
        if not isinstance(value, Raw):
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
        self._pieces.append(value.text)
        return f"{self._mark}{len(self._pieces) - 1}"

    def dumps(self, answer: object) -> str:
        self._pieces = []
        text = json.dumps(answer, separators=(",", ":"), default=self._placeholder)
        if not self._pieces:
            return text
        pieces = self._pieces
        return self._pattern.sub(lambda match: pieces[int(match.group(1))], text)


class Dispatcher:
    """Requests in, answers out, for one daemon."""

    def __init__(
        self,
        manager: Manager,
        secret: str,
        methods: dict[str, Method],
    ) -> None:
        self.manager = manager
        self._token = f"token:{secret}".encode()
        self.methods = methods
        self._splicer = _Splicer()
        self._unauthorized = False

    def authorized(self, params: list[Any]) -> list[Any]:
        """The params without a valid token; RpcError("Unauthorized") otherwise."""
        token = params[0] if params and isinstance(params[0], str) else ""
        if token.startswith("token:") and hmac.compare_digest(token.encode(), self._token):
            return params[1:]
        self._unauthorized = True
        raise RpcError("Unauthorized")

    def call(self, name: object, params: object) -> Any:
        """One method call (also one inside a multicall)."""
        if not isinstance(name, str):
            raise RpcError("method must be a string", INVALID_REQUEST)
        if params is None:
            params = []
        if not isinstance(params, list):
            raise RpcError("params must be an array", INVALID_PARAMS)
        if name == MULTICALL:
            return self._multicall(params)
        method = self.methods.get(name)
        if method is None:
            if name.startswith(("aria2.add", "aria2.getPeers")):  # torrents, metalinks
                raise RpcError(f"{name}: BitTorrent and Metalink are not supported by segdl")
            raise RpcError(f"No such method: {name}")  # aria2 says it with code 1 too
        if name not in NO_TOKEN:
            params = self.authorized(params)
        try:
            return method(*params)
        except TypeError as exc:
            if "positional argument" in str(exc):
                raise RpcError(f"{name}: wrong number of parameters", INVALID_PARAMS) from exc
            raise

    def _multicall(self, params: list[Any]) -> list[Any]:
        if params and isinstance(params[0], str) and params[0].startswith("token:"):
            params = params[1:]  # aria2 drops it too; each inner call carries its own
        if len(params) != 1 or not isinstance(params[0], list):
            raise RpcError("system.multicall takes one array of calls", INVALID_PARAMS)
        answers: list[Any] = []
        for entry in params[0]:
            try:
                if not isinstance(entry, dict):
                    raise RpcError("each call is a struct with methodName and params")
                if entry.get("methodName") == MULTICALL:
                    raise RpcError("system.multicall cannot be nested")
                answers.append([self.call(entry.get("methodName"), entry.get("params"))])
            except RpcError as exc:
                answers.append({"code": exc.code, "message": exc.message})
        return answers

    def _one(self, request: object) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return _error(None, RpcError("a request is a struct", INVALID_REQUEST))
        ident = request.get("id")
        try:
            result = self.call(request.get("method"), request.get("params"))
        except RpcError as exc:
            return _error(ident, exc)
        except Exception:  # a bug: the call fails, the daemon goes on
            log.exception("RPC method %r failed", request.get("method"))
            return _error(ident, RpcError("internal error"))
        return {"id": ident, "jsonrpc": "2.0", "result": result}

    async def handle(self, text: str | bytes) -> str:
        """The answer to one HTTP body or WebSocket message."""
        self._unauthorized = False
        try:
            request = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            return encode(_error(None, RpcError("Parse error", PARSE_ERROR)))
        if isinstance(request, list):
            if not request:
                answer: Any = _error(None, RpcError("an empty batch", INVALID_REQUEST))
            else:
                answer = [self._one(r) for r in request]
        else:
            answer = self._one(request)
        await self.manager.commit()  # durable before it is acknowledged
        if self._unauthorized:
            await asyncio.sleep(_WRONG_TOKEN_DELAY_S)
        return self._splicer.dumps(answer)


def _error(ident: object, exc: RpcError) -> dict[str, Any]:
    return {
        "id": ident,
        "jsonrpc": "2.0",
        "error": {"code": exc.code if exc.code else ARIA2_ERROR, "message": exc.message},
    }
