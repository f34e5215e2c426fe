"""The one sanitiser for server-chosen text: nothing a terminal acts on survives it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segdl.core.printable import json_line, printable

ATTACK = "\x1b]0;pwned\x07\x1b[2J\x1b[5;35mGone\x1b[0m"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (ATTACK, "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[5;35mGone\\x1b[0m"),
        ("a\rb\nc\td", "a\\x0db\\x0ac\\x09d"),
        ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),
        ("exe\u202etxt.\u2066\u2069", "exe\\u202etxt.\\u2066\\u2069"),
        ("line\u2028break\ufeff", "line\\u2028break\\ufeff"),
        ("Not Found", "Not Found"),
        ("café ünïcode 日本", "café ünïcode 日本"),
    ],
)
def test_controls_become_visible_escapes(raw: str, shown: str) -> None:
    """Every control a terminal acts on is spelled out; ordinary text is left as it is."""
    assert printable(raw) == shown


@given(st.text())
def test_output_has_no_control_characters(text: str) -> None:
    """Whatever the input, the result holds no C0, DEL, C1 or bidi control."""
    out = printable(text)
    assert not any(
        ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u202a\u202b\u202c\u202d\u202e\u2066"
        for c in out
    )


@given(st.dictionaries(st.text(max_size=5), st.text()))
def test_json_line_is_json_without_raw_controls(record: dict[str, str]) -> None:
    """A JSON line decodes to the same record and carries no raw control character."""
    line = json_line(record)
    assert json.loads(line) == record
    assert printable(line) == line
