"""An fsspec filesystem that downloads with segdl, under protocols of its own.

>>> import fsspec
>>> fs = fsspec.filesystem("segdl", connections=16)
>>> fs.get(["https://example.org/a.nc", "https://example.org/b.nc"], "data/")
>>> with fsspec.open("segdl+https://example.org/a.nc") as f:   # ranged reads
...     f.seek(1 << 20); header = f.read(4096)

Registered (entry points, group ``fsspec.specs``) as ``segdl``, ``segdl+http`` and
``segdl+https``, never as ``http``/``https``: fsspec registers entry points with
``clobber=True`` at import, so a package that claimed those would silently replace HTTP for
every fsspec user on the machine. Paths are plain ``http(s)://`` URLs (``segdl+https://host/f``
is ``https://host/f``); ``info``, ``ls``, ``cat_file`` and ``open`` answer as fsspec's
``HTTPFileSystem`` does for the same URL. A program that wants segdl behind every
``https://`` URL it opens says so itself::

    fsspec.register_implementation("https", SegdlFileSystem, clobber=True)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from segdl.integrations._versions import require

FSSPEC_VERSION = require("fsspec", "2023.1.0", None, extra="fsspec")

from fsspec.callbacks import DEFAULT_CALLBACK  # noqa: E402  (after the version check)
from fsspec.spec import AbstractFileSystem  # noqa: E402

import segdl  # noqa: E402
from segdl.core.models import ByteRange  # noqa: E402
from segdl.core.options import with_overrides  # noqa: E402
from segdl.integrations._fsspec_file import CallbackListener, SegdlFile, fs_error  # noqa: E402
from segdl.integrations._http import Head, Requester, check_url, split_given  # noqa: E402
from segdl.integrations._listing import charset, links_below, slice_range  # noqa: E402

PROTOCOLS = ("segdl", "segdl+http", "segdl+https")
_PREFIX = "segdl+"
# Storage options that are fsspec's (the listings cache, instance caching), not segdl's.
_FSSPEC_KEYS = frozenset(
    {"use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache"}
)
_LISTED_TYPES: frozenset[str | None] = frozenset({"text/html", None})
# A page of links is not larger than this. HTTPFileSystem reads any body without a type into
# memory to look for links; that would make isdir() (which get() asks of a URL given as a
# string) hold a whole large file in memory.
_LISTING_MAX_BYTES = 16 * 2**20


class SegdlFileSystem(AbstractFileSystem):
    """Read-only HTTP(S) through segdl. ``get``/``get_file`` download whole files over many
    connections (resumed, verified, renamed into place when complete); ``open`` gives a
    random-access file read with range requests; ``cat_file``, ``info`` and ``ls`` answer
    as ``HTTPFileSystem`` does.

    ``options`` are :func:`segdl.download`'s keywords (``connections``, ``headers``,
    ``timeout_s``, ``user``, ``ca_bundle``, ``limit_rate``...). ``parallel``: files of one
    ``get`` downloaded at once. ``block_size``, ``cache_type``, ``cache_options``,
    ``simple_links`` and ``same_scheme`` mean what they mean to ``HTTPFileSystem``.
    """

    protocol = PROTOCOLS
    sep = "/"

    def __init__(
        self,
        *,
        block_size: int | None = None,
        cache_type: str = "bytes",
        cache_options: dict[str, Any] | None = None,
        simple_links: bool = True,
        same_scheme: bool = True,
        parallel: int = 4,
        **options: Any,
    ) -> None:
        super().__init__(
            block_size=block_size,
            cache_type=cache_type,
            cache_options=cache_options,
            simple_links=simple_links,
            same_scheme=same_scheme,
            parallel=parallel,
            **options,
        )
        self.block_size = block_size if block_size is not None else 5 * 2**20
        self.cache_type = cache_type
        self.cache_options = cache_options
        self.simple_links = simple_links
        self.same_scheme = same_scheme
        self.parallel = parallel
        self.use_listings_cache = bool(options.get("use_listings_cache", False))
        given = split_given({k: v for k, v in options.items() if k not in _FSSPEC_KEYS})
        self.download_options = given.options
        # fsspec's get replaces what is there.
        self._replacing = with_overrides(given.options, {"if_exists": "overwrite"})
        self._keywords = dict(given.keywords)
        # A listener of the caller's hears every download, beside fsspec's callback.
        self.progress: segdl.ProgressListener | None = self._keywords.pop("progress", None)
        self.requester = Requester(given.options)

    # -- names ---------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """The plain URL: ``segdl+https://h/f`` -> ``https://h/f`` (URLs are kept whole, as
        ``HTTPFileSystem`` keeps them)."""
        if isinstance(path, (list, tuple)):
            return [cls._strip_protocol(p) for p in path]
        text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        if text.startswith(_PREFIX):
            text = text[len(_PREFIX) :]
        elif text.startswith("segdl://"):
            raise ValueError(f"say segdl+https:// or segdl+http://, not segdl:// ({text!r})")
        return text

    def unstrip_protocol(self, name: str) -> str:
        return name if name.startswith(_PREFIX) else _PREFIX + name

    @classmethod
    def _parent(cls, path: str) -> str:
        parent: str = super()._parent(path)
        return parent if len(parent) > 7 else ""  # not above "http://"

    @property
    def fsid(self) -> str:
        return "segdl"

    def _url(self, path: Any) -> str:
        url: str = self._strip_protocol(path)
        return check_url(url)

    # -- what is there -------------------------------------------------------------------------

    def info(self, path: Any, **kwargs: Any) -> dict[str, Any]:
        """As ``HTTPFileSystem.info``: name, size (None if the server does not say), type
        "file", ``mimetype``, the final ``url`` and the validators; ``FileNotFoundError`` when
        the URL cannot be fetched at all."""
        url = self._url(path)
        head = self._head(url)
        resource = head.resource
        found: dict[str, Any] = {}
        if resource.size_bytes is not None:
            found["size"] = resource.size_bytes
        if resource.content_type is not None:
            found["mimetype"] = resource.content_type.partition(";")[0]
        if not head.partial:
            found["partial"] = False
        found["url"] = resource.final_url
        found.update(head.headers)
        return {"name": url, "size": None, **found, "type": "file"}

    def _head(self, url: str) -> Head:
        try:
            return self.requester.head(url)
        except segdl.SegdlError as exc:  # HTTPFileSystem: whatever fails is "not found"
            raise FileNotFoundError(url) from exc

    def ls(self, path: Any, detail: bool = True, **kwargs: Any) -> list[Any]:
        """The links of the page at ``path``, found as ``HTTPFileSystem.ls`` finds them."""
        url = self._url(path)
        links = self.dircache.get(url) if self.use_listings_cache else None
        if links is None:
            links = self._links(url)
            if links is not None and not links and url.endswith("/"):
                links = self._links(url.rstrip("/"))  # as HTTPFileSystem: "d/" may be "d"
            links = links or set()
            self.dircache[url] = links
        if not detail:
            return sorted(links)
        kind = {True: "directory", False: "file"}
        return [{"name": u, "size": None, "type": kind[u.endswith("/")]} for u in links]

    def _links(self, url: str) -> set[str] | None:
        """The links of the page at ``url``; None if it is not a page of links."""
        try:
            body = self.requester.read_all(
                url, only_types=_LISTED_TYPES, limit_bytes=_LISTING_MAX_BYTES
            )
        except segdl.SegdlError as exc:
            raise fs_error(url, exc) from exc
        if body is None:
            return None
        text = body.data.decode(charset(body.resource.content_type), errors="ignore")
        return links_below(url, text, simple=self.simple_links, same_scheme=self.same_scheme)

    def isdir(self, path: Any) -> bool:
        """As ``HTTPFileSystem``: a URL is a directory when its page has links below it."""
        try:
            return bool(self.ls(path))
        except (FileNotFoundError, ValueError, segdl.SegdlError):
            return False

    # -- bytes ---------------------------------------------------------------------------------

    def cat_file(
        self, path: Any, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """The file's bytes, or bytes ``[start, end)`` of it (negative: from the end) with
        one range request. A whole file is downloaded by segdl, then read."""
        url = self._url(path)
        if start is None and end is None:
            with tempfile.TemporaryDirectory(prefix="segdl-fsspec-") as scratch:
                target = Path(scratch) / "file"
                self._download(url, target, DEFAULT_CALLBACK)
                return target.read_bytes()
        if start is not None and start == end:
            return b""
        head = self._head(url)
        wanted = slice_range(start, end, head.resource.size_bytes)
        return self._read_range(url, wanted, head)

    def _read_range(self, url: str, wanted: ByteRange, head: Head) -> bytes:
        try:
            return self.requester.read_range(url, wanted, head)
        except segdl.SegdlError as exc:
            raise fs_error(url, exc) from exc

    def get_file(
        self, rpath: Any, lpath: Any, callback: Any = DEFAULT_CALLBACK, **kwargs: Any
    ) -> None:
        """Download ``rpath`` to ``lpath`` (a path, replaced when complete, or a binary file
        object) with segdl; an interrupted download to the same path is resumed."""
        plan: list[tuple[str, str]] | None = kwargs.get("_plan")
        if plan is not None:  # get() is only working out which file goes where
            if str(rpath).endswith("/"):  # a listing's directory (ls says so): no file
                Path(os.fspath(lpath)).mkdir(parents=True, exist_ok=True)
            else:
                plan.append((self._url(rpath), os.fspath(lpath)))
            return
        url = self._url(rpath)
        if hasattr(lpath, "write"):
            with tempfile.TemporaryDirectory(prefix="segdl-fsspec-") as scratch:
                target = Path(scratch) / "file"
                self._download(url, target, callback)
                with target.open("rb") as source:
                    shutil.copyfileobj(source, lpath, 1 << 20)
            return
        target = Path(os.fspath(lpath))
        target.parent.mkdir(parents=True, exist_ok=True)
        self._download(url, target, callback)

    def _download(self, url: str, target: Path, callback: Any) -> None:
        try:
            segdl.download(
                url,
                target,
                options=self._replacing,
                progress=CallbackListener(callback, self.progress),
                **self._keywords,
            )
        except segdl.SegdlError as exc:
            raise fs_error(url, exc) from exc

    def get(
        self,
        rpath: Any,
        lpath: Any,
        recursive: bool = False,
        callback: Any = DEFAULT_CALLBACK,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Copy files to local paths, ``parallel`` files at once (each over many
        connections). Which file goes where is decided by fsspec's own ``get`` (globs,
        directories, the check that names stay inside ``lpath``)."""
        plan: list[tuple[str, str]] = []
        super().get(rpath, lpath, recursive=recursive, maxdepth=maxdepth, _plan=plan, **kwargs)
        if not plan:
            return
        callback.set_size(len(plan))
        for _, local in plan:
            Path(local).parent.mkdir(parents=True, exist_ok=True)
        lock = threading.Lock()

        def one_done(item: Any) -> None:
            with lock:
                callback.relative_update(1)

        jobs = [segdl.Job((url,), {"dest": local}) for url, local in plan]
        report = segdl.download_many(
            jobs, parallel=self.parallel, on_item=one_done, options=self._replacing,
            journal=False, progress=self.progress, **self._keywords,
        )  # fmt: skip
        # The error that stopped the batch (a full disk) before the files it left unfetched.
        for failed in sorted(report.failures, key=lambda item: item.error is not report.stopped_by):
            error = failed.error
            if isinstance(error, segdl.SegdlError):
                raise fs_error(failed.job.url, error) from error
            raise error or RuntimeError(f"download of {failed.job.url} failed")

    def _open(
        self,
        path: Any,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        cache_type: str | None = None,
        **kwargs: Any,
    ) -> IO[bytes]:
        """A random-access file read with range requests; for a server without ranges (or
        ``block_size=0``) the whole file, downloaded first to an unnamed temporary file."""
        if mode != "rb":
            raise NotImplementedError("segdl's filesystem is read-only: open with mode 'rb'")
        url = self._url(path)
        head = self._head(url)
        block_size = self.block_size if block_size is None else block_size
        if block_size and head.resource.size_bytes and head.partial:
            return SegdlFile(
                self,
                url,
                head,
                block_size=block_size,
                cache_type=cache_type or self.cache_type,
                cache_options=cache_options or self.cache_options,
            )
        with tempfile.TemporaryDirectory(prefix="segdl-fsspec-") as scratch:
            target = Path(scratch) / "file"
            self._download(url, target, DEFAULT_CALLBACK)
            return target.open("rb")  # its name goes with the directory; the file stays open

    def ukey(self, path: Any) -> str:
        """Changes when the remote file does (size and validators)."""
        info = self.info(path)
        parts = (info["name"], info.get("size"), info.get("ETag"), info.get("Last-Modified"))
        return repr(parts)
