"""The daemon's HTTP side (aiohttp): JSON-RPC at ``/jsonrpc`` over POST and WebSocket, and
the page at ``/``.

Safe by default (aria2 #200: an RPC without checks can be driven by any web page):

- a request whose ``Host`` is not the loopback address it was sent to is refused (a page on
  another name resolving to 127.0.0.1, DNS rebinding, cannot reach the RPC);
- a request with an ``Origin`` other than the daemon's own (or one given with
  ``--rpc-allow-origin``) is refused, POST and WebSocket alike; no CORS header is sent
  unless that origin was allowed;
- a body over the request size limit is refused before it is read;
- every method but ``system.listMethods``/``listNotifications`` needs the token.

Each refusal is a JSON-RPC error object (HTTP 400, 403 or 413).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import resources

from aiohttp import WSMsgType, web

from segdl.daemon.errors import INVALID_REQUEST
from segdl.daemon.rpc import Dispatcher

log = logging.getLogger(__name__)

_PAGE_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_PAGE_HEADERS = {
    # Nothing but this daemon's own files and its own WebSocket, and no framing (clickjacking).
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _refusal(status: int, message: str, code: int = INVALID_REQUEST) -> web.Response:
    body = {"id": None, "jsonrpc": "2.0", "error": {"code": code, "message": message}}
    return web.json_response(body, status=status)


class RpcServer:
    """The aiohttp application of one daemon."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        port: int,
        loopback: bool,
        allowed_origins: frozenset[str] = frozenset(),
        max_request_bytes: int = 2 * 1024 * 1024,
    ) -> None:
        self.dispatcher = dispatcher
        self.port = port
        self.loopback = loopback
        self.allowed_origins = allowed_origins
        self.max_request_bytes = max_request_bytes
        self.sockets: set[web.WebSocketResponse] = set()
        self._sending: set[asyncio.Future[None]] = set()
        self.app = web.Application(client_max_size=max_request_bytes)
        self._own_origins = {f"http://{name}:{port}" for name in _LOOPBACK_NAMES}
        self._own_hosts = {f"{name}:{port}" for name in _LOOPBACK_NAMES}
        self.app.router.add_post("/jsonrpc", self._post)
        self.app.router.add_get("/jsonrpc", self._websocket)
        self.app.router.add_route("OPTIONS", "/jsonrpc", self._preflight)
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/page/{name}", self._page_file)

    # -- checks on every request -----------------------------------------------------------------

    def listening_on(self, port: int) -> None:
        """The port really bound (port 0 asks the system for one)."""
        self.port = port
        self._own_origins = {f"http://{name}:{port}" for name in _LOOPBACK_NAMES}
        self._own_hosts = {f"{name}:{port}" for name in _LOOPBACK_NAMES}

    def own_origins(self) -> set[str]:
        return self._own_origins

    def _origin_allowed(self, origin: str | None) -> bool:
        if origin is None:  # not a browser: the token decides
            return True
        return (
            origin in self.own_origins()
            or origin in self.allowed_origins
            or "*" in self.allowed_origins
        )

    def _host_allowed(self, host: str | None) -> bool:
        if not self.loopback:
            return True  # listening elsewhere was asked for explicitly
        return host in self._own_hosts

    def _refused(self, request: web.Request) -> web.Response | None:
        """The refusal for a request from a place it may not come from, else None."""
        headers = request.headers
        if not self._host_allowed(headers.get("Host")):
            return _refusal(403, "Host is not this daemon's loopback address")
        origin = headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            return _refusal(403, f"Origin {origin[:100]!r} is not allowed")
        return None

    def _cors(self, request: web.Request, response: web.StreamResponse) -> None:
        """CORS headers only for an origin allowed with --rpc-allow-origin."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self.own_origins():
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"

    # -- JSON-RPC --------------------------------------------------------------------------------

    async def _preflight(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        if request.headers.get("Origin") is None or not self.allowed_origins:
            return _refusal(403, "cross-origin requests are not allowed")
        response = web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
            },
        )
        self._cors(request, response)
        return response

    async def _post(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        length = request.content_length
        limit = self.max_request_bytes
        if length is not None and length > limit:
            return _refusal(413, f"request larger than the limit of {limit} bytes")
        try:
            body = await request.read()  # at most client_max_size, the same limit
        except web.HTTPRequestEntityTooLarge:
            return _refusal(413, f"request larger than the limit of {limit} bytes")
        answer = await self.dispatcher.handle(body)
        response = web.Response(text=answer, content_type="application/json")
        self._cors(request, response)
        return response

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        socket = web.WebSocketResponse(max_msg_size=self.max_request_bytes, heartbeat=30)
        if not socket.can_prepare(request).ok:
            return _refusal(400, "GET /jsonrpc is for WebSocket (JSON-RPC over GET is not served)")
        await socket.prepare(request)
        self.sockets.add(socket)
        try:
            async for message in socket:
                if message.type is WSMsgType.TEXT:
                    await socket.send_str(await self.dispatcher.handle(message.data))
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            self.sockets.discard(socket)
        return socket

    def notify(self, method: str, gid: str) -> None:
        """An aria2 notification to every WebSocket client (sent without waiting)."""
        if not self.sockets:
            return
        text = json.dumps({"jsonrpc": "2.0", "method": method, "params": [{"gid": gid}]})
        for socket in list(self.sockets):
            if not socket.closed:
                task = asyncio.ensure_future(_send(socket, text))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def close_sockets(self) -> None:
        for socket in list(self.sockets):
            await socket.close()

    # -- the page --------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return self._refused(request) or self._file("index.html")

    async def _page_file(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        name = request.match_info["name"]
        if name not in _PAGE_FILES:
            raise web.HTTPNotFound()
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        data = resources.files("segdl.daemon").joinpath("page", name).read_bytes()
        return web.Response(body=data, content_type=_PAGE_FILES[name], headers=_PAGE_HEADERS)


async def _send(socket: web.WebSocketResponse, text: str) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):  # the client went away
        await socket.send_str(text)
