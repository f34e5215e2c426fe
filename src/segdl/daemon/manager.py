"""The queue and the scheduler, on the event loop's thread.

Every method here is synchronous and fast (no I/O): it changes items in memory, records what
changed, and starts or stops :class:`~segdl.daemon.runner.Runner` threads. :meth:`commit` (a
coroutine) writes what changed in one transaction on the database thread and only then sends
the notifications; the RPC layer awaits it before it answers, so every acknowledged change is
durable. Downloads share one transport (the per-host connection cap holds across all of them,
aria2 #577) and one rate limit, changeable live.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segdl.daemon import ariaopts
from segdl.daemon.ariaopts import Options
from segdl.daemon.confine import confined_place, run_target
from segdl.daemon.errors import RpcError
from segdl.daemon.journal import Journal
from segdl.daemon.lists import Lists
from segdl.daemon.model import Item, Status, new_gid, web_uri
from segdl.daemon.runner import Ended, Runner, error_code
from segdl.daemon.settings import Settings
from segdl.daemon.store import Store
from segdl.net.transport import Urllib3Transport

log = logging.getLogger(__name__)

Notify = Callable[[str, str], None]
"""``notify(method, gid)``: an aria2 notification such as ``aria2.onDownloadStart``."""

# How often the bytes of running downloads are written as a hint for after a restart (the
# resume itself trusts only segdl's own state file next to the .part).
_HINT_EVERY_S = 3.0


class Manager:
    """All items of one daemon; only ever touched from the event loop's thread."""

    def __init__(
        self,
        store: Store,
        root: Path,
        global_options: Options,
        *,
        max_connections_per_host: int = 16,
        notify: Notify | None = None,
    ) -> None:
        self.store = store
        self.root = root.resolve()
        self.settings = Settings(global_options, max_connections_per_host=max_connections_per_host)
        self.options = global_options  # the settings' own, read by the RPC methods
        self.notify = notify or (lambda method, gid: None)
        self.lists = Lists()
        # The lists' own objects, read by the RPC methods.
        self.items, self.queue = self.lists.items, self.lists.queue
        self.active, self.stopped = self.lists.active, self.lists.stopped
        self.find = self.lists.find
        self._runners: dict[str, Runner] = {}  # threads alive, winding down ones too
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db = cf.ThreadPoolExecutor(1, thread_name_prefix="segdl-daemon-db")
        self._journal = Journal()
        self._last_hint_s = 0.0
        self._schedule_wanted = False
        self._committing: set[asyncio.Future[None]] = set()
        self.rendered: dict[str, object] = {}
        """tellStatus answers of items that do not change while unchanged (queued or stopped
        ones with no thread left), kept until :meth:`changed`: a front-end polls them."""
        self._transport = Urllib3Transport(
            max_connections_per_host=max_connections_per_host, block=True
        )

    # -- start-up and shut-down -------------------------------------------------------------

    def load(self) -> None:
        """Take the queue from the store (see :func:`segdl.daemon.order.restored`)."""
        items, notes, settings = self.store.load()
        if "global" in settings:
            self.settings.restore(settings["global"])
        for item in self.lists.restore(items):
            self._journal.changed(item)
        for gid, at_s, kind, message in notes:
            if gid in self.items:
                self.items[gid].notices.append((at_s, kind, message))

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def stop_all(self) -> list[Runner]:
        """For shutdown: every run told to stop (their state saved); items stay active in the
        store, so the next start continues them."""
        runners = list(self._runners.values())
        for runner in runners:
            runner.stop()
        return runners

    async def close(self, runners: list[Runner], wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + wait_s
        for runner in runners:
            left = max(0.0, deadline - time.monotonic())
            await loop.run_in_executor(None, runner.join, left)
        self._mark_hints(force=True)
        await self.commit()
        self._db.shutdown(wait=True)
        self._transport.close()

    # -- durability ----------------------------------------------------------------------------

    async def commit(self) -> None:
        """Start what may start, write every change so far (one transaction), then send the
        notifications."""
        if self._schedule_wanted:  # once per request, not once per call of a multicall
            self._schedule_wanted = False
            self.schedule()
        batch, notifications = self._journal.take()
        if batch:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._db, self.store.write, batch)
        for method, gid in notifications:
            self.notify(method, gid)

    def changed(self, item: Item) -> None:
        self._journal.changed(item)
        self.rendered.pop(item.gid, None)

    def _commit_soon(self) -> None:
        """A change made outside any request (a download ended): committed at once."""
        task = asyncio.ensure_future(self.commit())
        self._committing.add(task)
        task.add_done_callback(self._committing.discard)

    def _event(self, item: Item, method: str | None, kind: str, message: str) -> None:
        now_s = time.time()
        item.notices.append((now_s, kind, message))
        self._journal.note(item.gid, now_s, kind, message)
        if method is not None:
            self._journal.notify(method, item.gid)

    def _mark_hints(self, force: bool = False) -> None:
        now_s = time.monotonic()
        if force or now_s - self._last_hint_s >= _HINT_EVERY_S:
            self._last_hint_s = now_s
            for gid in self.active:
                self.changed(self.items[gid])

    async def tick(self) -> None:
        """Once a second: the bytes hint of running downloads, any pending changes."""
        self._mark_hints()
        await self.commit()

    # -- lookups ---------------------------------------------------------------------------------

    def cacheable(self, item: Item) -> bool:
        """Its tellStatus answer stays the same until :meth:`changed` is called for it."""
        return item.status is not Status.ACTIVE and item.gid not in self._runners

    # -- adding and the queue --------------------------------------------------------------------

    def add(self, uris: list[str], options: Options, position: int | None = None) -> str:
        """A new download (validated now, so a bad option is refused before it is queued)."""
        if not uris or not all(isinstance(u, str) and u for u in uris):
            raise RpcError("uris must be a non-empty array of strings")
        for uri in uris:
            if not web_uri(uri):
                raise RpcError(f"only http:// and https:// URIs are supported, not {uri[:60]!r}")
        directory = confined_place(self.root, options, self.root)
        self.settings.run_options(options)  # refuses what it cannot take
        gid = new_gid(self.items)
        item = Item(
            gid=gid,
            uris=list(uris),
            options=dict(options),
            status=Status.PAUSED if options.get("pause") == "true" else Status.WAITING,
            position=0.0,
            directory=str(directory),
            added_s=time.time(),
        )
        self._changed(self.lists.add(item, len(self.queue) if position is None else position))
        self.changed(item)
        self._schedule_wanted = True
        return gid

    def _changed(self, items: list[Item]) -> None:
        for item in items:
            self.changed(item)

    def change_position(self, gid: str, pos: int, how: str) -> int:
        target, renumbered = self.lists.move(self.find(gid), pos, how)
        self._changed(renumbered)
        return target

    # -- the scheduler -------------------------------------------------------------------------

    def schedule(self) -> None:
        """Start waiting items, first in the queue first, while fewer than -j are active."""
        while len(self.active) < self.settings.jobs:
            item = self.lists.next_waiting(self._runners)
            if item is None:
                return
            self._start(item)

    def _start(self, item: Item) -> None:
        self.lists.activate(item)
        item.error_code, item.error_message = 0, ""
        self.changed(item)
        try:
            target = run_target(self.root, item)
            options = self.settings.run_options(item.options)
        except RpcError as exc:
            self._stop(item, Status.ERROR, 1, str(exc))
            return
        runner = Runner(
            item.gid,
            item.uris,
            target,
            options,
            item.live,
            self._threadsafe(self._noticed),
            self._threadsafe(self._started),
            self._threadsafe(self._ended),
            transport=self._transport,
            rate_limiter=self.settings.bucket,
        )
        self._runners[item.gid] = runner
        self._event(item, "aria2.onDownloadStart", "started", "download started")
        runner.start()

    def _threadsafe(self, function: Callable[..., None]) -> Callable[..., None]:
        loop = self._loop
        assert loop is not None, "attach() the event loop first"

        def call(*args: Any) -> None:
            loop.call_soon_threadsafe(function, *args)

        return call

    def _noticed(self, gid: str, kind: str, message: str) -> None:
        item = self.items.get(gid)
        if item is not None:
            self._event(item, None, kind, message)

    def _started(self, gid: str, path: Path) -> None:
        item = self.items.get(gid)
        if item is not None and item.path != str(path):
            item.path = str(path)  # a restart resumes this very file
            self.changed(item)

    def _ended(self, gid: str, runner: Runner, ended: Ended) -> None:
        if self._runners.get(gid) is runner:
            del self._runners[gid]
        item = self.items.get(gid)
        if item is None:  # removed and its result purged meanwhile
            self.schedule()
            self._commit_soon()
            return
        if item.status is Status.ACTIVE:
            if runner.restart and ended.cancelled:
                self.active.remove(gid)
                item.status = Status.WAITING
                self._changed(self.lists.insert(item, 0))
                self.changed(item)
            elif ended.result is not None:
                item.path = str(ended.result.path)
                item.live.done_bytes = item.live.size_bytes = ended.result.size_bytes
                self._stop(item, Status.COMPLETE, 0, "")
            elif ended.cancelled:  # only when the daemon itself stops: it stays active
                pass
            else:
                error = ended.error or RuntimeError("unknown failure")
                self._stop(item, Status.ERROR, error_code(error), str(error))
        self.schedule()
        self._commit_soon()

    def _stop(self, item: Item, status: Status, code: int, message: str) -> None:
        """An item leaves the active list or the queue for the stopped list."""
        self.lists.stop(item, status)
        item.error_code, item.error_message = code, message
        self.changed(item)
        method = {
            Status.COMPLETE: "aria2.onDownloadComplete",
            Status.ERROR: "aria2.onDownloadError",
            Status.REMOVED: "aria2.onDownloadStop",
        }[status]
        self._event(item, method, status.value, message or status.value)

    # -- pause, resume, remove ------------------------------------------------------------------

    def pause(self, gid: str) -> str:
        item = self.find(gid)
        if item.status is Status.ACTIVE:
            runner = self._runners.get(item.gid)
            if runner is not None:
                runner.stop()  # state saved; unpause resumes from the durable bytes
            self.active.remove(item.gid)
            item.status = Status.PAUSED
            self._changed(self.lists.insert(item, 0))  # aria2: to the front of the waiting queue
        elif item.status is Status.WAITING:
            item.status = Status.PAUSED
        else:
            raise RpcError(f"GID {item.gid} cannot be paused now ({item.status.value})")
        self.changed(item)
        self._event(item, "aria2.onDownloadPause", "paused", "paused")
        self._schedule_wanted = True
        return item.gid

    def pause_all(self) -> None:
        for gid in [*self.active, *self.queue]:
            if self.items[gid].status is not Status.PAUSED:
                self.pause(gid)

    def unpause(self, gid: str) -> str:
        item = self.find(gid)
        if item.status is not Status.PAUSED:
            raise RpcError(f"GID {item.gid} is not paused")
        item.status = Status.WAITING
        self.changed(item)
        self._schedule_wanted = True
        return item.gid

    def unpause_all(self) -> None:
        for gid in list(self.queue):
            if self.items[gid].status is Status.PAUSED:
                self.unpause(gid)

    def remove(self, gid: str) -> str:
        item = self.find(gid)
        if item.status.stopped:
            raise RpcError(f"GID {item.gid} is already stopped ({item.status.value})")
        runner = self._runners.get(item.gid)
        if runner is not None:
            runner.stop()  # the partial data stays, resumable by a retry
        self._stop(item, Status.REMOVED, 0, "")
        self._schedule_wanted = True
        return item.gid

    def retry(self, gid: str) -> str:
        """segdl.retry: a stopped item goes back to the end of the queue (same GID, same
        file: what it already has is resumed)."""
        item = self.find(gid)
        if item.status not in (Status.ERROR, Status.REMOVED):
            raise RpcError(f"GID {item.gid} has not failed or been removed")
        self.stopped.remove(item.gid)
        item.status = Status.WAITING
        item.error_code, item.error_message = 0, ""
        self._changed(self.lists.insert(item, len(self.queue)))
        self.changed(item)
        self._event(item, None, "retried", "queued again")
        self._schedule_wanted = True
        return item.gid

    def remove_result(self, gid: str) -> None:
        item = self.find(gid)
        if not item.status.stopped:
            raise RpcError(f"GID {item.gid} is not stopped")
        self._forget(item)

    def purge(self) -> None:
        for gid in list(self.stopped):
            self._forget(self.items[gid])

    def _forget(self, item: Item) -> None:
        self.lists.forget(item)
        self.rendered.pop(item.gid, None)
        self._journal.deleted(item.gid)

    # -- options ----------------------------------------------------------------------------------

    def change_option(self, gid: str, options: Options) -> None:
        item = self.find(gid)
        ariaopts.check_changeable(options, started=item.path is not None or item.status.stopped)
        merged = {**item.options, **options}
        self.settings.run_options(merged)
        item.directory = str(confined_place(self.root, options, Path(item.directory)))
        item.options = merged
        self.changed(item)
        self._restart(item.gid)

    def _restart(self, gid: str) -> None:
        """A running download picks up new options: stopped (state saved), started again."""
        runner = self._runners.get(gid)
        if runner is not None and self.items[gid].status is Status.ACTIVE:
            runner.restart = True
            runner.stop()

    def change_global(self, options: Options) -> None:
        if self.settings.change(options):  # a limit where there was none
            for gid in list(self.active):
                self._restart(gid)
        self._journal.setting("global", self.settings.saved())
        self._schedule_wanted = True

    def global_speed(self) -> int:
        return int(sum(self.items[g].live.rate_bytes_per_s for g in self.active))
