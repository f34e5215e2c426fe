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
from segdl.daemon.model import Item
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


def build(manager: Manager, shutdown: Callable[[bool], None]) -> dict[str, Callable[..., Any]]:
    """The method table: aria2's name -> function."""
    session_id = secrets.token_hex(20)
    items = manager.items

    def add_uri(uris: object, options: object = None, position: object = None) -> str:
        if not isinstance(uris, list):
            raise RpcError("uris must be an array of strings", INVALID_PARAMS)
        place = None if position is None else _int(position, "position")
        return manager.add(uris, ariaopts.normalized(options), place)

    rendered = manager.rendered

    def full_status(item: Item) -> Any:
        """Every key; from the cache when the item cannot have changed."""
        if not manager.cacheable(item):
            return render.status(item)
        cached = rendered.get(item.gid)
        if cached is None:
            cached = rendered[item.gid] = Raw(encode(render.status(item)))
        return cached

    def tell(gids: list[str], keys: object) -> list[Any]:
        wanted = _keys(keys)
        if not wanted:
            return [full_status(items[g]) for g in gids]
        return [render.status(items[g], wanted) for g in gids]

    def tell_status(gid: object, keys: object = None) -> dict[str, Any]:
        return render.status(manager.find(gid), _keys(keys))

    def ok(action: Callable[[], None]) -> Callable[[], str]:
        def run() -> str:
            action()
            return "OK"

        return run

    def change_option(gid: object, options: object) -> str:
        manager.change_option(manager.find(gid).gid, ariaopts.normalized(options))
        return "OK"

    def change_global(options: object) -> str:
        manager.change_global(ariaopts.normalized(options))
        return "OK"

    def get_option(gid: object) -> dict[str, Any]:
        item: Item = manager.find(gid)
        merged = {**manager.options, "dir": item.directory, **item.options}
        # aria2 shows neither the global-only options nor "pause" for a download.
        hidden = {*ariaopts.GLOBAL_ONLY, "pause"}
        return {key: value for key, value in merged.items() if key not in hidden}

    def remove_result(gid: object) -> str:
        manager.remove_result(manager.find(gid).gid)
        return "OK"

    def change_uri(
        gid: object, index: object, delete: object, add: object, position: object = None
    ) -> list[int]:
        item = manager.find(gid)
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
            if not isinstance(uri, str) or uri.split(":", 1)[0] not in ("http", "https"):
                raise RpcError("addUris: http:// and https:// URIs only")
            item.uris.insert(place + offset, uri)
        manager.changed(item)
        return [deleted, len(add)]

    def stat() -> dict[str, str]:
        return {
            "downloadSpeed": str(manager.global_speed()),
            "uploadSpeed": "0",
            "numActive": str(len(manager.active)),
            "numWaiting": str(len(manager.queue)),
            "numStopped": str(len(manager.stopped)),
            "numStoppedTotal": str(len(manager.stopped)),
        }

    def finish(force: bool) -> Callable[[], str]:
        def run() -> str:
            shutdown(force)
            return "OK"

        return run

    table: dict[str, Callable[..., Any]] = {
        "aria2.addUri": add_uri,
        "aria2.remove": lambda gid: manager.remove(manager.find(gid).gid),
        "aria2.forceRemove": lambda gid: manager.remove(manager.find(gid).gid),
        "aria2.pause": lambda gid: manager.pause(manager.find(gid).gid),
        "aria2.forcePause": lambda gid: manager.pause(manager.find(gid).gid),
        "aria2.pauseAll": ok(manager.pause_all),
        "aria2.forcePauseAll": ok(manager.pause_all),
        "aria2.unpause": lambda gid: manager.unpause(manager.find(gid).gid),
        "aria2.unpauseAll": ok(manager.unpause_all),
        "aria2.tellStatus": tell_status,
        "aria2.getUris": lambda gid: render.uris(manager.find(gid)),
        "aria2.getFiles": lambda gid: render.files(manager.find(gid)),
        "aria2.getServers": lambda gid: render.servers(manager.find(gid)),
        "aria2.tellActive": lambda keys=None: tell(manager.active, keys),
        "aria2.tellWaiting": lambda o, n, keys=None: tell(_window(manager.queue, o, n), keys),
        "aria2.tellStopped": lambda o, n, keys=None: tell(_window(manager.stopped, o, n), keys),
        "aria2.changePosition": lambda gid, pos, how: manager.change_position(
            manager.find(gid).gid, _int(pos, "pos"), how
        ),
        "aria2.changeUri": change_uri,
        "aria2.getOption": get_option,
        "aria2.changeOption": change_option,
        "aria2.getGlobalOption": lambda: dict(manager.options),
        "aria2.changeGlobalOption": change_global,
        "aria2.getGlobalStat": stat,
        "aria2.purgeDownloadResult": ok(manager.purge),
        "aria2.removeDownloadResult": remove_result,
        "aria2.getVersion": lambda: {
            "version": __version__,
            "enabledFeatures": ["HTTPS", "Message Digest"],
        },
        "aria2.getSessionInfo": lambda: {"sessionId": session_id},
        "aria2.shutdown": finish(False),
        "aria2.forceShutdown": finish(True),
        "aria2.saveSession": lambda: "OK",  # every change is already committed
        "segdl.retry": lambda gid: manager.retry(manager.find(gid).gid),
        "segdl.tellDetail": lambda gid: render.detail(manager.find(gid)),
    }
    table["system.listMethods"] = lambda: [*table, "system.multicall"]
    table["system.listNotifications"] = lambda: list(NOTIFICATIONS)
    return table
