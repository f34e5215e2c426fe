"""What the server serves: files with validators, and redirects."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum

from tests.server.wire import http_date


class Auto(Enum):
    """Sentinel: let the server generate the value."""

    AUTO = "auto"


AUTO = Auto.AUTO
# A Last-Modified at least a second older than Date is a strong validator (RFC 9110 §8.8.2.2).
_LAST_MODIFIED_AGE_S = 60


def auto_etag(data: bytes) -> str:
    """A strong ETag derived from the content: equal bytes give equal tags."""
    return '"' + hashlib.sha1(data).hexdigest()[:16] + '"'


def _epoch_of(http_date_text: str) -> float | None:
    try:
        return parsedate_to_datetime(http_date_text).timestamp()
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class FileResource:
    """Bytes served at a path, with the validators the server announces for them."""

    data: bytes
    etag: str | None
    last_modified: str | None
    content_type: str
    etag_is_auto: bool
    last_modified_is_auto: bool

    @property
    def size(self) -> int:
        return len(self.data)

    def changed_validators(self) -> tuple[str | None, str | None]:
        """Validators that differ from the real ones (for ``Faults.change_etag_after``)."""
        etag = None if self.etag is None else self.etag[:-1] + '-changed"'
        last_modified = None
        if self.last_modified is not None:
            epoch = _epoch_of(self.last_modified)
            last_modified = http_date((epoch if epoch is not None else time.time()) + 1)
        return etag, last_modified


@dataclass(frozen=True, slots=True)
class Redirect:
    """A path answered with a redirect status and a Location (relative or absolute)."""

    location: str
    status: int


Resource = FileResource | Redirect


def make_file(
    data: bytes,
    etag: str | Auto | None,
    last_modified: float | str | Auto | None,
    content_type: str,
    previous: FileResource | None = None,
) -> FileResource:
    """A FileResource; an automatic Last-Modified is always later than ``previous``'s."""
    if etag is not None and not isinstance(etag, Auto) and not etag.endswith('"'):
        raise ValueError(f"an ETag is a quoted string, like '\"x\"' or 'W/\"x\"': {etag!r}")
    lm_text: str | None
    if isinstance(last_modified, Auto):
        epoch = math.floor(time.time()) - _LAST_MODIFIED_AGE_S
        if previous is not None and previous.last_modified is not None:
            before = _epoch_of(previous.last_modified)
            if before is not None:
                epoch = max(epoch, math.floor(before) + 1)
        lm_text = http_date(epoch)
    elif isinstance(last_modified, (int, float)):
        lm_text = http_date(last_modified)
    else:
        lm_text = last_modified
    return FileResource(
        data=bytes(data),
        etag=auto_etag(data) if isinstance(etag, Auto) else etag,
        last_modified=lm_text,
        content_type=content_type,
        etag_is_auto=isinstance(etag, Auto),
        last_modified_is_auto=isinstance(last_modified, Auto),
    )
