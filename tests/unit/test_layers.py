"""The rule between the layers of src/segdl, read from the source (see STYLE.md, "Layout").

- ``core`` (decisions and values) imports nothing from ``net``, ``disk``, ``run`` or ``cli``,
  nor a module that talks to sockets, starts threads or locks, and calls no file I/O.
- Only ``net`` imports urllib3.
- Only ``cli`` prints or touches ``sys.stdout`` / ``sys.stderr`` (and a package's
  ``__main__``, which is a command line too).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import segdl

PACKAGE = Path(segdl.__file__).parent

# Modules whose import alone gives core a socket, a thread, a lock or an event loop.
_CORE_FORBIDDEN_MODULES = frozenset(
    {
        "socket",
        "ssl",
        "select",
        "selectors",
        "threading",
        "_thread",
        "multiprocessing",
        "concurrent",
        "asyncio",
        "subprocess",
        "shutil",
        "tempfile",
        "urllib3",
        "http",
    }
)
_CORE_FORBIDDEN_PACKAGES = ("segdl.net", "segdl.disk", "segdl.run", "segdl.cli")
# os functions that touch the file system (os.path's pure string functions are fine).
_OS_FILE_IO = frozenset(
    {
        "open",
        "read",
        "write",
        "pread",
        "pwrite",
        "close",
        "fstat",
        "stat",
        "lstat",
        "replace",
        "rename",
        "unlink",
        "remove",
        "link",
        "symlink",
        "mkdir",
        "makedirs",
        "rmdir",
        "listdir",
        "scandir",
        "fsync",
        "fdatasync",
        "ftruncate",
        "truncate",
        "utime",
        "chmod",
        "access",
        "exists",
        "lexists",
        "isfile",
        "isdir",
        "islink",
        "realpath",
        "getsize",
        "getmtime",
        "samefile",
    }
)
# pathlib.Path methods that touch the file system.
_PATH_FILE_IO = frozenset(
    {
        "open",
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "exists",
        "is_file",
        "is_dir",
        "is_symlink",
        "stat",
        "lstat",
        "resolve",
        "mkdir",
        "unlink",
        "rmdir",
        "iterdir",
        "glob",
        "rglob",
        "touch",
        "samefile",
    }
)


@dataclass(frozen=True)
class Module:
    name: str  # segdl.core.ranges
    path: Path
    tree: ast.Module

    @property
    def layer(self) -> str:
        parts = self.name.split(".")
        return parts[1] if len(parts) > 2 else ""


def _modules() -> list[Module]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found.append(Module(".".join(parts), path, tree))
    return found


MODULES = _modules()


def _imported(module: Module) -> list[tuple[int, str]]:
    """Every module name ``module`` imports (``from x import y`` counts as x and x.y)."""
    names = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the module's package
                package = module.name.split(".")
                keep = len(package) - node.level + (module.path.name == "__init__.py")
                base = ".".join(package[:keep] + ([base] if base else []))
            names.append((node.lineno, base))
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return names


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def core_violations(module: Module) -> list[str]:
    found = []
    for line, name in _imported(module):
        if name.split(".")[0] in _CORE_FORBIDDEN_MODULES or any(
            _under(name, package) for package in _CORE_FORBIDDEN_PACKAGES
        ):
            found.append(f"{module.name}:{line} imports {name}")
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id == "open":
            found.append(f"{module.name}:{node.lineno} calls open()")
        elif isinstance(function, ast.Attribute):
            owner = ast.unparse(function.value)
            if owner in ("os", "os.path") and function.attr in _OS_FILE_IO:
                found.append(f"{module.name}:{node.lineno} calls {owner}.{function.attr}()")
            elif owner not in ("os", "os.path") and function.attr in _PATH_FILE_IO:
                found.append(f"{module.name}:{node.lineno} calls .{function.attr}()")
    return found


def urllib3_violations(module: Module) -> list[str]:
    return [
        f"{module.name}:{line} imports {name}"
        for line, name in _imported(module)
        if name.split(".")[0] == "urllib3"
    ]


def print_violations(module: Module) -> list[str]:
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("print", "breakpoint", "input"):
                found.append(f"{module.name}:{node.lineno} calls {node.func.id}()")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            stream = node.attr in ("stdout", "stderr", "__stdout__", "__stderr__")
            if node.value.id == "sys" and stream:
                found.append(f"{module.name}:{node.lineno} uses sys.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "sys":
            for alias in node.names:
                if alias.name in ("stdout", "stderr", "__stdout__", "__stderr__"):
                    found.append(f"{module.name}:{node.lineno} imports sys.{alias.name}")
    return found


def _may_print(module: Module) -> bool:
    return module.layer == "cli" or module.path.name == "__main__.py"


def test_the_layers_are_there() -> None:
    """The rule is checked on the real tree: every layer has modules (a rename would
    otherwise make the checks below pass vacuously)."""
    layers = {module.layer for module in MODULES}
    assert {"core", "net", "disk", "run", "cli"} <= layers
    assert len([m for m in MODULES if m.layer == "core"]) >= 5


def test_core_does_no_io_and_imports_no_other_layer() -> None:
    """core/ is decisions and values: no net, disk, run or cli import; no socket, thread or
    lock; no file I/O."""
    found = [v for m in MODULES if m.layer == "core" for v in core_violations(m)]
    assert found == []


def test_only_net_imports_urllib3() -> None:
    """urllib3 stays behind the Transport interface: only net/ imports it."""
    found = [v for m in MODULES if m.layer != "net" for v in urllib3_violations(m)]
    assert found == []


def lower_layer_violations(module: Module) -> list[str]:
    """Imports of the layers built on top (cli, daemon, cluster, integrations)."""
    upper = ("segdl.cli", "segdl.daemon", "segdl.cluster", "segdl.integrations")
    return [
        f"{module.name}:{line} imports {name}"
        for line, name in _imported(module)
        if any(_under(name, package) for package in upper)
    ]


def test_the_library_layers_do_not_import_those_built_on_them() -> None:
    """core, net, disk and run never import cli, daemon, cluster or integrations."""
    lower = ("core", "net", "disk", "run")
    found = [v for m in MODULES if m.layer in lower for v in lower_layer_violations(m)]
    assert found == []


def test_only_the_cli_prints() -> None:
    """The library never prints: print() and sys.stdout/sys.stderr appear only in cli/."""
    found = [v for m in MODULES if not _may_print(m) for v in print_violations(m)]
    assert found == []


_BAD_CORE = """
import threading
from segdl.net.transport import Transport
from ..disk import storage
import os

def f(path):
    os.replace(path, path)
    with open(path) as handle:
        return path.read_text()
"""

_BAD_OUTPUT = """
import sys
from sys import stderr

def f():
    print("hello")
    sys.stdout.write("x")
"""


@pytest.mark.parametrize(
    ("source", "check", "expected"),
    [
        (
            _BAD_CORE,
            core_violations,
            [
                "segdl.core.bad:2 imports threading",
                "segdl.core.bad:3 imports segdl.net.transport",
                "segdl.core.bad:3 imports segdl.net.transport.Transport",
                "segdl.core.bad:4 imports segdl.disk",
                "segdl.core.bad:4 imports segdl.disk.storage",
                "segdl.core.bad:8 calls os.replace()",
                "segdl.core.bad:9 calls open()",
                "segdl.core.bad:10 calls .read_text()",
            ],
        ),
        (
            "import urllib3.connection\n",
            urllib3_violations,
            ["segdl.core.bad:1 imports urllib3.connection"],
        ),
        (
            "from segdl.cli.display import human_bytes\nfrom .. import daemon\n",
            lower_layer_violations,
            [
                "segdl.core.bad:1 imports segdl.cli.display",
                "segdl.core.bad:1 imports segdl.cli.display.human_bytes",
                "segdl.core.bad:2 imports segdl.daemon",
            ],
        ),
        (
            _BAD_OUTPUT,
            print_violations,
            [
                "segdl.core.bad:3 imports sys.stderr",
                "segdl.core.bad:6 calls print()",
                "segdl.core.bad:7 uses sys.stdout",
            ],
        ),
    ],
)
def test_the_checks_catch_what_they_forbid(
    source: str, check: Callable[[Module], list[str]], expected: list[str]
) -> None:
    """Each check reports a planted violation with its line (so the tests above can fail)."""
    module = Module("segdl.core.bad", PACKAGE / "core" / "bad.py", ast.parse(source))
    assert sorted(check(module)) == sorted(expected)
