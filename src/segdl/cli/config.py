"""The config file: defaults for the command line, as aria2.conf, .curlrc and .wgetrc are.

``$XDG_CONFIG_HOME/segdl/config.toml`` (``~/.config/segdl/config.toml`` without it), or the
file ``--config PATH`` names; ``--no-config`` reads none. Keys are the long options without
their dashes (``connections = 16``, ``max-connections-per-host = 4``, ``header = ["A: b"]``,
``limit-rate = "10M"``, ``insecure = false``); a value is what the option takes, in TOML's
types: a number, a string, true/false for a switch, a list for an option given many times.
The command line wins: a config value only becomes the option's default.

A bad file is one line, naming the file and the line, and exit 2: a key that is no option
(with the nearest one suggested), a value of the wrong type, or TOML that does not parse.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence

from segdl.core.errors import UsageError

# Options whose strings are sizes or headers, checked here so the error names the line.
_SIZES = frozenset({"limit-rate", "min-split-size", "max-size", "lowest-speed-limit",
                    "stream-buffer"})  # fmt: skip
# Options that make no sense as a default for every run.
_NOT_IN_CONFIG = frozenset({"help", "version", "config", "no-config", "output", "input-file"})


# Paths are strings here, not pathlib's: importing pathlib (and urllib.parse with it) was
# most of `segdl --version`'s own cost, and a run without a config file needs neither.


def default_path(environ: Mapping[str, str]) -> str:
    """``$XDG_CONFIG_HOME/segdl/config.toml``, the XDG base directory default otherwise."""
    base = environ.get("XDG_CONFIG_HOME") or ""
    root = base if os.path.isabs(base) else os.path.join(environ.get("HOME", "~"), ".config")
    return os.path.join(os.path.expanduser(root), "segdl", "config.toml")


def chosen_path(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str | None, bool]:
    """The file to read and whether it must exist (``--config PATH``), from the raw words:
    the config is applied before the command line is parsed."""
    path: str | None = default_path(environ)
    required = False
    words = list(argv)
    for index, word in enumerate(words):
        if word == "--":
            break
        if word == "--no-config":
            return None, False
        if word == "--config" and index + 1 < len(words):
            path, required = words[index + 1], True
        elif word.startswith("--config="):
            path, required = word.partition("=")[2], True
    return path, required


def apply_config(parser: argparse.ArgumentParser, path: str, *, required: bool) -> set[str]:
    """Make the file's values the parser's defaults; the names of the options it set."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError as exc:
        if required:
            raise UsageError(f"config file {path} does not exist") from exc
        return set()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    import tomllib  # only when there is a file: it is 10 ms of every run's start-up

    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from exc
    actions = _long_options(parser)
    defaults: dict[str, object] = {}
    for key, value in table.items():
        where = f"{path} line {_line_of(text, key)}"
        action = actions.get(key)
        if action is None or key in _NOT_IN_CONFIG:
            raise UsageError(f"{where}: {_unknown(key, actions)}")
        defaults[action.dest] = _value(action, key, value, where)
    parser.set_defaults(**defaults)
    return set(defaults)


def _long_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    actions = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                actions[option[2:]] = action
    return actions


def _unknown(key: str, actions: Mapping[str, argparse.Action]) -> str:
    if key in _NOT_IN_CONFIG:
        return f"{key!r} cannot be set in a config file"
    import difflib  # only to explain a mistake

    usable = [name for name in actions if name not in _NOT_IN_CONFIG]
    near = difflib.get_close_matches(key, usable, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"unknown key {key!r}{hint}: keys are long options without the dashes"


def _value(action: argparse.Action, key: str, value: object, where: str) -> object:
    """The option's value from a TOML value, checked as the command line would check it."""
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(value, bool):
            raise UsageError(f"{where}: {key} is a switch: true or false, not {value!r}")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        return [_one(action, key, item, where) for item in values]
    return _one(action, key, value, where)


def _one(action: argparse.Action, key: str, value: object, where: str) -> object:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise UsageError(f"{where}: {key} takes a number or a string, not {value!r}")
    text = str(value)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        raise UsageError(f"{where}: {key} = {value!r} is not valid: {exc}") from exc
    if key in _SIZES:
        from segdl.core.options import parse_size

        try:
            parse_size(text)
        except UsageError as exc:
            raise UsageError(f"{where}: {key} = {value!r} is not a size: {exc}") from exc
    if key == "header" and ":" not in text:
        raise UsageError(f"{where}: header {value!r} is not 'Name: value'")
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise UsageError(f"{where}: {key} = {value!r} is not one of {choices}")
    return converted


def _line_of(text: str, key: str) -> int:
    """The line where ``key`` is set (bare or quoted), for the error message."""
    pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return 1
