"""The version check the integrations run at import: a table of versions and ranges."""

from __future__ import annotations

import pytest

from segdl.integrations._versions import in_range, release, require


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.9.0", (1, 9, 0)),
        ("2026.9.0", (2026, 9, 0)),
        ("1.9.0rc1", (1, 9, 0)),
        ("1.10", (1, 10)),
        ("v2.0", (2, 0)),
        ("1.8.2.post1", (1, 8, 2)),
        ("", None),
        ("dev", None),
    ],
)
def test_release_is_the_leading_numbers(text: str, expected: tuple[int, ...] | None) -> None:
    """The release segment is the dotted numbers a version starts with, or None."""
    assert release(text) == expected


@pytest.mark.parametrize(
    ("version", "minimum", "below", "inside"),
    [
        ("1.6", "1.6", "2", True),
        ("1.6.0", "1.6", "2", True),
        ("1.9.0", "1.6", "2", True),
        ("1.10.0", "1.6", "2", True),  # numbers, not strings: 10 > 9
        ("1.5.9", "1.6", "2", False),
        ("2.0.0", "1.6", "2", False),
        ("2.0.0rc1", "1.6", "2", False),  # a pre-release of 2 is 2's API
        ("1.0.0", "1.6", "2", False),
        ("2026.9.0", "2023.1.0", None, True),
        ("2022.11.0", "2023.1.0", None, False),
        ("garbage", "1.6", "2", False),
    ],
)
def test_in_range(version: str, minimum: str, below: str | None, inside: bool) -> None:
    """minimum <= version < below on release numbers; an unparsable version is outside."""
    assert in_range(version, minimum, below) is inside


def test_require_names_the_version_the_range_and_the_extra() -> None:
    """A version outside the range is one ImportError saying all a user needs to fix it."""
    with pytest.raises(ImportError) as caught:
        require("pooch", "1.6", "2", extra="pooch", installed="2.1.0")
    assert str(caught.value) == (
        "segdl.integrations.pooch supports pooch>=1.6,<2, but pooch 2.1.0 is installed "
        "(pip install 'segdl[pooch]')"
    )


def test_require_returns_a_supported_version() -> None:
    """A version inside the range is returned as found."""
    assert require("fsspec", "2023.1.0", None, extra="fsspec", installed="2026.9.0") == "2026.9.0"


def test_a_missing_library_is_an_import_error_with_the_extra() -> None:
    """A distribution that is not installed at all fails the same way, naming the extra."""
    with pytest.raises(ImportError, match=r"needs no-such-dist-xyz>=1, which is not installed"):
        require("no-such-dist-xyz", "1", None, extra="pooch")
