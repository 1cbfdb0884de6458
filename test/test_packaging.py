"""package.xml, setup.py, the node modules and m2vae_msgs agree with one another."""

from __future__ import annotations

import ast
import importlib
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "m2vae_fusion"
# Python modules that come from ROS packages, by ROS package name.
ROS_PACKAGES = {
    "rclpy",
    "rcl_interfaces",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "nav_msgs",
    "visualization_msgs",
    "diagnostic_msgs",
    "rosgraph_msgs",
    "tf2_msgs",
    "m2vae_msgs",
    "cv_bridge",
    "sensor_msgs_py",
    "rosbag2_py",
    "launch",
    "launch_ros",
    "ament_index_python",
    "launch_testing",
    "launch_testing_ros",
}
# Other third-party Python modules -> their rosdep key (rosdep/python.yaml in ros/rosdistro; the
# -pip keys install from PyPI where no distribution package exists). A new import fails
# test_every_import_has_a_rosdep_key until it is added here and to package.xml.
PYTHON_KEYS = {
    "torch": "python3-torch",
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "matplotlib": "python3-matplotlib",
    "sklearn": "python3-sklearn",
    "tqdm": "python3-tqdm",
    "rosbags": "python3-rosbags-pip",
    "mujoco": "python3-mujoco-pip",
    "pytest": "python3-pytest",
}
# Packages whose programs the launch graph starts (package="..." in bringup/ or launch/): declared
# although nothing imports them.
LAUNCHED = {"rviz2", "ros_gz_sim", "ros_gz_bridge", "tf2_ros"}
RUNTIME_SOURCES = (PACKAGE, REPO / "launch")
TEST_SOURCES = (REPO / "test",)


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


def declared_dependencies(root, tags=("depend", "exec_depend", "build_depend", "test_depend", "buildtool_depend")) -> set[str]:
    return {el.text.strip() for tag in tags for el in root.findall(tag)}


def runtime_dependencies(root) -> set[str]:
    return declared_dependencies(root, ("depend", "exec_depend"))


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
    entry = importlib.import_module("m2vae_fusion.ros_interface.entry")
    for name in nodes:
        assert callable(getattr(entry, name)) and getattr(entry, name).__name__ == name
        assert callable(importlib.import_module(f"m2vae_fusion.nodes.{name}").main)


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one file, `importlib.import_module("x.y")` included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return {name.split(".")[0] for name in names}


def third_party_imports(folders=RUNTIME_SOURCES) -> dict[str, set[Path]]:
    """Imported module -> the files importing it: everything but the standard library, this package
    and the test folder's own helper modules (conftest, dds_probe, test_* imported by each other)."""
    local = {"m2vae_fusion"} | {p.stem for p in (REPO / "test").glob("*.py")}
    found: dict[str, set[Path]] = {}
    for folder in folders:
        for path in folder.rglob("*.py"):
            for top in imported_modules(path) - local:
                if top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(path)
    return found


def ros_imports() -> dict[str, set[Path]]:
    return {name: paths for name, paths in third_party_imports().items() if name in ROS_PACKAGES}


def rosdep_key(module: str) -> str | None:
    return module if module in ROS_PACKAGES else PYTHON_KEYS.get(module)


def undeclared(runtime: set[str], test_only: set[str], root) -> dict[str, str]:
    """Imported modules whose rosdep key package.xml lacks -> the tag they need."""
    missing = {m: "exec_depend" for m in runtime if rosdep_key(m) not in runtime_dependencies(root)}
    missing |= {m: "test_depend" for m in test_only - runtime if rosdep_key(m) not in declared_dependencies(root)}
    return missing


def launched_packages() -> set[str]:
    """Packages named as `package=...` / `package: ...` of a process in the launch graph sources."""
    text = "\n".join(
        p.read_text()
        for folder in (PACKAGE / "bringup", REPO / "launch", REPO / "config")
        for p in folder.rglob("*")
        if p.suffix in (".py", ".yaml")
    )
    return {name for name in LAUNCHED if re.search(rf"\bpackage\W{{1,4}}{name}\b", text)}


def unused(root, imported: set[str]) -> set[str]:
    """Dependencies in package.xml that nothing uses: neither the key of an import, nor a package
    whose programs the launch graph starts, nor one of the tools the repository uses as such."""
    used = {rosdep_key(m) for m in imported} | launched_packages() | {"ament_python"}
    if list((REPO / "launch").glob("*.launch.py")):
        used.add("ros2launch")  # `ros2 launch m2vae_fusion ...`
    if re.search(r"^timeout\s*=", (REPO / "setup.cfg").read_text(), flags=re.M):
        used.add("python3-pytest-timeout")  # setup.cfg's [tool:pytest] timeout is this plugin's option
    return declared_dependencies(root) - used


@pytest.mark.slow
def test_every_import_has_a_rosdep_key():
    imports = third_party_imports(RUNTIME_SOURCES + TEST_SOURCES)
    unknown = {m: sorted(str(p.relative_to(REPO)) for p in paths) for m, paths in imports.items() if rosdep_key(m) is None}
    assert not unknown, f"imports without a rosdep key (add them to PYTHON_KEYS and package.xml): {unknown}"


@pytest.mark.slow
def test_package_xml_declares_every_ros_import():
    """Every import, ROS or not, has its rosdep key in package.xml: exec_depend for the package and
    its launch files, test_depend (at least) for what only the tests import."""
    runtime = set(third_party_imports(RUNTIME_SOURCES))
    test_only = set(third_party_imports(TEST_SOURCES))
    missing = undeclared(runtime, test_only, package_xml())
    assert not missing, f"imported but not in package.xml (module: tag needed): {missing}"


def test_package_xml_declares_nothing_unused():
    imported = set(third_party_imports(RUNTIME_SOURCES + TEST_SOURCES))
    assert not unused(package_xml(), imported), "declared in package.xml but neither imported nor started by a launch file"


def test_the_checks_catch_an_unused_and_a_missing_dependency():
    """The two checks above on a doctored package.xml: one dependency nothing uses, and the bag
    reader's pip key left out."""
    root = package_xml()
    for element in root.findall("exec_depend"):
        if element.text == "python3-rosbags-pip":
            root.remove(element)
    ET.SubElement(root, "exec_depend").text = "sensor_msgs_py"
    runtime = set(third_party_imports(RUNTIME_SOURCES))
    assert undeclared(runtime, set(), root) == {"rosbags": "exec_depend"}
    assert unused(root, runtime | set(third_party_imports(TEST_SOURCES))) == {"sensor_msgs_py"}
    # a runtime import declared only for the tests is missing too
    ET.SubElement(root, "test_depend").text = "python3-rosbags-pip"
    assert "rosbags" in undeclared(runtime, set(), root)


def test_launched_packages_are_found():
    """Each program package is found where the launch graph names it (else the unused check would
    pass for the wrong reason)."""
    assert launched_packages() == LAUNCHED


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
