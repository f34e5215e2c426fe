"""Where the connections of one attempt ask for bytes: the URL and its mirrors.

The URL's redirect target may be a signed URL that expires mid-download; :class:`Sources`
then asks the original URL once for a fresh target (the first connection to see the expiry
asks, the others wait for its answer). A mirror that fails for good or answers with a
different file is dropped, and the others go on. :func:`usable_mirrors` checks each mirror
before the transfer begins: the same size and validator as the URL, or it is not used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from segdl.core.answers import Mode, Witness, changed
from segdl.core.errors import HTTPStatusError, RemoteChanged, SegdlError, shown
from segdl.core.models import Resource
from segdl.core.options import DownloadOptions
from segdl.core.progress import NoticeKind
from segdl.net.auth import Identity
from segdl.net.interfaces import Transport
from segdl.run.probe import check_url, first_contact

Notify = Callable[[NoticeKind, str], None]


class Sources:
    """The URL as currently resolved, and the mirrors still alive. Thread-safe: decisions
    are taken under one lock, and the one round trip (a renewal) is made outside it."""

    def __init__(
        self,
        main: Resource,
        mirrors: Sequence[Resource],
        transport: Transport,
        options: DownloadOptions,
        identity: Identity,
        notify: Notify,
        wait_for: Callable[[threading.Event], None],
    ) -> None:
        """``main``: the URL as the first contact saw it; ``notify`` reports a dropped
        mirror or a renewal; ``wait_for`` waits for another connection's renewal."""
        self.url = main.url
        self._main = main
        self._mirrors = list(mirrors)
        self._transport = transport
        self._options = options
        self._identity = identity
        self._notify = notify
        self._wait_for = wait_for
        self._lock = threading.Lock()
        self._dead: set[str] = set()
        self._renewals: dict[str, threading.Event] = {}  # target -> its renewal is done

    @property
    def main(self) -> Resource:
        with self._lock:
            return self._main

    def for_worker(self, index: int) -> Resource:
        """Where worker ``index`` asks for bytes: the URL or one of its mirrors, in turn.
        Work stealing then gives faster mirrors more of the file by itself."""
        with self._lock:
            alive = [self._main] + [m for m in self._mirrors if m.url not in self._dead]
        return alive[index % len(alive)]

    def is_mirror(self, resource: Resource) -> bool:
        return resource.url != self.url

    def drop(self, mirror: Resource, error: BaseException) -> None:
        with self._lock:
            if mirror.url in self._dead:
                return
            self._dead.add(mirror.url)
        self._notify(NoticeKind.MIRROR_DROPPED, f"mirror {shown(mirror.url)} dropped: {error}")

    def renewable(self, used: Resource) -> bool:
        """Bytes from a redirect target that another connection renewed meanwhile, or is
        renewing, or that has not been renewed yet: once per target."""
        if used.final_url == used.url or used.size_bytes is None:
            return False
        with self._lock:
            if self._main.final_url != used.final_url:
                return True
            renewing = self._renewals.get(used.final_url)
            return renewing is None or not renewing.is_set()

    def renew(self, used: Resource, error: HTTPStatusError) -> None:
        """An expired signed URL: ask the original URL again for a fresh target. The first
        connection to see it asks, outside the lock every worker takes (it is a round trip);
        the others wait for its answer. A changed file raises RemoteChanged."""
        with self._lock:
            if self._main.final_url != used.final_url:
                return  # another connection renewed it meanwhile
            renewing = self._renewals.get(used.final_url)
            asking = renewing is None
            if renewing is None:
                renewing = self._renewals[used.final_url] = threading.Event()
        if not asking:
            self._wait_for(renewing)
            return
        try:
            fresh = self._fresh_target(used)
            with self._lock:
                self._main = replace(used, final_url=fresh.final_url)
        finally:
            renewing.set()
        self._notify(NoticeKind.URL_RENEWED, f"{error.status} from the redirect target: renewed")

    def _fresh_target(self, used: Resource) -> Resource:
        assert used.size_bytes is not None
        contact = first_contact(
            self._transport,
            self.url,
            self._options,
            start=max(0, used.size_bytes - 1),
            identity=self._identity,
        )
        if contact.response is not None:
            contact.response.close()
        check_same_file(used, contact.resource)
        return contact.resource


def check_same_file(known: Resource, fresh: Resource) -> None:
    """RemoteChanged unless the same server's ``fresh`` answer is still ``known``'s file."""
    why = changed(
        known.size_bytes, known.validator, fresh.size_bytes, fresh.validator, Witness.SAME_SERVER
    )
    if why is not None:
        raise RemoteChanged(fresh.final_url, why)


def usable_mirrors(
    urls: Sequence[str],
    resource: Resource,
    transport: Transport,
    options: DownloadOptions,
    identity: Identity,
    notify: Notify,
) -> list[Resource]:
    """Ask each mirror for its last byte: same size and validator, or it is dropped."""
    usable = []
    size = resource.size_bytes or 0
    for url in urls:
        try:
            check_url(url)
            contact = first_contact(
                transport, url, options, start=max(0, size - 1), identity=identity
            )
        except (SegdlError, OSError) as exc:
            notify(NoticeKind.MIRROR_DROPPED, f"mirror {shown(url)} dropped: {exc}")
            continue
        if contact.response is not None:
            contact.response.close()
        why = None if contact.mode is Mode.RANGED else "it does not serve byte ranges"
        why = why or changed(
            resource.size_bytes,
            resource.validator,
            contact.resource.size_bytes,
            contact.resource.validator,
            Witness.MIRROR,
        )
        if why is not None:
            notify(NoticeKind.MIRROR_DROPPED, f"mirror {shown(url)} dropped: {why}")
            continue
        usable.append(contact.resource)
    return usable
