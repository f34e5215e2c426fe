"""asyncio front ends: the engine stays threaded; the event loop is never blocked.

Cancelling the task sets the download's cancel event and waits for the clean stop (state
saved, connections closed), so a cancelled download resumes like an interrupted one. Progress
events are handed to the loop with ``call_soon_threadsafe``, so listeners run on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from segdl.core.models import Result
from segdl.core.progress import Event, ProgressListener
from segdl.run.batch import BatchReport, Job, download_many
from segdl.run.engine import download

T = TypeVar("T")


async def adownload(
    url: str,
    dest: str | Path | None = None,
    *,
    progress: ProgressListener | None = None,
    **options: Any,
) -> Result:
    """``await`` a :func:`segdl.download`; same keywords (``cancel`` is managed here)."""
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    call = functools.partial(
        download, url, dest, progress=_on_loop(loop, progress), cancel=cancel, **options
    )
    return await _run_cancellable(loop, call, cancel)


async def adownload_many(
    jobs: Iterable[Job | str], *, progress: ProgressListener | None = None, **options: Any
) -> BatchReport:
    """``await`` a :func:`segdl.run.batch.download_many`; same keywords."""
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    call = functools.partial(
        download_many, list(jobs), progress=_on_loop(loop, progress), cancel=cancel, **options
    )
    return await _run_cancellable(loop, call, cancel)


async def _run_cancellable(
    loop: asyncio.AbstractEventLoop, call: Callable[[], T], cancel: threading.Event
) -> T:
    future = loop.run_in_executor(None, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        with contextlib.suppress(BaseException):
            await future  # the engine stops within a second and saves its state
        raise


def _on_loop(
    loop: asyncio.AbstractEventLoop, listener: ProgressListener | None
) -> ProgressListener | None:
    if listener is None:
        return None

    def forward(event: Event) -> None:
        loop.call_soon_threadsafe(listener, event)

    return forward
