"""aria2's option names and string values, turned into a
:class:`~segdl.core.options.DownloadOptions`.

RPC clients send options the way aria2 takes them (``{"split": "8", "out": "f.iso"}``); the
item keeps them as given, ``getOption`` shows them over the global defaults, and this module
is the one place that reads them. Options segdl does not implement are kept and shown but have
no effect (AriaNg sends many); a value segdl cannot read is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segdl.core.errors import UsageError
from segdl.core.options import (
    DEFAULTS,
    DownloadOptions,
    parse_headers,
    parse_size,
    with_overrides,
)
from segdl.daemon.errors import RpcError

OptionValue = str | list[str]
Options = dict[str, OptionValue]

# Per-download options that take effect, and the global-only ones (changeGlobalOption).
PER_ITEM = (
    "dir",
    "out",
    "split",
    "max-connection-per-server",
    "min-split-size",
    "header",
    "checksum",
    "max-download-limit",
    "allow-overwrite",
    "auto-file-renaming",
    "timeout",
    "max-tries",
    "user-agent",
    "lowest-speed-limit",
    "remote-time",
    "pause",
)
GLOBAL_ONLY = ("max-concurrent-downloads", "max-overall-download-limit")
# Not changeable once a download exists (aria2: "out", "dir" only before it starts).
_FIXED_AFTER_START = ("dir", "out")


def defaults(root: str, jobs: int, connections: int, limit: str) -> Options:
    """The global options a fresh daemon reports (aria2's names, segdl's defaults: the
    options' own, except that a taken output name is renamed, as aria2's
    auto-file-renaming does)."""
    return {
        "dir": root,
        "max-concurrent-downloads": str(jobs),
        "max-overall-download-limit": limit,
        "split": str(connections),
        "max-connection-per-server": str(connections),
        "min-split-size": str(DEFAULTS.min_split_bytes),
        "max-download-limit": "0",
        "allow-overwrite": "false",
        "auto-file-renaming": "true",
        "timeout": str(round(DEFAULTS.timeout_s)),  # aria2's: whole seconds
        "max-tries": str(DEFAULTS.retries),
        "lowest-speed-limit": "0",
        "remote-time": "false",
        "continue": "true",
    }


def normalized(options: object) -> Options:
    """An RPC options struct checked for shape: string keys, string values (``header`` may be
    a list of strings); numbers are accepted and turned into strings, as aria2 does."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise RpcError("options must be a struct")
    result: Options = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise RpcError("option names must be strings")
        if isinstance(value, bool):
            result[key] = "true" if value else "false"
        elif isinstance(value, int | float | str):
            result[key] = str(value)
        elif key == "header" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            result[key] = list(value)
        else:
            raise RpcError(f"option {key!r}: a string is expected")
    return result


def _text(options: Mapping[str, OptionValue], name: str) -> str | None:
    value = options.get(name)
    if isinstance(value, list):
        raise RpcError(f"option {name!r}: a string is expected")
    return value


def _count(options: Mapping[str, OptionValue], name: str) -> int | None:
    value = _text(options, name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise RpcError(f"option {name!r}: {value!r} is not a whole number")
    return int(value)


def _size(options: Mapping[str, OptionValue], name: str) -> int | None:
    value = _text(options, name)
    if value is None:
        return None
    try:
        return parse_size(value)
    except UsageError as exc:
        raise RpcError(f"option {name!r}: {exc}") from exc


def _flag(options: Mapping[str, OptionValue], name: str) -> bool | None:
    value = _text(options, name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise RpcError(f"option {name!r}: 'true' or 'false', not {value!r}")
    return value == "true"


def headers_of(options: Mapping[str, OptionValue]) -> dict[str, str]:
    value = options.get("header")
    try:
        return parse_headers([value] if isinstance(value, str) else list(value or []))
    except UsageError as exc:
        raise RpcError(str(exc)) from exc


def download_options(
    item: Mapping[str, OptionValue],
    defaults: Mapping[str, OptionValue],
    base: DownloadOptions | None = None,
) -> DownloadOptions:
    """An item's options over the global ones, as :class:`DownloadOptions` over ``base``
    (``dir`` and ``out`` are resolved by :mod:`segdl.daemon.confine`, not here). Checked
    whole, so what segdl refuses (a header it sets itself, say) fails the call that gave it."""
    try:
        return with_overrides(base, _given(item, {**defaults, **item}))
    except UsageError as exc:
        raise RpcError(str(exc)) from exc


def _given(item: Mapping[str, OptionValue], merged: Mapping[str, OptionValue]) -> dict[str, Any]:
    split = _count(merged, "split") or 1
    per_server = _count(merged, "max-connection-per-server") or 1
    # aria2 uses min(split, max-connection-per-server x servers); only what the item itself
    # set counts, so a global default never lowers an explicit one.
    own = [n for n in (_count(item, "split"), _count(item, "max-connection-per-server")) if n]
    connections = min(own) if own else min(split, per_server)
    given: dict[str, Any] = {"connections": max(1, connections)}
    given["min_split_bytes"] = max(1, _size(merged, "min-split-size") or 1)
    headers = headers_of(merged)
    given["user_agent"] = headers.pop("User-Agent", None) or _text(merged, "user-agent")
    given["headers"] = headers
    given["checksum"] = _text(merged, "checksum") or None
    given["limit_rate_bytes_per_s"] = _size(merged, "max-download-limit") or None
    if _flag(merged, "allow-overwrite"):
        given["if_exists"] = "overwrite"
    elif _flag(merged, "auto-file-renaming") is False:
        given["if_exists"] = "error"
    else:
        given["if_exists"] = "rename"
    timeout = _count(merged, "timeout")
    if timeout:
        given["timeout_s"] = float(timeout)
    tries = _count(merged, "max-tries")
    if tries is not None:
        given["retries"] = tries if tries > 0 else 1_000_000  # aria2: 0 means unlimited
    given["lowest_speed_bytes_per_s"] = _size(merged, "lowest-speed-limit") or None
    given["remote_time"] = bool(_flag(merged, "remote-time"))
    return given


def check_changeable(options: Mapping[str, OptionValue], started: bool) -> None:
    """changeOption: ``dir``/``out`` only before the download has begun."""
    if started:
        for name in _FIXED_AFTER_START:
            if name in options:
                raise RpcError(f"option {name!r} cannot be changed once the download began")


def concurrency(options: Mapping[str, OptionValue]) -> int:
    jobs = _count(options, "max-concurrent-downloads")
    if not jobs:
        raise RpcError("max-concurrent-downloads must be at least 1")
    return jobs


def overall_limit(options: Mapping[str, OptionValue]) -> int:
    """Bytes/s for everything; 0 means no limit."""
    return _size(options, "max-overall-download-limit") or 0
