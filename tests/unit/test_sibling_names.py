"""Names beside an output: temporary ones never grow with it, and a name too long for its
siblings is refused with the limit named (issue 19)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from segdl.core.errors import LocalFileError
from segdl.disk.paths import SIBLING_SUFFIXES, check_name_fits, name_limit_bytes, name_max
from segdl.disk.storage import temp_sibling


@pytest.mark.parametrize("length", [1, 100, 243])
def test_temporary_siblings_have_a_fixed_length(tmp_path: Path, length: int) -> None:
    """A temporary sibling's name does not depend on the output's, and is fresh each time."""
    path = tmp_path / ("n" * length)
    names = {temp_sibling(path).name for _ in range(50)}
    assert len(names) == 50
    assert {len(name) for name in names} == {len(".segdl-0123456789abcdef.tmp")}
    assert all(temp_sibling(path, "old").parent == tmp_path for _ in range(3))


def test_every_sibling_of_a_name_at_the_limit_fits(tmp_path: Path) -> None:
    """The longest name segdl gives leaves room for every sibling suffix within NAME_MAX."""
    limit = name_limit_bytes(tmp_path)
    for suffix in SIBLING_SUFFIXES:
        (tmp_path / ("x" * limit + suffix)).touch()
    assert limit + max(map(len, SIBLING_SUFFIXES)) <= name_max(tmp_path)


def test_check_name_fits_names_the_limit(tmp_path: Path) -> None:
    """An output name whose siblings cannot fit: ENAMETOOLONG, saying the limit and the most
    that fits; one that fits passes."""
    limit = name_max(tmp_path)
    check_name_fits(tmp_path / ("a" * (limit - len(".segdl-state"))))
    with pytest.raises(LocalFileError) as caught:
        check_name_fits(tmp_path / ("a" * (limit - 5)))
    assert caught.value.errno == errno.ENAMETOOLONG
    assert f"{limit}-byte name limit" in str(caught.value)
    assert f"at most {limit - len('.segdl-state')}" in str(caught.value)
