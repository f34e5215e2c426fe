"""``shown``: URLs in messages, logs and the state file carry no credentials, and any string
can be shown."""

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
        ("http://h/p?", "http://h/p"),
        ("http://h/p#f?sig=SECRET", "http://h/p"),
        ("https://u:p@ss@h/a@b?c@d", "https://h/a@b?…"),
        ("http://u:p@[::1/x", "http://[::1/x"),  # unparsable, still without its userinfo
        ("https://[::1]:8/x/y", "https://[::1]:8/x/y"),
        ("nope", "nope"),
    ],
)
def test_shown_drops_userinfo_and_query_values(url: str, expected: str) -> None:
    """Userinfo (up to the authority's last @), query values and fragment never show."""
    assert shown(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u@h:8443/p?X-Amz-Signature=T", "https://h:8443/p"),
        ("http://h?q=1", "http://h"),
        ("http://h#f", "http://h"),
    ],
)
def test_shown_without_query_leaves_no_mark_of_one(url: str, expected: str) -> None:
    """query=False (the state file's display URLs): no query at all, not even '?…'."""
    assert shown(url, query=False) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://u:p@h:1", "http://h:1"),
        ("http://u:p@ss@h:1/x", "http://h:1/x"),
        ("http://u:p/ss@h:1", "http://h:1"),
        ("http://u:p?s#s@h:1", "http://h:1"),
        ("u:p@h:1", "h:1"),
        ("http://h:1", "http://h:1"),
    ],
)
def test_shown_without_a_path_drops_everything_to_the_last_at(url: str, expected: str) -> None:
    """no_path=True (a proxy URL typed by hand): a password with / ? # @ in it never shows."""
    assert shown(url, no_path=True) == expected


@given(st.text(), st.booleans(), st.booleans())
def test_shown_never_raises_and_showing_twice_changes_nothing(
    url: str, query: bool, no_path: bool
) -> None:
    """Any string can be shown, and what is shown is shown as it is."""
    once = shown(url, query=query, no_path=no_path)
    assert shown(once, query=query, no_path=no_path) == once
