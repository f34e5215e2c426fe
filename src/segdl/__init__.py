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
    from segdl.aio import adownload as adownload
    from segdl.aio import adownload_many as adownload_many
    from segdl.batch import BatchReport as BatchReport
    from segdl.batch import Downloader as Downloader
    from segdl.batch import Job as Job
    from segdl.batch import download_many as download_many
    from segdl.engine import download as download
    from segdl.errors import (
        Cancelled as Cancelled,
    )
    from segdl.errors import (
        ConnectError as ConnectError,
    )
    from segdl.errors import (
        ConnectionBroken as ConnectionBroken,
    )
    from segdl.errors import (
        ContentRangeMismatch as ContentRangeMismatch,
    )
    from segdl.errors import (
        HTTPStatusError as HTTPStatusError,
    )
    from segdl.errors import (
        IntegrityError as IntegrityError,
    )
    from segdl.errors import (
        InvalidHeader as InvalidHeader,
    )
    from segdl.errors import (
        LocalFileError as LocalFileError,
    )
    from segdl.errors import (
        NetworkError as NetworkError,
    )
    from segdl.errors import (
        OutputExists as OutputExists,
    )
    from segdl.errors import (
        OutputLocked as OutputLocked,
    )
    from segdl.errors import (
        ProtocolError as ProtocolError,
    )
    from segdl.errors import (
        RangeNotHonoured as RangeNotHonoured,
    )
    from segdl.errors import (
        RemoteChanged as RemoteChanged,
    )
    from segdl.errors import (
        SegdlError as SegdlError,
    )
    from segdl.errors import (
        ServerError as ServerError,
    )
    from segdl.errors import (
        ShortBody as ShortBody,
    )
    from segdl.errors import (
        StateInvalid as StateInvalid,
    )
    from segdl.errors import (
        TimeoutError_ as TimeoutError_,
    )
    from segdl.errors import (
        TLSError as TLSError,
    )
    from segdl.errors import (
        TooManyRedirects as TooManyRedirects,
    )
    from segdl.errors import (
        UnexpectedEncoding as UnexpectedEncoding,
    )
    from segdl.errors import (
        UsageError as UsageError,
    )
    from segdl.models import ByteRange as ByteRange
    from segdl.models import Resource as Resource
    from segdl.models import Result as Result
    from segdl.models import Validator as Validator
    from segdl.progress import (
        DownloadFailed as DownloadFailed,
    )
    from segdl.progress import (
        DownloadFinished as DownloadFinished,
    )
    from segdl.progress import (
        DownloadProgress as DownloadProgress,
    )
    from segdl.progress import (
        DownloadReceived as DownloadReceived,
    )
    from segdl.progress import (
        DownloadStarted as DownloadStarted,
    )
    from segdl.progress import (
        Event as Event,
    )
    from segdl.progress import (
        Notice as Notice,
    )
    from segdl.progress import (
        NoticeKind as NoticeKind,
    )
    from segdl.progress import (
        ProgressListener as ProgressListener,
    )

logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS = {
    "download": "segdl.engine",
    "download_many": "segdl.batch",
    "BatchReport": "segdl.batch",
    "Downloader": "segdl.batch",
    "Job": "segdl.batch",
    "adownload": "segdl.aio",
    "adownload_many": "segdl.aio",
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
        "segdl.errors",
    ),
    **dict.fromkeys(["ByteRange", "Resource", "Result", "Validator"], "segdl.models"),
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
        "segdl.progress",
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
