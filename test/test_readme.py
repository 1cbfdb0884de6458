"""README.md's "Nodes" and "Node graph" sections stay true: every node module has a row in the
overview table, a start-by-hand line and a parameter table that lists exactly the parameters it
declares with their defaults; every message type the two sections name exists. No ROS init: the
README is parsed as text and the node modules are only imported."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest

import m2vae_fusion.nodes

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NODE_MODULES = sorted(m.name for m in pkgutil.iter_modules(m2vae_fusion.nodes.__path__))
DETAILS = re.compile(r"<details><summary>(?:<code>|`)(\w+)(?:</code>|`) parameters.*?</summary>(.*?)</details>", re.S)
MESSAGE_TYPE = re.compile(r"\b([a-z][a-z0-9_]*_msgs)/([A-Z]\w*)")


def section(title: str) -> str:
    """The README text from the heading `## title` up to the next `## ` heading."""
    text = README.read_text(encoding="utf-8")
    start = text.find(f"\n## {title}\n")
    assert start >= 0, f"README.md has no section '## {title}'"
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in `text` whose first cell is a `code` name, split into
    first cell (backticks removed), second cell and the rest (which may hold '|')."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| `"):
            first, second, *rest = (cell.strip() for cell in line.strip().strip("|").split("|", 2))
            rows.append([first.strip("`"), second, *rest])
    return rows


def flow(value: Any) -> str:
    """`value` as YAML flow style writes it (the subset the nodes' defaults use)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if value == "":
        return '""'
    return str(value)


def render(value: Any) -> str:
    """A default as the README's parameter tables write it: a number as in YAML (str), anything else
    in YAML flow style in backticks."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return f"`{flow(value)}`"


def declared_defaults(module_name: str) -> dict[str, Any]:
    """name -> default of every parameter the node declares: its PARAMETERS table, or for a node
    without one the literal `declare_parameter(name, default, ...)` calls in its source (None when
    the default is not a literal)."""
    module = importlib.import_module(f"m2vae_fusion.nodes.{module_name}")
    if hasattr(module, "PARAMETERS"):
        return {name: default for name, (default, _) in module.PARAMETERS.items()}
    defaults = {}
    for call in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "declare_parameter":
            try:
                defaults[ast.literal_eval(call.args[0])] = ast.literal_eval(call.args[1]) if len(call.args) > 1 else None
            except ValueError:
                defaults[ast.literal_eval(call.args[0])] = None
    return defaults


def table_problems(node: str, documented: list[list[str]], defaults: dict[str, Any]) -> list[str]:
    """What the README's parameter table of `node` (its rows) gets wrong about `defaults`; a default
    of None (worked out at start-up) must be described in italics."""
    problems = []
    names = [row[0] for row in documented]
    if len(set(names)) != len(names):
        problems.append(f"{node}: parameters listed twice: {sorted({n for n in names if names.count(n) > 1})}")
    if missing := sorted(set(defaults) - set(names)):
        problems.append(f"{node}: parameters not in the README: {missing}")
    if extra := sorted(set(names) - set(defaults)):
        problems.append(f"{node}: README lists parameters the node does not declare: {extra}")
    for name, cell, *_ in documented:
        if name not in defaults:
            continue
        default = defaults[name]
        if default is None:
            if not (len(cell) > 2 and cell.startswith("*") and cell.endswith("*")):
                problems.append(f"{node}.{name}: default is worked out at start-up, the README should describe it in *italics*, has {cell!r}")
        elif cell != render(default):
            problems.append(f"{node}.{name}: README default {cell!r}, the node's is {render(default)!r}")
    return problems


def parameter_tables() -> dict[str, list[list[str]]]:
    tables: dict[str, list[list[str]]] = {}
    for node, body in DETAILS.findall(section("Nodes")):
        assert node not in tables, f"README.md has two parameter tables for {node}"
        tables[node] = table_rows(body)
    return tables


def test_render_writes_defaults_as_yaml() -> None:
    assert [render(v) for v in (0, 0.1, 600.0, 1.0472, True, False, "auto", "", ["robot1", "robot2"])] == [
        "0", "0.1", "600.0", "1.0472", "`true`", "`false`", "`auto`", '`""`', "`[robot1, robot2]`",
    ]


def test_table_problems_catches_each_kind_of_drift() -> None:
    defaults = {"gate": 0.1, "model": None, "fusion_frame": "auto"}
    good = [["gate", "0.1", "m"], ["model", "*the package's*", "m"], ["fusion_frame", "`auto`", "m"]]
    assert table_problems("fusion", good, defaults) == []
    assert "not in the README: ['new_one']" in table_problems("fusion", good, {**defaults, "new_one": 1})[0]
    assert "does not declare: ['gate']" in table_problems("fusion", good, {"model": None, "fusion_frame": "auto"})[0]
    assert "README default '0.1', the node's is '0.2'" in table_problems("fusion", good, {**defaults, "gate": 0.2})[0]
    assert "italics" in table_problems("fusion", [good[0], ["model", "`m`", "m"], good[2]], defaults)[0]
    assert "listed twice" in table_problems("fusion", [*good, good[0]], defaults)[0]


def test_every_node_has_an_overview_row_a_start_line_and_a_parameter_table() -> None:
    nodes = section("Nodes")
    overview = nodes[: nodes.index("<details>")]
    assert sorted(row[0] for row in table_rows(overview)) == NODE_MODULES
    assert sorted(parameter_tables()) == NODE_MODULES
    not_started = [node for node in NODE_MODULES if not re.search(rf"^{node} --ros-args", nodes, re.M)]
    assert not not_started, f"no start-by-hand line in README's Nodes section for {not_started}"


@pytest.mark.parametrize("node", NODE_MODULES)
def test_parameter_table_matches_the_node(node: str) -> None:
    documented = parameter_tables().get(node)
    assert documented is not None, f"README.md has no parameter table for {node}"
    assert table_problems(node, documented, declared_defaults(node)) == []


def test_message_types_named_exist() -> None:
    named = set(MESSAGE_TYPE.findall(section("Nodes") + section("Node graph")))
    assert ("m2vae_msgs", "LatentEmbedding") in named
    unknown = []
    for package, message in sorted(named):
        if package == "m2vae_msgs":
            found = (ROOT / "m2vae_msgs" / "msg" / f"{message}.msg").is_file()
        else:
            try:
                found = hasattr(importlib.import_module(f"{package}.msg"), message)
            except ImportError:
                found = False
        if not found:
            unknown.append(f"{package}/{message}")
    assert not unknown, f"README names message types that do not exist: {unknown}"
