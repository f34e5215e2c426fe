"""The daemon-wide options (aria2's names): the defaults every item's own options lie over,
how many downloads run at once, and the one rate limit they all share, changed live."""

from __future__ import annotations

import json

from segdl.core.options import DownloadOptions, with_overrides
from segdl.daemon import ariaopts
from segdl.daemon.ariaopts import Options
from segdl.daemon.errors import RpcError
from segdl.run.ratelimit import TokenBucket


class Settings:
    """Only ever touched from the event loop's thread."""

    def __init__(self, options: Options, *, max_connections_per_host: int) -> None:
        self.options = options
        self.jobs = ariaopts.concurrency(options)
        limit = ariaopts.overall_limit(options)
        self.bucket: TokenBucket | None = TokenBucket(limit) if limit else None
        # Every run shares the daemon's pool, whose cap holds across all of them, and which
        # keeps connections warm (so no run preconnects its own).
        self._base = with_overrides(
            None, {"max_connections_per_host": max_connections_per_host, "preconnect": False}
        )

    def restore(self, saved: str) -> None:
        """The options :meth:`saved` gave before a restart."""
        self.options.update(json.loads(saved))
        self.jobs = ariaopts.concurrency(self.options)
        limit = ariaopts.overall_limit(self.options)
        self.bucket = TokenBucket(limit) if limit else None

    def saved(self) -> str:
        """What the store keeps (not ``dir``: the root is the command line's)."""
        return json.dumps({k: v for k, v in self.options.items() if k != "dir"}, sort_keys=True)

    def run_options(self, item: Options) -> DownloadOptions:
        """The options of an item's run (RpcError for one segdl cannot take)."""
        return ariaopts.download_options(item, self.options, self._base)

    def change(self, options: Options) -> bool:
        """changeGlobalOption, checked whole before anything changes. True when the running
        downloads must start again to take the new limit (they run without one)."""
        merged = {**self.options, **options}
        jobs = ariaopts.concurrency(merged)
        limit = ariaopts.overall_limit(merged)
        ariaopts.download_options({}, merged)
        if "dir" in options:
            raise RpcError("dir is the daemon's download root; restart it with --dir")
        self.options.update(options)
        self.jobs = jobs
        if limit and self.bucket is not None:
            self.bucket.set_rate(limit)
        elif limit:
            self.bucket = TokenBucket(limit)
            return True
        elif self.bucket is not None:  # no limit: new downloads go without (and splice)
            self.bucket.set_rate(float(1 << 50))
            self.bucket = None
        return False
