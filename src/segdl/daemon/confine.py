"""``dir`` and ``out`` from an RPC call stay inside the download root (aria2 #2030).

A path is refused when it is absolute outside the root, has a ``..`` part, or resolves (each
existing symlink followed) to a place outside the root; an ``out`` whose last part is a
symlink is refused too. segdl itself opens the ``.part``, state and lock files with
``O_NOFOLLOW``, and :func:`segdl.download` keeps server-given names inside the directory.
The check is repeated just before each download starts, so a symlink planted between the call
and the start is caught then.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from segdl.daemon.errors import RpcError

if TYPE_CHECKING:
    from segdl.daemon.model import Item


def _plain_parts(text: str, what: str) -> PurePosixPath:
    if not text or "\0" in text:
        raise RpcError(f"{what} must be a non-empty path")
    path = PurePosixPath(text)
    if ".." in path.parts:
        raise RpcError(f"{what} {text!r} may not contain '..'")
    return path


def _inside(root: Path, path: Path, what: str, text: str) -> Path:
    resolved = path.resolve()
    if resolved != root and not resolved.is_relative_to(root):
        raise RpcError(f"{what} {text!r} is outside the download root {root}")
    return resolved


def confined_dir(root: Path, requested: str | None) -> Path:
    """The directory to write into: ``requested`` (relative to the root, or absolute inside
    it), resolved; the root itself when None."""
    real_root = root.resolve()
    if requested is None:
        return real_root
    parts = _plain_parts(requested, "dir")
    path = Path(parts) if parts.is_absolute() else real_root / parts
    return _inside(real_root, path, "dir", requested)


def confined_output(root: Path, directory: Path, out: str) -> Path:
    """``out`` inside ``directory`` (itself confined): relative, no ``..``, its parent inside
    the root and its last part not a symlink."""
    real_root = root.resolve()
    parts = _plain_parts(out, "out")
    if parts.is_absolute():
        raise RpcError(f"out {out!r} must be relative to dir")
    target = directory / parts
    parent = _inside(real_root, target.parent, "out", out)
    final = parent / target.name
    if os.path.islink(final):
        raise RpcError(f"out {out!r} is a symlink; it is not followed")
    return final


def check_still_inside(root: Path, path: Path) -> None:
    """Just before a download starts: its directory still resolves inside the root."""
    _inside(root.resolve(), path.parent, "dir", str(path.parent))
    if os.path.islink(path):
        raise RpcError(f"{path} is a symlink; it is not followed")


def confined_place(root: Path, options: Mapping[str, object], directory: Path) -> Path:
    """The directory an item's options ask for (``dir``; else ``directory``), with its
    ``out`` checked to stay inside it."""
    if "dir" in options:
        directory = confined_dir(root, _text(options["dir"]))
    if "out" in options:
        confined_output(root, directory, _text(options["out"]) or "")
    return directory


def run_target(root: Path, item: Item) -> dict[str, Path]:
    """Where an item's run writes, checked again just before it starts: ``dest=`` (the known
    or asked-for path) or ``directory=``, made if missing."""
    directory = Path(item.directory)
    if item.path is not None:
        path = Path(item.path)
    elif "out" in item.options:
        path = confined_output(root, directory, _text(item.options["out"]) or "")
    else:
        check_still_inside(root, directory / "x")
        directory.mkdir(parents=True, exist_ok=True)
        return {"directory": directory}
    check_still_inside(root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return {"dest": path}


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise RpcError("a string is expected")
