"""``origin``: one reading of a URL's scheme, host and port for the credential rule, the
pipelining lanes and the host gate."""

from __future__ import annotations

import pytest

from segdl.core.errors import UsageError
from segdl.net.origins import gate_key_of, origin


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://H.example/x", ("http", "h.example", 80)),
        ("HTTPS://h/", ("https", "h", 443)),
        ("https://h:443/", ("https", "h", 443)),
        ("http://u:p@h:8080/f", ("http", "h", 8080)),
        ("http://[::1]:8/x", ("http", "::1", 8)),
        ("http://b\u00fccher.example/x", ("http", "xn--bcher-kva.example", 80)),
    ],
)
def test_origin_is_scheme_host_and_port_as_the_pools_read_them(
    url: str, expected: tuple[str, str, int]
) -> None:
    """Lower-cased, IDNA-encoded, IPv6 without brackets, the scheme's port filled in."""
    assert origin(url) == expected


@pytest.mark.parametrize("url", ["http://u:secret@h:99999/", "http://u:secret@h:abc/"])
def test_a_url_without_a_port_to_read_is_a_usage_error_without_its_password(url: str) -> None:
    """A port that is not one: UsageError, and the message never shows the password."""
    with pytest.raises(UsageError) as caught:
        origin(url)
    assert "secret" not in str(caught.value)


def test_the_gate_key_is_the_origin_s_host_and_port() -> None:
    """The gate names a URL's origin as it names the pools: host:port, no brackets."""
    assert gate_key_of("https://[::1]/f") == "::1:443"
    assert gate_key_of("http://H:8080/f") == "h:8080"
