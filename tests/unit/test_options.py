"""Options are validated once; sizes parse strictly."""

from __future__ import annotations

import pytest

from segdl.core.errors import UsageError
from segdl.core.options import DownloadOptions, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("1", 1), ("1048576", 1048576), ("512K", 524288), ("1M", 1048576), ("2g", 2 << 30)],
)
def test_parse_size(text: str, size: int) -> None:
    """Sizes take 1024-based K/M/G suffixes."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "-1M", "1.5M", "1T", "+5", "\u0661M", "1 M"])
def test_parse_size_hostile(text: str) -> None:
    """Anything else is a usage error."""
    with pytest.raises(UsageError):
        parse_size(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connections": 0},
        {"min_split_bytes": 0},
        {"timeout_s": 0},
        {"headers": {"Range": "bytes=0-"}},
        {"headers": {"X-A": "b\r\nInjected: 1"}},
    ],
)
def test_invalid_options(kwargs: dict[str, object]) -> None:
    """Bad options fail before any request; segdl's own headers cannot be overridden."""
    with pytest.raises(UsageError):
        DownloadOptions(**kwargs)  # type: ignore[arg-type]


def test_user_headers_replace_defaults_case_insensitively() -> None:
    """A user-agent given as a header replaces the default one."""
    headers = DownloadOptions(headers={"user-agent": "x/1"}).request_headers()
    assert headers == {"Accept-Encoding": "identity", "user-agent": "x/1"}
