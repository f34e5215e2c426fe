"""The downloaders under test: how to invoke each, and whether it is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# (url, output, CA bundle to trust for https:// or None) -> argv
ArgvBuilder = Callable[[str, Path, Path | None], list[str]]
_SEGDL_VERSION = (
    "import runpy, sys; from segdl._version import __version__ as v; print('segdl', v);"
    " sys.argv = ['segdl', '--help']; runpy.run_module('segdl', run_name='__main__')"
)


@dataclass(frozen=True, slots=True)
class Tool:
    """A downloader: its command line for (url, output path, CA bundle) and its version
    command."""

    name: str
    build_argv: ArgvBuilder
    version_argv: tuple[str, ...]


def _segdl(url: str, out: Path, ca: Path | None) -> list[str]:
    trust = ["--ca-bundle", str(ca)] if ca else []
    return [sys.executable, "-m", "segdl", "-q", "-x", "16", *trust, "-o", str(out), url]


def _aria2c(url: str, out: Path, ca: Path | None) -> list[str]:
    trust = [f"--ca-certificate={ca}"] if ca else []
    return ["aria2c", "-x16", "-s16", "-k1M", "--file-allocation=none",
            "--allow-overwrite=true", "--auto-file-renaming=false", "-q", *trust,
            "-d", str(out.parent), "-o", out.name, url]  # fmt: skip


def _axel(url: str, out: Path, ca: Path | None) -> list[str]:
    # axel takes no CA bundle, and checks an IP address in the URL as if it were a host name
    # (which fails against a certificate for 127.0.0.1): over https it runs unverified, -k.
    insecure = ["-k"] if ca else []
    return ["axel", "-n", "16", "-q", *insecure, "-o", str(out), url]


def _curl(url: str, out: Path, ca: Path | None) -> list[str]:
    trust = ["--cacert", str(ca)] if ca else []
    return ["curl", "-s", *trust, "-o", str(out), url]


TOOLS: dict[str, Tool] = {
    # `-m segdl --help` proves the CLI starts; the version comes from the package itself.
    "segdl": Tool("segdl", _segdl, (sys.executable, "-c", _SEGDL_VERSION)),
    "aria2c": Tool("aria2c", _aria2c, ("aria2c", "--version")),
    "axel": Tool("axel", _axel, ("axel", "--version")),
    "curl": Tool("curl", _curl, ("curl", "--version")),
}


def probe_version(tool: Tool, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """Return (version line, None) if `tool` runs, else (None, why it cannot be used)."""
    exe = tool.version_argv[0]
    if exe != sys.executable and shutil.which(exe) is None:
        return None, f"{exe} not found on PATH"
    try:
        done = subprocess.run(
            tool.version_argv, capture_output=True, text=True, timeout=60, env=dict(env)
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{tool.name}'s version check failed: {exc}"
    lines = (done.stdout or done.stderr).strip().splitlines()
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return None, f"{tool.name}'s version check exited {done.returncode}: {tail[0]}"
    first = lines[0].split(" (")[0][:60] if lines else "?"  # curl's line lists every library
    return first, None
