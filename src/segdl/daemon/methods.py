"""aria2's RPC methods (and two of segdl's own), over a :class:`~segdl.daemon.manager.Manager`.

Each is a plain function of its positional parameters, as aria2 documents them (aria2c.rst,
"RPC interface"); the token is already taken off by :mod:`segdl.daemon.rpc`. Answers are
built by :mod:`segdl.daemon.render`: numbers as strings, as aria2 sends them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from segdl._version import __version__
from segdl.daemon import ariaopts, render
from segdl.daemon.errors import INVALID_PARAMS, RpcError
from segdl.daemon.manager import Manager
from segdl.daemon.model import Item, web_uri
from segdl.daemon.rpc import Raw, encode

NOTIFICATIONS = [
    "aria2.onDownloadStart",
    "aria2.onDownloadPause",
    "aria2.onDownloadStop",
    "aria2.onDownloadComplete",
    "aria2.onDownloadError",
    "aria2.onBtDownloadComplete",
]


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
            return int(value)
        raise RpcError(f"{name} must be an integer", INVALID_PARAMS)
    return value


def _keys(keys: object) -> list[str] | None:
    if keys is None:
        return None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise RpcError("keys must be an array of strings", INVALID_PARAMS)
    return keys


def _window(gids: list[str], offset: object, num: object) -> list[str]:
    """aria2's [offset, offset+num); a negative offset counts from the end, backwards."""
    start, count = _int(offset, "offset"), _int(num, "num")
    if count <= 0:
        return []
    if start >= 0:
        return gids[start : start + count]
    first = len(gids) + start
    if first < 0:
        return []
    return [gids[i] for i in range(first, max(-1, first - count), -1)]


class _Methods:
    """The methods that are more than one call of the manager."""

    def __init__(self, manager: Manager, shutdown: Callable[[bool], None]) -> None:
        self.manager = manager
        self.shutdown = shutdown
        self.session_id = secrets.token_hex(20)

    def add_uri(self, uris: object, options: object = None, position: object = None) -> str:
        if not isinstance(uris, list):
            raise RpcError("uris must be an array of strings", INVALID_PARAMS)
        place = None if position is None else _int(position, "position")
        return self.manager.add(uris, ariaopts.normalized(options), place)

    def full_status(self, item: Item) -> Any:
        """Every key; from the cache when the item cannot have changed."""
        manager = self.manager
        if not manager.cacheable(item):
            return render.status(item)
        cached = manager.rendered.get(item.gid)
        if cached is None:
            cached = manager.rendered[item.gid] = Raw(encode(render.status(item)))
        return cached

    def tell(self, gids: list[str], keys: object) -> list[Any]:
        wanted = _keys(keys)
        items = self.manager.items
        if not wanted:
            return [self.full_status(items[g]) for g in gids]
        return [render.status(items[g], wanted) for g in gids]

    def tell_status(self, gid: object, keys: object = None) -> dict[str, Any]:
        return render.status(self.manager.find(gid), _keys(keys))

    def change_option(self, gid: object, options: object) -> str:
        self.manager.change_option(self.manager.find(gid).gid, ariaopts.normalized(options))
        return "OK"

    def change_global(self, options: object) -> str:
        self.manager.change_global(ariaopts.normalized(options))
        return "OK"

    def get_option(self, gid: object) -> dict[str, Any]:
        manager = self.manager
        item: Item = manager.find(gid)
        merged = {**manager.options, "dir": item.directory, **item.options}
        # aria2 shows neither the global-only options nor "pause" for a download.
        hidden = {*ariaopts.GLOBAL_ONLY, "pause"}
        return {key: value for key, value in merged.items() if key not in hidden}

    def remove_result(self, gid: object) -> str:
        self.manager.remove_result(self.manager.find(gid).gid)
        return "OK"

    def change_uri(
        self, gid: object, index: object, delete: object, add: object, position: object = None
    ) -> list[int]:
        item = self.manager.find(gid)
        if _int(index, "fileIndex") != 1:
            raise RpcError("fileIndex: a download has one file, index 1")
        if not all(isinstance(x, list) for x in (delete, add)):
            raise RpcError("delUris and addUris must be arrays", INVALID_PARAMS)
        assert isinstance(delete, list) and isinstance(add, list)
        deleted = 0
        for uri in delete:
            if uri in item.uris:
                item.uris.remove(uri)
                deleted += 1
        place = len(item.uris) if position is None else _int(position, "position")
        for offset, uri in enumerate(add):
            if not web_uri(uri):
                raise RpcError("addUris: http:// and https:// URIs only")
            item.uris.insert(place + offset, uri)
        self.manager.changed(item)
        return [deleted, len(add)]

    def stat(self) -> dict[str, str]:
        manager = self.manager
        return {
            "downloadSpeed": str(manager.global_speed()),
            "uploadSpeed": "0",
            "numActive": str(len(manager.active)),
            "numWaiting": str(len(manager.queue)),
            "numStopped": str(len(manager.stopped)),
            "numStoppedTotal": str(len(manager.stopped)),
        }

    def finish(self, force: bool) -> Callable[[], str]:
        def run() -> str:
            self.shutdown(force)
            return "OK"

        return run


def _ok(action: Callable[[], None]) -> Callable[[], str]:
    def run() -> str:
        action()
        return "OK"

    return run


def build(manager: Manager, shutdown: Callable[[bool], None]) -> dict[str, Callable[..., Any]]:
    """The method table: aria2's name -> function."""
    m = _Methods(manager, shutdown)
    find = manager.find
    table: dict[str, Callable[..., Any]] = {
        "aria2.addUri": m.add_uri,
        "aria2.remove": lambda gid: manager.remove(find(gid).gid),
        "aria2.forceRemove": lambda gid: manager.remove(find(gid).gid),
        "aria2.pause": lambda gid: manager.pause(find(gid).gid),
        "aria2.forcePause": lambda gid: manager.pause(find(gid).gid),
        "aria2.pauseAll": _ok(manager.pause_all),
        "aria2.forcePauseAll": _ok(manager.pause_all),
        "aria2.unpause": lambda gid: manager.unpause(find(gid).gid),
        "aria2.unpauseAll": _ok(manager.unpause_all),
        "aria2.tellStatus": m.tell_status,
        "aria2.getUris": lambda gid: render.uris(find(gid)),
        "aria2.getFiles": lambda gid: render.files(find(gid)),
        "aria2.getServers": lambda gid: render.servers(find(gid)),
        "aria2.tellActive": lambda keys=None: m.tell(manager.active, keys),
        "aria2.tellWaiting": lambda o, n, keys=None: m.tell(_window(manager.queue, o, n), keys),
        "aria2.tellStopped": lambda o, n, keys=None: m.tell(_window(manager.stopped, o, n), keys),
        "aria2.changePosition": lambda gid, pos, how: manager.change_position(
            find(gid).gid, _int(pos, "pos"), how
        ),
        "aria2.changeUri": m.change_uri,
        "aria2.getOption": m.get_option,
        "aria2.changeOption": m.change_option,
        "aria2.getGlobalOption": lambda: dict(manager.options),
        "aria2.changeGlobalOption": m.change_global,
        "aria2.getGlobalStat": m.stat,
        "aria2.purgeDownloadResult": _ok(manager.purge),
        "aria2.removeDownloadResult": m.remove_result,
        "aria2.getVersion": lambda: {
            "version": __version__,
            "enabledFeatures": ["HTTPS", "Message Digest"],
        },
        "aria2.getSessionInfo": lambda: {"sessionId": m.session_id},
        "aria2.shutdown": m.finish(False),
        "aria2.forceShutdown": m.finish(True),
        "aria2.saveSession": lambda: "OK",  # every change is already committed
        "segdl.retry": lambda gid: manager.retry(find(gid).gid),
        "segdl.tellDetail": lambda gid: render.detail(find(gid)),
    }
    table["system.listMethods"] = lambda: [*table, "system.multicall"]
    table["system.listNotifications"] = lambda: list(NOTIFICATIONS)
    return table
