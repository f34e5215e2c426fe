"""Shell completion scripts, generated from the parser: valid, and they know the options."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest


def _script(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "segdl", "--print-completion", shell],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_bash_completion_is_valid_and_completes_options_and_choices() -> None:
    """The bash script parses (bash -n), and completing --conn / --if-exists works."""
    script = _script("bash")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    for option in ("--connections", "--stream-buffer", "--config", "--print-completion"):
        assert option in script
    probe = (
        'eval "$SCRIPT"\n'
        "COMP_WORDS=(segdl --conn); COMP_CWORD=1; _shtab_segdl segdl --conn segdl\n"
        'echo "${COMPREPLY[@]}"\n'
        'COMP_WORDS=(segdl --if-exists ""); COMP_CWORD=2; _shtab_segdl segdl "" --if-exists\n'
        'echo "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "-c", probe], env={"SCRIPT": script, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.splitlines() == ["--connections", "error skip overwrite rename"]


def test_zsh_completion_is_valid_and_names_the_options() -> None:
    """The zsh script parses (zsh -n) and carries every long option with its help."""
    if shutil.which("zsh") is None:  # scripts/test.sh installs it; never skip silently
        pytest.fail("zsh is needed for this test (apt-get install zsh)", pytrace=False)
    script = _script("zsh")
    subprocess.run(["zsh", "-n"], input=script, text=True, check=True)
    assert script.startswith("#compdef segdl")
    for option in ("--connections", "--if-exists", "--dir", "--no-config"):
        assert option in script
