"""segdl: download one file over many HTTP(S) connections, verified, with work stealing.

>>> import segdl
>>> result = segdl.download("https://example.org/big.iso", "big.iso", connections=16)

Public names are loaded on first use, so ``segdl --version`` imports nothing heavy.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from segdl._version import __version__

if TYPE_CHECKING:
    from segdl.core.errors import (
        Cancelled as Cancelled,
    )
    from segdl.core.errors import (
        ConnectError as ConnectError,
    )
    from segdl.core.errors import (
        ConnectionBroken as ConnectionBroken,
    )
    from segdl.core.errors import (
        ContentRangeMismatch as ContentRangeMismatch,
    )
    from segdl.core.errors import (
        HTTPStatusError as HTTPStatusError,
    )
    from segdl.core.errors import (
        IntegrityError as IntegrityError,
    )
    from segdl.core.errors import (
        InvalidHeader as InvalidHeader,
    )
    from segdl.core.errors import (
        LocalFileError as LocalFileError,
    )
    from segdl.core.errors import (
        NetworkError as NetworkError,
    )
    from segdl.core.errors import (
        OutputExists as OutputExists,
    )
    from segdl.core.errors import (
        OutputLocked as OutputLocked,
    )
    from segdl.core.errors import (
        ProtocolError as ProtocolError,
    )
    from segdl.core.errors import (
        RangeNotHonoured as RangeNotHonoured,
    )
    from segdl.core.errors import (
        RemoteChanged as RemoteChanged,
    )
    from segdl.core.errors import (
        SegdlError as SegdlError,
    )
    from segdl.core.errors import (
        ServerError as ServerError,
    )
    from segdl.core.errors import (
        ShortBody as ShortBody,
    )
    from segdl.core.errors import (
        StateInvalid as StateInvalid,
    )
    from segdl.core.errors import (
        TimeoutError_ as TimeoutError_,
    )
    from segdl.core.errors import (
        TLSError as TLSError,
    )
    from segdl.core.errors import (
        TooManyRedirects as TooManyRedirects,
    )
    from segdl.core.errors import (
        UnexpectedEncoding as UnexpectedEncoding,
    )
    from segdl.core.errors import (
        UsageError as UsageError,
    )
    from segdl.core.models import ByteRange as ByteRange
    from segdl.core.models import Resource as Resource
    from segdl.core.models import Result as Result
    from segdl.core.models import Validator as Validator
    from segdl.core.options import DownloadOptions as DownloadOptions
    from segdl.core.options import IfExists as IfExists
    from segdl.core.progress import (
        DownloadFailed as DownloadFailed,
    )
    from segdl.core.progress import (
        DownloadFinished as DownloadFinished,
    )
    from segdl.core.progress import (
        DownloadProgress as DownloadProgress,
    )
    from segdl.core.progress import (
        DownloadReceived as DownloadReceived,
    )
    from segdl.core.progress import (
        DownloadStarted as DownloadStarted,
    )
    from segdl.core.progress import (
        Event as Event,
    )
    from segdl.core.progress import (
        Notice as Notice,
    )
    from segdl.core.progress import (
        NoticeKind as NoticeKind,
    )
    from segdl.core.progress import (
        ProgressListener as ProgressListener,
    )
    from segdl.run.aio import adownload as adownload
    from segdl.run.aio import adownload_many as adownload_many
    from segdl.run.batch import BatchReport as BatchReport
    from segdl.run.batch import Downloader as Downloader
    from segdl.run.batch import Job as Job
    from segdl.run.batch import download_many as download_many
    from segdl.run.engine import download as download
    from segdl.run.shards import Shard as Shard
    from segdl.run.shards import ShardReport as ShardReport
    from segdl.run.shards import download_shard as download_shard
    from segdl.run.shards import iter_shards as iter_shards

logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS = {
    "download": "segdl.run.engine",
    "download_many": "segdl.run.batch",
    "BatchReport": "segdl.run.batch",
    "Downloader": "segdl.run.batch",
    "Job": "segdl.run.batch",
    **dict.fromkeys(["Shard", "ShardReport", "download_shard", "iter_shards"], "segdl.run.shards"),
    "adownload": "segdl.run.aio",
    "adownload_many": "segdl.run.aio",
    **dict.fromkeys(
        [
            "Cancelled",
            "ConnectError",
            "ConnectionBroken",
            "ContentRangeMismatch",
            "HTTPStatusError",
            "IntegrityError",
            "InvalidHeader",
            "LocalFileError",
            "NetworkError",
            "OutputExists",
            "OutputLocked",
            "ProtocolError",
            "RangeNotHonoured",
            "RemoteChanged",
            "SegdlError",
            "StateInvalid",
            "ServerError",
            "ShortBody",
            "TimeoutError_",
            "TLSError",
            "TooManyRedirects",
            "UnexpectedEncoding",
            "UsageError",
        ],
        "segdl.core.errors",
    ),
    **dict.fromkeys(["DownloadOptions", "IfExists"], "segdl.core.options"),
    **dict.fromkeys(["ByteRange", "Resource", "Result", "Validator"], "segdl.core.models"),
    **dict.fromkeys(
        [
            "DownloadFailed",
            "DownloadFinished",
            "DownloadProgress",
            "DownloadReceived",
            "DownloadStarted",
            "Event",
            "Notice",
            "NoticeKind",
            "ProgressListener",
        ],
        "segdl.core.progress",
    ),
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segdl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
