"""Pure: text that came from a server (or anywhere untrusted), made safe to show.

A reason phrase, a ``Location``, a header value quoted in an error or a notice is text the
server chose. Printed raw, ``\\x1b]0;pwned\\x07`` retitles the window, ``\\x1b[2J`` clears the
screen, a ``\\r`` overwrites the line before it and U+202E turns ``exe.txt`` into ``txt.exe``
(Trojan Source, CVE-2021-42574). :func:`printable` is the one function every display passes such
text through: each character a terminal would act on becomes a visible escape in Python's
spelling (``\\x1b``, ``\\u202e``), so the text is still readable and nothing is hidden.

JSON output needs :func:`json_line` as well: ``json.dumps`` escapes C0 and (with its default
``ensure_ascii``) everything beyond ASCII, but passes DEL (U+007F) through as it is.
"""

from __future__ import annotations

import re

__all__ = ["json_line", "printable"]

# C0 (tab and newline too: a display prints one line per call), DEL, C1 (U+009B is a one-byte
# CSI on terminals that honour 8-bit controls), the bidi controls, the line and paragraph
# separators (line breaks to str.splitlines() and JavaScript), and the BOM / zero-width no-break
# space, which hides text between look-alikes. Compiled on first use, by re's own cache
# (start-up: a quiet run that succeeds shows nothing).
_CONTROL = "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character a terminal would act on spelled as a visible
    escape (``\\x1b``, ``\\x07``, ``\\u202e``); other text, non-ASCII letters included, as is."""
    return re.sub(_CONTROL, _escape, text)


def json_line(record: object) -> str:
    """One JSON object on one line, with nothing in it a terminal would act on: what
    ``json.dumps`` leaves raw (DEL) is escaped too, and the line stays valid JSON."""
    import json  # not at the top: the CLI imports this module on every run, json only for -p json

    return json.dumps(record).replace("\x7f", "\\u007f")
