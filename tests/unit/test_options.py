"""Options are declared once, validated once (names, types, values); sizes parse strictly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from segdl.core.errors import UsageError
from segdl.core.options import DEFAULTS, DownloadOptions, IfExists, parse_size, with_overrides


@pytest.mark.parametrize(
    ("text", "size"),
    [("1", 1), ("1048576", 1048576), ("512K", 524288), ("1M", 1048576), ("2g", 2 << 30)],
)
def test_parse_size(text: str, size: int) -> None:
    """Sizes take 1024-based K/M/G suffixes."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "-1M", "1.5M", "1T", "+5", "\u0661M", "1 M"])
def test_parse_size_hostile(text: str) -> None:
    """Anything else is a usage error."""
    with pytest.raises(UsageError):
        parse_size(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connections": 0},
        {"min_split_bytes": 0},
        {"timeout_s": 0},
        {"headers": {"Range": "bytes=0-"}},
        {"headers": {"X-A": "b\r\nInjected: 1"}},
    ],
)
def test_invalid_options(kwargs: dict[str, object]) -> None:
    """Bad options fail before any request; segdl's own headers cannot be overridden."""
    with pytest.raises(UsageError):
        with_overrides(None, kwargs)


def test_user_headers_replace_defaults_case_insensitively() -> None:
    """A user-agent given as a header replaces the default one."""
    headers = DownloadOptions(headers={"user-agent": "x/1"}).request_headers()
    assert headers == {"Accept-Encoding": "identity", "user-agent": "x/1"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"conections": 4}, "unknown option 'conections' (did you mean 'connections'?)"),
        ({"progress_bar": True}, "unknown option 'progress_bar'"),
        ({"connections": "4"}, "option connections cannot be '4' (int expected)"),
        ({"connections": 4.0}, "option connections cannot be 4.0 (int expected)"),
        ({"resume": 1}, "option resume cannot be 1 (bool expected)"),
        ({"timeout_s": True}, "option timeout_s cannot be True (float expected)"),
        ({"max_size_bytes": "big"}, "invalid size 'big'"),
        ({"proxy": 8080}, "option proxy cannot be 8080 (str or None expected)"),
        ({"headers": {"X-A": 1}}, "option headers cannot be {'X-A': 1} (a mapping of str"),
        ({"if_exists": "clobber"}, "if_exists must be one of error, skip, overwrite, rename"),
        ({"if_exists": 3}, "option if_exists cannot be 3 (IfExists expected)"),
        ({"overwrite": "yes"}, "option overwrite must be True or False, not 'yes'"),
    ],
)
def test_a_bad_option_is_a_usage_error(overrides: dict[str, object], message: str) -> None:
    """An unknown name, a value of the wrong type or a bad value is one UsageError that
    names the option (and the closest known name for a typo), never a TypeError later."""
    with pytest.raises(UsageError) as caught:
        with_overrides(None, overrides)
    assert str(caught.value).startswith(message)


def test_the_keywords_download_always_took_still_apply() -> None:
    """download()'s old spellings map onto the options: netrc, limit_rate and min_split_size
    (sizes as text), overwrite=True, if_exists as text, paths, None for the default."""
    options = with_overrides(
        None,
        {
            "netrc": True,
            "limit_rate": "10M",
            "min_split_size": "512K",
            "if_exists": "rename",
            "overwrite": True,
            "netrc_file": Path("/n/netrc"),
            "ca_bundle": Path("/n/ca.pem"),
            "user_agent": None,
            "headers": None,
        },
    )
    assert options.use_netrc
    assert options.limit_rate_bytes_per_s == 10 << 20
    assert options.min_split_bytes == 512 << 10
    assert options.if_exists is IfExists.OVERWRITE  # overwrite=True wins, as it always did
    assert (options.netrc_file, options.ca_bundle) == ("/n/netrc", "/n/ca.pem")
    assert options.user_agent == DEFAULTS.user_agent
    assert dict(options.headers) == {}


def test_overrides_apply_to_a_base_and_leave_it_alone() -> None:
    """with_overrides returns a new checked object; the base (shared by a batch's files) is
    unchanged, and no override gives the base itself back."""
    base = DownloadOptions(connections=4, checksum="sha256=" + "0" * 64)
    changed = with_overrides(base, {"connections": 2, "if_exists": IfExists.SKIP})
    assert (changed.connections, changed.if_exists, changed.checksum) == (
        2,
        IfExists.SKIP,
        base.checksum,
    )
    assert base.connections == 4
    assert with_overrides(base, {}) is base


def test_every_option_has_one_description_and_a_valid_default() -> None:
    """Each field carries the text the CLI shows, and the defaults pass their own checks."""
    for option in dataclasses.fields(DownloadOptions):
        assert option.metadata["help"], option.name
    assert DownloadOptions() == DEFAULTS


def test_the_table_and_the_options_agree() -> None:
    """The light table the CLI reads first and DownloadOptions are one declaration: every
    field has its entry (same default), and IfExists' values are the table's choices."""
    from segdl.core.option_table import DEFAULTS_TABLE, IF_EXISTS_CHOICES

    fields = {option.name for option in dataclasses.fields(DownloadOptions)}
    assert fields == set(DEFAULTS_TABLE)
    for name in fields - {"headers", "if_exists"}:
        assert getattr(DEFAULTS, name) == DEFAULTS_TABLE[name][0], name
    assert tuple(policy.value for policy in IfExists) == IF_EXISTS_CHOICES
    assert DEFAULTS.if_exists.value == DEFAULTS_TABLE["if_exists"][0]


def test_the_integrations_split_keywords_as_download_takes_them() -> None:
    """pooch and fsspec pass download()'s keywords through: every keyword download() takes
    besides its options is one they hold back, and nothing else is (an option added to
    download() is never taken for an unknown one, nor an option for a download() keyword)."""
    import inspect

    from segdl.integrations._http import _NOT_OPTIONS
    from segdl.run.engine import download

    keywords = {
        name
        for name, parameter in inspect.signature(download).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert keywords - {"options"} == _NOT_OPTIONS
    assert not _NOT_OPTIONS & {field.name for field in dataclasses.fields(DownloadOptions)}
