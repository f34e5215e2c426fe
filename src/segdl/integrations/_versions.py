"""Which versions of a library an integration was written against, checked at its import.

A library outside the range fails the import with one line naming the version found, the
range and the extra to install, instead of an ``AttributeError`` deep inside a download.
"""

from __future__ import annotations

import re
from importlib import metadata

_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")


def release(version: str) -> tuple[int, ...] | None:
    """The release segment of a version string (``"2026.9.0"`` -> ``(2026, 9, 0)``,
    ``"1.9.0rc1"`` -> ``(1, 9, 0)``); None when it does not start with one."""
    match = _RELEASE.match(version)
    if match is None:
        return None
    return tuple(int(part) for part in match.group(1).split("."))


def _padded(numbers: tuple[int, ...], width: int) -> tuple[int, ...]:
    return numbers + (0,) * (width - len(numbers))


def in_range(version: str, minimum: str, below: str | None) -> bool:
    """``minimum <= version < below`` on release segments (``below`` None: no upper bound).
    A pre-release counts as its release: 2.0.0rc1 is outside ``< 2``."""
    found, low = release(version), release(minimum)
    if found is None or low is None:
        return False
    high = release(below) if below is not None else None
    width = max(len(found), len(low), len(high or ()))
    if _padded(found, width) < _padded(low, width):
        return False
    return high is None or _padded(found, width) < _padded(high, width)


def require(
    distribution: str,
    minimum: str,
    below: str | None,
    *,
    extra: str,
    installed: str | None = None,
) -> str:
    """The installed version of ``distribution``, or :class:`ImportError` if it is missing
    or outside ``[minimum, below)``. ``installed`` overrides what the metadata says (tests)."""
    wanted = f"{distribution}>={minimum}" + (f",<{below}" if below is not None else "")
    if installed is None:
        try:
            installed = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            raise ImportError(
                f"segdl.integrations.{extra} needs {wanted}, which is not installed "
                f"(pip install 'segdl[{extra}]')"
            ) from None
    if not in_range(installed, minimum, below):
        raise ImportError(
            f"segdl.integrations.{extra} supports {wanted}, but {distribution} {installed} "
            f"is installed (pip install 'segdl[{extra}]')"
        )
    return installed
