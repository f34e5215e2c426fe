"""Shell completion for bash and zsh, generated from the parser itself by shtab, so it
never lags behind the options. shtab is imported only when a script is asked for."""

from __future__ import annotations

import argparse

# Options that take a path: the shell offers files (or directories) for them.
_FILES = ("--output", "--input-file", "--config", "--ca-bundle", "--netrc-file", "--load-cookies")
_DIRECTORIES = ("--dir",)


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` ("bash" or "zsh")."""
    import shtab

    for action in parser._actions:
        if any(option in _FILES for option in action.option_strings):
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif any(option in _DIRECTORIES for option in action.option_strings):
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    script: str = shtab.complete(parser, shell=shell)
    return script if script.endswith("\n") else script + "\n"
