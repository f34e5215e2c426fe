"""The parts of the segdl filesystem that are not the filesystem itself: its random-access
file, segdl's progress events as an fsspec callback, and errors as fsspec's callers expect
them. Imported by :mod:`segdl.integrations.fsspec` after its check of fsspec's version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fsspec.spec import AbstractBufferedFile

import segdl
from segdl.core.models import ByteRange
from segdl.integrations._http import Head

if TYPE_CHECKING:
    from segdl.integrations.fsspec import SegdlFileSystem


class SegdlFile(AbstractBufferedFile):
    """A remote file read in blocks, each one range request checked against the size and
    validator the file had when it was opened (a changed file fails, it is never mixed)."""

    loc: int  # AbstractBufferedFile's position

    def __init__(
        self,
        fs: SegdlFileSystem,
        url: str,
        head: Head,
        *,
        block_size: int,
        cache_type: str,
        cache_options: dict[str, Any] | None,
    ) -> None:
        self.head = head
        self.details = {"name": url, "size": head.resource.size_bytes, "type": "file"}
        super().__init__(
            fs,
            url,
            mode="rb",
            block_size=block_size,
            cache_type=cache_type,
            cache_options=cache_options,
            size=head.resource.size_bytes,
        )

    def read(self, length: int = -1) -> bytes:
        """Read ``length`` bytes (all the rest if negative). All of a file larger than one
        block, read from its start, is downloaded by segdl over many connections (where
        ``HTTPFile`` makes one plain ``GET``); anything else goes through the block cache."""
        size: int = self.size
        if length < 0 and self.loc == 0 and size > self.blocksize:
            fs: SegdlFileSystem = self.fs
            data = fs.cat_file(self.path)
            if len(data) != size:
                raise segdl.RemoteChanged(self.path, f"size {len(data)}, was {size}")
            self.loc = size
            return data
        data = super().read(length)
        return bytes(data)

    def _fetch_range(self, start: int, end: int) -> bytes:
        size: int = self.size
        end = min(end, size)
        if start >= end:
            return b""
        fs: SegdlFileSystem = self.fs
        return fs._read_range(self.path, ByteRange(start, end), self.head)


class CallbackListener:
    """segdl's progress events into an fsspec callback (size, then bytes done), and to the
    caller's own listener if there is one."""

    def __init__(self, callback: Any, also: segdl.ProgressListener | None = None) -> None:
        self.callback = callback
        self.also = also

    def __call__(self, event: segdl.Event) -> None:
        if isinstance(event, segdl.DownloadStarted) and event.size_bytes is not None:
            self.callback.set_size(event.size_bytes)
        elif isinstance(event, segdl.DownloadProgress):
            self.callback.absolute_update(event.done_bytes)
        elif isinstance(event, segdl.DownloadFinished):
            self.callback.absolute_update(event.size_bytes)
        if self.also is not None:
            self.also(event)


def fs_error(url: str, error: segdl.SegdlError) -> Exception:
    """As ``HTTPFileSystem``: a 404 is ``FileNotFoundError``; other errors are segdl's."""
    if isinstance(error, segdl.HTTPStatusError) and error.status == 404:
        return FileNotFoundError(url)
    return error
