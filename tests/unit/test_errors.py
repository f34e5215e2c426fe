"""``shown``: URLs in messages carry no credentials, and any string can be shown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segdl.core.errors import shown


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@example.org/f?sig=SECRET#x", "https://example.org/f?…"),
        ("http://h/p", "http://h/p"),
        ("http://[::1/x", "(an unparsable URL)"),
        ("nope", "nope"),
    ],
)
def test_shown_drops_userinfo_and_query_values(url: str, expected: str) -> None:
    assert shown(url) == expected


@given(st.text())
def test_shown_never_raises(url: str) -> None:
    assert isinstance(shown(url), str)
