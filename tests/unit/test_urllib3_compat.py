"""The urllib3 internals segdl relies on are in one module, behind a version check."""

from __future__ import annotations

import ast

import pytest

from segdl.net.urllib3_compat import check_urllib3
from tests.unit.test_layers import MODULES, Module

# Names urllib3 and http.client keep private, which segdl reaches for (pools, responses,
# connections): only segdl.net.urllib3_compat may touch them.
_PRIVATE = frozenset(
    {
        "_connection",
        "_pool",
        "_fp",
        "_sock",
        "_get_conn",
        "_put_conn",
        "_new_conn",
        "_close_conn",
        "_read_status",
        "_read_headers",
    }
)


def private_uses(module: Module) -> list[str]:
    """Private urllib3/http.client names read or written on anything but ``self``."""
    found = []
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Attribute) or node.attr not in _PRIVATE:
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue  # our own attribute of that name
        found.append(f"{module.name}:{node.lineno} uses .{node.attr}")
    for node in ast.walk(module.tree):
        is_getattr = isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr"
        if is_getattr and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and name.value in _PRIVATE:
                found.append(f"{module.name}:{node.lineno} uses getattr {name.value!r}")
    return found


def test_urllib3_internals_are_used_in_one_module() -> None:
    """Every private urllib3 (and http.client) name segdl uses is in net/urllib3_compat.py,
    so a urllib3 upgrade is checked in one place."""
    found = [v for m in MODULES if m.name != "segdl.net.urllib3_compat" for v in private_uses(m)]
    assert found == []


# The library's layers; the packages built on it (daemon, cluster, integrations) wrap
# untyped libraries of their own (Ray, aiohttp...).
_LIBRARY_LAYERS = ("", "core", "net", "disk", "run", "cli")


def test_type_ignores_only_where_urllib3_is_wrapped() -> None:
    """In the library's layers, ``type: ignore`` appears only in the module wrapping
    urllib3's internals."""
    found = [
        f"{m.name}:{number}"
        for m in MODULES
        if m.layer in _LIBRARY_LAYERS and m.name != "segdl.net.urllib3_compat"
        for number, line in enumerate(m.path.read_text(encoding="utf-8").splitlines(), 1)
        if "type: ignore" in line
    ]
    assert found == []


def test_the_private_use_check_catches_them() -> None:
    """A planted private access is reported (so the test above can fail)."""
    source = "raw._connection = None\nself._pool = 1\nx = getattr(fp, '_fp', None)\n"
    module = Module("segdl.net.bad", MODULES[0].path, ast.parse(source))
    assert private_uses(module) == [
        "segdl.net.bad:1 uses ._connection",
        "segdl.net.bad:3 uses getattr '_fp'",
    ]


@pytest.mark.parametrize("version", ["2.0.0", "2.2.3", "2.5.0.dev1"])
def test_urllib3_2_is_accepted(version: str) -> None:
    """Every urllib3 2.x passes the check."""
    check_urllib3(version)


@pytest.mark.parametrize("version", ["1.26.18", "3.0.0", "unknown", ""])
def test_another_urllib3_is_refused_by_name(version: str) -> None:
    """Another major version is an ImportError naming both versions and the fix."""
    with pytest.raises(ImportError) as caught:
        check_urllib3(version)
    message = str(caught.value)
    assert f"urllib3 {version} is installed" in message
    assert "urllib3>=2,<3" in message
