"""The lean path's choices per file: what goes through a proxy never goes the lean way, and
remembering the answer per server never gives one server's answer to another."""

from __future__ import annotations

import pytest

from segdl.core.options import DownloadOptions
from segdl.run.leanplan import ProxyChoices, proxied


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
