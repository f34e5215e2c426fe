"""Pure: which local file name a download gets (:func:`segdl.disk.paths.path_inside` keeps it
inside its directory).

A name suggested by the server (``Content-Disposition``) or taken from the URL is hostile until
reduced by :func:`sanitise_filename`: a basename only, nothing a shell, a terminal or Windows
treats specially, short enough for every file system. wget learned this as CVE-2010-2252 (a
redirect target named ``.bashrc``) and curl as CVE-2020-8177 (``-J`` overwriting a local file),
which is why the name never comes from a redirect target and never carries a directory.
"""

from __future__ import annotations

import itertools
import posixpath
import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import unquote, unquote_to_bytes, urlsplit

__all__ = [
    "MAX_NAME_BYTES",
    "candidate_names",
    "choose_filename",
    "filename_from_url",
    "parse_content_disposition",
    "sanitise_filename",
]

MAX_NAME_BYTES = 240
"""Longest name, in UTF-8 bytes. NAME_MAX is 255 bytes on ext4 and APFS and 255 UTF-16 units on
NTFS (never more units than UTF-8 bytes); 15 bytes are left for the sidecar suffixes segdl adds
beside the output (``.part``, ``.segdl-lock``, ``.segdl-state``), which must fit too. Where a
directory's NAME_MAX is smaller, names are shorter still (``segdl.disk.paths.name_limit_bytes``)."""

DEFAULT_NAME = "index.html"  # what wget and curl call a URL whose path names no file

# Replaced by "_": C0, DEL and C1 controls; what Windows forbids in a name; the bidi controls
# (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069) that make "exe.txt" display as "txt.exe"
# (Trojan Source, CVE-2021-42574); and U+2028/U+2029, which str.splitlines() and JavaScript treat
# as line breaks, so a name could forge a line of a log or report.
# These three and _PERCENT are compiled on first use, by re's own cache: most names from URLs
# are plain (_PLAIN) and never need them (start-up of a batch of small files).
_UNSAFE = (
    "[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    '<>:"/\\\\|?*'  # Windows
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi
    "\u2028\u2029]"  # line and paragraph separators
)
_SURROGATE = "[\ud800-\udfff]"
# Windows device names, reserved with any extension and in any case ("con.txt", "CON .tar.gz");
# Microsoft's "Naming Files" page lists COM0/LPT0 and the superscripts ¹²³ too. re.ASCII keeps
# IGNORECASE from folding look-alikes such as U+0131 dotless i into ASCII.
_RESERVED = re.compile(
    r"CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|(?:COM|LPT)[0-9\u00b9\u00b2\u00b3]", re.IGNORECASE | re.ASCII
)
_EXTENSION = r"[A-Za-z0-9]{0,9}[A-Za-z][A-Za-z0-9]{0,9}"
_COMPRESSED = frozenset({"gz", "bz2", "xz", "zst", "lz", "lz4", "lzma", "z", "br", "sz"})
# A name of these characters, starting with neither a dot nor a dash and not ending with a dot,
# is its own sanitised form unless it is a device name: most names from URLs are, and
# matching this costs a tenth of sanitising (a batch of small files names every file).
_PLAIN = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_-])?")
_PERCENT = r"(?:%[0-9A-Fa-f]{2}|[!#$&(-~])*"  # printable ASCII except % ' " space


def parse_content_disposition(value: str | None) -> str | None:
    """The file name a ``Content-Disposition`` value suggests, decoded but not sanitised.

    RFC 6266 §4.3: ``filename*`` (RFC 8187) wins over ``filename`` wherever it appears; an
    undecodable ``filename*`` falls back to ``filename``. A parameter given twice is unusable
    (RFC 6266 §4.1). Lenient like browsers where that is harmless: a missing disposition type,
    unquoted values with spaces, an unterminated quoted-string. None when nothing usable is left.
    """
    if not value:
        return None
    found: dict[str, list[tuple[str, bool]]] = {}
    for name, text, quoted in _parameters(value):
        found.setdefault(name, []).append((text, quoted))
    extended = found.get("filename*", [])
    if len(extended) == 1 and not extended[0][1]:  # RFC 8187 ext-value is never quoted
        decoded = _decode_ext_value(extended[0][0])
        if decoded:
            return decoded
    plain = found.get("filename", [])
    if len(plain) == 1 and plain[0][0]:
        return _raw_utf8(plain[0][0])
    return None


def _parameters(value: str) -> Iterator[tuple[str, str, bool]]:
    """``(lowercased name, value, was quoted)`` for each ``name=value`` after the type."""
    end = len(value)
    first = value.split(";", 1)[0]
    i = 0 if "=" in first else len(first)  # no disposition type: browsers accept that too
    while i < end:
        if value[i] in "; \t":
            i += 1
            continue
        eq = _find(value, "=", i)
        semi = _find(value, ";", i)
        if semi <= eq:  # a bare word (or the end): no value to take
            i = semi
            continue
        name = value[i:eq].strip(" \t").lower()
        i = eq + 1
        while i < end and value[i] in " \t":
            i += 1
        if i < end and value[i] == '"':
            text, i = _quoted_string(value, i + 1)
            yield name, text, True
            i = _find(value, ";", i)  # junk after the closing quote is ignored
        else:
            semi = _find(value, ";", i)
            yield name, value[i:semi].strip(" \t"), False
            i = semi


def _find(text: str, char: str, start: int) -> int:
    """Index of ``char`` at or after ``start``, or ``len(text)``."""
    index = text.find(char, start)
    return len(text) if index < 0 else index


def _quoted_string(value: str, i: int) -> tuple[str, int]:
    """The content of a quoted-string opened before ``i``, and the index after it closes.

    RFC 9110 §5.6.4: a backslash quotes the next character. Unterminated: the rest.
    """
    out: list[str] = []
    while i < len(value):
        char = value[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\" and i + 1 < len(value):
            i += 1
            char = value[i]
        out.append(char)
        i += 1
    return "".join(out), i


def _decode_ext_value(value: str) -> str | None:
    """RFC 8187 §3.2.1 ``charset'[language]'value-chars``, or None if invalid or empty."""
    parts = value.split("'")
    if len(parts) != 3 or not re.fullmatch(_PERCENT, parts[2]):
        return None
    charset = parts[0].lower()
    if charset not in ("utf-8", "iso-8859-1"):  # the only two RFC 8187 §3.2.1 requires
        return None
    try:
        return unquote_to_bytes(parts[2]).decode(charset) or None
    except UnicodeDecodeError:
        return None


def _raw_utf8(text: str) -> str:
    """Header bytes arrive decoded as ISO-8859-1 (http.client); servers often send raw UTF-8
    in ``filename`` (against RFC 6266 Appendix D), which browsers decode as UTF-8 first."""
    if text.isascii() or max(text) > "\xff":
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return text


def sanitise_filename(
    name: str, fallback: str = DEFAULT_NAME, *, limit_bytes: int = MAX_NAME_BYTES
) -> str:
    """A plain file name, harmless on POSIX and Windows alike; ``fallback`` (as is) if empty.

    The basename after ``/`` and ``\\``, NFC, unsafe characters replaced by ``_``, no leading
    dot, dash or space (hidden files, ``.``/``..``, options to a later shell command), no
    trailing dot or space (Windows drops them), a ``_`` before Windows device names, at most
    ``limit_bytes`` (default :data:`MAX_NAME_BYTES`) bytes of UTF-8, the extension kept and
    the cut on a character boundary. Percent-escapes stay literal.
    """
    plain = len(name) <= limit_bytes and _PLAIN.fullmatch(name)
    if plain and not _RESERVED.fullmatch(name.split(".", 1)[0]):
        return name
    return _sanitised(name, fallback, limit_bytes)


def _sanitised(name: str, fallback: str, limit_bytes: int) -> str:
    """:func:`sanitise_filename` step by step, for any name."""
    name = re.sub(
        _SURROGATE, "\ufffd", name
    )  # lone surrogates cannot be encoded: a file system refuses
    name = unicodedata.normalize("NFC", name)  # HFS+ stores NFD; one form keeps names comparable
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(_UNSAFE, "_", name)
    name = name.lstrip(". -").rstrip(". ")
    if not name:
        return fallback
    if _RESERVED.fullmatch(name.split(".", 1)[0].rstrip(" ")):
        name = "_" + name
    return _fit(name, limit_bytes)


def _split_extension(name: str) -> tuple[str, str]:
    """``(stem, extension)``: ``a.tar.gz`` -> ``("a", ".tar.gz")``, ``README`` -> no extension.

    An extension is short, ASCII, with a letter: ``data.001`` and ``v1.2`` have none.
    """
    stem, dot, last = name.rpartition(".")
    if not (dot and stem and re.fullmatch(_EXTENSION, last)):
        return name, ""
    if last.lower() in _COMPRESSED:
        inner_stem, dot, inner = stem.rpartition(".")
        if dot and inner_stem and re.fullmatch(_EXTENSION, inner):
            return inner_stem, f".{inner}.{last}"
    return stem, f".{last}"


def _fit(name: str, limit_bytes: int) -> str:
    """``name`` cut to ``limit_bytes`` of UTF-8, keeping its extension and whole characters."""
    if len(name.encode("utf-8")) <= limit_bytes:
        return name
    stem, extension = _split_extension(name)
    if extension:
        return _cut(stem, limit_bytes - len(extension)) + extension  # extensions are ASCII
    return _cut(name, limit_bytes).rstrip(". ")


def _cut(text: str, limit_bytes: int) -> str:
    """The longest prefix of ``text`` within ``limit_bytes`` that does not strip a base
    character of its combining marks (so "é" spelt e + U+0301 is not cut to "e")."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit_bytes:
        return text
    end = len(encoded[:limit_bytes].decode("utf-8", "ignore"))  # drop a half character
    kept = end
    while kept > 0 and unicodedata.category(text[kept]).startswith("M"):
        kept -= 1
    return text[: kept or end]


def filename_from_url(url: str, *, limit_bytes: int = MAX_NAME_BYTES) -> str:
    """The percent-decoded last segment of the URL path (query and fragment ignored),
    invalid UTF-8 replaced, sanitised; ``index.html`` when nothing is left."""
    return filename_from_path(urlsplit(url).path, limit_bytes=limit_bytes)


def filename_from_path(path: str, *, limit_bytes: int = MAX_NAME_BYTES) -> str:
    """:func:`filename_from_url` for a URL's path already split from it (no query)."""
    segment = posixpath.basename(path)
    return sanitise_filename(unquote(segment, errors="replace"), limit_bytes=limit_bytes)


def choose_filename(
    original_url: str,
    content_disposition: str | None,
    *,
    limit_bytes: int = MAX_NAME_BYTES,
    url_path: str | None = None,
) -> str:
    """The server's ``Content-Disposition`` name if it survives sanitising, else the name in
    the URL the user gave. Never a redirect target's: a redirect must not pick a local name
    (CVE-2010-2252, wget). At most ``limit_bytes`` (what the directory's NAME_MAX leaves).
    ``url_path``: that URL's path, where the caller has split it already."""
    suggested = parse_content_disposition(content_disposition)
    if suggested is not None:
        name = sanitise_filename(suggested, fallback="", limit_bytes=limit_bytes)
        if name:
            return name
    if url_path is not None:
        return filename_from_path(url_path, limit_bytes=limit_bytes)
    return filename_from_url(original_url, limit_bytes=limit_bytes)


def candidate_names(name: str, *, limit_bytes: int = MAX_NAME_BYTES) -> Iterator[str]:
    """``name``, then ``stem.1.ext``, ``stem.2.ext``, ... without end (``--if-exists rename``).

    ``a.tar.gz`` -> ``a.1.tar.gz``, ``README`` -> ``README.1``. The stem is shortened to keep
    each name within ``limit_bytes``; for a sanitised ``name`` every result is sanitised
    too. Other names (a user's explicit output) keep their stem as given.
    """
    yield name
    stem, extension = _split_extension(name)
    for number in itertools.count(1):
        tail = f".{number}{extension}"
        yield _cut(stem, limit_bytes - len(tail)) + tail
