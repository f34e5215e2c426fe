"""Sizes that keep src/segdl readable (STYLE.md): no module over 400 lines, no function over
60 lines but the argparse declaration, and no ``type: ignore`` outside the one module that
wraps urllib3's private API (every other ignore would hide a real type error)."""

from __future__ import annotations

import ast
import io
import tokenize

from tests.unit.test_layers import MODULES, PACKAGE, Module

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# A declaration read top to bottom, one option after another: cutting it up would scatter
# the command line over several functions for no reader's benefit.
LONG_ON_PURPOSE = frozenset({"segdl.cli.parser.build_parser"})
IGNORES_ALLOWED = frozenset({"segdl.net.urllib3_compat"})


def size_violations(module: Module, source: str) -> list[str]:
    """Modules and functions over their limits, and ``type: ignore`` comments."""
    found = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{module.name} has {lines} lines")
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            name = f"{module.name}.{node.name}"
            if length > MAX_FUNCTION_LINES and name not in LONG_ON_PURPOSE:
                found.append(f"{name} has {length} lines")
    if module.name not in IGNORES_ALLOWED:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT and "type: ignore" in token.string:
                found.append(f"{module.name}:{token.start[0]} has a type: ignore")
    return found


def test_modules_and_functions_stay_small_and_typed() -> None:
    found = [v for m in MODULES for v in size_violations(m, m.path.read_text(encoding="utf-8"))]
    assert found == []


def test_the_size_check_catches_what_it_forbids() -> None:
    """A long function, a long module and an ignore are each reported (so the test above
    can fail)."""
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    source = f"def long():\n{body}\n\n\ny = 1  # type: ignore[assignment]\n" + "\n" * 340
    module = Module("segdl.core.bad", PACKAGE / "core" / "bad.py", ast.parse(source))
    assert size_violations(module, source) == [
        "segdl.core.bad has 404 lines",
        "segdl.core.bad.long has 61 lines",
        "segdl.core.bad:64 has a type: ignore",
    ]
