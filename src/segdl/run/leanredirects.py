"""Redirects on the lean path: a small file whose answer is a redirect is asked for again
where it points, on the same loop, as the full path follows one
(:func:`segdl.run.probe.first_contact`): ``Location`` resolved against the URL asked, never
with user information from it; http and https only, https to http only with
``--allow-insecure-redirect`` (:func:`segdl.core.answers.check_redirect`); at most
``--max-redirects`` hops. The file keeps the name the full path gives it (its first URL's,
or the final answer's ``Content-Disposition``). A redirect not followed here (too many, to a
proxy, to a URL the lean path does not take) sends the file to the full path, which asks
again from its first URL and follows or refuses as always, saying why.

Many servers put their files behind a redirect (a download page's URL to a storage
bucket, ``http`` to ``https``, a CDN's mirror); followed here, a list of them costs a
round trip more per file, not the full path's thread, lock and ``.part`` each.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin

from segdl.core.answers import check_redirect
from segdl.core.errors import SegdlError
from segdl.net.auth import split_userinfo
from segdl.net.leanconn import LeanRequest

if TYPE_CHECKING:
    from segdl.core.options import DownloadOptions
    from segdl.net.leanconn import Answer
    from segdl.run.leanplan import ProxyChoices, Targets


class Followed(Protocol):
    """A file as the redirects see it."""

    url: str
    """Where it was last asked for."""
    hops: int
    named: Path | None
    """Its name from an answer's head (the redirect's, for a display): the final answer's
    head names it again."""


class Redirects:
    """The redirects of one batch's lean passes; :attr:`waiting` holds the requests they
    made, for the loop to take first."""

    def __init__(self, targets: Targets, proxies: ProxyChoices) -> None:
        self._targets = targets
        self._proxies = proxies
        self.waiting: deque[LeanRequest] = deque()

    def follow(self, item: Followed, options: DownloadOptions, answer: Answer) -> str | None:
        """Queue the request where ``answer`` (a redirect to ``item``'s request) points;
        None once queued, else why the full path is to follow it."""
        locations = answer.header_values("location")
        if len(locations) != 1:
            return "a redirect without one Location"
        target = split_userinfo(urljoin(item.url, locations[0].strip()))[0]
        try:
            check_redirect(item.url, target, allow_insecure=options.allow_insecure_redirect)
        except SegdlError as exc:
            return str(exc)
        if item.hops >= options.max_redirects or target == item.url:
            return "too many redirects"
        planned = self._targets.request(options, target, (target,))
        if isinstance(planned, str):
            return planned
        why = self._proxies.why(target, options)
        if why is not None:
            return why
        where, wire = planned
        item.url, item.hops, item.named = target, item.hops + 1, None
        self.waiting.append(LeanRequest(where.host, where.port, wire, item, tls=where.tls))
        return None
