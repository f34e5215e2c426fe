"""Pure pieces of the fsspec filesystem: the links of a page, as fsspec's HTTPFileSystem
finds them (``fsspec/implementations/http.py``, ``_ls_real``), and ``cat_file``'s start and
end as a byte range."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlparse

from segdl.core.models import ByteRange

# Links in a page, as HTTPFileSystem finds them (fsspec/implementations/http.py).
_HREF = re.compile(r"""<(a|A)\s+(?:[^>]*?\s+)?(href|HREF)=["'](?P<url>[^"']+)""")
_BARE_URL = re.compile(r"""(?P<url>http[s]?://[-a-zA-Z0-9@:%_+.~#?&/=]+)""")


def links_below(url: str, text: str, *, simple: bool, same_scheme: bool) -> set[str]:
    """The links in the page ``text`` at ``url`` that are below it: ``<a href>`` targets,
    and with ``simple`` also bare http(s) URLs in the text."""
    found: list[str] = [m[2] for m in _HREF.findall(text)]
    if simple:
        found = _BARE_URL.findall(text) + found
    return _within(url, found, same_scheme=same_scheme)


def slice_range(start: int | None, end: int | None, size: int | None) -> ByteRange:
    """``[start, end)`` with Python's slice rules for negatives and ``None``, clamped to the
    file (what ``HTTPFileSystem``'s ``Range`` header asks of the server)."""
    if size is None:
        if (start or 0) < 0 or end is None or end < 0:
            raise ValueError("the server did not say how large the file is")
        size = end
    first = 0 if start is None else (start if start >= 0 else max(0, size + start))
    last = size if end is None else (end if end >= 0 else size + end)
    first, last = min(first, size), min(max(last, 0), size)
    return ByteRange(first, max(first, last))


def charset(content_type: str | None) -> str:
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
            try:
                "".encode(charset)
            except LookupError:
                break
            return charset
    return "utf-8"


def _within(url: str, links: Iterable[str], *, same_scheme: bool) -> set[str]:
    """The links that are below ``url``, made absolute, by ``HTTPFileSystem._ls_real``'s
    rules (which also take a link that differs from ``url`` only in http/https)."""
    out: set[str] = set()
    parts = urlparse(url)
    below = url.rstrip("/") + "/"
    for link in links:
        if link.startswith("/") and len(link) > 1:
            link = f"{parts.scheme}://{parts.netloc}{link}"
        if link.startswith("http"):
            crossed = link.replace("https", "http").startswith(below.replace("https", "http"))
            if (same_scheme and link.startswith(below)) or crossed:
                out.add(link)
        elif link not in ("..", "../"):
            out.add("/".join([url.rstrip("/"), link.lstrip("/")]))
    return out
