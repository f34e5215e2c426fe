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
        # shtab reads an attribute argparse.Action does not declare: set in its __dict__.
        if any(option in _FILES for option in action.option_strings):
            vars(action)["complete"] = shtab.FILE
        elif any(option in _DIRECTORIES for option in action.option_strings):
            vars(action)["complete"] = shtab.DIRECTORY
    script: str = shtab.complete(parser, shell=shell)
    return script if script.endswith("\n") else script + "\n"
