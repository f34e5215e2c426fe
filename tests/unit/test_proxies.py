"""Proxy selection without sockets: environment precedence, httpoxy, NO_PROXY forms, parsing,
redaction, and the one-line proxy errors."""

from __future__ import annotations

import socket

import pytest

from segdl.core.errors import ConnectError, ProxyAuthError, TimeoutError_, UsageError
from segdl.net.proxies import (
    ProxyURL,
    bypass,
    parse_proxy,
    proxy_auth_failed,
    proxy_error,
    proxy_for,
)

P1, P2, P3 = "http://p1:1", "http://p2:2", "socks5h://p3:3"


@pytest.mark.parametrize(
    ("url", "environ", "expected"),
    [
        ("http://h/", {}, None),
        ("http://h/", {"http_proxy": P1}, P1),
        ("http://h/", {"HTTP_PROXY": P1}, P1),
        ("http://h/", {"http_proxy": P1, "HTTP_PROXY": P2}, P1),  # lowercase wins
        ("https://h/", {"https_proxy": P1, "HTTPS_PROXY": P2}, P1),
        ("https://h/", {"HTTPS_PROXY": P2}, P2),
        ("https://h/", {"http_proxy": P1}, None),  # another scheme's variable
        ("http://h/", {"https_proxy": P1}, None),
        ("http://h/", {"all_proxy": P3}, P3),  # fallback
        ("https://h/", {"ALL_PROXY": P3}, P3),
        ("https://h/", {"all_proxy": P1, "ALL_PROXY": P2}, P1),
        ("http://h/", {"http_proxy": P1, "all_proxy": P3}, P1),  # scheme's own first
        ("http://h/", {"http_proxy": "", "all_proxy": P3}, P3),  # empty counts as unset
        ("http://h/", {"http_proxy": "  ", "HTTP_PROXY": P2}, P2),
        ("HTTP://h/", {"http_proxy": P1}, P1),  # the URL's scheme is case-insensitive
        ("ftp://h/", {"all_proxy": P3}, None),  # only http and https go through proxies
    ],
)
def test_environment_precedence(url: str, environ: dict[str, str], expected: str | None) -> None:
    """The scheme's variable, lowercase before uppercase, then all_proxy; empty is unset."""
    assert proxy_for(url, explicit=None, environ=environ, use_env=True) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HTTP_PROXY": P1, "REQUEST_METHOD": "GET"}, None),
        ({"HTTP_PROXY": P1, "REQUEST_METHOD": ""}, None),  # set at all is enough
        ({"http_proxy": P1, "REQUEST_METHOD": "GET"}, P1),  # lowercase is not a header
        ({"HTTP_PROXY": P1, "ALL_PROXY": P3, "REQUEST_METHOD": "GET"}, P3),
        ({"HTTP_PROXY": P1}, P1),
    ],
)
def test_httpoxy_ignores_uppercase_http_proxy_under_cgi(
    environ: dict[str, str], expected: str | None
) -> None:
    """With REQUEST_METHOD set (CGI), HTTP_PROXY may be a client's Proxy: header: ignored."""
    assert proxy_for("http://h/", explicit=None, environ=environ, use_env=True) == expected


def test_httpoxy_leaves_https_proxy_alone() -> None:
    """httpoxy concerns only HTTP_PROXY: HTTPS_PROXY has no HTTP_ header spelling."""
    environ = {"HTTPS_PROXY": P2, "REQUEST_METHOD": "GET"}
    assert proxy_for("https://h/", explicit=None, environ=environ, use_env=True) == P2


@pytest.mark.parametrize(
    ("explicit", "environ", "use_env", "expected"),
    [
        (P1, {"http_proxy": P2}, True, P1),  # explicit wins
        (P1, {"no_proxy": "h"}, True, None),  # NO_PROXY applies to explicit too
        (P1, {"NO_PROXY": "h"}, True, None),
        (P1, {"no_proxy": "h"}, False, P1),  # ...unless the environment is ignored
        (None, {"http_proxy": P2}, False, None),
        ("", {"http_proxy": P2}, True, None),  # empty explicit: no proxy at all
        (None, {"http_proxy": P2, "no_proxy": "other"}, True, P2),
        (None, {"http_proxy": P2, "no_proxy": "", "NO_PROXY": "h"}, True, None),
    ],
)
def test_explicit_proxy_and_use_env(
    explicit: str | None, environ: dict[str, str], use_env: bool, expected: str | None
) -> None:
    """An explicit proxy beats the environment; NO_PROXY applies while the env is used."""
    assert proxy_for("http://h/", explicit=explicit, environ=environ, use_env=use_env) == expected


@pytest.mark.parametrize(
    ("url", "no_proxy"),
    [
        ("http://anything.example/", "*"),
        ("http://x/", "a, *"),
        ("http://example.com/", "example.com"),
        ("http://a.example.com/", "example.com"),
        ("http://a.b.example.com/", ".example.com"),
        ("http://a.example.com/", "*.example.com"),
        ("http://EXAMPLE.com./", "example.COM"),
        ("http://example.com/", "example.com."),
        ("http://h/", "other,h"),
        ("http://h/", "other h"),
        ("http://h/", " other ,\th\n"),
        ("http://h:8080/", "h:8080"),
        ("http://h/", "h:80"),  # the scheme's default port
        ("https://h/", "h:443"),
        ("http://10.1.2.3/", "10.1.2.3"),
        ("http://10.1.2.3:81/", "10.0.0.0/8"),
        ("http://192.168.7.9/", "192.168.0.0/16"),
        ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
        ("http://[::1]/", "::1"),
        ("http://[::1]:8080/", "[::1]"),
        ("http://[::1]:8080/", "[::1]:8080"),
        ("http://[2001:db8::5]/", "2001:db8::/32"),
        ("http://[2001:db8::5]/", "2001:DB8:0::5"),
    ],
)
def test_no_proxy_matches(url: str, no_proxy: str) -> None:
    """NO_PROXY entries: *, domain suffixes (with or without a dot), ports, IPs, CIDR, IPv6."""
    assert bypass(url, no_proxy)


@pytest.mark.parametrize(
    ("url", "no_proxy"),
    [
        ("http://h/", None),
        ("http://h/", ""),
        ("http://h/", " , "),
        ("http://notexample.com/", "example.com"),  # a suffix, but not at a dot
        ("http://example.com.evil/", "example.com"),
        ("http://example.com/", "a.example.com"),  # a subdomain entry does not match above
        ("http://example.com/", ".a.example.com"),
        ("http://h:8080/", "h:80"),
        ("https://h/", "h:80"),
        ("http://10.1.2.3/", "10.1.2.4"),
        ("http://11.1.2.3/", "10.0.0.0/8"),
        ("http://10.1.2.3/", "1.2.3"),  # IPs are never suffix-matched
        ("http://localhost/", "127.0.0.1"),  # no DNS: a name is not its address
        ("http://127.0.0.1/", "localhost"),
        ("http://[::1]/", "[::2]"),
        ("http://[::1]:8080/", "[::1]:9090"),
        ("http://[::1]/", "10.0.0.0/8"),
        ("http://h/", "*h"),  # only "*" alone (or "*." before a domain) is a wildcard
        ("http://h/", "h:port"),  # malformed entries match nothing...
        ("http://h/", "h:99999"),
        ("http://h/", "[::1"),
        ("http://h/", "a:b:c"),
        ("http://h/", "10.0.0.0/99"),
        ("http:///path", "*.example.com"),  # ...and a URL without a host is never bypassed
    ],
)
def test_no_proxy_does_not_match(url: str, no_proxy: str | None) -> None:
    """Near misses stay on the proxy: other ports, other suffixes, names vs. IPs, garbage."""
    assert not bypass(url, no_proxy)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://proxy:3128", ProxyURL("http", "proxy", 3128)),
        ("proxy:3128", ProxyURL("http", "proxy", 3128)),  # no scheme: an HTTP proxy
        ("http://proxy", ProxyURL("http", "proxy", 1080)),  # curl's default port
        ("https://proxy", ProxyURL("https", "proxy", 443)),
        ("socks5h://proxy", ProxyURL("socks5h", "proxy", 1080)),
        ("SOCKS5://Proxy:9", ProxyURL("socks5", "proxy", 9)),
        ("http://[::1]:8", ProxyURL("http", "::1", 8)),
        ("http://u:p@proxy:1/", ProxyURL("http", "proxy", 1, "u", "p")),
        ("http://us%40er:p%3Aw%2Fd@proxy:1", ProxyURL("http", "proxy", 1, "us@er", "p:w/d")),
        ("http://u@proxy:1", ProxyURL("http", "proxy", 1, "u", None)),
        ("  http://proxy:1  ", ProxyURL("http", "proxy", 1)),
    ],
)
def test_parse_proxy(text: str, expected: ProxyURL) -> None:
    """Proxy URLs parse to scheme, host, port and percent-decoded credentials."""
    assert parse_proxy(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ftp://u:secret@proxy:1",
        "http://u:secret@proxy:99999",
        "http://u:secret@proxy:port",
        "http://u:sec/ret@proxy:1",  # an unencoded "/" in the password
        "http://u:secret@:1",
        "file:///u:secret@x",
    ],
)
def test_bad_proxy_is_a_usage_error_without_the_password(text: str) -> None:
    """A malformed proxy URL is a UsageError whose message and cause hide the credentials."""
    with pytest.raises(UsageError) as caught:
        parse_proxy(text)
    assert "secret" not in str(caught.value) and "sec" not in str(caught.value)
    cause = caught.value.__cause__
    assert cause is None or "sec" not in str(cause)


def test_proxy_url_never_shows_credentials() -> None:
    """str() and repr() of a proxy show scheme://host:port only."""
    proxy = parse_proxy("socks5://alice:hunter2@[::1]:1080")
    for text in (str(proxy), repr(proxy), proxy.redacted):
        assert "alice" not in text and "hunter2" not in text
    assert str(proxy) == "socks5://[::1]:1080"


_PROXY = ProxyURL("http", "127.0.0.1", 3128, "alice", "hunter2")
_ANONYMOUS = ProxyURL("socks5", "127.0.0.1", 1080)


@pytest.mark.parametrize(
    ("proxy", "cause", "kind", "reason"),
    [
        (_PROXY, ConnectionRefusedError(111, "refused"), ConnectError, " refused the connection"),
        (_PROXY, TimeoutError("timed out"), TimeoutError_, " timed out"),
        (_PROXY, socket.gaierror(-2, "Name unknown"), ConnectError, ": host name not found"),
        (
            _PROXY,
            OSError("Tunnel connection failed: 407 Proxy Authentication Required"),
            ProxyAuthError,
            " rejected the credentials (407)",
        ),
        (
            _ANONYMOUS,
            OSError("Tunnel connection failed: 407 Proxy Authentication Required"),
            ProxyAuthError,
            " requires authentication (407)",
        ),
        (
            _PROXY,
            OSError("Tunnel connection failed: 403 Forbidden"),
            ConnectError,
            " refused the tunnel to the server (CONNECT: 403 Forbidden)",
        ),
        (
            _ANONYMOUS,
            OSError("All offered SOCKS5 authentication methods were rejected"),
            ProxyAuthError,
            " requires authentication (All offered SOCKS5 authentication methods were rejected)",
        ),
        (
            _ANONYMOUS,
            OSError("0x05: Connection refused"),
            ConnectError,
            " could not reach the server: connection refused (SOCKS 0x05)",
        ),
        (_PROXY, OSError("odd"), ConnectError, " failed: odd"),
    ],
)
def test_proxy_errors_are_one_redacted_line(
    proxy: ProxyURL, cause: BaseException, kind: type[Exception], reason: str
) -> None:
    """Each proxy failure becomes one line naming the proxy's address, never its password."""
    error = proxy_error("http://origin/f", proxy, cause)
    assert type(error) is kind
    assert str(error) == f"proxy {proxy.redacted}{reason} (http://origin/f)"
    assert "hunter2" not in str(error) and "alice" not in str(error)


def test_forwarded_407_is_a_connect_error() -> None:
    """A forwarding proxy's 407 names the proxy and whether credentials were sent."""
    error = proxy_auth_failed("http://origin/f", _PROXY, 407)
    assert isinstance(error, ConnectError)
    assert (
        str(error) == "proxy http://127.0.0.1:3128 rejected the credentials (407) (http://origin/f)"
    )
