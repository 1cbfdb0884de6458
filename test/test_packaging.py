"""package.xml, setup.py, the node modules and m2vae_msgs agree with one another."""

from __future__ import annotations

import ast
import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "m2vae_fusion"
# Python modules that come from ROS packages, by ROS package name.
ROS_PACKAGES = {
    "rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs", "geometry_msgs", "nav_msgs",
    "visualization_msgs", "diagnostic_msgs", "rosgraph_msgs", "tf2_msgs", "m2vae_msgs", "cv_bridge", "sensor_msgs_py",
    "rosbag2_py", "launch", "launch_ros", "ament_index_python",
}


def setup_py():
    tree = ast.parse((REPO / "setup.py").read_text())
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def package_xml(path=REPO / "package.xml"):
    return ET.parse(path).getroot()


def declared_dependencies(root) -> set[str]:
    tags = ("depend", "exec_depend", "build_depend", "test_depend", "buildtool_depend")
    return {el.text.strip() for tag in tags for el in root.findall(tag)}


def test_name_and_version_agree():
    root = package_xml()
    values = setup_py()
    assert root.findtext("name") == values["PACKAGE"] == "m2vae_fusion"
    assert root.findtext("version") == values["VERSION"] == importlib.import_module("m2vae_fusion").__version__
    assert root.find("export/build_type").text == "ament_python"
    assert (REPO / "resource" / "m2vae_fusion").is_file()


def node_modules() -> set[str]:
    return {p.stem for p in (PACKAGE / "nodes").glob("*.py") if p.stem != "__init__" and "def main(" in p.read_text()}


def test_every_node_has_a_console_script():
    nodes = setup_py()["NODES"]
    assert set(nodes) == node_modules()
    for name, target in nodes.items():
        module, func = target.split(":")
        assert module == f"m2vae_fusion.nodes.{name}"
        assert callable(getattr(importlib.import_module(module), func))


def ros_imports() -> dict[str, set[Path]]:
    found: dict[str, set[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in ROS_PACKAGES:
                    found.setdefault(top, set()).add(path)
    return found


def test_package_xml_declares_every_ros_import():
    declared = declared_dependencies(package_xml())
    missing = {pkg: sorted(str(p.relative_to(REPO)) for p in paths) for pkg, paths in ros_imports().items() if pkg not in declared and pkg != "rcl_interfaces"}
    assert not missing, f"ROS packages imported but not in package.xml: {missing}"


def test_core_never_imports_ros():
    core = PACKAGE / "core"
    offenders = {pkg for pkg, paths in ros_imports().items() if any(core in p.parents for p in paths)}
    assert not offenders


def test_data_folders_are_installed():
    text = (REPO / "setup.py").read_text()
    for folder in ("launch", "config", "worlds", "models"):
        assert (REPO / folder).is_dir()
        assert f'tree("{folder}")' in text


def test_msg_package_lists_every_message():
    cmake = (REPO / "m2vae_msgs" / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"msg/(\w+)\.msg"', cmake))
    on_disk = {p.stem for p in (REPO / "m2vae_msgs" / "msg").glob("*.msg")}
    assert listed == on_disk
    root = package_xml(REPO / "m2vae_msgs" / "package.xml")
    assert root.findtext("name") == "m2vae_msgs"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    used = set()
    for path in (REPO / "m2vae_msgs" / "msg").glob("*.msg"):
        used |= set(re.findall(r"^(\w+)/\w+", path.read_text(), flags=re.M))
    assert used <= declared_dependencies(root)


@pytest.mark.parametrize("folder", ["launch", "config", "worlds", "models"])
def test_share_dir_resolves(folder):
    from m2vae_fusion.resources import share_dir

    assert (share_dir() / folder).is_dir()
