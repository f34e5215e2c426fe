"""The lean path's choices per file: what goes through a proxy never goes the lean way, and
remembering the answer per server never gives one server's answer to another; where a
request goes and its bytes; which answers are taken as the file."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from segdl.core.options import DownloadOptions
from segdl.net.leanconn import Answer
from segdl.run.leanplan import (
    SMALL_BYTES,
    ProxyChoices,
    Refusal,
    Target,
    Targets,
    lean_target,
    proxied,
    refusal,
    request_bytes,
    why_not_lean,
)


def test_proxy_choices_are_per_server_and_per_proxy_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """With http_proxy set and one host in no_proxy, that host goes direct and the others
    through the proxy, asked in any order; an explicit empty proxy means direct for all."""
    for name in ("HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "direct.test")
    options = DownloadOptions()
    choices = ProxyChoices()
    urls = ["http://direct.test/a", "http://other.test/b", "http://direct.test/c",
            "http://other.test:8080/d", "http://direct.test:81/e"]  # fmt: skip
    for url in urls * 2:
        assert choices.why(url, options) == proxied(url, options)
    assert choices.why("http://direct.test/x", options) is None
    assert choices.why("http://other.test/x", options) == "a proxy"
    no_proxy = DownloadOptions(proxy="")
    assert choices.why("http://other.test/x", no_proxy) is None
    assert choices.why("http://other.test/x", options) == "a proxy"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://Host.test/a/b.bin?x=1", Target("host.test", 80, "Host.test", "/a/b.bin?x=1")),
        ("http://host.test:8080", Target("host.test", 8080, "host.test:8080", "/")),
        ("https://host.test/a", Target("host.test", 443, "host.test", "/a", True)),
        ("HTTPS://host.test:8443/", Target("host.test", 8443, "host.test:8443", "/", True)),
        ("ftp://host.test/a", "not http(s)"),
        ("http://user@host.test/a", "not http(s)"),
        ("http://host.test/a b", "a URL to be encoded"),
        ("http://host.test/é", "a URL to be encoded"),
        ("http://host.test:0/a", "a URL to be encoded"),
        ("http://host.test:99999/a", "an unparsable URL"),
    ],
)
def test_the_target_is_split_from_a_url_sent_as_it_is(url: str, expected: Target | str) -> None:
    """A URL the lean path takes gives its host, port, Host header and request target; any
    other says why not, as why_not_lean does."""
    assert lean_target(DownloadOptions(), url, [url]) == expected
    assert why_not_lean(DownloadOptions(), url, [url]) == (
        expected if isinstance(expected, str) else None
    )


def test_the_request_carries_the_target_the_headers_and_the_lean_range() -> None:
    """GET of the target with Host as given, the options' headers, and the first
    SMALL_BYTES asked for."""
    target = lean_target(DownloadOptions(), "http://h.test:81/f?q=1", ["x"])
    assert isinstance(target, Target)
    wire = request_bytes(target, {"User-Agent": "t", "X-A": "1"})
    assert (
        wire
        == (
            f"GET /f?q=1 HTTP/1.1\r\nHost: h.test:81\r\nUser-Agent: t\r\nX-A: 1\r\n"
            f"Range: bytes=0-{SMALL_BYTES - 1}\r\n\r\n"
        ).encode()
    )


def _answer(status: int, fields: dict[str, str], body: bytes, *, pipelined: bool = False) -> Answer:
    return Answer.of(status, "1.1", fields.items(), body, pipelined)


def test_only_a_whole_believable_matching_answer_within_the_limit_is_taken() -> None:
    """A 206 of the whole file and a 200 with its length are taken; part of a file, a wrong
    digest (marked as a mismatch), a bad checksum option and a file over --max-size are not."""
    body = b"x" * 10
    whole = {"Content-Range": "bytes 0-9/10", "Content-Length": "10"}
    options = DownloadOptions()
    assert refusal(options, _answer(206, whole, body)) is None
    assert refusal(options, _answer(200, {"Content-Length": "10"}, body)) is None
    part = {"Content-Range": "bytes 0-9/20", "Content-Length": "10"}
    assert refusal(options, _answer(206, part, body)) == Refusal(
        "Content-Range bytes 0-9/20: not the whole file"
    )
    wrong = DownloadOptions(checksum="sha256=" + hashlib.sha256(b"other").hexdigest())
    refused = refusal(wrong, _answer(206, whole, body))
    assert refused is not None and refused.mismatch
    right = DownloadOptions(checksum="sha256=" + hashlib.sha256(body).hexdigest())
    assert refusal(right, _answer(206, whole, body)) is None
    unparsable = refusal(DownloadOptions(checksum="sha256=zz"), _answer(206, whole, body))
    assert unparsable is not None and not unparsable.mismatch
    small = DownloadOptions(max_size_bytes=9)
    assert refusal(small, _answer(206, whole, body)) == Refusal("over --max-size")


def test_an_answer_is_asked_about_its_fields_by_any_spelling_of_their_names() -> None:
    """Every value of a field, in order, whatever the case asked; a field it lacks: none."""
    answer = Answer.of(200, "1.1", [("a", "1"), ("b", "2"), ("A", "3")], b"", False)
    assert answer.header_values("A") == ["1", "3"] == answer.header_values("a")
    assert answer.header_values("c") == []
    answer.header_values("a").append("4")
    assert answer.header_values("a") == ["1", "3"]


_URL_PARTS = (
    ["http://", "HTTP://", "https://", " http://", "http:/"],
    ["", "u@", "u:p@"],
    ["h.test", "H.Test", "127.0.0.1", "[::1]", "", "h\\x", "é.test"],
    ["", ":81", ":0", ":99999", ":", ":8o"],
    ["", "/", "//", "/b.bin", "/a/%41", "/é", "/a b", "/a\tb", '/"', "/\\", "/~&"],
    ["", "?", "?q=1", "??", "?a#", "?é"],
    ["", "#", "#f"],
)


@settings(max_examples=400)
@given(st.tuples(*(st.sampled_from(choices) for choices in _URL_PARTS)), st.booleans())
@example(("http://", "", "h.test", "", "/a", "?", ""), False)  # urlsplit drops a bare "?"
@example(("http://", "", "h.test", ":81", "/a", "", "#f"), True)
def test_targets_give_what_lean_target_and_request_bytes_give(
    parts: tuple[str, ...], own: bool
) -> None:
    """The batch's cached Targets answer every URL (plain, odd or unparsable) exactly as
    lean_target and request_bytes do, for the batch's options and for a line's own."""
    url = "".join(parts)
    targets = Targets()
    shared = DownloadOptions(headers={"X-A": "1"})
    for options in (shared, DownloadOptions(user_agent="u") if own else shared, shared):
        planned = targets.request(options, url, [url])
        expected = lean_target(options, url, [url])
        if isinstance(expected, str):
            assert planned == expected
        else:
            assert planned == (expected, request_bytes(expected, options.request_headers()))
    assert targets.request(shared, url, [url, url]) == "mirrors"
    assert Targets().request(DownloadOptions(user="u"), url, [url]) == "credentials"


def test_an_https_url_is_asked_about_its_own_proxy_not_the_http_one_of_its_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only https_proxy set: an http URL of a host goes direct, and an https URL of the same
    host after it still goes through the proxy (a choice cached per host alone would have
    sent it direct, around the proxy the user set)."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    options = DownloadOptions()
    choices = ProxyChoices()
    assert choices.why("http://h.test/a", options) is None
    assert choices.why("https://h.test/a", options) == "a proxy"
    assert choices.why("http://h.test:443/a", options) is None
    assert choices.why("https://h.test:443/a", options) == "a proxy"
