"""The options of one download, validated once, immutable afterwards."""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segdl.core.retry import RetryPolicy

from segdl.core.errors import UsageError
from segdl.core.option_table import DEFAULTS_TABLE, MIB

# Headers segdl owns: a user value would break range validation or the fallback logic.
_RESERVED_HEADERS = frozenset({"range", "if-range", "accept-encoding", "host", "content-length"})


class IfExists(Enum):
    """What to do when the output file already exists."""

    ERROR = "error"
    """Refuse (exit 9): the default, nothing is ever clobbered by surprise."""
    SKIP = "skip"
    """Leave it and report success: a batch can simply be run again."""
    OVERWRITE = "overwrite"
    RENAME = "rename"
    """Write ``name.1.ext`` (or the next free name), resuming a partial one if found."""


def _option(name: str, **kwargs: Any) -> Any:
    """A field of :class:`DownloadOptions` with the default and description
    :mod:`segdl.core.option_table` declares for it."""
    default, help = DEFAULTS_TABLE[name]
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass(frozen=True, slots=True)
class DownloadOptions:
    """How to download one file: every option, declared once. Sizes are in bytes, times in
    seconds. Built by :func:`segdl.download`'s keywords, the CLI, a batch (its files share
    one and override some) and the daemon; :func:`with_overrides` applies keywords to one.
    Every value is checked here, its type too, so a bad one fails at the call."""

    connections: int = _option("connections")
    min_split_bytes: int = _option("min_split_bytes")
    timeout_s: float = _option("timeout_s")
    if_exists: IfExists = field(
        default=IfExists(DEFAULTS_TABLE["if_exists"][0]),
        metadata={"help": DEFAULTS_TABLE["if_exists"][1]},
    )
    user_agent: str = _option("user_agent")
    headers: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={"help": DEFAULTS_TABLE["headers"][1]},
    )
    buffer_bytes: int = _option("buffer_bytes")
    max_redirects: int = _option("max_redirects")
    retries: int = _option("retries")
    retry_wait_s: float = _option("retry_wait_s")
    max_retry_after_s: float = _option("max_retry_after_s")
    max_connections_per_host: int = _option("max_connections_per_host")
    lowest_speed_bytes_per_s: int | None = _option("lowest_speed_bytes_per_s")
    max_size_bytes: int | None = _option("max_size_bytes")
    resume: bool = _option("resume")
    lock_wait_s: float = _option("lock_wait_s")
    preconnect: bool = _option("preconnect")

    user: str | None = _option("user", repr=False)
    use_netrc: bool = _option("use_netrc")
    netrc_file: str | None = _option("netrc_file")
    cookies_file: str | None = _option("cookies_file")
    location_trusted: bool = _option("location_trusted")
    allow_insecure_redirect: bool = _option("allow_insecure_redirect")
    ca_bundle: str | None = _option("ca_bundle")
    insecure: bool = _option("insecure")
    proxy: str | None = _option("proxy", repr=False)  # may hold a password
    use_proxy_env: bool = _option("use_proxy_env")
    remote_time: bool = _option("remote_time")
    keep_cache: bool = _option("keep_cache")  # the size: segdl.disk.resume.DROP_CACHE_FROM_BYTES
    limit_rate_bytes_per_s: int | None = _option("limit_rate_bytes_per_s")
    checksum: str | None = _option("checksum")
    stream_buffer_bytes: int = _option("stream_buffer_bytes")

    @property
    def overwrite(self) -> bool:
        return self.if_exists is IfExists.OVERWRITE

    def __post_init__(self) -> None:
        _check_types(self)
        if self.connections < 1:
            raise UsageError(f"connections must be at least 1, not {self.connections}")
        if self.stream_buffer_bytes < 64 * 1024:
            raise UsageError("stream buffer must be at least 64 KiB")
        if self.min_split_bytes < 1:
            raise UsageError("the minimum split size must be at least 1 byte")
        if not self.timeout_s > 0:
            raise UsageError("the timeout must be positive")
        if self.buffer_bytes < 64 * 1024:
            raise UsageError("the read buffer must be at least 64 KiB")
        if self.retries < 0 or self.retry_wait_s < 0 or self.max_retry_after_s < 0:
            raise UsageError("retry counts and waits cannot be negative")
        if self.max_connections_per_host < 1:
            raise UsageError("max connections per host must be at least 1")
        if self.lock_wait_s < 0:
            raise UsageError("the lock wait cannot be negative")
        if self.max_redirects < 0:
            raise UsageError("max redirects cannot be negative")
        for name, value in self.headers.items():
            if name.lower() in _RESERVED_HEADERS:
                raise UsageError(f"header {name!r} is set by segdl and cannot be overridden")
            if any(c in name + value for c in "\r\n\0") or not name.strip() or ":" in name:
                raise UsageError(f"invalid header {name!r}")
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    def retry_policy(self) -> RetryPolicy:
        from segdl.core.retry import RetryPolicy

        return RetryPolicy(
            attempts=self.retries,
            base_wait_s=self.retry_wait_s,
            max_retry_after_s=self.max_retry_after_s,
        )

    def request_headers(self) -> dict[str, str]:
        """Headers every request carries; ``Accept-Encoding: identity`` keeps offsets true."""
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        for name, value in self.headers.items():
            for existing in list(headers):
                if existing.lower() == name.lower():
                    del headers[existing]
            headers[name] = value
        return headers


def parse_size(text: str) -> int:
    """``1048576``, ``512K``, ``1M``, ``2G`` (binary units, as aria2 and curl read them)."""
    units = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}
    stripped = text.strip()
    suffix = stripped[-1:].upper() if stripped[-1:].isalpha() else ""
    number = stripped[: len(stripped) - len(suffix)] if suffix else stripped
    if suffix.upper() not in units or not number.isascii() or not number.isdigit():
        raise UsageError(f"invalid size {text!r} (examples: 1048576, 512K, 1M, 2G)")
    return int(number) * units[suffix]


def parse_headers(lines: Iterable[str], *, where: str = "") -> dict[str, str]:
    """``Name: value`` lines (``-H``, an input list's ``header=``, aria2's ``header``) as
    headers, the last of a name winning; UsageError, its text after ``where``, for a line
    without a name or a colon."""
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, content = line.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"{where}header {line!r} is not 'Name: value'")
        headers[name.strip()] = content.strip()
    return headers


# Keywords download() has always accepted under another name than the option's.
_ALIASES = {
    "netrc": "use_netrc",
    "limit_rate": "limit_rate_bytes_per_s",
    "min_split_size": "min_split_bytes",
}
# Values given as a path or in a unit, turned into the option's own type.
_PATHS = frozenset({"netrc_file", "cookies_file", "ca_bundle"})
_SIZES = frozenset({"limit_rate_bytes_per_s", "min_split_bytes", "max_size_bytes"})


def option_names() -> frozenset[str]:
    """Every keyword :func:`with_overrides` accepts."""
    names = {f.name for f in dataclasses.fields(DownloadOptions)}
    return frozenset(names | set(_ALIASES) | {"overwrite"})


def option_help(name: str) -> str:
    """The one description of option ``name``."""
    fields = {f.name: f for f in dataclasses.fields(DownloadOptions)}
    return str(fields[name].metadata["help"])


def with_overrides(
    base: DownloadOptions | None, overrides: Mapping[str, object]
) -> DownloadOptions:
    """``base`` (default: :data:`DEFAULTS`) with ``overrides`` applied, checked as a whole.

    Names are the fields of :class:`DownloadOptions`, plus the keywords :func:`segdl.download`
    always took: ``netrc``, ``limit_rate`` and ``min_split_size`` (a size such as ``"10M"``
    is accepted for every ``*_bytes*`` option), ``overwrite=True`` for
    ``if_exists="overwrite"``, ``if_exists`` as a string, paths as :class:`~pathlib.Path`,
    ``user_agent=None`` and ``headers=None`` for the default. Anything else is a
    :class:`~segdl.core.errors.UsageError` naming the closest option."""
    base = base if base is not None else DEFAULTS
    if not overrides:
        return base
    changes: dict[str, Any] = {}
    for given, value in overrides.items():
        name = _ALIASES.get(given, given)
        if given not in option_names():
            raise UsageError(_unknown(given))
        if name == "overwrite":
            if not isinstance(value, bool):
                raise UsageError(f"option overwrite must be True or False, not {value!r}")
        elif value is None and name in ("user_agent", "headers"):
            continue
        else:
            changes[name] = _converted(name, value)
    if overrides.get("overwrite") is True:
        changes["if_exists"] = IfExists.OVERWRITE  # wins over if_exists, as it always did
    return dataclasses.replace(base, **changes)


def _unknown(name: str) -> str:
    import difflib  # only to explain a mistake

    close = difflib.get_close_matches(name, sorted(option_names()), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown option {name!r}{hint}"


def _converted(name: str, value: object) -> object:
    if name == "if_exists" and isinstance(value, str):
        try:
            return IfExists(value)
        except ValueError:
            known = ", ".join(member.value for member in IfExists)
            raise UsageError(f"if_exists must be one of {known}, not {value!r}") from None
    if name in _PATHS and isinstance(value, os.PathLike):
        return os.fspath(value)
    if name in _SIZES and isinstance(value, str):
        return parse_size(value)
    return value


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(DownloadOptions)


def _check_types(options: DownloadOptions) -> None:
    """Every field holds a value of its declared type (a bool is not taken for a number)."""
    for name, hint in _field_types().items():
        value = getattr(options, name)
        if not _conforms(value, hint):
            raise UsageError(f"option {name} cannot be {value!r} ({_expected(hint)} expected)")


def _conforms(value: object, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool) and hint is not bool:
        return False
    if hint is float:
        return isinstance(value, (int, float))
    if origin is not None and issubclass(origin, Mapping):
        key_type, value_type = typing.get_args(hint)
        return isinstance(value, Mapping) and all(
            isinstance(k, key_type) and isinstance(v, value_type) for k, v in value.items()
        )
    return isinstance(value, hint)


def _expected(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_expected(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) is not None:
        return "a mapping of str to str"
    return str(hint.__name__)


DEFAULTS = DownloadOptions()
"""Every option at its default: the CLI's defaults and help come from here."""
