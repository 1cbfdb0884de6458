"""The README and the pages in docs/ stay true: docs/nodes.md has an overview row and a
start-by-hand line for every node module and names only message types that exist, and every
relative link in README.md and docs/ leads to a file (and heading) that exists. No ROS init: the
pages are parsed as text and the node modules only listed."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import m2vae_fusion.nodes

ROOT = Path(__file__).resolve().parents[1]
NODES_PAGE = ROOT / "docs" / "nodes.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NODE_MODULES = sorted(m.name for m in pkgutil.iter_modules(m2vae_fusion.nodes.__path__))
MESSAGE_TYPE = re.compile(r"\b([a-z][a-z0-9_]*_msgs)/([A-Z]\w*)")
FENCED = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def section(page: Path, title: str) -> str:
    """The text of `page` from the heading `## title` up to the next `## ` heading."""
    text = page.read_text(encoding="utf-8")
    start = text.find(f"\n## {title}\n")
    assert start >= 0, f"{page.relative_to(ROOT)} has no section '## {title}'"
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


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCED.sub("", page.read_text(encoding="utf-8"))
    return {anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def broken_links(page: Path) -> list[str]:
    """The relative links in `page` (outside code blocks) whose file, or heading in a markdown
    file, does not exist, as 'target (why)'."""
    broken = []
    for target in LINK.findall(FENCED.sub("", page.read_text(encoding="utf-8"))):
        if EXTERNAL.match(target):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_file():
            broken.append(f"{target} (no file {linked})")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target} (no heading #{fragment} in {linked.name})")
    return broken


def test_broken_links_catches_missing_files_and_headings(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# Page\n\n## The `m2vae` command: options\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#the-m2vae-command-options) [web](https://example.org/x) [self](#intro)\n"
        "# Intro\n[gone](missing.md) [bad heading](there.md#nothing)\n"
        "```\n[in code](not-checked.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        f"missing.md (no file {tmp_path / 'missing.md'})",
        "there.md#nothing (no heading #nothing in there.md)",
    ]


def test_every_relative_link_in_the_readme_and_docs_exists() -> None:
    assert len(PAGES) > 1, "docs/ has no markdown pages"
    broken = {str(page.relative_to(ROOT)): links for page in PAGES if (links := broken_links(page))}
    assert not broken, f"links to files or headings that do not exist: {broken}"


def test_every_node_has_an_overview_row_and_a_start_line() -> None:
    assert sorted(row[0] for row in table_rows(section(NODES_PAGE, "Nodes"))) == NODE_MODULES
    by_hand = section(NODES_PAGE, "Starting nodes by hand")
    not_started = [node for node in NODE_MODULES if not re.search(rf"^{node} --ros-args", by_hand, re.M)]
    assert not not_started, f"no start-by-hand line in docs/nodes.md for {not_started}"


def test_message_types_named_exist() -> None:
    named = set(MESSAGE_TYPE.findall(NODES_PAGE.read_text(encoding="utf-8")))
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
    assert not unknown, f"docs/nodes.md names message types that do not exist: {unknown}"
