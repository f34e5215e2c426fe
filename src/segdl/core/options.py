"""The options of one download, validated once, immutable afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from segdl._version import __version__
from segdl.core.errors import UsageError
from segdl.core.retry import RetryPolicy

MIB = 1024 * 1024
DEFAULT_USER_AGENT = f"segdl/{__version__}"
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


@dataclass(frozen=True, slots=True)
class DownloadOptions:
    """How to download one file. Sizes are in bytes, times in seconds."""

    connections: int = 8
    min_split_bytes: int = MIB
    timeout_s: float = 30.0
    if_exists: IfExists = IfExists.ERROR
    user_agent: str = DEFAULT_USER_AGENT
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    buffer_bytes: int = 256 * 1024
    max_redirects: int = 10
    retries: int = 5
    """Attempts in a row without a new byte, per range, before it counts as failed."""
    retry_wait_s: float = 0.5
    """Base of the exponential backoff (with full jitter) between attempts."""
    max_retry_after_s: float = 300.0
    """Longest ``Retry-After`` honoured; a server asking for more fails the attempt."""
    max_connections_per_host: int = 16
    lowest_speed_bytes_per_s: int | None = None
    """A connection slower than this for a few seconds gives its range to a fresh one."""
    max_size_bytes: int | None = None
    """Refuse files larger than this before any byte is written."""
    resume: bool = True
    """Continue a partial download found at the output path, if it can be trusted."""
    lock_wait_s: float = 0.0
    """How long to wait for another process downloading to the same output."""
    preconnect: bool = True
    """Open the other connections while the first request is in flight (not in batches,
    whose files share warm connections)."""

    user: str | None = field(default=None, repr=False)
    """``USER:PASSWORD`` for HTTP Basic, sent to the URL's origin only."""
    use_netrc: bool = False
    netrc_file: str | None = None
    cookies_file: str | None = None
    location_trusted: bool = False
    """Send credentials to redirect targets on other origins too (curl's --location-trusted)."""
    allow_insecure_redirect: bool = False
    """Follow a redirect from https to http."""
    ca_bundle: str | None = None
    insecure: bool = False
    """Do not verify TLS certificates, for this download only (warned about every time)."""
    proxy: str | None = field(default=None, repr=False)  # may hold a password
    use_proxy_env: bool = True
    remote_time: bool = False
    """Give the finished file the server's Last-Modified as its modification time."""
    keep_cache: bool = False
    """Leave a large file's pages in the page cache (by default those of a file of 256 MiB
    or more are dropped as they are synced; see ``segdl.disk.resume.DROP_CACHE_FROM_BYTES``)."""
    limit_rate_bytes_per_s: int | None = None
    """This download's own rate limit (a batch-wide one is passed as a shared bucket)."""
    checksum: str | None = None
    """``ALGO=HEX`` the finished file must match (md5, sha-1, sha-256, sha-512)."""

    @property
    def overwrite(self) -> bool:
        return self.if_exists is IfExists.OVERWRITE

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise UsageError(f"connections must be at least 1, not {self.connections}")
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
