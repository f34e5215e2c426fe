"""The fsspec filesystem's pure pieces: cat_file's limits, and which links a page lists."""

from __future__ import annotations

import pytest

from segdl.core.models import ByteRange
from segdl.integrations._listing import _within, charset, links_below, slice_range


@pytest.mark.parametrize(
    ("start", "end", "size", "expected"),
    [
        (None, None, 100, (0, 100)),
        (10, 20, 100, (10, 20)),
        (-10, None, 100, (90, 100)),
        (10, -10, 100, (10, 90)),
        (-500, None, 100, (0, 100)),
        (90, 500, 100, (90, 100)),
        (500, 600, 100, (100, 100)),
        (50, 10, 100, (50, 50)),
        (0, 10, None, (0, 10)),
    ],
)
def test_limits_follow_slice_rules(
    start: int | None, end: int | None, size: int | None, expected: tuple[int, int]
) -> None:
    """cat_file's start/end become the half-open range Python slicing would take."""
    assert slice_range(start, end, size) == ByteRange(*expected)


def test_limits_without_a_size_need_a_plain_range() -> None:
    """Without the file's size only a range counted from byte 0 can be asked for."""
    with pytest.raises(ValueError, match="how large"):
        slice_range(-10, None, None)


def test_links_within_follow_http_filesystems_rules() -> None:
    """Links below the URL are kept (made absolute), others and the parent are not; http
    and https links are taken for each other, as HTTPFileSystem takes them."""
    found = _within(
        "http://h/d/",
        ["a", "/d/b", "/other/c", "../", "https://h/d/e", "http://x/d/f"],
        same_scheme=True,
    )
    assert found == {"http://h/d/a", "http://h/d/b", "https://h/d/e"}


def test_links_below_reads_hrefs_and_bare_urls() -> None:
    """<a href> targets (either case) count; bare URLs only with simple links, as
    HTTPFileSystem's simple_links says."""
    page = '<a class="x" href="a.bin">a</a> <A HREF="/d/b">b</A> http://h/d/c and http://h/e'
    assert links_below("http://h/d/", page, simple=True, same_scheme=True) == {
        "http://h/d/a.bin", "http://h/d/b", "http://h/d/c"
    }  # fmt: skip
    assert links_below("http://h/d/", page, simple=False, same_scheme=True) == {
        "http://h/d/a.bin", "http://h/d/b"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/html; charset=ISO-8859-1", "ISO-8859-1"),
        ('text/html; charset="utf-16"', "utf-16"),
        ("text/html; charset=no-such-codec", "utf-8"),
        ("text/html", "utf-8"),
        (None, "utf-8"),
    ],
)
def test_charset_of_a_page(content_type: str | None, expected: str) -> None:
    """A page is decoded with its declared charset when Python knows it, else UTF-8."""
    assert charset(content_type) == expected
