"""File names from hostile servers and URLs: a basename, harmless everywhere, inside its dir."""

from __future__ import annotations

import errno
import itertools
import os
import string
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segdl.core.errors import LocalFileError
from segdl.core.names import (
    MAX_NAME_BYTES,
    _sanitised,
    candidate_names,
    choose_filename,
    filename_from_url,
    parse_content_disposition,
    sanitise_filename,
)
from segdl.disk.paths import path_inside

WINDOWS_FORBIDDEN = set('<>:"/\\|?*')
BIDI = {chr(c) for c in [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789¹²³"
}
ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)  # Windows' case rule


def assert_harmless(name: str) -> None:
    """The invariants every sanitised name keeps."""
    assert name
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES <= 255
    assert name not in (".", "..")
    assert name[0] not in ".- "
    assert name[-1] not in ". "
    assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in name)
    assert not (set(name) & (WINDOWS_FORBIDDEN | BIDI | {"\u2028", "\u2029"}))
    stem = name.split(".", 1)[0].rstrip(" ")
    assert stem.translate(ASCII_UPPER) not in DEVICES
    assert unicodedata.is_normalized("NFC", name)


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [
        ("../../x", "x"),
        ("/etc/passwd", "passwd"),
        ("..\\x", "x"),
        ("C:\\Windows\\system32\\x.dll", "x.dll"),
        ("dir/", "index.html"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Aux.tar.gz", "_Aux.tar.gz"),
        ("CON .txt", "_CON .txt"),
        ("LPT1", "_LPT1"),
        ("COM¹", "_COM¹"),
        ("conin$", "_conin$"),
        ("CONSOLE", "CONSOLE"),
        ("COM10", "COM10"),
        ("con\u0131n$", "con\u0131n$"),  # dotless i is not I
        ("a\x00b", "a_b"),
        ("a\x1fb", "a_b"),
        ("a\x7fb\x85c", "a_b_c"),
        ("a\r\nb", "a__b"),
        ("a\u2028b", "a_b"),
        ("\u202etxt.exe", "_txt.exe"),
        ("invoice\u202efdp.exe", "invoice_fdp.exe"),
        ("a\u2066b\u2069c", "a_b_c"),
        ('a<b>c:d"e|f?g*h', "a_b_c_d_e_f_g_h"),
        ("x.txt:stream", "x.txt_stream"),
        ("%2e%2e%2f", "%2e%2e%2f"),
        (".bashrc", "bashrc"),
        ("-rf", "rf"),
        ("--help", "help"),
        ("-.-x", "x"),
        ("...", "index.html"),
        (".", "index.html"),
        ("..", "index.html"),
        (" ", "index.html"),
        ("", "index.html"),
        ("name. ", "name"),
        ("name...", "name"),
        ("  name  ", "name"),
        ("e\u0301t\u00e9", "\u00e9t\u00e9"),
        ("\ud800x", "\ufffdx"),
        ("report (final).pdf", "report (final).pdf"),
    ],
)
def test_sanitise_hostile_names(hostile: str, expected: str) -> None:
    """Hostile names become one known harmless basename."""
    assert sanitise_filename(hostile) == expected
    assert_harmless(expected)


def test_sanitise_fallback() -> None:
    """A name with nothing left becomes the fallback, returned as given."""
    assert sanitise_filename("../..", fallback="download.bin") == "download.bin"
    assert sanitise_filename("..", fallback="") == ""


@pytest.mark.parametrize(
    ("long_name", "ending"),
    [
        ("a" * 300, "a"),
        ("a" * 300 + ".txt", "a.txt"),
        ("a" * 300 + ".tar.gz", "a.tar.gz"),
        ("é" * 200, "é"),
        ("é" * 200 + ".pdf", "é.pdf"),
        ("😀" * 100, "😀"),
        ("x\u0301" * 200, "x\u0301"),
        ("y" * 239 + "é", "y"),
    ],
)
def test_long_names_are_cut_on_characters(long_name: str, ending: str) -> None:
    """Long names fit in MAX_NAME_BYTES, cut on a character (with its marks), extension kept."""
    out = sanitise_filename(long_name)
    assert_harmless(out)
    assert out.endswith(ending)
    assert len(out.encode()) > MAX_NAME_BYTES - 4


def test_long_name_cut_before_dot_loses_trailing_dot() -> None:
    """A cut that leaves a trailing dot or space drops it (Windows would)."""
    out = sanitise_filename("a" * (MAX_NAME_BYTES - 1) + ". " + "b" * 100)
    assert out == "a" * (MAX_NAME_BYTES - 1)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("attachment", None),
        ("inline", None),
        ('attachment; filename="foo.html"', "foo.html"),
        ('inline; filename="foo.html"', "foo.html"),
        ("attachment; filename=foo.html", "foo.html"),
        ("ATTACHMENT; FILENAME=foo.html", "foo.html"),
        ("x-custom; filename=foo.html", "foo.html"),
        ('filename="foo.html"', "foo.html"),  # missing disposition type
        ("; filename=foo.html", "foo.html"),
        ("attachment; filename=foo bar.html", "foo bar.html"),  # unquoted with a space
        ('attachment; filename  =  "x.txt"  ', "x.txt"),
        ('attachment; filename="f\\"oo\\\\bar.html"', 'f"oo\\bar.html'),
        ('attachment; filename="\\a\\b.txt"', "ab.txt"),  # quoted-pair: the next char
        ('attachment; filename="a;b.html"', "a;b.html"),
        ('attachment; filename="foo.txt', "foo.txt"),  # unterminated
        ('attachment; filename="foo.txt"junk; size=3', "foo.txt"),
        ('attachment; foo="a;filename=evil.sh"; filename=good.txt', "good.txt"),
        ('attachment; size=10; filename=x.txt; creation-date="Wed, 12 Feb 1997"', "x.txt"),
        ("attachment; filename; size=1", None),
        ('attachment; filename=""', None),
        ('attachment; filename="%2e%2e%2f"', "%2e%2e%2f"),  # no percent-decoding here
        ('attachment; filename="../../etc/passwd"', "../../etc/passwd"),  # not sanitised here
        ('attachment; filename="na\xc3\xafve.txt"', "naïve.txt"),  # raw UTF-8 read as Latin-1
        ('attachment; filename="na\xefve.txt"', "naïve.txt"),  # real Latin-1 stays
        ("attachment; filename*=UTF-8''na%C3%AFve.txt", "naïve.txt"),
        ("attachment; filename*=utf-8''na%c3%afve.txt", "naïve.txt"),
        ("attachment; filename*=iso-8859-1'en'%A3%20rates", "£ rates"),
        ("attachment; filename*=ISO-8859-1''%E9t%E9", "été"),
        ("attachment; filename*=UTF-8''A-%2541.html", "A-%41.html"),  # decoded once
        ("attachment; FILENAME*=UTF-8'de'x.txt", "x.txt"),
        ("attachment; filename=a.txt; filename*=UTF-8''%E2%82%AC.txt", "€.txt"),
        ("attachment; filename*=UTF-8''%E2%82%AC.txt; filename=a.txt", "€.txt"),
        ("attachment; filename*=koi8-r''x.txt; filename=ok.txt", "ok.txt"),
        ("attachment; filename*=''x.txt; filename=ok.txt", "ok.txt"),
        ("attachment; filename*=UTF-8''bad%zz.txt; filename=ok.txt", "ok.txt"),
        ("attachment; filename*=UTF-8''bad%4; filename=ok.txt", "ok.txt"),
        ("attachment; filename*=UTF-8''%FF.txt; filename=ok.txt", "ok.txt"),  # not UTF-8
        ("attachment; filename*=UTF-8''%C3; filename=ok.txt", "ok.txt"),  # truncated UTF-8
        ("attachment; filename*=UTF-8''a b.txt; filename=ok.txt", "ok.txt"),
        ("attachment; filename*=UTF-8''caf\u00e9.txt; filename=ok.txt", "ok.txt"),
        ("attachment; filename*=UTF-8'a'b'c.txt; filename=ok.txt", "ok.txt"),
        ("attachment; filename*=x.txt; filename=ok.txt", "ok.txt"),  # no charset
        ("attachment; filename*=UTF-8''; filename=ok.txt", "ok.txt"),  # empty
        ("attachment; filename*=\"UTF-8''x.txt\"; filename=ok.txt", "ok.txt"),  # quoted
        ("attachment; filename*=UTF-8''bad%zz", None),
        ('attachment; filename="a.txt"; filename="b.txt"', None),  # RFC 6266 §4.1
        ("attachment; filename=a.txt; FILENAME=b.txt", None),
        ("attachment; filename*=UTF-8''a; filename*=UTF-8''b; filename=c.txt", "c.txt"),
        ("attachment; filename=a; filename=b; filename*=UTF-8''c.txt", "c.txt"),
    ],
)
def test_parse_content_disposition(header: str | None, expected: str | None) -> None:
    """RFC 6266/8187: filename* first, then filename; duplicates and bad encodings unusable."""
    assert parse_content_disposition(header) == expected


@pytest.mark.parametrize(
    ("url", "header", "expected"),
    [
        ("http://h/files/report.pdf?sig=1&name=x.exe#y.sh", None, "report.pdf"),
        ("http://h/", None, "index.html"),
        ("http://h", None, "index.html"),
        ("http://h/dir/", None, "index.html"),
        ("http://h/dir/..", None, "index.html"),
        ("http://h/%2e%2e%2f", None, "index.html"),  # decoded "../", then sanitised
        ("http://h/%2e%2e%2fx.txt", None, "x.txt"),
        ("http://h/a%2Fb.txt", None, "b.txt"),
        ("http://h/a%5Cb.txt", None, "b.txt"),
        ("http://h/na%C3%AFve.txt", None, "naïve.txt"),
        ("http://h/bad%FFname", None, "bad\ufffdname"),
        ("http://h/a%00b", None, "a_b"),
        ("http://h/%2ebashrc", None, "bashrc"),
        ("http://h/CON", None, "_CON"),
        ("http://h/get", 'attachment; filename="report.pdf"', "report.pdf"),
        ("http://h/get", 'attachment; filename="%2e%2e%2f"', "%2e%2e%2f"),
        ("http://h/get", 'attachment; filename="../../x"', "x"),
        ("http://h/get", 'attachment; filename="/etc/passwd"', "passwd"),
        ("http://h/get", "attachment; filename=C:\\Windows\\system32\\x.dll", "x.dll"),
        ("http://h/get", 'attachment; filename="..\\\\x"', "x"),
        ("http://h/get", "attachment; filename=CON", "_CON"),
        ("http://h/get", "attachment; filename=-rf", "rf"),
        ("http://h/get", 'attachment; filename=".bashrc"', "bashrc"),
        ("http://h/get", "attachment; filename*=UTF-8''%E2%80%AEtxt.exe", "_txt.exe"),
        ("http://h/get", "attachment; filename*=UTF-8''..%2F..%2Fx", "x"),
        ("http://h/x.bin", 'attachment; filename="..."', "x.bin"),  # nothing left: URL
        ("http://h/x.bin", 'attachment; filename=" "', "x.bin"),
        ("http://h/x.bin", "attachment; filename=dir/", "x.bin"),
        ("http://h/x.bin", "attachment", "x.bin"),
        ("http://h/x.bin", 'attachment; filename="a"; filename="b"', "x.bin"),
    ],
)
def test_choose_filename(url: str, header: str | None, expected: str) -> None:
    """Content-Disposition names win if anything survives sanitising; else the URL's name."""
    assert choose_filename(url, header) == expected
    assert_harmless(expected)


def test_filename_from_url_long_segment() -> None:
    """A URL's long last segment is cut like any other name."""
    out = filename_from_url("https://h/" + "%C3%A9" * 200 + ".iso")
    assert out.endswith("é.iso")
    assert_harmless(out)


def test_path_inside_resolves_the_directory(tmp_path: Path) -> None:
    """The path is the name in the real directory, symlinks in the directory resolved."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    path = path_inside(tmp_path / "link", "x.txt")
    assert path == Path(os.path.realpath(real)) / "x.txt"
    assert path.parent == Path(os.path.realpath(tmp_path / "link"))


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "a\\b", "/etc/passwd", "CON", ".x", "-x", "x.", "a\x00"]
)
def test_path_inside_refuses_unsanitised(tmp_path: Path, name: str) -> None:
    """Anything but a sanitised basename is refused with EINVAL, as a LocalFileError."""
    with pytest.raises(LocalFileError) as caught:
        path_inside(tmp_path, name)
    assert caught.value.errno == errno.EINVAL
    assert isinstance(caught.value, OSError)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.tar.gz", ["a.tar.gz", "a.1.tar.gz", "a.2.tar.gz", "a.3.tar.gz"]),
        ("README", ["README", "README.1", "README.2", "README.3"]),
        ("report.pdf", ["report.pdf", "report.1.pdf", "report.2.pdf", "report.3.pdf"]),
        ("linux-6.1.tar.xz", ["linux-6.1.tar.xz", "linux-6.1.1.tar.xz", "linux-6.1.2.tar.xz"]),
        ("notes.txt.gz", ["notes.txt.gz", "notes.1.txt.gz"]),
        ("tar.gz", ["tar.gz", "tar.1.gz"]),
        ("data.001", ["data.001", "data.001.1"]),  # digits only: a version, not an extension
        ("v1.2", ["v1.2", "v1.2.1"]),
        ("a..txt", ["a..txt", "a..1.txt"]),
        ("_CON", ["_CON", "_CON.1"]),
        ("COM", ["COM", "COM.1"]),
    ],
)
def test_candidate_names_sequence(name: str, expected: list[str]) -> None:
    """Renames insert .N before the (double) extension, starting with the name itself."""
    assert list(itertools.islice(candidate_names(name), len(expected))) == expected


def test_candidate_names_respect_length_limit() -> None:
    """Long names shorten their stem so every candidate fits and keeps its extension."""
    name = sanitise_filename("é" * 300 + ".tar.gz")
    candidates = list(itertools.islice(candidate_names(name), 1200))
    assert len(set(candidates)) == len(candidates)
    for candidate in candidates[1:]:
        assert candidate.endswith(".tar.gz")
        assert sanitise_filename(candidate) == candidate
        assert_harmless(candidate)
    assert candidates[1000].endswith("é.1000.tar.gz")


# Text biased towards the characters that matter, mixed with any code point (surrogates too).
hostile_text = st.text(
    st.sampled_from(list("./\\-. :\x00\x1f\x85\u202e\u2028\u0301¹CONLPTcom1eé?*"))
    | st.characters()
    | st.characters(categories=["Cs"]),
    max_size=400,
)


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temporary directory for every example of a property test."""
    return tmp_path_factory.mktemp("names")


@given(text=hostile_text)
def test_sanitise_property(directory: Path, text: str) -> None:
    """For any text: a harmless, idempotent name that path_inside keeps in the directory."""
    out = sanitise_filename(text)
    assert_harmless(out)
    assert sanitise_filename(out) == out
    assert path_inside(directory, out).parent == Path(os.path.realpath(directory))


@given(text=hostile_text, number=st.integers(min_value=1, max_value=3000))
def test_candidate_names_property(text: str, number: int) -> None:
    """For any sanitised name, the Nth candidate is a sanitised name too."""
    name = sanitise_filename(text)
    candidate = next(itertools.islice(candidate_names(name), number, None))
    assert candidate != name
    assert sanitise_filename(candidate) == candidate
    assert_harmless(candidate)


HEADER_PIECES = [
    *"; =\"'\\%*a./\xc3\xaf",
    *("attachment", "filename", "FILENAME*", "UTF-8''", "iso-8859-1'en'", "%C3", "%zz", ".."),
]


@given(header=st.lists(st.sampled_from(HEADER_PIECES), max_size=30).map("".join))
def test_content_disposition_never_raises(header: str) -> None:
    """Any header value parses to a name or None, and choose_filename yields a harmless name."""
    suggested = parse_content_disposition(header)
    assert suggested is None or suggested
    assert_harmless(choose_filename("http://h/x.bin", header))


@given(path=hostile_text)
def test_filename_from_url_property(path: str) -> None:
    """Any URL path yields a harmless name."""
    assert_harmless(filename_from_url("http://h/" + path))


def test_a_smaller_limit_cuts_on_a_character_and_keeps_the_extension() -> None:
    """With a directory's own limit, names are cut to it: whole characters, extension kept."""
    from segdl.core.names import choose_filename

    name = choose_filename(
        "http://h/x", "attachment; filename*=UTF-8''" + "%C3%A9" * 80 + ".tar.gz", limit_bytes=101
    )
    assert len(name.encode()) <= 101 and name.endswith(".tar.gz")
    assert set(name.removesuffix(".tar.gz")) == {"é"}


_NAMEISH = st.text(alphabet=string.ascii_letters[:6] + "09_.- %~é¹\u202e/\\:", max_size=12)


@given(
    st.one_of(
        _NAMEISH,
        st.sampled_from(["con.txt", "Lpt1", "aux.tar.gz", "com¹", "a.", "-a", ".a", "a-", "_"]),
        st.text(alphabet="ab.", min_size=236, max_size=246),
    ),
    st.sampled_from([MAX_NAME_BYTES, 8]),
)
def test_the_quick_way_for_plain_names_sanitises_as_the_full_way(name: str, limit: int) -> None:
    """Whatever the name, the quick check for plain names gives what sanitising step by step
    gives (device names, dots and dashes at either end, lengths around the limit)."""
    assert sanitise_filename(name, limit_bytes=limit) == _sanitised(name, "index.html", limit)


@pytest.mark.parametrize(
    "url",
    ["http://h/a/b.bin?x=1#f", "http://h", "http://h/", "http://h/a%2Fb%20c.txt", "http://h/.."],
)
@pytest.mark.parametrize("disposition", [None, 'attachment; filename="s.bin"', "attachment"])
def test_a_url_path_split_beforehand_names_the_file_as_the_url_does(
    url: str, disposition: str | None
) -> None:
    """Given the URL's path already split off, the name is the one the whole URL gives."""
    path = urlsplit(url).path
    assert choose_filename(url, disposition, url_path=path) == choose_filename(url, disposition)
