"""Functions stay short enough to read at once: no function or method of m2vae_fusion has a body
longer than MAX_LINES (its code, from the first statement after the docstring to its last line; the
signature's layout is the formatter's), unless its docstring says why ("Long because ...")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "m2vae_fusion"
MAX_LINES = 60
EXCUSE = re.compile(r"\bLong because\b\s*\S")

Function = ast.FunctionDef | ast.AsyncFunctionDef


def functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, Function]]:
    """Every function and method in `tree`, nested ones too, with its qualified name."""
    found: list[tuple[str, Function]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            found.append((name, node))
            found += functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            found += functions(node, f"{prefix}{node.name}.")
        else:
            found += functions(node, prefix)
    return found


def code_start(node: Function) -> int:
    """The first line of a function's code: its first statement that is not the docstring."""
    body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
    return body[0].lineno


def too_long(source: str, module: str) -> list[str]:
    """Qualified names (module.function) of the functions in `source` over MAX_LINES without an excuse."""
    offenders = []
    for name, node in functions(ast.parse(source)):
        length = node.end_lineno - code_start(node) + 1
        if length > MAX_LINES and not EXCUSE.search(ast.get_docstring(node) or ""):
            offenders.append(f"{module}.{name}")
    return offenders


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_function_is_longer_than_the_limit_without_a_reason() -> None:
    offenders = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        offenders |= set(too_long(path.read_text(), module_name(path)))
    new = sorted(offenders)
    assert not new, (
        f"functions with a body longer than {MAX_LINES} lines: {', '.join(new)}; split them into named "
        'steps, or where that would hurt reading say why in the docstring ("Long because ...")'
    )


def body(lines: int, indent: int = 4) -> str:
    return " " * indent + f"x = 1\n{' ' * indent}" * (lines - 1) + "x = 1\n"


SIGNATURE = "def f(\n" + "".join(f"    a{i}: int,\n" for i in range(20)) + ") -> None:\n"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (f"def f():\n{body(MAX_LINES)}", []),
        (f"def f():\n{body(MAX_LINES + 1)}", ["m.f"]),
        (f'def f():\n    """Long because a table reads better whole."""\n{body(MAX_LINES + 1)}', []),
        (f'def f():\n    """Long."""\n{body(MAX_LINES + 1)}', ["m.f"]),
        (f'def f():\n    """A docstring of\n    several lines."""\n{body(MAX_LINES)}', []),
        (f"{SIGNATURE}{body(MAX_LINES)}", []),
        (f"class C:\n    def g(self):\n{body(MAX_LINES + 1, 8)}", ["m.C.g"]),
        (f"def f():\n    def inner():\n{body(MAX_LINES + 1, 8)}", ["m.f", "m.f.inner"]),
        (f"if True:\n    async def f():\n{body(MAX_LINES + 1, 8)}", ["m.f"]),
    ],
    ids=[
        "at the limit",
        "one over",
        "with a reason",
        "docstring without a reason",
        "docstring not counted",
        "signature not counted",
        "method",
        "nested",
        "async under if",
    ],
)
def test_the_check_counts_the_code_of_the_body(source: str, expected: list[str]) -> None:
    assert too_long(source, "m") == expected
